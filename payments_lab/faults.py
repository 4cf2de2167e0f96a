"""Deterministic fault injection: make a payment step fail, slow down or hang, on purpose.

Two levels:

* a :class:`FaultPlan` travels with one payment (it is part of the workflow input, so
  every worker applies it and the history records it): "fail the first 2 charge attempts";
* a :class:`FaultProfile` is set on a worker and applies to every payment it handles:
  "fail 5 % of charges", decided by a seeded hash of (payment, attempt) so a run is
  reproducible whatever the order or concurrency.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from payments_lab.arguments import flag, rate, seconds, whole_number
from payments_lab.errors import InvalidArgumentError


@dataclass(frozen=True)
class StepFaults:
    """Faults for one step (validate, charge or notify) of one payment."""

    fail_first: int = 0
    """Fail this many first attempts with a transient error, which Temporal retries."""
    hang_first: int = 0
    """Make this many first attempts never answer, until their timeout ends them.

    A hanging charge has already reached the processor: the charge is taken, the answer is
    lost. This is where idempotency earns its keep.
    """
    delay: float = 0.0
    """Seconds every attempt takes (for the charge: the processor's answer time)."""
    decline: bool = False
    """Charge only: the processor declines the card. A business answer, never retried."""

    def __post_init__(self) -> None:
        whole_number("fail_first", self.fail_first)
        whole_number("hang_first", self.hang_first)
        seconds("delay", self.delay)
        flag("decline", self.decline)


@dataclass(frozen=True)
class FaultPlan:
    """Faults for each step of one payment."""

    validate: StepFaults = StepFaults()
    """Faults of the validate step."""
    charge: StepFaults = StepFaults()
    """Faults of the charge step."""
    notify: StepFaults = StepFaults()
    """Faults of the notify step."""

    def __post_init__(self) -> None:
        for step in ("validate", "charge", "notify"):
            value = getattr(self, step)
            if not isinstance(value, StepFaults):
                raise InvalidArgumentError(
                    f"{step} must be a StepFaults, got {value!r}: e.g. FaultPlan({step}=StepFaults(fail_first=2)), "
                    f"or FaultPlan.failing({step}=2)"
                )
        for step in ("validate", "notify"):
            if getattr(self, step).decline:
                # Only the processor declines, at the charge: elsewhere the flag would do nothing.
                raise InvalidArgumentError(
                    f"decline is the processor's answer to a charge, not a {step} fault: use "
                    "FaultPlan(charge=StepFaults(decline=True)); validation declines a request that breaks a "
                    "payment rule (e.g. an unknown organization)"
                )

    @classmethod
    def failing(cls, *, validate: int = 0, charge: int = 0, notify: int = 0) -> FaultPlan:
        """A plan that fails the first N attempts of each step: ``FaultPlan.failing(charge=2)``."""
        return cls(
            validate=StepFaults(fail_first=validate),
            charge=StepFaults(fail_first=charge),
            notify=StepFaults(fail_first=notify),
        )

    @property
    def is_empty(self) -> bool:
        """Whether the plan injects nothing."""
        return self == FaultPlan()


def checked_fault_plan(faults: object) -> FaultPlan:
    """``faults`` if it is a :class:`FaultPlan`; a plan without faults for None.

    Raises:
        ValueError: anything else; the faults of one step (a :class:`StepFaults`) get the fix:
            a plan says which step they are for.
    """
    if faults is None:
        return FaultPlan()
    if isinstance(faults, FaultPlan):
        return faults
    if isinstance(faults, StepFaults):
        raise InvalidArgumentError(f"faults must be a FaultPlan, got the faults of one step: say which, e.g. FaultPlan(charge={faults!r})")
    raise InvalidArgumentError(f"faults must be a FaultPlan, e.g. FaultPlan.failing(charge=2), got {faults!r}")


@dataclass(frozen=True)
class FaultProfile:
    """Faults a worker applies to every payment; the defaults reproduce the seed chapter.

    The chapter's processor slept 2 seconds and failed 5 % of charges at random. Here the
    "random" failure is a seeded function of (payment id, attempt), so the same payments
    fail on every run, and a retried attempt gets a fresh draw.
    """

    charge_failure_rate: float = 0.05
    """Share of charge attempts that fail with a transient processor error (0 to 1)."""
    charge_latency: float = 2.0
    """Seconds the processor takes to answer a charge."""
    seed: int = 0
    """Seed of the failure draws."""

    def __post_init__(self) -> None:
        rate("charge_failure_rate", self.charge_failure_rate)
        seconds("charge_latency", self.charge_latency)

    def charge_fails(self, payment_id: str, attempt: int) -> bool:
        """Whether attempt ``attempt`` of charging ``payment_id`` fails under this profile."""
        if self.charge_failure_rate <= 0:
            return False
        draw = random.Random(f"{self.seed}:{payment_id}:{attempt}").random()
        return draw < self.charge_failure_rate


def latency_warning(profile: FaultProfile, charge_timeout: timedelta) -> str | None:
    """What to tell a learner whose processor latency is at least the charge's timeout, or None.

    Every charge would then run past its start-to-close timeout: Temporal times each attempt out,
    retries it, and the payment ends refunded (the money was taken before the answer came).
    """
    limit = charge_timeout.total_seconds()
    if profile.charge_latency < limit:
        return None
    return (
        f"a processor latency of {profile.charge_latency:g} s is at least the charge's {limit:g} s timeout "
        "(PaymentOptions.charge_timeout): every charge will time out, be retried, and the payment end refunded. "
        f"For a slow processor or a crash demonstration, use less (e.g. 8 s)."
    )


def checked_fault_profile(profile: object) -> FaultProfile:
    """``profile`` if it is a :class:`FaultProfile`.

    Raises:
        ValueError: anything else; a :class:`FaultPlan` (the faults of one payment) gets the fix.
    """
    if isinstance(profile, FaultProfile):
        return profile
    if isinstance(profile, FaultPlan):
        raise InvalidArgumentError(
            "fault_profile must be a FaultProfile (faults of every payment: a failure rate, a latency), got a "
            "FaultPlan, the faults of one payment: pass it to that payment, lab.start(request, faults=...)"
        )
    raise InvalidArgumentError(f"fault_profile must be a FaultProfile, e.g. FaultProfile(charge_failure_rate=0.2), got {profile!r}")


NO_FAULTS = FaultProfile(charge_failure_rate=0.0, charge_latency=0.0)
"""A profile that injects nothing: the default of lab and test workers."""

SEED_CHAPTER = FaultProfile()
"""The seed chapter's processor: 2 s per charge, 5 % of charges fail."""
