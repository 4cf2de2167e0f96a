"""The payment without Temporal: the same three steps as plain function calls, and as a script.

Lessons compare it with the workflow: how long it takes (lesson 8), and what happens when
its process is killed in the middle of the charge and run again (lesson 4): nothing
resumes it, and running it again charges a second time unless the processor is given an
idempotency key.

Run as a script::

    python -m payments_lab.plain --db lab.sqlite --id p-1 --org org-acme --amount 12.50 --currency EUR --delay 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from payments_lab import processes
from payments_lab.activities import send_notifications
from payments_lab.domain import Payment, PaymentRequest, PaymentResult, PaymentStatus, validate_request
from payments_lab.errors import PaymentsLabError
from payments_lab.repository import PaymentRepository

CHARGED_LINE = "charged, waiting for the processor's answer"
"""What the script prints once the processor has taken the money (a lesson kills it then)."""


def pay_plainly(
    repository: PaymentRepository,
    request: PaymentRequest,
    *,
    processor_delay: float = 0.0,
    idempotency_key: str | None = None,
    announce: bool = False,
) -> PaymentResult:
    """Validate, charge and notify with plain calls: no retry, no resume, no history.

    Args:
        repository: Where the payment, the ledger and the notifications go.
        request: The payment.
        processor_delay: Seconds the processor takes to answer, after taking the money.
        idempotency_key: Key sent to the processor; None, as a naive client sends.
        announce: Print :data:`CHARGED_LINE` once the money is taken.
    """
    validation = validate_request(request, repository.organization_exists)
    if not validation.valid:
        message = f"declined: {validation.message}"
        return PaymentResult(request.payment_id, PaymentStatus.DECLINED, message, request.amount, request.currency)
    payment = Payment.from_request(request)
    repository.transition(payment, PaymentStatus.PROCESSING)
    entry = repository.charge(request.payment_id, request.amount, request.currency, idempotency_key=idempotency_key).entry
    if announce:
        print(CHARGED_LINE, flush=True)
    time.sleep(processor_delay)
    repository.transition(payment, PaymentStatus.COMPLETED)
    result = PaymentResult(
        request.payment_id,
        PaymentStatus.COMPLETED,
        "Payment processed successfully",
        request.amount,
        request.currency,
        charge_id=entry.entry_id,
    )
    send_notifications(repository, request, result)
    return replace(result, notified=True)


def run_plain_script(
    db_file: str | Path,
    request: PaymentRequest,
    *,
    delay: float = 0.0,
    idempotent: bool = False,
    kill_after_charge: bool = False,
) -> str:
    """Run the plain payment in a process of its own and return what it printed.

    With ``kill_after_charge`` the process is killed (``kill -9``) as soon as the processor
    has taken the money, while it waits ``delay`` seconds for the processor's answer.
    """
    command = [
        sys.executable, "-m", "payments_lab.plain",
        "--db", str(db_file),
        "--id", request.payment_id,
        "--org", request.organization_id,
        "--user", request.user_id,
        "--amount", str(request.amount),
        "--currency", request.currency,
        "--delay", str(delay),
    ]
    if idempotent:
        command.append("--idempotent")
    # Through the kit's launcher, as its servers and workers are: a kernel killed while the script
    # waits for the processor takes the script with it, instead of leaving it to write later.
    process = processes.spawn(command, log=subprocess.PIPE)
    assert process.stdout is not None
    try:
        if not kill_after_charge:
            output, _ = process.communicate(timeout=60 + delay)
            return output.decode("utf-8", "replace").strip()
        first = process.stdout.readline().decode("utf-8", "replace").strip()
    finally:
        processes.kill(process)  # nothing when it has ended; a script that overran its time is not left behind
        process.stdout.close()  # the rest of its output is not read (a pipe left open warns at garbage collection)
    return f"{first}\n(killed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one plain payment against a repository file; exit 0 if it completed."""
    parser = argparse.ArgumentParser(prog="python -m payments_lab.plain", description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="repository file")
    parser.add_argument("--id", dest="payment_id", required=True)
    parser.add_argument("--org", default="org-acme")
    parser.add_argument("--user", default="script")
    parser.add_argument("--amount", required=True)
    parser.add_argument("--currency", default="EUR")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds the processor takes to answer")
    parser.add_argument("--idempotent", action="store_true", help="send the payment id as idempotency key")
    args = parser.parse_args(argv)
    request = PaymentRequest(args.payment_id, args.org, args.user, args.amount, args.currency)
    repository = PaymentRepository(args.db)
    key = request.payment_id if args.idempotent else None
    try:
        result = pay_plainly(repository, request, processor_delay=args.delay, idempotency_key=key, announce=True)
    except PaymentsLabError as error:
        # Run again on a payment that already ended, the script stops at its first write: say
        # so in one line, since the lesson reads this output, not a traceback.
        print(f"refused: {error}", flush=True)
        return 2
    print(f"{result.status.value}: {result.message}", flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
