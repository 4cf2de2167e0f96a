"""A bare temporalio workflow with three no-op activities: the baseline the kit is measured against."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
async def validate(payment_id: str) -> bool:
    """Do nothing, like a validation that always passes."""
    return True


@activity.defn
async def charge(payment_id: str) -> str:
    """Do nothing, like a charge that always succeeds."""
    return f"charged {payment_id}"


@activity.defn
async def notify(payment_id: str) -> None:
    """Do nothing, like a notification."""


@workflow.defn
class BareWorkflow:
    """validate → charge → notify, with nothing else."""

    @workflow.run
    async def run(self, payment_id: str) -> str:
        """Run the three activities in a row."""
        options = {"start_to_close_timeout": timedelta(seconds=10)}
        await workflow.execute_activity(validate, payment_id, **options)
        result = await workflow.execute_activity(charge, payment_id, **options)
        await workflow.execute_activity(notify, payment_id, **options)
        return result
