"""Workflow code written in a notebook cell: a module file per version, imported with the sandbox intact.

Temporal's sandbox runs each workflow in a fresh import of the module that defines its
class, found by the module's name (``temporalio.worker.workflow_sandbox``). A class
defined in a notebook cell lives in ``__main__``, which has no file to import again, so
its validation fails. Here each version of a cell is written to a file of its own in a
folder of the lab's, under a name never used before (``payment_v2_1``, ``payment_v2_2``…):
the sandbox always imports the source the cell holds now, never a cached older one.
"""

from __future__ import annotations

import asyncio
import importlib
import keyword
import re
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from payments_lab.errors import InvalidArgumentError, PaymentsLabError
from payments_lab.runaway import GuardedCall
from payments_lab.wording import sandbox_refusal_words
from payments_lab.worker import DEFAULT_WORKFLOWS, BackgroundWorker

__all__ = ["LoadedModule", "WorkflowModuleError", "WorkflowModules", "deploy", "explain_worker_error"]

_WORKFLOW_DEFINITION = "__temporal_workflow_definition"
_ACTIVITY_DEFINITION = "__temporal_activity_definition"
_LAST_NUMBER: dict[str, int] = {}
"""The last number a module name was given in this process, by the name its cell gave."""

IMPORT_DEADLINE = 10.0
"""Seconds a cell's module may take to import: its top level should only import and define."""


class WorkflowModuleError(PaymentsLabError, ValueError):
    """Workflow code written in a cell that cannot run: what is wrong, and what to change.

    In a notebook it shows as its message alone, like every :class:`PaymentsLabError`.
    """


@dataclass(frozen=True)
class LoadedModule:
    """One version of a module written in a cell."""

    name: str
    """The name the cell gave, e.g. ``payment_v2``."""
    revision: int
    """Which version of that name, from 1."""
    module_name: str
    """The name it was imported under, e.g. ``payment_v2_2``, never used before in this process: the
    sandbox imports it again by this name."""
    path: Path
    """The file it was written to."""
    module: ModuleType
    """The module, imported outside the sandbox."""
    workflows: Mapping[str, type]
    """Its workflow classes, by workflow name."""
    activities: Mapping[str, Callable[..., Any]]
    """Its activities, by activity name."""
    notes: tuple[str, ...] = ()
    """What the learner may not expect of it (a kit workflow extended under a name of its own runs nowhere)."""

    def __str__(self) -> str:
        parts = [f"{self.name} (version {self.revision}, file {self.path.name})"]
        if self.workflows:
            parts.append("workflows " + ", ".join(f"{n} = {c.__name__}" for n, c in self.workflows.items()))
        if self.activities:
            parts.append("activities " + ", ".join(self.activities))
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"LoadedModule({self})"


_CODING_COOKIE = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)", re.MULTILINE)
"""PEP 263's declaration of a source file's encoding, looked for on its first two lines."""


def _notes(workflows: Mapping[str, type]) -> tuple[str, ...]:
    """A note for each class that extends a kit workflow under a workflow name of its own: the kit's payments never run it."""
    notes = []
    kit_names = {_definition_name(kit, _WORKFLOW_DEFINITION) or kit.__name__ for kit in DEFAULT_WORKFLOWS}
    # The most derived first: a version of ConfirmedPaymentWorkflow is a PaymentWorkflow too.
    most_derived_first = sorted(DEFAULT_WORKFLOWS, key=lambda kit: len(kit.__mro__), reverse=True)
    for defn_name, cls in workflows.items():
        if defn_name in kit_names:  # it takes the place of that kit workflow, as meant
            continue
        for kit in most_derived_first:
            kit_name = _definition_name(kit, _WORKFLOW_DEFINITION) or kit.__name__
            if issubclass(cls, kit) and kit_name not in workflows:
                notes.append(
                    f"{cls.__name__} extends {kit.__name__} under a workflow name of its own ({defn_name!r}): payments "
                    f"the lab starts still run the kit's {kit.__name__}. To replace it, write "
                    f"`@workflow.defn(name={kit_name!r})` above the class and run the cell again."
                )
                break
    return tuple(notes)


