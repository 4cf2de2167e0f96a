"""``python -m payments_lab``: the command line."""

from __future__ import annotations

from payments_lab.cli import run

run()
