"""What it costs Temporal's sandbox to set up one workflow, with and without bytecode, and with the kit's kept code.

The sandbox imports a workflow's module again for every workflow run. Three ways that
import can get the module's code, each measured in processes of its own, in alternating
rounds, for the payment workflow and for the bare workflow of ``bare_workflow.py``:
``bytecode`` (read from ``__pycache__``), ``source`` (no bytecode to read, as with
``PYTHONDONTWRITEBYTECODE`` and an edited or never-imported file: compiled every time) and
``kept`` (:func:`payments_lab.bytecode.compile_once`, what the kit's workers do). Prints
``name=value`` lines: medians of per-process medians, in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import py_compile
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKFLOWS = {"kit": "payments_lab.workflows:PaymentWorkflow", "bare": "bare_workflow:BareWorkflow"}
WAYS = ("bytecode", "source", "kept")


async def _median_setup_ms(workflow: str, loads: int) -> float:
    """Median time of the sandbox's set-up of ``workflow`` (what a worker does for each new workflow run)."""
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
    from temporalio.workflow import _Definition

    module_name, class_name = workflow.split(":")
    definition = _Definition.must_from_class(getattr(importlib.import_module(module_name), class_name))
    runner = SandboxedWorkflowRunner()
    for _ in range(20):
        runner.prepare_workflow(definition)
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        runner.prepare_workflow(definition)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _one(side: str, way: str, loads: int) -> None:
    """In this process: set ``way`` up, measure, print the median."""
    sys.path.insert(0, str(Path(__file__).parent))
    if way == "source":
        # Bytecode is looked for, and would be written, under an empty folder: every import compiles.
        sys.dont_write_bytecode = True
        sys.pycache_prefix = tempfile.mkdtemp(prefix="no-bytecode-")
    module_name, class_name = WORKFLOWS[side].split(":")
    workflow_class = getattr(importlib.import_module(module_name), class_name)
    if way == "kept":
        from payments_lab.bytecode import compile_once

        compile_once([workflow_class])
    print(asyncio.run(_median_setup_ms(WORKFLOWS[side], loads)))


def main(rounds: int, loads: int) -> None:
    for workflow in WORKFLOWS.values():  # the ``bytecode`` way needs it current, whatever PYTHONDONTWRITEBYTECODE says
        source = importlib.util.find_spec(workflow.split(":")[0], None)
        py_compile.compile(source.origin, quiet=1) if source and source.origin else None
    found: dict[tuple[str, str], list[float]] = {(side, way): [] for side in WORKFLOWS for way in WAYS}
    for round_ in range(rounds):
        order = list(found) if round_ % 2 == 0 else list(reversed(found))
        for side, way in order:
            out = subprocess.run(
                [sys.executable, __file__, "--one", side, way, "--loads", str(loads)], capture_output=True, text=True, check=True
            )
            found[side, way].append(float(out.stdout.strip().splitlines()[-1]))
    for (side, way), values in found.items():
        print(f"{side}_workflow_setup_{way}_ms={statistics.median(values):.3f}")
    for side in WORKFLOWS:
        bytecode = statistics.median(found[side, "bytecode"])
        print(f"{side}_source_vs_bytecode_setup_ratio={statistics.median(found[side, 'source']) / bytecode:.2f}")
        print(f"{side}_kept_vs_bytecode_setup_ratio={statistics.median(found[side, 'kept']) / bytecode:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds of the six processes")
    parser.add_argument("--loads", type=int, default=300, help="set-ups measured in each process")
    parser.add_argument("--one", nargs=2, metavar=("SIDE", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(*args.one, args.loads)
    else:
        main(args.rounds, args.loads)
