"""``python -m payments_lab``: the command line."""

from payments_lab.cli import run

run()
