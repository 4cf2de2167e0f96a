"""Record the histories that tests/test_replay.py replays: one per path through each payment workflow.

Run once, with the workflow code whose histories must keep replaying (these were recorded
at commit b2cdd10, before the charge, settle and notify steps were shared):

    python tests/histories/record.py

Each scenario runs on a dev server of its own and its history is saved as
``<workflow>/<scenario>.json``, the format of ``temporal workflow show --output json``.
Re-recording with newer code makes the replay test prove nothing about older histories.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from payments_lab.activities import PaymentActivities
from payments_lab.checkout import Checkout
from payments_lab.client import connect
from payments_lab.confirmation_messages import AUTHENTICATED, ProcessorEvent
from payments_lab.domain import PaymentRequest
from payments_lab.faults import FaultPlan, StepFaults
from payments_lab.history import save_history
from payments_lab.lab import quiet_logs
from payments_lab.messages import TUNED, PaymentOptions
from payments_lab.repository import PaymentRepository
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentHandle, PaymentService
from payments_lab.worker import BackgroundWorker

HERE = Path(__file__).resolve().parent
FAST = PaymentOptions(initial_interval=timedelta(milliseconds=100), maximum_interval=timedelta(seconds=1))


def _request(name: str, amount: str = "25.00") -> PaymentRequest:
    return PaymentRequest(f"replay-{name}", "org-acme", "u-1", amount, "EUR", f"replay scenario {name}")  # type: ignore[arg-type]


async def _until_charged(repository: PaymentRepository, payment_id: str) -> None:
    async with asyncio.timeout(30):
        while not repository.ledger(payment_id):
            await asyncio.sleep(0.02)


async def _until_waiting(checkout: Checkout, payment_id: str) -> None:
    await checkout.wait_until_waiting(payment_id)


async def _save(folder: str, name: str, handle: PaymentHandle) -> None:
    try:
        ended = (await handle.result()).message
    except Exception as err:  # noqa: BLE001 - a cancelled payment raises; its history is what counts
        ended = repr(err)
    save_history(await handle.history(), HERE / folder / f"{name}.json")
    print(f"{folder}/{name}.json: {ended}")


async def record() -> None:
    quiet_logs()
    repository = PaymentRepository()
    with EmbeddedServer(ui=False) as server:
        client = (await connect(address=server.address)).client
        service = PaymentService(client, "replay", options=FAST)
        checkout = Checkout(service)
        async with BackgroundWorker(client, "replay", PaymentActivities(repository)):
            # PaymentWorkflow
            await _save("payment", "completed", await service.start(_request("p-completed"), faults=FaultPlan.failing(charge=1)))
            await _save("payment", "tuned", await service.start(_request("p-tuned"), options=TUNED))
            await _save("payment", "declined", await service.start(_request("p-declined", "-5")))
            await _save("payment", "validation-gave-up", await service.start(_request("p-validation"), faults=FaultPlan.failing(validate=9)))
            await _save("payment", "charge-gave-up", await service.start(_request("p-charge"), faults=FaultPlan.failing(charge=9)))
            await _save("payment", "card-declined", await service.start(_request("p-card"), faults=FaultPlan(charge=StepFaults(decline=True))))
            await _save("payment", "notification-failed", await service.start(_request("p-notify"), faults=FaultPlan.failing(notify=9)))
            deadline = PaymentOptions(
                maximum_attempts=0, initial_interval=timedelta(milliseconds=200), charge_schedule_to_close_timeout=timedelta(seconds=1)
            )
            await _save("payment", "charge-deadline", await service.start(_request("p-deadline"), faults=FaultPlan.failing(charge=10**6), options=deadline))
            cancelled = await service.start(_request("p-cancelled"), faults=FaultPlan(charge=StepFaults(delay=1.5)))
            await _until_charged(repository, cancelled.payment_id)
            await cancelled.cancel()
            await _save("payment", "cancelled-while-charging", cancelled)
            early = await service.start_early(_request("p-early"))
            await _save("payment", "early-answer", early.handle)

            # ConfirmedPaymentWorkflow
            confirmed = await checkout.start(_request("c-confirmed"), faults=FaultPlan.failing(charge=1))
            await _until_waiting(checkout, confirmed.payment_id)
            await checkout.confirm(confirmed.payment_id)
            await _save("confirmed", "confirmed", confirmed)
            webhook = await checkout.start(_request("c-webhook"))
            await _until_waiting(checkout, webhook.payment_id)
            await checkout.deliver_webhook(webhook.payment_id, ProcessorEvent("evt_1", AUTHENTICATED))
            await checkout.deliver_webhook(webhook.payment_id, ProcessorEvent("evt_1", AUTHENTICATED))
            await _save("confirmed", "webhook-twice", webhook)
            refused = await checkout.start(_request("c-refused"))
            await _until_waiting(checkout, refused.payment_id)
            await checkout.confirm(refused.payment_id, approved=False)
            await _save("confirmed", "refused", refused)
            await _save("confirmed", "expired", await checkout.start(_request("c-expired"), deadline=timedelta(milliseconds=300)))
            await _save("confirmed", "declined", await checkout.start(_request("c-declined", "-5")))
            tuned = await Checkout(service, options=TUNED).start(_request("c-tuned"))
            await _until_waiting(checkout, tuned.payment_id)
            await checkout.confirm(tuned.payment_id)
            await _save("confirmed", "tuned", tuned)
            for name, faults in [
                ("charge-gave-up", FaultPlan.failing(charge=9)),
                ("card-declined", FaultPlan(charge=StepFaults(decline=True))),
                ("notification-failed", FaultPlan.failing(notify=9)),
            ]:
                handle = await checkout.start(_request(f"c-{name}"), faults=faults)
                await _until_waiting(checkout, handle.payment_id)
                await checkout.confirm(handle.payment_id)
                await _save("confirmed", name, handle)
            waiting = await checkout.start(_request("c-cancelled-waiting"))
            await _until_waiting(checkout, waiting.payment_id)
            await waiting.cancel()
            await _save("confirmed", "cancelled-while-waiting", waiting)
            charging = await checkout.start(_request("c-cancelled-charging"), faults=FaultPlan(charge=StepFaults(delay=1.5)))
            await _until_waiting(checkout, charging.payment_id)
            await checkout.confirm(charging.payment_id)
            await _until_charged(repository, charging.payment_id)
            await charging.cancel()
            await _save("confirmed", "cancelled-while-charging", charging)
    repository.close()


if __name__ == "__main__":
    asyncio.run(record())
