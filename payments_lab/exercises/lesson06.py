"""Exercises of lesson 06 · payments as data: a visibility query, and counting through visibility."""

from __future__ import annotations

import asyncio
import math
import numbers
import time
import uuid
from collections import Counter
from decimal import Decimal

from payments_lab.errors import InvalidArgumentError
from payments_lab.exercises import Exercise, Mismatch, Verdict
from payments_lab.exercises.checking import (
    ID_PREFIX,
    PaymentRun,
    call_learner,
    expect_function,
    plural,
    required_lab,
    run_payments,
    short_repr,
)
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.lab import Lab
from payments_lab.service import PaymentService
from payments_lab.visibility import VisibilityQueryError

DECLINED_CARD = FaultPlan(charge=StepFaults(decline=True))
"""The processor declines the card: the payment ends ``failed``."""

VISIBLE_WITHIN = 3.0
"""Seconds visibility may take to show the payments a check ran."""


def _new_organizations(lab: Lab, count: int) -> list[str]:
    """Organizations no one used before, so that a check sees only its own payments."""
    organizations = [f"org-{ID_PREFIX}-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    for organization in organizations:
        lab.repository.register_organization(organization, "Exercise check")
    return organizations


async def _wait_until_visible(service: PaymentService, expected: dict[tuple[str, str], int]) -> None:
    """Wait until visibility counts ``expected[(organization, status)]`` payments of each kind."""
    deadline = time.monotonic() + VISIBLE_WITHIN
    while True:
        counts = await asyncio.gather(*(service.count(organization_id=o, status=s) for o, s in expected))
        if list(counts) == list(expected.values()) or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


def _statuses(runs: list[PaymentRun]) -> str:
    return ", ".join(run.status for run in runs)


async def _check_failed_query(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    build_query = expect_function(answer, "a function `failed_payments_query(organization_id)` that returns a string", 1)
    mine, other = _new_organizations(lab, 2)
    runs = await run_payments(
        lab,
        [
            {"organization_id": mine},
            {"organization_id": mine, "faults": DECLINED_CARD},
            {"organization_id": mine, "amount": "-1"},
            {"organization_id": other, "faults": DECLINED_CARD},
        ],
    )
    wanted = {runs[1].payment_id}
    await _wait_until_visible(lab.service, {(mine, "failed"): 1, (mine, "completed"): 1, (mine, "declined"): 1, (other, "failed"): 1})
    query = await call_learner(build_query, mine, what="function")
    if not isinstance(query, str):
        raise Mismatch(
            "Your function should return the query as a string.",
            expected="a string such as `OrganizationId = '…' AND …`",
            seen=f"{type(query).__name__} {short_repr(query)}",
            where_to_look="build the text with an f-string: `f\"OrganizationId = '{organization_id}' …\"`",
        )
    try:
        found = await lab.service.search(query=query)
    except InvalidArgumentError as error:  # text no server takes (a lone surrogate): refused before it is sent
        raise Mismatch(
            "Your query cannot be sent.",
            expected="a valid visibility query, e.g. `OrganizationId = 'org-acme'`",
            seen=str(error),
            where_to_look="retype the character it names: it came from a terminal or file that is not UTF-8",
        ) from None
    except VisibilityQueryError as error:
        raise Mismatch(
            "The server refused your query.",
            expected="a valid visibility query, e.g. `OrganizationId = 'org-acme'`",
            seen=f"{query!r}: {error.server_message}",
            where_to_look="strings in single quotes, `AND` between conditions, attribute names as registered: "
            "`OrganizationId`, `PaymentStatus`, `PaymentCurrency`",
        ) from None
    found_ids = {report.payment_id for report in found}
    if found_ids != wanted:
        extra = [report for report in found if report.payment_id not in wanted]
        if not found_ids and "ExecutionStatus" in query:
            where = (
                "`ExecutionStatus` is Temporal's status of the workflow, and a failed payment's workflow completed "
                "normally (it returned a result); the payment's own status is the `PaymentStatus` search attribute"
            )
        elif mine not in query:
            where = "your query ignores the `organization_id` argument: put it in, in single quotes"
        elif extra and all(report.organization_id == mine for report in extra):
            where = (
                "it also found payments that did not fail: add a condition on `PaymentStatus`"
                if wanted <= found_ids
                else "a failed payment has `PaymentStatus = 'failed'` (a declined one, `'declined'`)"
            )
        elif extra:
            where = "it also found other organizations' payments: add a condition on `OrganizationId`"
        else:
            where = "a failed payment has `PaymentStatus = 'failed'` (a declined one, `'declined'`)"
        kinds = Counter(
            f"{'this' if r.organization_id == mine else 'another'} organization's "
            f"{r.payment_status.value if r.payment_status else 'unknown'}"
            for r in found
        )
        seen = ", ".join(f"{count} × {kind}" for kind, count in sorted(kinds.items())) or "nothing"
        raise Mismatch(
            f"Your query found {plural(len(found_ids), 'payment')}; exactly one payment of this organization failed.",
            expected="exactly the organization's failed payment",
            seen=f"`{query}` found {seen}",
            where_to_look=where,
        )
    return Verdict(
        "Your query found exactly the organization's failed payment.",
        (
            f"the check ran payments for two new organizations: {_statuses(runs[:3])}, and another's {runs[3].status}",
            "on the server, `lab.service.search(query=...)` found only the first organization's failed payment",
        ),
    )


q1 = Exercise(
    lesson=6,
    number=1,
    section="Finding payments through visibility",
    title="Find an organization's failed payments",
    task="Write `failed_payments_query(organization_id)`: return the visibility query that finds that "
    "organization's **failed** payments, for `lab.service.search(query=...)` and the Web UI.",
    answer="a function of an organization id that returns a string",
    checker=_check_failed_query,
    hints=(
        "The kit's payments carry three search attributes: `OrganizationId`, `PaymentStatus` and `PaymentCurrency`.",
        "Two conditions joined with `AND`, values in single quotes: `OrganizationId = '…' AND PaymentStatus = '…'`.",
    ),
    explanation="Visibility queries filter on search attributes. `ExecutionStatus` would not do: the workflow of "
    "a failed payment completes normally, with a result that says `failed`.",
    solution="""def failed_payments_query(organization_id):
    return f"OrganizationId = '{organization_id}' AND PaymentStatus = 'failed'\"""",
    answer_name="failed_payments_query",
)


def _judge_share(said: object, expected: float, what: str) -> None:
    """Raise the feedback for a share that is not ``expected`` (described by ``what``)."""
    try:
        # A float of the answer: an int past a float's range (10**400) or a signalling NaN has none.
        share = None if isinstance(said, bool) or not isinstance(said, (numbers.Real, Decimal)) else float(said)
    except (OverflowError, ValueError):
        share = None
    if share is None:
        raise Mismatch(
            "Your function should return a number: the share of failed payments.",
            expected=f"a number between 0 and 1, here {expected:g}",
            seen=f"{type(said).__name__} {short_repr(said)}",
            where_to_look="divide one count by another: `await service.count(...)` returns an int",
        )
    if math.isclose(share, expected, abs_tol=1e-9):
        return
    if share > 1 and math.isclose(share / 100, expected, abs_tol=1e-9):
        where = "that is a percentage: the share is a number between 0 and 1 (drop the `* 100`)"
    elif share > 1 or (share == 1 and expected < 1):
        where = "that is a count, not a share: divide it by the number of all the organization's payments"
    elif math.isclose(share, 0.0):
        where = (
            "count by the payment's status, `service.count(organization_id=..., status='failed')`: the workflow "
            "of a failed payment completed normally"
        )
    else:
        where = "count only this organization's payments: pass `organization_id=` to both counts"
    raise Mismatch(
        f"Your function said {share:g}.",
        expected=f"{expected:g}: {what}",
        seen=f"{share:g}",
        where_to_look=where,
    )


async def _check_failure_share(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    failure_share = expect_function(answer, "an async function `failure_share(service, organization_id)` that returns a number", 2)
    mine, other = _new_organizations(lab, 2)
    plans = [{"organization_id": mine}] * 3 + [{"organization_id": mine, "faults": DECLINED_CARD}]
    plans += [{"organization_id": other, "faults": DECLINED_CARD}] * 2
    runs = await run_payments(lab, plans)
    mine_runs = [run for run in runs if run.request.organization_id == mine]
    expected = sum(run.status == "failed" for run in mine_runs) / len(mine_runs)
    await _wait_until_visible(lab.service, {(mine, "completed"): 3, (mine, "failed"): 1, (other, "failed"): 2})
    said = await call_learner(failure_share, lab.service, mine, what="function")
    _judge_share(said, expected, f"1 failed payment out of {len(mine_runs)} for this organization")
    # A share of every organization's payments may equal this one's by chance in a busy lab: the
    # other organization's share (all failed) tells the two apart.
    said_other = await call_learner(failure_share, lab.service, other, what="function")
    _judge_share(said_other, 1.0, "2 failed payments out of 2 for another organization the check made")
    return Verdict(
        f"Your function counted through visibility: {expected:g} of the organization's payments failed.",
        (
            f"the check ran {_statuses(mine_runs)} for a new organization, and 2 failed ones for another",
            "the server counted them: no history was fetched, no workflow was asked",
        ),
    )


q2 = Exercise(
    lesson=6,
    number=2,
    section="The seed's metrics",
    title="What share of an organization's payments failed?",
    task="Write `async def failure_share(service, organization_id)`: return the share (0 to 1) of the "
    "organization's payments whose status is `failed`, counted by the server.",
    answer="an async function of `(service, organization_id)` that returns a number",
    checker=_check_failure_share,
    hints=(
        "`await service.count(organization_id=..., status=...)` asks the server how many payments match.",
        "Two counts: the organization's failed payments, and all its payments. Divide.",
    ),
    explanation="`PaymentService.count` runs `count_workflows` with a visibility query: the server counts, "
    "however many payments there are.",
    solution="""async def failure_share(service, organization_id):
    failed = await service.count(organization_id=organization_id, status="failed")
    everything = await service.count(organization_id=organization_id)
    return failed / everything""",
    answer_name="failure_share",
)

EXERCISES = (q1, q2)
"""The exercises of lesson 06, in order."""
