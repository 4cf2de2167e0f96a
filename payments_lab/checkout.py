"""The checkout's side of a payment that waits for the customer: start it, confirm it, deliver the processor's webhook.

:class:`Checkout` starts :class:`~payments_lab.confirmation.ConfirmedPaymentWorkflow` through
the kit's :class:`~payments_lab.service.PaymentService` (same workflow ids, search
attributes and duplicate check), and turns a refused or late ``confirm`` update into one
clear :class:`ConfirmationRefusedError`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.client import (
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from payments_lab import search_attributes
from payments_lab.arguments import seconds
from payments_lab.confirmation import ConfirmedPaymentWorkflow
from payments_lab.confirmation_messages import (
    AUTHENTICATED,
    CONFIRMATION_DEADLINE,
    ConfirmationInput,
    ConfirmationReceipt,
    ConfirmationState,
    CustomerAnswer,
    ProcessorEvent,
)
from payments_lab.domain import PaymentRequest, Step, checked_request
from payments_lab.errors import InvalidArgumentError, PaymentsLabError, WaitTimedOutError
from payments_lab.faults import FaultPlan, checked_fault_plan
from payments_lab.messages import PaymentOptions, checked_payment_options
from payments_lab.outage import RECOVERY_ALLOWANCE, deadline_expired, is_unreachable, silence_as_outage
from payments_lab.service import (
    DuplicatePaymentError,
    PaymentHandle,
    PaymentService,
    not_found_as,
    raise_if_task_failing,
)
from payments_lab.task_queues import live_pollers, polled_here, worker_command
from payments_lab.workflow_tasks import WorkflowTaskFailingError, unless_task_fails

POLLER_GRACE = 2.0
"""Seconds a confirmation waits for a worker of the payment's task queue to be seen polling before it is refused."""


class ConfirmationRefusedError(PaymentsLabError, RuntimeError):
    """The workflow refused a confirmation (too late, already decided, ended); nothing changed."""

    def __init__(self, payment_id: str, reason: str, *, what: str = "confirmation") -> None:
        self.payment_id = payment_id
        self.reason = reason
        super().__init__(f"{what} of payment {payment_id!r} refused: {reason}")


class NotWaitingError(PaymentsLabError, RuntimeError):
    """The payment will never wait for a confirmation: it ended without one (declined…) or was already decided."""

    def __init__(self, payment_id: str, state: ConfirmationState, ending: str | None) -> None:
        if ending is not None:
            # The workflow's message starts with the status when it explains one ("declined: amount must be…").
            what = f"it ended {ending if ending.startswith(state.status.value) else f'{state.status.value}: {ending}'}"
        else:
            what = f"it is past that step ({state.step!r}, {state.decision or 'decided'} by {state.decided_by or 'someone'})"
        super().__init__(f"payment {payment_id!r} will not wait for a confirmation: {what}")


