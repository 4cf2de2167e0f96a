"""The payment workflow: validate → charge → notify, with retries, a status query and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    # Every module whose dataclasses cross the workflow's boundary must be in the sandbox:
    # the data converter resolves their type hints through the sandbox's own modules.
    from payments_lab.activities import (
        ChargeInput,
        NotifyInput,
        PaymentActivities,
        SettleInput,
        ValidateInput,
    )
    from payments_lab.domain import ChargeResult, PaymentRequest, PaymentResult, PaymentStatus, Step
    from payments_lab.faults import FaultPlan
    from payments_lab.messages import PaymentAnswer, PaymentInput, PaymentOptions, PaymentProgress
    from payments_lab.search_attributes import PAYMENT_STATUS
    from payments_lab.wording import retry_state_words

__all__ = ["PaymentAnswer", "PaymentInput", "PaymentOptions", "PaymentProgress", "PaymentWorkflow"]

T = TypeVar("T")

CANCEL_BEFORE_CHARGE_PATCH = "cancel-before-charge"
"""The patch under which a payment takes in a cancellation before its charge and after it.

Histories recorded before it (no marker) replay as they ran: no timer after a slow local
validation, and a charge that answered despite a cancellation went on to notify.
"""

HELD_BACK_LIMIT = timedelta(milliseconds=50)
"""A local validation that kept its workflow task this long is followed by one more task before the charge.

While a workflow task runs, the server holds back a cancellation (or a signal) sent to the
workflow. Any payment has such a window: the task that schedules the charge, a few to some
tens of ms here. A local validation runs inside that task and widens the window by its
attempt's run time (its retries wait outside it: :data:`RETRY_ON_A_TIMER`); past this limit
the workflow spends one more task (:data:`CANCEL_WINDOW`) to take in what was held back
before it charges. A validation under it keeps the tuned payment's speed: a cancellation
sent during it reaches the charge, which is then refunded.
"""

RETRY_ON_A_TIMER = timedelta(milliseconds=1)
"""A local validation or notification waits for each retry on a workflow timer: the task it ran in
completes, so a held-back cancellation comes in with the retry instead of after the last attempt, and
no attempt's timeout stays armed in the SDK's core past its worker (which then panics)."""

CANCEL_WINDOW = timedelta(milliseconds=1)
"""The timer that ends a slow local validation's workflow task, so that the next one brings what was held back."""


