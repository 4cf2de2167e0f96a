"""Workflow modules compiled once per process, so that Temporal's sandbox does not compile them for every run.

Temporal's sandbox imports a workflow's module again for every workflow it runs, so that
no run sees another's module state. Python then reads the module's bytecode from
``__pycache__``, or, where none could be written (``PYTHONDONTWRITEBYTECODE`` is set, the
folder is read-only), compiles the source again: on every payment, which
more than doubles the sandbox's set-up of a payment (``bench/workflow_load.py``; figures in the
README). A module's code object is immutable: running it again in a new module isolates a
run as well as reading it again does, so the kit keeps the one it compiled or read and hands
it to every later import of that file.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import threading
from collections.abc import Sequence
from types import CodeType, ModuleType

_MODULES: set[str] = set()
"""The names of the modules whose code is kept."""

_CODE: dict[tuple[str, int, int], CodeType] = {}
"""Kept code, by file, modification time (ns) and size: a file that changes is compiled again."""

_INSTALLING = threading.Lock()


class _KeptCodeLoader(importlib.machinery.SourceFileLoader):
    """Python's loader of a source file, keeping the code it compiled or read for the file's next import."""

    def get_code(self, fullname: str) -> CodeType | None:
        """See :py:meth:`importlib.abc.InspectLoader.get_code`."""
        stat = os.stat(self.path)
        key = (self.path, stat.st_mtime_ns, stat.st_size)
        code = _CODE.get(key)
        if code is None:
            code = super().get_code(fullname)
            if code is not None:
                _CODE[key] = code
        return code


class _KeptCodeFinder(importlib.abc.MetaPathFinder):
    """Finds a listed module as the other finders do, then loads it with :class:`_KeptCodeLoader`."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """See :py:meth:`importlib.abc.MetaPathFinder.find_spec`."""
        if fullname not in _MODULES:
            return None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec: importlib.machinery.ModuleSpec | None = find_spec(fullname, path, target)
            if spec is not None:
                if type(spec.loader) is importlib.machinery.SourceFileLoader and spec.origin:
                    spec.loader = _KeptCodeLoader(fullname, spec.origin)
                return spec
        return None


_FINDER = _KeptCodeFinder()


def compile_once(workflows: Sequence[type]) -> None:
    """Keep the compiled code of the modules that define ``workflows``, for every later import of them.

    Args:
        workflows: Workflow classes a worker is about to run in the sandbox.
    """
    names: set[str] = set()
    for cls in workflows:
        # The sandbox imports the module's packages again too: ``payments_lab``, then ``payments_lab.workflows``.
        parts = cls.__module__.split(".")
        names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    names.discard("__main__")
    with _INSTALLING:
        _MODULES.update(names)
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
