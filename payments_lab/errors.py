"""The root of the errors the kit raises on purpose: ``except PaymentsLabError`` catches them all.

Each error also derives from the built-in exception it stands for (``ValueError`` for input
refused, ``LookupError`` for a payment that does not exist, ``RuntimeError`` for a server
that cannot be reached), so code that catches those keeps working.
"""

from __future__ import annotations


class PaymentsLabError(Exception):
    """Something the kit refused or could not do, said in plain words with what to do next."""
