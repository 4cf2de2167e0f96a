"""Tests of the workflow modules' kept code: compiled once, imported again by the sandbox for every workflow."""

from __future__ import annotations

import sys
import types
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import _Definition

from payments_lab import bytecode
from payments_lab.activities import PaymentActivities
from payments_lab.bytecode import compile_once
from payments_lab.worker import create_worker

MODULE = '''
from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import {registry}


def marker() -> str:
    return "{version}"


{registry}.loads.append(marker)


@workflow.defn
class KeptWorkflow:
    @workflow.run
    async def run(self) -> str:
        return marker()
'''


@pytest.fixture
def workflow_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[types.ModuleType, Path, types.ModuleType]:
    """A workflow module of its own, and a registry (passed through the sandbox) where each import of it leaves its ``marker``."""
    name = f"kept_{uuid.uuid4().hex[:8]}"
    registry = types.ModuleType(f"{name}_registry")
    registry.loads = []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, registry.__name__, registry)
    path = tmp_path / f"{name}.py"
    path.write_text(MODULE.format(registry=registry.__name__, version="first"))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    monkeypatch.setitem(sys.modules, name, module)
    return module, path, registry


def _set_up_in_sandbox(workflow_class: type) -> None:
    """What a worker does for each new workflow run: import the module again, in a sandbox of its own."""
    SandboxedWorkflowRunner().prepare_workflow(_Definition.must_from_class(workflow_class))


async def test_the_sandbox_imports_a_kept_module_again_for_each_workflow_from_code_compiled_once(
    workflow_module: tuple[types.ModuleType, Path, types.ModuleType],
) -> None:
    module, _, registry = workflow_module
    compile_once([module.KeptWorkflow])
    _set_up_in_sandbox(module.KeptWorkflow)
    _set_up_in_sandbox(module.KeptWorkflow)
    host, first, second = registry.loads
    assert len({id(host), id(first), id(second)}) == 3, "each workflow gets a module of its own"
    assert first.__code__ is second.__code__, "the second import ran the code the first one compiled or read"


async def test_without_kept_code_each_import_gets_its_code_anew(workflow_module: tuple[types.ModuleType, Path, types.ModuleType]) -> None:
    module, _, registry = workflow_module
    _set_up_in_sandbox(module.KeptWorkflow)
    _set_up_in_sandbox(module.KeptWorkflow)
    _, first, second = registry.loads
    assert first.__code__ is not second.__code__


async def test_a_kept_module_edited_on_disk_is_compiled_again(workflow_module: tuple[types.ModuleType, Path, types.ModuleType]) -> None:
    module, path, registry = workflow_module
    compile_once([module.KeptWorkflow])
    _set_up_in_sandbox(module.KeptWorkflow)
    path.write_text(MODULE.format(registry=registry.__name__, version="second, longer"))
    _set_up_in_sandbox(module.KeptWorkflow)
    assert [load() for load in registry.loads[1:]] == ["first", "second, longer"]


async def test_a_kit_worker_keeps_the_code_of_the_workflows_it_runs_and_of_their_packages(
    client: Client, task_queue: str, activities: PaymentActivities
) -> None:
    create_worker(client, task_queue, activities)
    assert {"payments_lab", "payments_lab.workflows", "payments_lab.confirmation", "payments_lab.verdicts"} <= bytecode._MODULES
    assert sys.meta_path.count(bytecode._FINDER) == 1
