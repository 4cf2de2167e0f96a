"""The root of the errors the kit raises on purpose: ``except PaymentsLabError`` catches them all.

Each error also derives from the built-in exception it stands for (``ValueError`` for input
refused, ``LookupError`` for a payment that does not exist, ``RuntimeError`` for a server
that cannot be reached), so code that catches those keeps working. In a notebook each shows
as its message alone: the kit's own frames would bury what happened and what to do.
"""

from __future__ import annotations


class PaymentsLabError(Exception):
    """Something the kit refused or could not do, said in plain words with what to do next."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this in place of the traceback (a cell run again, e.g. a confirmation
        # sent twice, gives one red line, not a page of the kit's frames).
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {self}"]


class InvalidArgumentError(PaymentsLabError, ValueError, TypeError):
    """An argument the kit refused: out of range, of the wrong kind, or incomplete; the message says what it expects.

    Python says "bad argument" with ``ValueError`` (a wrong value) or ``TypeError`` (a wrong kind
    of value); this is both, so code that catches either keeps working.
    """


class WaitTimedOutError(PaymentsLabError, TimeoutError):
    """A wait of the kit's (for a charge, for a payment to wait for its customer) ran out; the message says where things stood."""