@workflow.defn
class PaymentWorkflow:
    """Validate, charge and notify one payment.

    A declined request is a normal result and is never retried. A charge that gives up,
    or a cancellation, settles the payment (refunded if money was taken) so that it never
    stays ``processing``. A failed notification is logged and does not fail the payment.
    """

    @workflow.init
    def __init__(self, input: PaymentInput) -> None:
        self._request = input.request
        self._progress = PaymentProgress(input.request.payment_id, PaymentStatus.PENDING, Step.VALIDATE.value, "queued")
        self._answer: PaymentAnswer | None = None

    @workflow.query
    def progress(self) -> PaymentProgress:
        """Where the payment is now."""
        return self._progress

    @workflow.update
    async def answer(self) -> PaymentAnswer:
        """The payment's first answer: returned once validation is done, while the charge runs on.

        Sent with the start (Update-with-Start, ``PaymentService.start_early``), it gives the
        caller "accepted" or "declined" as soon as the workflow knows, instead of at its end.
        An update nobody sends changes nothing: the workflow runs the same either way.
        """
        await workflow.wait_condition(lambda: self._answer is not None)
        assert self._answer is not None
        return self._answer

    def _accept(self) -> None:
        """Validation passed: the ``answer`` update may return, the charge follows."""
        self._answer = PaymentAnswer(
            self._progress.payment_id, True, PaymentStatus.PROCESSING, "accepted: validated; the charge and the notification follow"
        )

    def _advance(self, step: str, status: PaymentStatus, message: str) -> None:
        self._progress = PaymentProgress(self._progress.payment_id, status, step, message)

    def _finish(self, status: PaymentStatus, message: str, **details: object) -> PaymentResult:
        self._publish(status, message)
        request = self._request
        return PaymentResult(
            request.payment_id, status, message, request.amount, request.currency, **details  # type: ignore[arg-type]
        )

    def _publish(self, status: PaymentStatus, message: str) -> None:
        """Record the final status, in the query and in visibility.

        The ``PaymentStatus`` search attribute changes once, in the workflow task that ends
        the workflow: every upsert in the middle of a run is one more visibility write for
        the server (measured: about 13 % fewer payments per second with two of them). While
        the payment runs, visibility says ``pending`` and the ``progress`` query says where
        it is.
        """
        workflow.upsert_search_attributes([PAYMENT_STATUS.value_set(status.value)])
        self._advance(Step.DONE.value, status, message)
        if self._answer is None:  # ended before it was accepted: that is the first answer
            self._answer = PaymentAnswer(self._progress.payment_id, False, status, message)

    async def _settle(self, status: PaymentStatus, reason: str) -> PaymentStatus:
        self._advance(Step.SETTLE.value, self._progress.status, reason)
        return await workflow.execute_activity_method(
            PaymentActivities.settle_unfinished_payment,
            SettleInput(self._progress.payment_id, status, reason),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
        )

    async def _take_in_cancellation(self) -> None:
        """End the workflow task that ran a slow local validation, so that a cancellation sent meanwhile is seen before the charge.

        Without this, the task that ran the validation would also schedule the charge: the
        held-back cancellation would reach the workflow only with the charge under way, and
        the money would be taken, then refunded. The timer completes the task instead; a
        held-back cancellation comes with the next one and is raised here, before the
        payment is accepted or anything charged.
        """
        if workflow.patched(CANCEL_BEFORE_CHARGE_PATCH):
            await workflow.sleep(CANCEL_WINDOW, summary="take in a cancellation sent during the local validation")

    async def before_charge(self, request: PaymentRequest) -> None:
        """A step between validation and charge: none here.

        This is the seam where lesson 7 evolves the workflow (``payments_lab.evolution``):
        a subclass adds a fraud screen, first unsafely, then behind ``workflow.patched``.
        """

    def notification_message(self, request: PaymentRequest, charge: ChargeResult) -> str:
        """What the notification step tells the customer once the money is taken.

        The seam where lesson 09 puts a bug after the charge (a version written in a
        notebook cell, :mod:`payments_lab.authoring`), then fixes it forward.
        """
        return charge.message

    # The payment's steps, shared with ConfirmedPaymentWorkflow (lesson 11). Histories of
    # running payments replay against them (tests/test_replay.py): a change must keep
    # every command they issue, in the same order. (Defined before ``run``: mypy infers
    # the type of a decorated ``run`` that calls methods defined below it too late for
    # the modules that use ``PaymentWorkflow.run``.)

    async def _validate(self, request: PaymentRequest, options: PaymentOptions, faults: FaultPlan, *, local: bool) -> PaymentResult | None:
        """Validate the request; the payment's result if it ends there (declined, or validation gave up), else None."""
        try:
            validation = await _execute(
                PaymentActivities.validate_payment,
                ValidateInput(request, faults.validate),
                local=local,
                start_to_close_timeout=options.validate_timeout,
                retry_policy=options.retry_policy,
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            # Nothing was stored or charged yet; the payment must still end in a status
            # that visibility shows, never stay "pending" on a closed workflow.
            return self._finish(PaymentStatus.FAILED, f"validation gave up: {_cause(err)}")
        if not validation.valid:
            return self._finish(PaymentStatus.DECLINED, f"declined: {validation.message}")
        return None

    async def _charge(self, request: PaymentRequest, options: PaymentOptions, faults: FaultPlan) -> ChargeResult | PaymentResult:
        """Charge the payment.

        Returns:
            The processor's answer once the money is taken (the payment is then completed,
            at its notify step), or else the payment's result: settled as failed, because
            the card was declined or the charge gave up.
        """
        try:
            charge = await workflow.execute_activity_method(
                PaymentActivities.charge_payment,
                ChargeInput(request, faults.charge),
                start_to_close_timeout=options.charge_timeout,
                schedule_to_close_timeout=options.charge_schedule_to_close_timeout,
                heartbeat_timeout=options.charge_heartbeat_timeout,
                retry_policy=options.retry_policy,
                # By default (WAIT_CANCELLATION_COMPLETED) settle only once the attempt has
                # really stopped: it may be taking money. Lesson 05 compares the others.
                cancellation_type=options.charge_cancellation,
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            reason = f"charge gave up: {_cause(err)}"
            return self._finish(await self._settle(PaymentStatus.FAILED, reason), reason)
        if workflow.cancellation_reason() is not None and workflow.patched(CANCEL_BEFORE_CHARGE_PATCH):
            # Cancelled while the charge ran, and the attempt answered before the request
            # reached it: waiting for it (WAIT_CANCELLATION_COMPLETED) handed back its
            # result and dropped the cancellation. Honour it: settle, refunding the charge.
            raise asyncio.CancelledError("cancelled while the charge ran; the charge answered first")
        if not charge.success:
            reason = f"charge failed: {charge.message}"
            return self._finish(await self._settle(PaymentStatus.FAILED, reason), reason)
        self._advance(Step.NOTIFY.value, PaymentStatus.COMPLETED, charge.message)
        return charge

    async def _notify(
        self, request: PaymentRequest, options: PaymentOptions, faults: FaultPlan, charge: ChargeResult, message: str, *, local: bool
    ) -> PaymentResult:
        """Tell the customer ``message`` about the charge; a failed notification does not fail the payment.

        The caller computes ``message`` (:meth:`notification_message`) in its own ``run``,
        so that a bug there shows in a stack trace as ``run`` calling it (lesson 09).
        """
        notified = True
        try:
            await _execute(
                PaymentActivities.send_notification,
                NotifyInput(
                    request,
                    PaymentResult(request.payment_id, PaymentStatus.COMPLETED, message, request.amount, request.currency),
                    faults.notify,
                ),
                local=local,
                start_to_close_timeout=options.notify_timeout,
                retry_policy=options.retry_policy,
            )
        except ActivityError as err:
            if is_cancelled_exception(err):
                raise
            notified = False
            workflow.logger.warning("Notification of payment %s failed; the payment stays completed: %s", request.payment_id, _cause(err))
        outcome = "Payment processed successfully" + ("" if notified else " (notification failed)")
        return self._finish(PaymentStatus.COMPLETED, outcome, charge_id=charge.charge_id, notified=notified)

    async def _settle_cancelled(self) -> None:
        """The payment was cancelled: settle it (refunded if money was taken) and publish how it ended."""
        status = await self._settle(PaymentStatus.CANCELLED, "cancelled by request")
        self._publish(status, f"cancelled by request; payment {status.value}")

    @workflow.run
    async def run(self, input: PaymentInput) -> PaymentResult:
        """Run the payment to its end and say how it ended."""
        request, options, faults = input.request, input.options, input.faults
        try:
            # Workflow time stands still within a task, but a local activity's result moves
            # it on by the attempt's run time (on replay too, from its marker): this measures,
            # deterministically, how long a local validation kept its task.
            validation_began = workflow.now()
            ended = await self._validate(request, options, faults, local=options.local_validation)
            if ended is not None:
                return ended
            if options.local_validation and workflow.now() - validation_began >= HELD_BACK_LIMIT:
                await self._take_in_cancellation()
            await self.before_charge(request)
            self._accept()
            self._advance(Step.CHARGE.value, PaymentStatus.PROCESSING, "charging")
            charge = await self._charge(request, options, faults)
            if isinstance(charge, PaymentResult):  # declined or gave up, and settled
                return charge
            return await self._notify(
                request,
                options,
                faults,
                charge,
                self.notification_message(request, charge),
                local=options.local_notification,
            )
        except (asyncio.CancelledError, ActivityError) as err:
            if not is_cancelled_exception(err):
                raise
            await self._settle_cancelled()
            raise


async def _execute(activity: Callable[..., Awaitable[T]], arg: object, *, local: bool, **options: Any) -> T:
    """Run one step as a regular activity, or as a local activity of this workflow task.

    A local step waits for each retry on a workflow timer, in a task of its own, never inside the
    running task (:data:`RETRY_ON_A_TIMER`; Temporal's default threshold is a minute).
    """
    if local:
        return await workflow.execute_local_activity_method(activity, arg, local_retry_threshold=RETRY_ON_A_TIMER, **options)
    return await workflow.execute_activity_method(activity, arg, **options)


def _cause(err: ActivityError) -> str:
    """The innermost failure message of an activity error, and why retries stopped."""
    cause: BaseException = err
    while cause.__cause__ is not None:
        cause = cause.__cause__
    retry = retry_state_words(err.retry_state) if err.retry_state else "not retried"
    return f"{cause} ({retry})"