def _definition_name(value: object, attribute: str) -> str | None:
    definition = getattr(value, attribute, None)
    return getattr(definition, "name", None) if definition is not None else None


def _frame_in(error: BaseException, path: Path) -> int | None:
    """The line of ``path`` where ``error`` was raised, if it was raised there."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if Path(frame.filename) == path]
    return lines[-1] if lines else None


def _start_import(module_name: str) -> GuardedCall:
    """Start importing ``module_name`` in a thread of its own: its top level may loop or wait for ever."""
    return GuardedCall(importlib.import_module, module_name, name=f"import {module_name}")


def _import_ended(importing: GuardedCall, finished: bool, name: str, module_name: str, path: Path, deadline: float) -> ModuleType:
    """The module ``importing`` imported (version ``module_name`` of cell module ``name``), once waited for.

    Args:
        importing: The import, from :func:`_start_import`.
        finished: Whether it ended within ``deadline`` seconds.
        name: The name the cell gave.
        module_name: The name it is imported under.
        path: Its file.
        deadline: The seconds it was waited for.

    Raises:
        WorkflowModuleError: the import ran past ``deadline``; the message names the line that was running.
        BaseException: whatever the module's top level raised.
    """
    if not finished:
        line = importing.running_line(path)
        stopped = importing.stop()
        sys.modules.pop(module_name, None)
        where = f", line {line}" if line else ""
        still = (
            ""
            if stopped
            else " It could not be stopped (it waits inside a call) and runs on in the background: restart the kernel to end it."
        )
        raise WorkflowModuleError(
            f"{name}{where}: importing the module did not finish within {deadline:g} s: its module-level code was "
            "still running (a loop or a wait at the top level?). Module-level code runs at import: keep it to imports "
            f"and definitions, and put loops inside functions; the worker still runs the previous version.{still}"
        )
    module: ModuleType = importing.result()
    return module


def _import_within(name: str, module_name: str, path: Path, deadline: float) -> ModuleType:
    """Import ``module_name`` (version of cell module ``name``) in a thread of its own, blocking for ``deadline`` seconds at most.

    For a caller with no event loop to keep turning; :func:`_import_within_async` waits on the loop.

    Raises:
        WorkflowModuleError: the import ran past ``deadline``; the message names the line that was running.
        BaseException: whatever the module's top level raised.
    """
    importing = _start_import(module_name)
    return _import_ended(importing, importing.wait(deadline), name, module_name, path, deadline)


async def _import_within_async(name: str, module_name: str, path: Path, deadline: float) -> ModuleType:
    """:func:`_import_within`, waiting on the event loop: the lab's worker in the same kernel polls and heartbeats meanwhile.

    Raises:
        WorkflowModuleError: the import ran past ``deadline``; the message names the line that was running.
        BaseException: whatever the module's top level raised.
    """
    importing = _start_import(module_name)
    try:
        finished = await importing.wait_async(deadline)
    except BaseException:
        # The cell stopped waiting (interrupted): this version is never used, so its import is not left running
        # on in the background, nor its half-imported module in sys.modules.
        importing.stop(grace=0)
        sys.modules.pop(module_name, None)
        raise
    return _import_ended(importing, finished, name, module_name, path, deadline)


def _import_failure(error: Exception | SystemExit, name: str, path: Path, source: str) -> WorkflowModuleError:
    """What to tell of a module whose import raised ``error``: one message saying what to change."""
    if isinstance(error, WorkflowModuleError):  # it ran past its deadline: already said
        return error
    if isinstance(error, ImportError):
        missing = error.name or str(error)
        return WorkflowModuleError(
            f"{name}: cannot import {missing!r} ({error}). Check the spelling of the import, or install the "
            "package; the worker still runs the previous version."
        )
    line = _frame_in(error, path)
    where = f", line {line}" if line else ""
    if _raised_by_temporal(error):
        return WorkflowModuleError(
            f"{name}{where}: Temporal refused a definition ({type(error).__name__}: {error}). "
            f"{_definition_fix(str(error), source)}; the worker still runs the previous version."
        )
    return WorkflowModuleError(
        f"{name}{where}: importing the module raised {type(error).__name__}: {error}. Module-level code runs "
        "at import: keep it to imports and definitions; the worker still runs the previous version."
    )


def _definition_fix(refusal: str, source: str) -> str:
    """What to change in a definition Temporal's decorators refused."""
    if "@workflow.init and @workflow.run method parameters do not match" in refusal and "from __future__ import annotations" not in source:
        # Temporal compares the two signatures as written: the kit's module has
        # ``from __future__ import annotations``, so PaymentWorkflow's __init__ says
        # input: "PaymentInput" (text), and a run written without it says the class.
        return (
            "PaymentWorkflow's @workflow.init takes `input: PaymentInput` written as text (its module starts with "
            "`from __future__ import annotations`) and Temporal compares both signatures as written: put "
            "`from __future__ import annotations` as the first line of this code"
        )
    return "Change the decorated class or function there"


