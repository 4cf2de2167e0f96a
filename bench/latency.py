"""Latency of one payment, side by side: plain calls, the kit's workflow, the tuned workflow, bare SDK, early return.

The tuned payment starts eagerly (the server hands the first workflow task straight back
to this process's worker) and runs validate and notify as local activities. The early
return starts the tuned payment with Update-with-Start and is timed to its first answer
(accepted, once validated); its charge and notification are awaited untimed before the
next run. Every figure is measured back to back and spaced ``--spacing`` seconds apart (a
person clicking one payment at a time). Prints ``name=value`` headline lines; figures are
medians over alternating rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

from bare_workflow import BareWorkflow, charge, notify, validate
from temporalio.worker import Worker

from payments_lab.lab import open_lab
from payments_lab.latency import Continuing, compare_latency, latency_table
from payments_lab.messages import TUNED
from payments_lab.plain import pay_plainly
from payments_lab.repository import PaymentRepository
from payments_lab.server import DEFAULT_TRANSFER_READS_PER_SECOND, EmbeddedServer


async def main(rounds: int, per_round: int, spacing: float, transfer_reads: int) -> None:
    with EmbeddedServer(ui=False, transfer_reads_per_second=transfer_reads or None) as server:
        lab = await open_lab("bench", server=server)
        plain_repository = PaymentRepository()
        bare_queue = f"bench-bare-{uuid.uuid4().hex[:6]}"
        bare_worker = Worker(lab.client, task_queue=bare_queue, workflows=[BareWorkflow], activities=[validate, charge, notify])

        async def plain() -> object:
            return pay_plainly(plain_repository, lab.request("10.00"))

        async def kit() -> object:
            return await lab.pay("10.00", show_link=False)

        async def tuned() -> object:
            return await lab.pay("10.00", options=TUNED, eager_start=True, show_link=False)

        async def bare() -> object:
            return await lab.client.execute_workflow(
                BareWorkflow.run, "p", id=f"bare-{uuid.uuid4().hex}", task_queue=bare_queue
            )

        async def early() -> Continuing:
            started = await lab.service.start_early(lab.request("10.00"), options=TUNED)
            return Continuing(started.handle.result())

        runners = {"plain": plain, "kit": kit, "tuned": tuned, "bare": bare, "early": early}
        async with bare_worker:
            reports = await compare_latency(runners, rounds=rounds, per_round=per_round)
            spaced = await compare_latency(runners, rounds=rounds, per_round=per_round, spacing=spacing, warmup=0)
        await lab.close()
    print("back to back:")
    print(latency_table(reports).to_string())
    print(f"spaced {spacing:g} s apart:")
    print(latency_table(spaced).to_string())
    print(f"plain_payment_latency_ms={reports['plain'].median_ms:.1f}")
    print(f"kit_payment_latency_ms={reports['kit'].median_ms:.0f}")
    print(f"tuned_payment_latency_ms={reports['tuned'].median_ms:.0f}")
    print(f"bare_payment_latency_ms={reports['bare'].median_ms:.0f}")
    print(f"early_return_first_response_ms={reports['early'].median_ms:.0f}")
    for name, label in (("kit", "kit_payment"), ("tuned", "tuned_payment"), ("bare", "bare_payment")):
        print(f"{label}_latency_spaced_ms={spaced[name].median_ms:.0f}")
    print(f"early_return_first_response_spaced_ms={spaced['early'].median_ms:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--spacing", type=float, default=0.2, help="seconds between two payments in the spaced runs")
    parser.add_argument(
        "--transfer-reads",
        type=int,
        default=DEFAULT_TRANSFER_READS_PER_SECOND,
        help="the server's history.transferProcessorMaxPollRPS; 0 keeps Temporal's default (20)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.per_round, args.spacing, args.transfer_reads))
