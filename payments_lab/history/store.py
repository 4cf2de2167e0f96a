"""Histories from the server, and to and from JSON files: fetch one or many, save, load."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from google.protobuf.json_format import ParseError
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from tqdm.auto import tqdm

from payments_lab.arguments import whole_number
from payments_lab.domain import WORKFLOW_ID_PREFIX, checked_text, workflow_id_for
from payments_lab.errors import InvalidArgumentError, PaymentsLabError
from payments_lab.gathering import gather_all
from payments_lab.history.decoding import as_histories
from payments_lab.outage import answered
from payments_lab.visibility import checked_query, refused_query_as_error

DEFAULT_CONCURRENCY = 32
"""Histories fetched at once by :func:`fetch_histories`: enough to keep a local server busy."""


class HistoryNotFoundError(PaymentsLabError, LookupError):
    """No workflow (or no run of it) has the id asked for."""


async def fetch_history(client: Client, workflow_id: str, run_id: str | None = None) -> WorkflowHistory:
    """The history of one workflow run (the latest run when ``run_id`` is None).

    If the server is unreachable, or stopped and silent, this waits for it (see
    :func:`payments_lab.outage.answered`).

    Raises:
        HistoryNotFoundError: no such workflow or run in the client's namespace; the message
            says how a payment's workflow id is written.
        ValueError: ``workflow_id`` or ``run_id`` is not text that Temporal can carry.
    """
    checked_text("workflow_id", workflow_id)
    if run_id is not None:
        checked_text("run_id", run_id)
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        return await answered(client, lambda window: handle.fetch_history(rpc_timeout=window))
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        raise HistoryNotFoundError(_not_found(client, workflow_id, run_id)) from None


def _not_found(client: Client, workflow_id: str, run_id: str | None) -> str:
    """Why :func:`fetch_history` found nothing, and what to try instead."""
    what = f"no run {run_id!r} of workflow {workflow_id!r}" if run_id else f"no workflow {workflow_id!r}"
    message = f"{what} in namespace {client.namespace!r}"
    if not workflow_id.startswith(WORKFLOW_ID_PREFIX):
        return f"{message}. A payment's workflow id is {WORKFLOW_ID_PREFIX!r} + its payment id: did you mean {workflow_id_for(workflow_id)!r}?"
    return message + "; `await lab.service.search()` lists this lab's payments"


async def fetch_histories(
    client: Client,
    workflows: Iterable[str | tuple[str, str]] | None = None,
    *,
    query: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: bool = True,
) -> list[WorkflowHistory]:
    """Fetch many histories at once, at most ``concurrency`` at a time, with a progress bar.

    Args:
        client: The Temporal client.
        workflows: Workflow ids (their latest run) or ``(workflow id, run id)`` pairs.
        query: Instead of ``workflows``, a visibility query, e.g.
            ``lab.service.visibility_query(status="failed")``.
        concurrency: Histories requested at the same time.
        progress: Show a ``tqdm`` progress bar (a widget in notebooks).

    Returns:
        The histories, in the order of ``workflows`` (or of the query's results).

    Raises:
        ValueError: both or neither of ``workflows`` and ``query`` are given, an item of
            ``workflows`` is neither an id nor an (id, run id) pair, or ``concurrency`` is below 1.
        payments_lab.visibility.VisibilityQueryError: the server refused ``query``; the message says
            what a query may say.
        HistoryNotFoundError: a workflow does not exist (the other fetches stop).
        payments_lab.client.TemporalUnavailableError: the server stayed unreachable, or stopped,
            longer than the kit waits (``PAYMENTS_LAB_OUTAGE_WAIT``).
    """
    if (workflows is None) == (query is None):
        raise InvalidArgumentError("pass either workflows (ids or (id, run id) pairs) or a visibility query, not both")
    whole_number("concurrency", concurrency, minimum=1)
    targets: list[tuple[str, str | None]]
    if query is not None:
        with refused_query_as_error(checked_query(query)):
            targets = await answered(client, lambda window: _listed(client, query, window))
    elif isinstance(workflows, str):
        raise InvalidArgumentError("workflows must be a list of workflow ids, not one string; use fetch_history for one")
    else:
        targets = [_target(w) for w in workflows or ()]
    semaphore = asyncio.Semaphore(concurrency)
    with tqdm(total=len(targets), desc="histories", unit="history", disable=not progress) as bar:

        async def fetch(workflow_id: str, run_id: str | None) -> WorkflowHistory:
            async with semaphore:
                history = await fetch_history(client, workflow_id, run_id)
            bar.update()
            return history

        return await gather_all(fetch(workflow_id, run_id) for workflow_id, run_id in targets)


def _target(workflow: object) -> tuple[str, str | None]:
    """A workflow id (its latest run) or a (workflow id, run id) pair, as (id, run id or None)."""
    if isinstance(workflow, str):
        return workflow, None
    # A list pair too: what a DataFrame's ``values.tolist()`` gives.
    if isinstance(workflow, (tuple, list)) and len(workflow) == 2 and all(isinstance(part, str) for part in workflow):
        return workflow[0], workflow[1]
    raise InvalidArgumentError(f"workflows must hold workflow ids or (workflow id, run id) pairs, got {workflow!r}")


async def _listed(client: Client, query: str, window: timedelta) -> list[tuple[str, str | None]]:
    """The (workflow id, run id) of every workflow ``query`` lists, each page given ``window``."""
    return [(execution.id, execution.run_id) async for execution in client.list_workflows(query, rpc_timeout=window)]


def save_history(history: WorkflowHistory, path: str | Path) -> Path:
    """Write ``history`` as JSON, the format of ``temporal workflow show --output json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(history.to_json(), encoding="utf-8")
    return path


def load_history(path: str | Path, workflow_id: str | None = None) -> WorkflowHistory:
    """Read a history saved by :func:`save_history`, the Web UI or ``temporal workflow show --output json``.

    Args:
        path: The JSON file.
        workflow_id: The workflow's id; by default the one the start event records
            (recent servers write it there), else the file name without ``.json``.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: the file is not a history in JSON, or holds no events.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(
            f"{path} is not a file{' (it is a folder: pass one of its .json files, or load_histories(folder))' if path.is_dir() else ''}: "
            "save_histories(...) returns the paths of the files it wrote"
        )
    try:
        history = WorkflowHistory.from_json(workflow_id or "", path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, ParseError) as err:
        raise InvalidArgumentError(
            f"{path} is not a workflow history in JSON ({err}): save one with save_history, the Web UI's "
            "download, or `temporal workflow show --output json`"
        ) from None
    if not history.events:
        raise InvalidArgumentError(f"{path} holds no history events: it is empty, or was not written by save_history")
    if workflow_id is None:
        recorded = history.events[0].workflow_execution_started_event_attributes.workflow_id
        history = WorkflowHistory(recorded or path.stem, history.events)
    return history


def save_histories(histories: Iterable[WorkflowHistory], directory: str | Path) -> list[Path]:
    """Write each history to ``directory/<workflow id>.json``; return the files.

    Raises:
        ValueError: two histories have the same workflow id (two runs of one workflow).
    """
    directory = Path(directory)
    histories = as_histories(histories)
    ids = [h.workflow_id for h in histories]
    duplicates = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    if duplicates:
        raise InvalidArgumentError(f"several runs of {duplicates}: save them one by one with save_history")
    for workflow_id in ids:
        if not workflow_id or "/" in workflow_id or workflow_id in (".", ".."):
            raise InvalidArgumentError(f"workflow id {workflow_id!r} cannot be a file name: save it with save_history")
    return [save_history(h, directory / f"{h.workflow_id}.json") for h in histories]


def load_histories(directory: str | Path) -> list[WorkflowHistory]:
    """Read every ``*.json`` history of ``directory``, by file name.

    Raises:
        FileNotFoundError: there is no such folder.
        NotADirectoryError: ``directory`` is a file (read it with :func:`load_history`).
        ValueError: a file is not a history (the message names it).
    """
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"no folder {str(directory)!r}: save histories there first with save_histories")
    if not directory.is_dir():
        raise NotADirectoryError(f"{str(directory)!r} is a file, not a folder: read it with load_history")
    return [load_history(path) for path in sorted(directory.glob("*.json"))]
