"""Exercises of lesson 04 · durability: a plain script killed mid-charge, a worker killed mid-charge."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from payments_lab.activities import PaymentActivities
from payments_lab.domain import ActivityType, PaymentRequest, PaymentStatus
from payments_lab.exercises import Exercise, Mismatch, Verdict
from payments_lab.exercises.checking import (
    ID_PREFIX,
    await_result,
    collect,
    events_of,
    expect_type,
    fresh_request,
    required_lab,
    service_of,
    short_repr,
    times,
    whole_number_answer,
)
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.lab import Lab
from payments_lab.messages import PaymentOptions
from payments_lab.plain import run_plain_script
from payments_lab.processes import ProcessError
from payments_lab.repository import PaymentRepository
from payments_lab.wording import seconds_words
from payments_lab.worker import BackgroundWorker, WorkerProcess, new_task_queue


async def _check_plain_rerun(answer: object, lab: Lab | None) -> Verdict:
    answer = whole_number_answer(answer, "The answer should be an int.", expected="an int, e.g. `1`", where_to_look="build it with `1`")
    request = PaymentRequest(f"{ID_PREFIX}-{uuid.uuid4().hex[:8]}", "org-acme", "learner", Decimal("42.00"), "EUR")
    with tempfile.TemporaryDirectory(prefix="payments-lab-exercise-") as folder:
        database = Path(folder) / "plain.sqlite"
        PaymentRepository(database).close()
        # Killed while it waits for the processor's answer, after the money was taken; then run again.
        first = await asyncio.to_thread(run_plain_script, database, request, delay=10, kill_after_charge=True)
        second = await asyncio.to_thread(run_plain_script, database, request)
        repository = PaymentRepository(database)
        try:
            charges = repository.charge_count(request.payment_id)
            kept = repository.balance(request.payment_id)
        finally:
            repository.close()
    if answer != charges:
        where = (
            "the plain script sends no idempotency key: the processor cannot tell the second run from a new "
            "payment. The workflow's charge sends the payment id as key"
            if answer < charges
            else "count the runs that reached the processor: the first one did, before it was killed"
        )
        raise Mismatch(
            f"You said {short_repr(answer)}; the ledger holds {charges}.",
            expected=f"{charges} charges of {request.amount} {request.currency} for one payment",
            seen=short_repr(answer),
            where_to_look=where,
        )
    return Verdict(
        f"{charges} charges for one payment: the customer paid {kept} {request.currency} for a {request.amount} "
        f"{request.currency} purchase.",
        (
            f"first run: '{first.splitlines()[0]}', then killed",
            f"second run: '{second.splitlines()[-1]}'",
            f"ledger: {charges} charges, nothing refunded; nothing told the second run that the first had charged",
        ),
    )


q1 = Exercise(
    lesson=4,
    number=1,
    title="The plain script, killed and run again",
    task="The plain-Python payment (`payments_lab.plain`, no Temporal) is killed right after the processor took the "
    "money, while it waits for the processor's answer. You run it again, for the same payment. How many charges does "
    "the processor's ledger then hold for that payment?",
    answer="an int",
    checker=_check_plain_rerun,
    hints=(
        "The second run starts from the beginning: validate, charge, notify. What does it know about the first?",
        "`pay_plainly` calls the processor with `idempotency_key=None` unless told otherwise.",
    ),
    explanation="Two. Nothing records how far the first run got, so the second charges again, and the plain "
    "script sends no idempotency key that would let the processor notice. The workflow resumes from its "
    "history instead, and its charge sends the payment id as idempotency key.",
    solution="charges = 2",
    answer_name="charges",
    section="Without Temporal: a script killed mid-charge",
    needs_lab=False,
)

PROCESSOR_DELAY = 0.3
"""Seconds the processor takes to answer in question 2: the worker is killed meanwhile."""

RETRY_WITHIN = timedelta(seconds=2.5)
"""Question 2: how soon after the crash another worker must retry the charge."""

SLOW_CHARGE = timedelta(seconds=10)
"""Question 2: a healthy charge may take this long; the options must not cut it short."""

HEARTBEAT_EVERY = timedelta(seconds=0.5)
"""How often the kit's charge heartbeats while it waits for the processor."""


def _has_charge_attempt(repository: PaymentRepository, payment_id: str, attempt: int) -> bool:
    return any(a.activity == ActivityType.CHARGE and a.attempt == attempt for a in repository.attempts(payment_id))