def _raised_by_temporal(error: BaseException) -> bool:
    """Whether ``error`` was raised inside the SDK (a decorator refusing a definition), not by the learner's code."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and "temporalio" in Path(frames[-1].filename).parts


class WorkflowModules:
    """The folder where a lab keeps the modules written in its cells, and what they define.

    Args:
        folder: Where to write the files; a new temporary folder by default, removed
            by :meth:`close`.
        import_deadline: Seconds a module may take to import before it is reported as
            running on (a loop at its top level).
    """

    def __init__(self, folder: str | Path | None = None, *, import_deadline: float = IMPORT_DEADLINE) -> None:
        self.import_deadline = import_deadline
        self._owned = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="payments-lab-modules-") if folder is None else folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        # The sandbox imports a workflow's module by name, through sys.path.
        if str(self.folder) not in sys.path:
            sys.path.append(str(self.folder))
        self._revisions: dict[str, int] = {}
        self._names: set[str] = set()
        self._current: dict[str, LoadedModule] = {}
        self.deploying = asyncio.Lock()
        """Held while a version is put in use (:func:`deploy`)."""
        self.loading = asyncio.Lock()
        """Held while a version is imported and queued for :attr:`deploying` (:func:`deploy`): versions are put in
        use in the order they were loaded, whichever import ends first."""

    def __repr__(self) -> str:
        return f"WorkflowModules({self.folder}, modules {sorted(self._current)})"

    @property
    def current(self) -> Mapping[str, LoadedModule]:
        """The version in use of each module, by the name its cell gave."""
        return dict(self._current)

    def load(self, name: str, source: str) -> LoadedModule:
        """Write ``source`` as a new version of module ``name`` and import it (outside the sandbox).

        The version is not in use until :meth:`commit`: a worker must first accept it.

        Raises:
            ValueError: ``name`` is not a valid module name.
            WorkflowModuleError: the source does not compile, fails to import, or defines
                no workflow and no activity.
        """
        revision, module_name, path = self._write(name, source)
        try:
            module = _import_within(name, module_name, path, self.import_deadline)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - the learner's module may raise anything at import
            raise _import_failure(error, name, path, source) from None
        return self._defined(name, revision, module_name, path, module)

    async def load_async(self, name: str, source: str) -> LoadedModule:
        """:meth:`load`, waiting for the import on the event loop instead of blocking it.

        A module whose top level is slow (``time.sleep(5)``) or never ends keeps the
        kernel's event loop turning meanwhile: the lab's worker, and every other task,
        carry on. The deadline is the same.

        Raises:
            ValueError: ``name`` is not a valid module name.
            WorkflowModuleError: the source does not compile, fails to import, or defines
                no workflow and no activity.
        """
        revision, module_name, path = self._write(name, source)
        try:
            module = await _import_within_async(name, module_name, path, self.import_deadline)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - the learner's module may raise anything at import
            raise _import_failure(error, name, path, source) from None
        return self._defined(name, revision, module_name, path, module)

    def _write(self, name: str, source: str) -> tuple[int, str, Path]:
        """Check ``name`` and ``source`` and write the source under a module name never used before.

        Returns:
            The version's revision, the module name it is imported under, and its file.

        Raises:
            ValueError: ``name`` is not a valid module name.
            WorkflowModuleError: the source is not text that compiles.
        """
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or keyword.iskeyword(name):
            raise InvalidArgumentError(f"a module name is a Python identifier starting with a letter, e.g. 'payment_v2'; got {name!r}")
        if not isinstance(source, str):
            hint = ": decode it (source.decode('utf-8')), or read the file with open(path).read()" if isinstance(source, bytes) else ""
            raise InvalidArgumentError(f"the source of module {name!r} must be text, got {type(source).__name__}{hint}")
        try:
            source.encode("utf-8")
        except UnicodeEncodeError as error:
            raise WorkflowModuleError(
                f"{name}, line {source.count(chr(10), 0, error.start) + 1}: {source[error.start]!r} is not valid text (a lone surrogate: a byte pasted "
                "from a file or terminal that is not UTF-8). Retype that character and run the cell again; the "
                "worker still runs the previous version."
            ) from None
        lines = source.splitlines()[:2]
        if lines and lines[0].strip() and not lines[0].lstrip().startswith("#"):
            lines = lines[:1]  # Python reads the second line's declaration only under a comment or a blank line (PEP 263)
        first_lines = "\n".join(lines)
        cookie = _CODING_COOKIE.search(first_lines)
        if cookie and cookie.group(1).lower().replace("_", "-") not in ("utf-8", "utf8"):
            cookie_line = 1 + first_lines[: cookie.start()].count("\n")
            raise WorkflowModuleError(
                f"{name}, line {cookie_line}: declares `coding: {cookie.group(1)}`, but the cell's text is written to the "
                "module as UTF-8 and Python would read it back in that encoding, changing every accented letter "
                "('€' would become 'â\\x82¬'). Remove that line and run the cell again; the worker still runs the "
                "previous version."
            )
        revision = self._revisions.get(name, 0) + 1
        # Unique in the process, not only in this folder: every folder is on sys.path, and
        # sys.modules is one for all.
        _LAST_NUMBER[name] = number = _LAST_NUMBER.get(name, 0) + 1
        module_name = f"{name}_{number}"
        path = self.folder / f"{module_name}.py"
        problem: tuple[str, int | None] | None = None
        try:
            compile(source, str(path), "exec")
        except SyntaxError as error:
            problem = (error.msg, error.lineno)
        except ValueError as error:  # a NUL character: no line to point at
            problem = (str(error), None)
        if problem is not None:
            message, lineno = problem
            raise WorkflowModuleError(
                f"{name}{f', line {lineno}' if lineno else ''}: {message}. Correct it and run the cell again; "
                "the worker still runs the previous version."
            )
        self._revisions[name] = revision
        self._names.add(module_name)
        path.write_text(source, encoding="utf-8")
        importlib.invalidate_caches()
        return revision, module_name, path

    def _defined(self, name: str, revision: int, module_name: str, path: Path, module: ModuleType) -> LoadedModule:
        """The version ``module`` imported: its workflows and activities.

        Raises:
            WorkflowModuleError: it defines no workflow and no activity, or two classes of one workflow name.
        """
        workflows: dict[str, type] = {}
        for value in vars(module).values():
            if not (isinstance(value, type) and value.__module__ == module_name):
                continue
            defn_name = _definition_name(value, _WORKFLOW_DEFINITION)
            if defn_name is None:
                continue
            if defn_name in workflows:
                sys.modules.pop(module_name, None)
                raise WorkflowModuleError(
                    f"{name}: {workflows[defn_name].__name__} and {value.__name__} both define workflow {defn_name!r}, "
                    "and a worker runs one class per workflow name. Keep one, or give the other its own "
                    "name (`@workflow.defn(name=...)`); the worker still runs the previous version."
                )
            workflows[defn_name] = value
        activities = {
            defn_name: value
            for value in vars(module).values()
            if callable(value)
            and getattr(value, "__module__", None) == module_name
            and (defn_name := _definition_name(value, _ACTIVITY_DEFINITION)) is not None
        }
        if not workflows and not activities:
            sys.modules.pop(module_name, None)
            raise WorkflowModuleError(
                f"{name} defines no workflow and no activity: decorate a class with `@workflow.defn` "
                "(and its entry method with `@workflow.run`), or a function with `@activity.defn`."
            )
        return LoadedModule(name, revision, module_name, path, module, workflows, activities, _notes(workflows))

    def workflows_with(self, loaded: LoadedModule | None, defaults: Iterable[type]) -> list[type]:
        """The workflow classes a worker runs: ``defaults``, replaced by name by the modules in use and ``loaded``."""
        chosen: dict[str, type] = {}
        for cls in defaults:
            chosen[_definition_name(cls, _WORKFLOW_DEFINITION) or cls.__name__] = cls
        for module in self._in_use(loaded):
            chosen.update(module.workflows)
        return list(chosen.values())

    def activities_with(self, loaded: LoadedModule | None) -> list[Callable[..., Any]]:
        """The activities of the modules in use and ``loaded``, by name (a later version replaces an earlier one)."""
        chosen: dict[str, Callable[..., Any]] = {}
        for module in self._in_use(loaded):
            chosen.update(module.activities)
        return list(chosen.values())

    def _in_use(self, loaded: LoadedModule | None) -> list[LoadedModule]:
        """The modules in use, the one loaded last at the end: where two define a workflow or an
        activity of the same name, the later one wins (a fix loaded again under its first name
        included)."""
        modules = [module for module in self._current.values() if loaded is None or module.name != loaded.name]
        return [*modules, loaded] if loaded is not None else modules

    def commit(self, loaded: LoadedModule) -> None:
        """Put ``loaded`` in use, in place of the earlier version of its name, as the module loaded last."""
        self._current.pop(loaded.name, None)
        self._current[loaded.name] = loaded

    def discard(self, loaded: LoadedModule) -> None:
        """Forget a version that no worker accepted (its file stays, under a name never reused)."""
        sys.modules.pop(loaded.module_name, None)

    def close(self) -> None:
        """Forget every module, take the folder off ``sys.path`` and remove it if it was a temporary one."""
        for name in [m for m in sys.modules if m.split(".")[0] in self._module_names()]:
            sys.modules.pop(name, None)
        if str(self.folder) in sys.path:
            sys.path.remove(str(self.folder))
        if self._owned:
            shutil.rmtree(self.folder, ignore_errors=True)
        self._current.clear()

    def _module_names(self) -> set[str]:
        return set(self._names)


_PLAIN_DEF_ACTIVITY = re.compile(r"Activity (\S+) is not async so an activity_executor must be present")
"""The worker's refusal of an activity written with a plain ``def``."""


