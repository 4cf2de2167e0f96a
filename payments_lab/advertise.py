"""The address a room hands its learners: the one their machines reach this machine at."""

from __future__ import annotations

import ipaddress
import socket

import psutil

from payments_lab.errors import InvalidArgumentError

ALL_INTERFACES = ("0.0.0.0", "::", "")
"""Bind addresses that listen on every interface of this machine."""

_ANY_ROUTABLE = "192.0.2.1"
"""A documentation address (RFC 5737): connecting a UDP socket to it sends nothing, it only picks the default route."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, ``127.x``, ``::1``)."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _default_route_address() -> str | None:
    """This machine's IPv4 address on its default route, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((_ANY_ROUTABLE, 9))
        except OSError:  # no route at all: an offline machine
            return None
        address = probe.getsockname()[0]
    return None if is_loopback(address) or address == "0.0.0.0" else str(address)


def _interface_addresses() -> list[str]:
    """Non-loopback IPv4 addresses of the interfaces that are up, in the system's order."""
    up = {name for name, stats in psutil.net_if_stats().items() if stats.isup}
    return [
        address.address
        for name, addresses in psutil.net_if_addrs().items()
        if name in up
        for address in addresses
        if address.family == socket.AF_INET and not is_loopback(address.address)
    ]


def advertised_host(ip: str, advertise: str | None = None) -> str:
    """The host learners are told to reach a server listening on ``ip`` at.

    Args:
        ip: The address the server listens on.
        advertise: The facilitator's own choice (``--advertise``), which wins.

    Raises:
        InvalidArgumentError: the server listens on every interface and this machine has no
            address other machines can reach; or ``advertise`` is empty.
    """
    if advertise is not None:
        if not advertise.strip():
            raise InvalidArgumentError("--advertise needs a host: this machine's address or name on the room's network")
        return advertise.strip()
    if ip not in ALL_INTERFACES:
        return ip
    # socket.getfqdn() is not used: where /etc/hosts maps the hostname to 127.0.1.1 (Debian,
    # Ubuntu), it answers 'localhost', and every learner would look for the room on their laptop.
    found = _default_route_address() or next(iter(_interface_addresses()), None)
    if found is None:
        raise InvalidArgumentError(
            "this machine has no network address other than loopback to hand to learners: pass --ip <this machine's "
            "address on the room's network> (or --advertise HOST)"
        )
    return found