async def _wait_for(condition: Callable[[], object], timeout: float) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return bool(condition())


def _check_timeouts(options: PaymentOptions) -> None:
    if options.charge_timeout < SLOW_CHARGE:
        raise Mismatch(
            f"A charge_timeout of {seconds_words(options.charge_timeout)} would cut short a healthy charge.",
            expected=f"`charge_timeout` of at least {seconds_words(SLOW_CHARGE)}: the processor may take that long",
            seen=f"`charge_timeout={options.charge_timeout!r}`",
            where_to_look="the start-to-close timeout cannot tell a slow charge from a dead worker; "
            "a heartbeat timeout can",
        )
    heartbeat = options.charge_heartbeat_timeout
    if heartbeat is None:
        raise Mismatch(
            "Without a heartbeat timeout, the server only notices the dead worker when `charge_timeout` ends.",
            expected=f"a retry within {seconds_words(RETRY_WITHIN)} of the crash",
            seen=f"`charge_heartbeat_timeout=None`: the retry would wait {seconds_words(options.charge_timeout)}",
            where_to_look="`charge_heartbeat_timeout`: the charge heartbeats, so a silent charge means a dead worker",
        )
    if heartbeat < 2 * HEARTBEAT_EVERY:
        raise Mismatch(
            f"A heartbeat timeout of {seconds_words(heartbeat)} would time out healthy charges.",
            expected=f"a heartbeat timeout of at least {seconds_words(2 * HEARTBEAT_EVERY)}",
            seen=f"`charge_heartbeat_timeout={heartbeat!r}`",
            where_to_look=f"the charge heartbeats every {seconds_words(HEARTBEAT_EVERY)}; leave room for one late heartbeat",
        )
    if options.maximum_attempts == 1:
        raise Mismatch(
            "With `maximum_attempts=1` the crashed charge is never retried.",
            expected="a second charge attempt, on another worker, after the crash",
            seen="`maximum_attempts=1`: the first attempt is the only one",
            where_to_look="`maximum_attempts` counts every attempt, the first one included; leave it at its default",
        )
    limit = options.charge_schedule_to_close_timeout
    if limit is not None and limit < SLOW_CHARGE + heartbeat + options.initial_interval:
        raise Mismatch(
            f"A `charge_schedule_to_close_timeout` of {seconds_words(limit)} ends the charge before its retry can finish.",
            expected=f"at least {seconds_words(SLOW_CHARGE + heartbeat + options.initial_interval)}: a slow first attempt, "
            "the heartbeat timeout that notices the crash, the wait before the retry",
            seen=f"`charge_schedule_to_close_timeout={limit!r}`",
            where_to_look="the schedule-to-close timeout bounds every attempt of the charge together; leave it out here",
        )