def explain_worker_error(error: BaseException, loaded: LoadedModule) -> WorkflowModuleError:
    """Say why a worker refused the workflows of ``loaded``, and what to change.

    The worker validates every workflow class when it is built, by importing its module
    in the sandbox and creating the workflow (``RuntimeError: Failed validating workflow``).
    """
    cause: BaseException = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    line = _frame_in(cause, loaded.path)
    where = f", line {line}" if line else ""
    if type(cause).__name__ == "RestrictedWorkflowAccessError":
        detail, fix = sandbox_refusal_words(getattr(cause, "qualified_name", "")), ""
    else:
        text = str(cause).strip().splitlines()
        detail = f"the worker refused it: {type(cause).__name__}" + (f": {text[0]}" if text else "")
        fix = "Correct the module and run the cell again."
        plain = _PLAIN_DEF_ACTIVITY.search(str(cause))
        if plain:  # the lab's worker runs activities on its event loop: it has no executor for a plain `def`
            fix = (
                f"Write it `async def {plain.group(1)}(...)`, and inside it `await asyncio.sleep(...)`, never "
                "`time.sleep(...)` (which would stop the whole worker); then run the cell again."
            )
    return WorkflowModuleError(f"{loaded.name}{where}: {detail}.{f' {fix}' if fix else ''} The worker still runs the previous version.")