class Checkout:
    """Start payments that wait for the customer, and carry the customer's and the processor's answers.

    Args:
        service: The payment service whose client, task queue and Web UI links to use; its
            workers must run :class:`ConfirmedPaymentWorkflow` (the kit's workers do).
        options: Retry and timeout options of the activities.
    """

    def __init__(self, service: PaymentService, *, options: PaymentOptions | None = None) -> None:
        self.service = service
        self.options = checked_payment_options(options, service.options)

    async def start(
        self,
        request: PaymentRequest,
        *,
        deadline: timedelta = CONFIRMATION_DEADLINE,
        faults: FaultPlan | None = None,
    ) -> PaymentHandle:
        """Start the payment; it validates, then waits up to ``deadline`` for a confirmation.

        Raises:
            DuplicatePaymentError: this payment id was already submitted; nothing happened.
            TemporalUnavailableError: the server did not confirm the start within the service's
                ``call_window``; the message says how to find out whether the payment started.
            NamespaceNotFoundError: the service's namespace is gone from its server (deleted under
                the lab); nothing started. See :meth:`PaymentService.through_namespace_changes`.
            SearchAttributesError: the kit's search attributes were removed from the namespace and
                could not be added back; nothing started.
            ValueError: ``deadline`` is not a positive ``timedelta``, or ``faults`` is not a ``FaultPlan``;
                nothing started.
        """
        checked_request(request)
        service = self.service
        service.require_open(starting=request.payment_id)
        confirmation = ConfirmationInput(request, deadline, self.options, checked_fault_plan(faults))
        try:
            # Through the service, as its own starts: a namespace changed under the lab is repaired or named there.
            handle = await service.through_namespace_changes(
                lambda: service.client.start_workflow(
                    ConfirmedPaymentWorkflow.run,
                    confirmation,
                    id=request.workflow_id,
                    task_queue=service.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    search_attributes=search_attributes.at_start(request),
                    rpc_timeout=service.call_window,
                )
            )
        except WorkflowAlreadyStartedError:
            raise DuplicatePaymentError(request.payment_id, await service.status(request.payment_id)) from None
        except RPCError as err:
            if not (is_unreachable(err) or deadline_expired(err)):
                raise
            outage = await silence_as_outage(service.client) if deadline_expired(err) else err
            raise service.unconfirmed_start(request.payment_id, outage or err) from err
        return PaymentHandle(service, handle, request.payment_id)  # type: ignore[arg-type]

    async def wait_until_waiting(self, payment_id: str, timeout: float = 10.0) -> ConfirmationState:
        """Return once the payment waits for its confirmation (validated, not yet decided).

        Raises:
            NotWaitingError: it never will: it ended (declined at validation…) or was already
                decided; the message says how, at once.
            TimeoutError: it was not waiting within ``timeout`` seconds (still validating, or
                not answering); the message says where it was.
            ValueError: ``timeout`` is not a number of seconds >= 0.
        """
        seconds("timeout", timeout)
        last: ConfirmationState | None = None
        try:
            async with asyncio.timeout(timeout):
                while (state := await self.state(payment_id)).step != Step.CONFIRM:
                    if state.step != Step.VALIDATE:  # past the wait, or ended without it: waiting on is waiting for nothing
                        raise NotWaitingError(payment_id, state, await self._ending(payment_id, state))
                    last = state
                    await asyncio.sleep(0.02)
                return state
        except TimeoutError:
            where = f"at step {last.step!r}, status {last.status.value!r}" if last is not None else "not answering"
            raise WaitTimedOutError(f"payment {payment_id!r} was not waiting for a confirmation within {timeout:g} s: it was {where}") from None

    async def _ending(self, payment_id: str, state: ConfirmationState) -> str | None:
        """How an ended payment ended, in the workflow's words (a decline says why); None while it runs."""
        if state.step != Step.DONE:
            return None
        return (await self.service.handle(payment_id).result(say_after=None)).message

    async def confirm(self, payment_id: str, *, approved: bool = True) -> ConfirmationReceipt:
        """Send the customer's answer (the ``confirm`` update) and return the workflow's receipt.

        The answer is sent only while a worker polls the payment's task queue: a Temporal update
        waits on the server (in its memory) until a worker takes it, and one sent with no worker could count
        whenever one starts, long after the cell that sent it gave up.

        Raises:
            ConfirmationRefusedError: the workflow refused it (too late, already decided), has
                ended, is not a payment that waits for a confirmation, or no worker polls its
                task queue (nothing was sent then); the history records nothing of a refusal.
            ConfirmationNotHeardError: the answer was sent, but no worker took it within the
                service's ``call_window`` (its worker stopped meanwhile, or the server does not
                answer); the message says whether it may still count.
            WorkflowTaskFailingError: the payment's workflow code fails its task (a version loaded with a
                bug): the answer is held in the server's memory only, so send it again once fixed code is loaded.
            ValueError: ``approved`` is not True or False (nothing is sent).
        """
        self.service.require_open()
        answer = CustomerAnswer(approved)
        workflow, queue = await self._confirmed_payment(payment_id)
        if not await self._polled(queue):
            if polled_here(queue):
                raise ConfirmationRefusedError(
                    payment_id,
                    f"this kernel's worker of task queue {queue!r} runs, but the server has not seen it poll within "
                    f"{RECOVERY_ALLOWANCE.total_seconds():g} s (a server just back, or too busy): nothing was sent. Confirm again in a moment",
                )
            raise ConfirmationRefusedError(
                payment_id,
                f"no worker polls its task queue {queue!r}, so nothing would hear it now: nothing was sent. Start one "
                f"(`await lab.worker.start()`, or `{worker_command(queue)}`), then confirm again",
            )
        window = self.service.call_window
        try:
            with _ended_as_refused(payment_id):
                async with asyncio.timeout(window.total_seconds()):
                    update = await self._accepted_unless_failing(workflow, answer)
                return await self._receipt(update)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise ConfirmationRefusedError(payment_id, reason) from None
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as err:
            if isinstance(err, WorkflowUpdateRPCTimeoutOrCancelledError) and not isinstance(err.__cause__, asyncio.CancelledError):
                raise
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # the cell was interrupted (the SDK names that "cancelled" too)
                raise asyncio.CancelledError from None
            if isinstance(err, RPCError) and not is_unreachable(err):
                raise
            outage = err if isinstance(err, RPCError) else await silence_as_outage(self.service.client)
            raise ConfirmationNotHeardError(payment_id, queue, window, outage) from None

    async def _accepted_unless_failing(
        self, workflow: WorkflowHandle[Any, Any], answer: CustomerAnswer
    ) -> WorkflowUpdateHandle[ConfirmationReceipt]:
        """Send the update and wait until the workflow accepts it; a workflow task that fails meanwhile is said at once.

        Off the script, workflow code that failed its task (a version loaded with a bug) made the confirmation
        wait its whole window and blame the worker. Until a worker accepts it, Temporal keeps an update in the
        server's memory only (no event is written): a failing task can drop it, so the error says to send the
        answer again once fixed code is loaded, which is safe.

        Raises:
            WorkflowTaskFailingError: an attempt of the workflow's task failed with the code deployed now.
        """
        accepting = workflow.start_update(
            ConfirmedPaymentWorkflow.confirm, answer, id=f"confirm-{uuid.uuid4().hex}", wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        try:
            return await unless_task_fails(accepting, workflow, client=self.service.client)
        except WorkflowTaskFailingError as failed:
            raise WorkflowTaskFailingError(
                f"{failed}. The confirmation was sent, and is not recorded: until a worker accepts an update, Temporal "
                "holds it in the server's memory only, and a failing task can drop it. Load fixed code, then confirm "
                "again: if the first answer counted meanwhile, the second is refused as already decided, never charged twice."
            ) from None

    async def _polled(self, queue: str) -> bool:
        """Whether a worker polls ``queue``, given :data:`POLLER_GRACE` seconds to show (a worker that just started),
        or :data:`~payments_lab.outage.RECOVERY_ALLOWANCE` for one of this process (after an outage, it polls again
        only seconds after its server is back: a confirmation sent during the outage was refused for want of it)."""
        grace = RECOVERY_ALLOWANCE.total_seconds() if polled_here(queue) else POLLER_GRACE
        deadline = time.monotonic() + grace
        while not await live_pollers(self.service.client, queue, kinds=(TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,)):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    async def _receipt(self, update: WorkflowUpdateHandle[ConfirmationReceipt]) -> ConfirmationReceipt:
        """The receipt of an accepted update: it comes once validation has ended (the handler waits for it), in windows.

        Raises:
            WorkflowUpdateFailedError: the workflow refused the answer after validation.
        """
        while True:
            try:
                # The update's own return annotation tells the SDK to decode a ConfirmationReceipt.
                return await self.service.answered(lambda window: _result_within(update, window))
            except RPCError as err:
                if not deadline_expired(err):
                    raise
                # The server answers, the receipt has not come: a validation that runs long. Accepted, it counts: wait on.

    async def deliver_webhook(self, payment_id: str, event: ProcessorEvent) -> None:
        """Deliver one processor webhook (the ``processor_webhook`` signal); redeliveries are harmless.

        Like a processor, it delivers again while the server does not answer (the workflow
        ignores an event id it has seen).

        Raises:
            TypeError: ``event`` is not a :class:`ProcessorEvent` (the workflow would drop it
                unread, as a signal whose input it cannot decode).
            ConfirmationRefusedError: the payment's workflow has ended, does not exist, or does
                not wait for a confirmation (a payment started without ``checkout.start``).
        """
        self.service.require_open()
        if not isinstance(event, ProcessorEvent):
            raise InvalidArgumentError(
                f"event must be a ProcessorEvent, such as ProcessorEvent('evt-1', {AUTHENTICATED!r}), "
                f"not {type(event).__name__} {event!r}"
            )
        workflow, _ = await self._confirmed_payment(payment_id, what="webhook")
        with _ended_as_refused(payment_id, what="webhook"):
            await self.service.answered(lambda window: workflow.signal(ConfirmedPaymentWorkflow.processor_webhook, event, rpc_timeout=window))

    async def state(self, payment_id: str) -> ConfirmationState:
        """Ask the workflow where the payment is and what it heard (the ``confirmation`` query).

        Raises:
            PaymentNotFoundError: no workflow runs this payment.
            ConfirmationRefusedError: the payment does not wait for a confirmation (a payment
                started without ``checkout.start``).
            QueryUnansweredError: no worker answered within the service's ``call_window``.
            WorkflowTaskFailingError: the payment's workflow code fails its task: no worker can answer before it is fixed.
        """
        self.service.require_open()
        handle = self.service.handle(payment_id)
        workflow = self.service.client.get_workflow_handle(handle.workflow_id)
        try:
            with not_found_as(payment_id):
                # One window: a query that a live server does not answer waits for a worker, not for the server.
                return await self.service.answered(
                    lambda window: workflow.query(ConfirmedPaymentWorkflow.confirmation, rpc_timeout=window), windows=1
                )
        except WorkflowQueryFailedError as err:
            if "expected but not found" not in str(err):
                raise
            described = await self.service.answered(lambda window: workflow.describe(rpc_timeout=window))
            raise _not_a_confirmed_payment(payment_id, described.workflow_type) from None
        except RPCError as err:
            await raise_if_task_failing(err, workflow)
            if not deadline_expired(err):
                raise
            raise await handle.query_unanswered("confirmation") from None

    async def _confirmed_payment(self, payment_id: str, *, what: str = "confirmation") -> tuple[WorkflowHandle[Any, Any], str]:
        """The workflow of ``payment_id`` and its task queue, if it is one that waits for a confirmation.

        Raises:
            ConfirmationRefusedError: it does not exist, or runs another workflow.
        """
        workflow = self.service.client.get_workflow_handle(self.service.handle(payment_id).workflow_id)
        with _ended_as_refused(payment_id, what=what):
            described = await self.service.answered(lambda window: workflow.describe(rpc_timeout=window))
        if described.workflow_type != ConfirmedPaymentWorkflow.__name__:
            raise _not_a_confirmed_payment(payment_id, described.workflow_type, what=what)
        return workflow, described.task_queue


async def _result_within(update: WorkflowUpdateHandle[ConfirmationReceipt], window: timedelta) -> ConfirmationReceipt:
    """``update.result()`` within ``window``; its expiry raised as the RPC error it is (the SDK wraps it), for the kit's windows."""
    try:
        return await update.result(rpc_timeout=window)
    except WorkflowUpdateRPCTimeoutOrCancelledError as err:
        if isinstance(err.__cause__, RPCError):
            raise err.__cause__ from None
        if isinstance(err.__cause__, asyncio.CancelledError):  # the cell was interrupted
            raise asyncio.CancelledError from None
        raise


class ConfirmationNotHeardError(PaymentsLabError, TimeoutError):
    """A confirmation was sent, and no worker took it in time: it may still count later."""

    def __init__(self, payment_id: str, task_queue: str, window: timedelta, outage: RPCError | None) -> None:
        self.payment_id = payment_id
        if outage is not None:
            what = (
                f"the Temporal server does not answer ({outage.message}), so it may not have arrived. Send it again "
                "once the server answers: if the first one did arrive, the second is refused as already decided, "
                "never charged twice"
            )
        else:
            what = (
                f"no worker of task queue {task_queue!r} took it within {window.total_seconds():g} s (the worker "
                "stopped or is busy). It waits on the server and counts when a worker runs the payment, unless the "
                "server drops it first: until a worker accepts an update, Temporal holds it in memory only (a server "
                f"restart loses it). Once a worker runs, `await checkout.state({payment_id!r})` tells whether it "
                "counted; if the payment still waits, send it again: never charged twice"
            )
        super().__init__(f"the confirmation of payment {payment_id!r} was sent, but {what}")


def _not_a_confirmed_payment(payment_id: str, workflow_type: str, *, what: str = "confirmation") -> ConfirmationRefusedError:
    """The refusal of a call to a payment that does not wait for a confirmation (started with ``lab.start``, say)."""
    return ConfirmationRefusedError(
        payment_id,
        f"it is not a payment that waits for a confirmation (it runs {workflow_type}): start one with "
        "`await checkout.start(request)`",
        what=what,
    )


@contextmanager
def _ended_as_refused(payment_id: str, *, what: str = "confirmation") -> Iterator[None]:
    """Turn the server's NOT_FOUND (the workflow has closed, or never was) into :class:`ConfirmationRefusedError`."""
    try:
        yield
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            reason = f"the payment's workflow has ended or does not exist ({err.message})"
            raise ConfirmationRefusedError(payment_id, reason, what=what) from None
        raise