async def _check_crash_recovery(answer: object, lab: Lab | None) -> Verdict:
    lab = required_lab(lab)
    expect_type(answer, PaymentOptions, "PaymentOptions(charge_heartbeat_timeout=timedelta(seconds=...))")
    options: PaymentOptions = answer  # type: ignore[assignment]
    _check_timeouts(options)
    heartbeat: timedelta = options.charge_heartbeat_timeout  # type: ignore[assignment]
    if heartbeat + options.initial_interval > RETRY_WITHIN:
        raise Mismatch(
            f"With these options the retry comes up to {seconds_words(heartbeat + options.initial_interval)} after the crash.",
            expected=f"a retry within {seconds_words(RETRY_WITHIN)} of the crash",
            seen=f"`charge_heartbeat_timeout` {seconds_words(heartbeat)} + `initial_interval` {seconds_words(options.initial_interval)}",
            where_to_look="the server gives up on the dead attempt once its heartbeats have been missing for "
            "`charge_heartbeat_timeout`, then waits `initial_interval` before the retry",
        )
    with tempfile.TemporaryDirectory(prefix="payments-lab-exercise-") as folder:
        database = Path(folder) / "crash.sqlite"
        repository = PaymentRepository(database)
        task_queue = new_task_queue(ID_PREFIX)
        doomed = WorkerProcess(lab.connection.address, task_queue, database, namespace=lab.connection.namespace)
        survivor = BackgroundWorker(lab.client, task_queue, PaymentActivities(repository, identity="survivor"))
        try:
            await asyncio.to_thread(doomed.start)
            request = fresh_request(lab, amount="64.00")
            handle = await service_of(lab, task_queue, options).start(
                request, faults=FaultPlan(charge=StepFaults(delay=PROCESSOR_DELAY))
            )
            if not await _wait_for(lambda: repository.ledger(request.payment_id), 10):
                raise ProcessError("the check's worker process never charged its payment; its log ends with:\n" + doomed.log_tail())
            doomed.kill()
            await survivor.start()  # another worker, in this process, takes over
            # The server's own timers fire up to ~0.5 s late, and heartbeats are throttled: some slack.
            retried = await _wait_for(
                lambda: _has_charge_attempt(repository, request.payment_id, 2), RETRY_WITHIN.total_seconds() + 1.0
            )
            result = await await_result(handle, 6.0 if retried else 0.0, terminate=True)
            run = await collect(handle, request, repository, result)
        finally:
            await survivor.stop()
            await doomed.stop(grace=1)
            repository.close()
    if not retried or run.result is None:
        raise Mismatch(
            f"Nobody retried the charge within {seconds_words(RETRY_WITHIN)} of the crash.",
            expected=f"a second charge attempt, on the other worker, within {seconds_words(RETRY_WITHIN)}",
            seen=f"charge attempts {run.describe_attempts(ActivityType.CHARGE)} (the check then stopped the payment)",
            where_to_look="ask your facilitator if this happens again: the server was slower than usual",
            about_the_lab=True,
        )
    attempts = [a for a in run.attempts if a.activity == ActivityType.CHARGE]
    started = [e for e in events_of(run.history) if e.name == "ActivityTaskStarted" and e.activity_type == ActivityType.CHARGE]
    if run.result.status is not PaymentStatus.COMPLETED or run.charges != 1:
        raise Mismatch(
            "The charge was retried, but the payment did not end well.",
            expected="payment completed, charged once",
            seen=f"payment {run.status}, charged {times(run.charges)}",
            where_to_look="ask your facilitator: this looks like a problem of the lab, not of your answer",
            about_the_lab=True,
        )
    return Verdict(
        "Another worker took over the charge soon after the crash, and the payment was charged once.",
        (
            f"on paper: the retry comes at most {seconds_words(heartbeat + options.initial_interval)} after the crash "
            "(heartbeat timeout, then the first retry interval)",
            f"attempt log: charge attempt 1 never ended (its worker process was killed); attempt "
            f"{attempts[-1].attempt} {attempts[-1].outcome} on the other worker",
            f"history: the charge's `ActivityTaskStarted` records attempt {started[-1].attempt if started else '?'}, "
            f"after '{started[-1].failure_message if started else '?'}'",
            f"ledger: charged {times(run.charges)}; the retry found the first charge through the idempotency key",
        ),
    )


q2 = Exercise(
    lesson=4,
    number=2,
    title="Notice a dead worker quickly",
    task=f"A worker is killed (`kill -9`) in the middle of a charge. Write payment options under which another "
    f"worker retries the charge **within {seconds_words(RETRY_WITHIN)}** of the crash, while a healthy charge may still "
    f"take up to {seconds_words(SLOW_CHARGE)}.",
    answer="a `PaymentOptions`",
    checker=_check_crash_recovery,
    hints=(
        "A killed worker says nothing. What tells the server that an attempt is no longer running?",
        "The charge heartbeats every 0.5 s: `charge_heartbeat_timeout` is how long the server waits for a "
        "missing heartbeat (5 s by default). Leave `charge_timeout` alone.",
        "After the heartbeat timeout, the retry policy's `initial_interval` (1 s by default) passes before the "
        "retry: the two together must fit in the time allowed.",
    ),
    explanation="A heartbeat timeout of 1 s tells a dead worker from a slow processor: a healthy charge keeps "
    "heartbeating for as long as the processor takes. One second after the last heartbeat the server gives up "
    "on the attempt, and the retry, `initial_interval` later, runs on any live worker. (The default 1 s "
    "interval fits too; a shorter one recovers sooner.)",
    solution="""from datetime import timedelta

from payments_lab import PaymentOptions

options = PaymentOptions(charge_heartbeat_timeout=timedelta(seconds=1), initial_interval=timedelta(milliseconds=100))""",
    answer_name="options",
    section="With Temporal: a worker killed mid-charge",
)

EXERCISES = (q1, q2)
"""The exercises of lesson 04, in order."""