async def deploy(worker: BackgroundWorker | None, modules: WorkflowModules, name: str, source: str) -> LoadedModule:
    """Load a new version of module ``name`` and restart ``worker`` with it, on the same task queue.

    Workflows already running carry on with the new code: the new worker replays their
    histories, then runs what comes next. If anything is wrong with the version, the
    worker keeps the code it had. With no worker, the version is only loaded and
    validated (to replay histories against it first, say), not put in use.

    Raises:
        ValueError: ``name`` is not a valid module name.
        WorkflowModuleError: the version does not compile, import, or pass the worker's
            validation in the sandbox.
    """
    async def load_then_put_in_use() -> LoadedModule:
        async with modules.loading:
            # The import waits on the event loop (the worker in this kernel goes on polling). The next load
            # waits its turn here, so that the version loaded last is the one put in use last.
            loaded = await modules.load_async(name, source)
            putting = asyncio.ensure_future(put_in_use(loaded))  # queued on `deploying` before the next load's
        await putting
        return loaded

    async def put_in_use(loaded: LoadedModule) -> None:
        async with modules.deploying:  # one deployment after the other: each builds on what the one before put in use
            await _put_in_use(loaded)

    async def _put_in_use(loaded: LoadedModule) -> None:
        try:
            for cls in loaded.workflows.values():
                # What the worker does to each workflow class when it is built: import its
                # module in a fresh sandbox and create the workflow, with fake details.
                SandboxedWorkflowRunner().prepare_workflow(getattr(cls, _WORKFLOW_DEFINITION))
            if worker is not None:
                await worker.restart(
                    workflows=modules.workflows_with(loaded, DEFAULT_WORKFLOWS), extra_activities=modules.activities_with(loaded)
                )
        except Exception as error:  # noqa: BLE001 - whatever the worker refused, say why in one message
            modules.discard(loaded)
            raise explain_worker_error(error, loaded) from None
        if worker is not None:
            modules.commit(loaded)

    # An interrupted cell (Jupyter cancels its task) must not stop the worker half-way: the lab would
    # have no worker at all. The deployment (its import included) runs to its end in a task of its own;
    # the cell stops waiting.
    deployment = asyncio.ensure_future(load_then_put_in_use())
    try:
        await asyncio.shield(deployment)
    except asyncio.CancelledError as stopped:
        # Its outcome (the new version in use, or the one before) is the lab's state; nobody awaits it now.
        deployment.add_done_callback(lambda done: done.cancelled() or done.exception())
        stopped._render_traceback_ = lambda: [  # type: ignore[attr-defined]  # in a notebook, one line for asyncio's frames
            f"\x1b[31mStopped waiting\x1b[0m for module {name!r}: its deployment goes on to its end (the new version in "
            "use, or the worker keeps the code it had); `lab.modules.current` tells which. Running the cell again waits its turn."
        ]
        raise
    return deployment.result()
