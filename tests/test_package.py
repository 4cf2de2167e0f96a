"""The package's public names: importing it is cheap, every exported name resolves."""

from __future__ import annotations

import subprocess
import sys

import payments_lab


def test_every_exported_name_resolves() -> None:
    for name in payments_lab.__all__:
        assert getattr(payments_lab, name) is not None, name


def test_importing_the_package_imports_nothing_heavy() -> None:
    probe = "import sys, payments_lab; print(sorted(m for m in ('temporalio', 'pandas', 'matplotlib') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_unknown_names_raise_attribute_error() -> None:
    try:
        payments_lab.not_a_thing  # noqa: B018
    except AttributeError as err:
        assert "not_a_thing" in str(err)
    else:
        raise AssertionError("expected AttributeError")
