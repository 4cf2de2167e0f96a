"""The zero-install rooms: a Codespace's dev container and Binder's start script leave a lab session the kit finds."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from payments_lab import kernel_startup
from payments_lab.processes import free_port, leftovers

ROOT = Path(__file__).resolve().parent.parent


def room_environment(home: Path, **extra: str) -> dict[str, str]:
    """A fresh HOME, the kit's commands on PATH, and no test-wide state folder: the room's own defaults."""
    env = {k: v for k, v in os.environ.items() if k not in ("PAYMENTS_LAB_STATE_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME")}
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", **extra)
    env["PAYMENTS_LAB_MARK"] = os.urandom(8).hex()
    return env


def session_of(home: Path, timeout: float = 60) -> dict[str, object]:
    path = home / ".local" / "state" / "payments-lab" / "session.json"
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, "no lab session was published"
        time.sleep(0.2)
    return json.loads(path.read_text())


def end_session(session: dict[str, object], env: dict[str, str]) -> None:
    os.kill(int(session["pid"]), signal.SIGINT)  # type: ignore[arg-type]
    assert leftovers(env["PAYMENTS_LAB_MARK"], 30) == [], "the room's server outlived its session"


def find_session_in_a_kernel(env: dict[str, str]) -> str:
    """What a notebook of the room finds: the session's server and its Web UI link."""
    code = (
        "import asyncio\n"
        "from payments_lab.client import connect\n"
        "c = asyncio.run(connect(start_server=False))\n"
        "print(c.source.split(' of ')[0], c.ui_url, flush=True)\n"
        "import os; os._exit(0)  # Temporal's core can abort a short process's teardown (sdk-python#300)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_dev_container_names_only_commands_that_work(tmp_path: Path) -> None:
    config = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    install = shlex.split(config["postCreateCommand"])
    assert install[:4] == ["python", "-m", "pip", "install"] and install[-1] == ".[test]" and "test" in extras
    ports = set(map(int, re.findall(r"--(?:ui-)?port (\d+)", config["postStartCommand"])))
    assert ports == set(config["forwardPorts"]) == set(map(int, config["portsAttributes"]))
    assert all((ROOT / f).is_file() for f in config["customizations"]["codespaces"]["openFiles"])
    # Kernels add a hint to a NameError: the start-up file, named from the workspace the kit is installed from (-e).
    startup = config["remoteEnv"]["PYTHONSTARTUP"]
    assert startup.startswith("${containerWorkspaceFolder}/") and (ROOT / startup.split("/", 1)[1]).is_file(), startup

    workdir = tmp_path / "repo"
    workdir.mkdir()
    env = room_environment(
        tmp_path / "home", CODESPACE_NAME="fuzzy-space-7x9", GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN="app.github.dev"
    )
    # The same command, on free ports: another run on this machine may hold 7233 and 8233.
    grpc, ui = free_port(), free_port()
    command = config["postStartCommand"].replace("--port 7233", f"--port {grpc}").replace("--ui-port 8233", f"--ui-port {ui}")
    subprocess.run(["bash", "-c", command], cwd=workdir, env=env, check=True, timeout=30)
    session = session_of(tmp_path / "home")
    try:
        assert session["address"] == f"127.0.0.1:{grpc}"
        assert session["ui_url"] == f"https://fuzzy-space-7x9-{ui}.app.github.dev"
        assert session["db_file"] == ".lab-state/temporal.sqlite"
        assert find_session_in_a_kernel(env) == f"lab session https://fuzzy-space-7x9-{ui}.app.github.dev"
    finally:
        end_session(session, env)


def test_binders_start_script_leaves_a_session_behind_jupyter(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = room_environment(home, JUPYTERHUB_SERVICE_PREFIX="/user/binder-abc123/")
    probe = (
        "import os; from payments_lab.server import read_session; s = read_session(); "
        "print(s.address if s else 'none'); print(os.environ.get('PYTHONSTARTUP'))"
    )
    done = subprocess.run(
        [str(ROOT / "start"), sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=90, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    session = session_of(home)
    try:
        address, startup = done.stdout.split()
        assert address == session["address"], "the session is ready when the notebook server starts"
        assert startup == kernel_startup.__file__, "kernels add a hint to a NameError"
        assert str(session["ui_url"]).startswith("/user/binder-abc123/proxy/absolute/")
        assert find_session_in_a_kernel(env).startswith("lab session /user/binder-abc123/proxy/absolute/")
    finally:
        end_session(session, env)
    assert os.access(ROOT / "postBuild", os.X_OK) and os.access(ROOT / "start", os.X_OK)


def test_binders_start_script_hands_over_at_once_with_the_log_when_the_server_died(tmp_path: Path) -> None:
    env = room_environment(tmp_path / "home", PAYMENTS_LAB_TEMPORAL_CLI=str(tmp_path / "no-temporal"))
    began = time.monotonic()
    done = subprocess.run(
        [str(ROOT / "start"), sys.executable, "-c", "print('notebook server')"],
        capture_output=True, text=True, env=env, timeout=60, cwd=ROOT,
    )
    took = time.monotonic() - began
    assert done.returncode == 0 and done.stdout.strip() == "notebook server", done.stderr
    assert took < 15, f"start waited {took:.0f} s for a server that had died"
    assert "ended before its lab session was ready. Last lines of" in done.stderr
    assert "PAYMENTS_LAB_TEMPORAL_CLI" in done.stderr, "the server log's own line reaches the launch log"
    assert leftovers(env["PAYMENTS_LAB_MARK"], 5) == []


@pytest.mark.parametrize("name", ["start", "postBuild"])
def test_binder_scripts_are_valid_bash(name: str) -> None:
    assert subprocess.run(["bash", "-n", str(ROOT / name)]).returncode == 0
