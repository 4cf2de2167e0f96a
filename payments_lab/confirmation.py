"""A payment that waits for the customer: a ``confirm`` update, a deduplicated webhook signal, a durable deadline.

Card payments often need the customer to confirm (3-D Secure) before the charge. This
workflow validates the payment, then waits for a confirmation from either side:

- the customer's checkout page sends the ``confirm`` **update**: the page must tell the
  customer "confirmed" or "too late", and an update answers its caller, while its
  validator refuses a confirmation that comes too late without writing anything to the
  history;
- the processor's webhook arrives as the ``processor_webhook`` **signal**: the processor
  only needs the server to accept the message, and it delivers at least once, so the workflow
  ignores an event id it has already seen.

The wait has a deadline, a durable timer: with no answer within it (15 minutes by default)
the payment is settled as ``cancelled``, through the same activity as a cancellation, and
never stays ``pending``.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    # Every module whose dataclasses cross the workflow's boundary must be in the sandbox:
    # the data converter resolves their type hints through the sandbox's own modules.
    from payments_lab.confirmation_messages import (
        AUTHENTICATED,
        ConfirmationInput,
        ConfirmationReceipt,
        ConfirmationState,
        CustomerAnswer,
        ProcessorEvent,
    )
    from payments_lab.domain import PaymentResult, PaymentStatus, Step
    from payments_lab.faults import FaultPlan  # noqa: F401
    from payments_lab.messages import PaymentOptions  # noqa: F401
    from payments_lab.wording import duration_words
    from payments_lab.workflows import PaymentWorkflow

__all__ = ["ConfirmedPaymentWorkflow", "REFUSED_TYPE"]

REFUSED_TYPE = "ConfirmationRefused"
"""The ``ApplicationError`` type of a ``confirm`` update the workflow refuses."""

CANCELLED_DECISION = "cancelled"
"""The decision of a payment cancelled before any answer: a later answer is refused."""


@workflow.defn
class ConfirmedPaymentWorkflow(PaymentWorkflow):
    """Validate, wait for the customer's confirmation (or the deadline), then charge and notify.

    It inherits the payment workflow's ``progress`` query, its steps (validate, charge with
    the options' timeouts and cancellation type, settle, notify) and its final status
    upsert; its ``run`` adds the wait between validation and charge.
    """

    @workflow.init
    def __init__(self, input: ConfirmationInput) -> None:
        super().__init__(input)  # type: ignore[arg-type]  # it reads only input.request
        self._decision: str | None = None
        self._decided_by: str | None = None
        self._events: list[str] = []
        self._duplicates = 0
        self._deadline_text = duration_words(input.deadline)

    @workflow.query
    def confirmation(self) -> ConfirmationState:
        """Where the payment is, and what was heard from the customer and the processor."""
        progress = self._progress
        return ConfirmationState(
            progress.payment_id,
            progress.status,
            progress.step,
            self._decision,
            self._decided_by,
            tuple(self._events),
            self._duplicates,
        )

    def _decide(self, approved: bool, by: str) -> None:
        self._decision = "confirmed" if approved else "refused"
        self._decided_by = by

    @workflow.update
    async def confirm(self, answer: CustomerAnswer) -> ConfirmationReceipt:
        """The customer's answer from the checkout page; refused by :meth:`_check_confirm` when too late.

        An answer that comes during validation (a page that does not wait for the payment to
        ask) is held until validation has ended, then checked again: a payment declined
        meanwhile refuses it, where it used to get "being charged" and end declined.
        """
        await workflow.wait_condition(lambda: self._progress.step != Step.VALIDATE)
        self._check_confirm(answer)  # raised here, an ApplicationError fails the update, not the payment
        self._decide(answer.approved, "customer")
        message = "confirmed: the payment is being charged" if answer.approved else "refused: the payment will be cancelled"
        return ConfirmationReceipt(self._progress.payment_id, answer.approved, message)

    @confirm.validator
    def _check_confirm(self, answer: CustomerAnswer) -> None:
        """Refuse a confirmation that cannot change the payment any more; nothing is recorded then."""
        if self._decision == "expired":
            raise ApplicationError(
                f"too late: no confirmation arrived within {self._deadline_text}, so the payment was cancelled",
                type=REFUSED_TYPE,
            )
        if self._decision is not None and self._decision != CANCELLED_DECISION:
            raise ApplicationError(f"already {self._decision} (by the {self._decided_by})", type=REFUSED_TYPE)
        # A cancellation that came in the same workflow task as this answer is already known here, though the
        # payment's run has not taken it in yet: the answer could change nothing, whichever came first.
        if self._decision == CANCELLED_DECISION or workflow.cancellation_reason() is not None:
            raise ApplicationError("the payment was cancelled: it is being settled, and nothing will be charged", type=REFUSED_TYPE)
        if self._progress.step == Step.DONE:
            raise ApplicationError(f"the payment has ended: {self._progress.message}", type=REFUSED_TYPE)

    @workflow.signal
    def processor_webhook(self, event: ProcessorEvent) -> None:
        """One webhook delivery; a redelivered event id is counted and otherwise ignored."""
        if event.event_id in self._events:
            self._duplicates += 1
            return
        self._events.append(event.event_id)
        if self._decision is None and self._progress.step != Step.DONE:
            self._decide(event.type == AUTHENTICATED, f"webhook {event.event_id}")

    @workflow.run
    async def run(self, input: ConfirmationInput) -> PaymentResult:  # type: ignore[override]
        """Run the payment to its end and say how it ended, once every answer held during validation has its receipt."""
        ended = await self._run(input)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ended

    async def _run(self, input: ConfirmationInput) -> PaymentResult:
        request, options, faults = input.request, input.options, input.faults
        try:
            # Validation and notification run as regular activities whatever the options say:
            # this workflow has always scheduled them so, and a local activity in their place
            # would not replay the histories of payments already running.
            ended = await self._validate(request, options, faults, local=False)
            if ended is not None:
                return ended

            self._advance(Step.CONFIRM.value, PaymentStatus.PENDING, "waiting for the customer's confirmation")
            try:
                # A durable timer: it is on the server, and fires even if every worker is down meanwhile.
                await workflow.wait_condition(
                    lambda: self._decision is not None, timeout=input.deadline, timeout_summary="confirmation deadline"
                )
            except TimeoutError:
                if self._decision is None:  # an answer handled in the same task as the timer still counts
                    self._decision, self._decided_by = "expired", "deadline"
            if self._decision != "confirmed":
                reason = (
                    f"no confirmation within {self._deadline_text}"
                    if self._decision == "expired"
                    else f"refused by the {self._decided_by}"
                )
                return self._finish(await self._settle(PaymentStatus.CANCELLED, reason), reason)

            self._advance(Step.CHARGE.value, PaymentStatus.PROCESSING, f"charging (confirmed by the {self._decided_by})")
            charge = await self._charge(request, options, faults)
            if isinstance(charge, PaymentResult):  # declined or gave up, and settled
                return charge
            return await self._notify(request, options, faults, charge, self.notification_message(request, charge), local=False)
        except (asyncio.CancelledError, ActivityError) as err:
            if not is_cancelled_exception(err):
                raise
            if self._decision is None:
                # An answer that comes now can change nothing: without this, the page told the customer
                # "being charged" while the payment was being cancelled.
                self._decision, self._decided_by = CANCELLED_DECISION, "cancellation request"
            await self._settle_cancelled()
            raise
