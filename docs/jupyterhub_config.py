"""JupyterHub for a payments-lab room: one shared Temporal server as a hub service, one namespace per learner.

Run it on the workshop machine, from the repository, in the kit's environment (with
``configurable-http-proxy`` installed: ``npm install -g configurable-http-proxy``)::

    jupyterhub -f docs/jupyterhub_config.py

Learners log in at http://<host>:8000 with their name (any password: the dummy
authenticator is for a workshop's throwaway logins only; use your organisation's
authenticator elsewhere). Each learner's notebooks reach the room's server through
``TEMPORAL_ADDRESS`` and their own namespace through ``TEMPORAL_NAMESPACE``; Web UI links open
through the hub at ``/services/temporal/``, behind the hub's login: a learner sees their own
namespace there, a facilitator (``PAYMENTS_LAB_HUB_FACILITATORS``) every one. The environment
variables below change the defaults (the kit's tests use them to run a hub on free ports).
"""

import os
import sys
from pathlib import Path

from payments_lab import kernel_startup
from payments_lab.errors import InvalidArgumentError
from payments_lab.room import NAME_RULE, learner_names

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file


def hub_names(variable: str, default: str = "") -> list[str]:
    """The comma-separated user names in ``variable``, as the hub will know them.

    JupyterHub lower-cases every login (Authenticator.normalize_username) and each learner's namespace is
    their hub user name: "Ana" is listed as "ana", or her notebooks would look for a namespace the room lacks.
    """
    return [name.strip().lower() for name in os.environ.get(variable, default).split(",") if name.strip()]


LEARNERS = hub_names("PAYMENTS_LAB_HUB_LEARNERS", "learner-01,learner-02,learner-03")
HUB_PORT = int(os.environ.get("PAYMENTS_LAB_HUB_PORT", "8000"))
TEMPORAL_PORT = int(os.environ.get("PAYMENTS_LAB_HUB_TEMPORAL_PORT", "7233"))
UI_PORT = int(os.environ.get("PAYMENTS_LAB_HUB_UI_PORT", "8233"))
UI_GATE_PORT = int(os.environ.get("PAYMENTS_LAB_HUB_UI_GATE_PORT", "8234"))
# Hub users who see every learner's namespace in the Web UI; they log in like learners and are the hub's admins.
FACILITATORS = hub_names("PAYMENTS_LAB_HUB_FACILITATORS")
PROXY_API_PORT = int(os.environ.get("PAYMENTS_LAB_HUB_PROXY_API_PORT", "8001"))  # JupyterHub's defaults, for the
INTERNAL_PORT = int(os.environ.get("PAYMENTS_LAB_HUB_INTERNAL_PORT", "8081"))  # proxy's API and the hub's own API
HOMES = os.environ.get("PAYMENTS_LAB_HUB_HOMES", "/tmp/payments-lab-hub/{username}")

names = Path("learners.txt")
# A facilitator has a namespace too: their notebooks run the lessons like a learner's.
names.write_text("\n".join(LEARNERS + [name for name in FACILITATORS if name not in LEARNERS]) + "\n", encoding="utf-8")
try:
    # Checked here, not by the room service: a name it refuses stops the service, and then no learner has a server.
    learner_names(names_file=names)
except InvalidArgumentError as err:
    sys.exit(
        f"jupyterhub_config.py: {err}. Each hub user name is a learner's Temporal namespace and a line of their "
        "environment: give PAYMENTS_LAB_HUB_LEARNERS (or LEARNERS) such names, e.g. 'jorg' for 'Jörg', 'ana-maria' for 'Ana Maria'"
    )

c.JupyterHub.ip = "127.0.0.1"  # put the hub behind your HTTPS proxy, or set its ip for the room's network
c.JupyterHub.port = HUB_PORT
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PROXY_API_PORT}"
c.JupyterHub.hub_port = INTERNAL_PORT
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = set(LEARNERS) | set(FACILITATORS)
c.Authenticator.admin_users = set(FACILITATORS)
c.Authenticator.username_pattern = NAME_RULE  # the hub refuses, at login, a name no namespace of the room has
# Each learner's server runs as the hub's own user: no system account per learner.
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = HOMES
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
if hasattr(os, "geteuid") and os.geteuid() == 0:
    c.Spawner.args = ["--allow-root"]  # containers and CI machines often run everything as root

# The room's Temporal server, started and stopped with the hub. Its Web UI listens on 127.0.0.1 only and
# has no login of its own: the hub reaches it through the "temporal" service below, at /services/temporal/,
# which sends whoever has not logged in to the hub's login page, shows a learner their own namespace only
# (their hub user name) and a facilitator every one (payments_lab/ui_gate.py). The learners' kernels reach
# the Temporal server and the Web UI themselves on 127.0.0.1 (TEMPORAL_PORT, UI_PORT), where the dev server
# asks no one who they are: the gate guards the Web UI against whoever reaches only the hub's port, not one
# learner's code from another's.
c.JupyterHub.services = [
    {
        "name": "temporal-room",
        "command": [
            sys.executable, "-m", "payments_lab", "room", "--names", str(names.resolve()),
            "--db", str(Path("room.sqlite").resolve()), "--port", str(TEMPORAL_PORT), "--ui-port", str(UI_PORT), "--ui-public-path", "/services/temporal/",
            "--ui-behind-login",
        ],
    },
    {
        "name": "temporal",
        "url": f"http://127.0.0.1:{UI_GATE_PORT}",
        "command": [
            sys.executable, "-m", "payments_lab.ui_gate", "--upstream", f"http://127.0.0.1:{UI_PORT}", "--facilitators", ",".join(FACILITATORS),
        ],
        "oauth_no_confirm": True,  # the room's own service: no "authorize this application?" page
    },
]
# Every hub user may log in to the Web UI's gate (which then decides what they see).
c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self", "access:services!service=temporal"]}]
c.Spawner.environment = {
    "TEMPORAL_ADDRESS": f"127.0.0.1:{TEMPORAL_PORT}",
    "TEMPORAL_NAMESPACE": lambda spawner: spawner.user.name,
    "PAYMENTS_LAB_UI_URL": "/services/temporal",
    # A cell run before the lesson's set-up cell: its NameError says to run the cells above first.
    "PYTHONSTARTUP": kernel_startup.__file__,
}

# For the kit's tests (and a facilitator's scripts): a token that may start servers and act for learners.
if os.environ.get("PAYMENTS_LAB_HUB_ADMIN_TOKEN"):
    c.JupyterHub.services.append({"name": "facilitator", "api_token": os.environ["PAYMENTS_LAB_HUB_ADMIN_TOKEN"]})
    c.JupyterHub.load_roles.append(
        {"name": "facilitator", "scopes": ["admin:users", "admin:servers", "access:servers", "tokens"], "services": ["facilitator"]}
    )
