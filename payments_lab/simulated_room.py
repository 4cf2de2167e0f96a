"""Simulated learners for the room view: each one pays and checks exercises for real, in a namespace of its own.

A simulated learner is a lab of its own (a client of its namespace, a worker, an in-memory
repository) that follows a script: the payments of lessons 01–03 and exercise checks,
answered with the kit's solutions or with a usual wrong answer, with a pause between steps as
a learner reading the notebook. Checks go through :meth:`Exercise.check_async`, so they
record their verdicts as a learner's do.

    await run_room(server.address, DEMO_ROOM)              # in this process
    room = SimulatedRoomProcess(server.address).start()    # in a process of its own, as a room's kernels are
    await room.finished()
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from payments_lab import processes
from payments_lab.activities import PaymentActivities
from payments_lab.client import connect
from payments_lab.errors import InvalidArgumentError
from payments_lab.exercises import Exercise, Feedback, all_exercises
from payments_lab.faults import FaultPlan
from payments_lab.lab import Lab, quiet_logs
from payments_lab.messages import PaymentOptions
from payments_lab.repository import PaymentRepository
from payments_lab.server import EmbeddedServer
from payments_lab.service import PaymentService
from payments_lab.worker import BackgroundWorker, new_task_queue

Behaviour = Literal["passing", "stuck", "idle"]

WRONG_ANSWERS: dict[str, str] = {
    "01.q1": 'request = lab.request("-5.00", "EUR")',
    "02.q2": "from payments_lab import FaultPlan\nplan = FaultPlan.failing(charge=3)",
    "02.q3": "from payments_lab import FaultPlan\nplan = FaultPlan.failing(notify=2)",
    "03.q2": "started_events = 3",
}
"""A usual wrong answer of some exercises (the facilitator guide's "common mistakes"), as code binding the answer."""


@dataclass(frozen=True)
class SimulatedLearner:
    """A learner of a simulated room and what they do."""

    name: str
    """The learner, i.e. their namespace."""
    behaviour: Behaviour
    """``passing``: every check green, first time or after one red; ``stuck``: the same
    red check again and again; ``idle``: one payment, then nothing."""
    exercises: tuple[str, ...] = ("01.q1", "01.q2", "02.q2")
    """Exercises the learner checks, in order (``stuck``: the last one is the one they are stuck on)."""
    red_first: tuple[str, ...] = ()
    """Exercises a passing learner first gets wrong once (each must have a :data:`WRONG_ANSWERS` entry)."""
    attempts: int = 3
    """Red checks in a row of a stuck learner on their last exercise."""
    think: float = 1.0
    """Seconds between two steps, as a learner reading the notebook."""

    def __post_init__(self) -> None:
        if self.behaviour not in ("passing", "stuck", "idle"):
            raise InvalidArgumentError(f"behaviour must be 'passing', 'stuck' or 'idle', got {self.behaviour!r}")
        known = {e.id for e in all_exercises()}
        unknown = [e for e in self.exercises if e not in known]
        if unknown:
            raise InvalidArgumentError(f"{self.name}: no exercise {', '.join(unknown)} (ids look like '02.q2')")
        wrong = [e for e in (*self.red_first, *(self.exercises[-1:] if self.behaviour == "stuck" else ())) if e not in WRONG_ANSWERS]
        if wrong:
            raise InvalidArgumentError(f"{self.name}: no wrong answer is known for {', '.join(wrong)}; choose among {', '.join(WRONG_ANSWERS)}")
        if self.behaviour == "stuck" and not self.exercises:
            raise InvalidArgumentError(f"{self.name}: a stuck learner needs an exercise to be stuck on")
        if self.think < 0 or self.attempts < 1:
            raise InvalidArgumentError(f"{self.name}: think must be >= 0 and attempts >= 1, got {self.think!r} and {self.attempts!r}")


DEMO_ROOM: tuple[SimulatedLearner, ...] = (
    SimulatedLearner("ana", "passing", ("01.q1", "01.q2", "01.q3", "02.q2", "02.q3"), think=1.5),
    SimulatedLearner("bo", "passing", ("01.q1", "01.q2", "02.q2", "02.q3", "03.q2"), red_first=("02.q3",), think=1.5),
    SimulatedLearner("chloe", "stuck", ("01.q1", "02.q2"), attempts=4, think=2.0),
    SimulatedLearner("dev", "idle", ()),
)
"""The room of the facilitator notebook: two learners passing, one stuck on repeated red checks, one idle."""


CHECK_FAST = PaymentOptions(initial_interval=PaymentOptions().initial_interval / 10)
"""Lesson 02's retried payment with retries 100 ms apart, so a simulated room is quick."""


def answer_code(exercise: Exercise, *, wrong: bool) -> str:
    """The code a simulated learner types: the solution, or the usual wrong answer."""
    return WRONG_ANSWERS[exercise.id] if wrong else exercise.solution_code


def answer(exercise: Exercise, lab: Lab, *, wrong: bool = False) -> Any:
    """Run the learner's answer code, as a notebook cell would, and return the answer."""
    namespace: dict[str, Any] = {"lab": lab}
    exec(answer_code(exercise, wrong=wrong), namespace)  # noqa: S102 - the kit's own answer code
    return namespace[exercise.answer_name]


async def open_learner_lab(address: str, namespace: str) -> Lab:
    """A lab in ``namespace`` of the server at ``address``: a worker of its own, an in-memory repository."""
    connection = await connect(address=address, namespace=namespace)
    repository = PaymentRepository()
    activities = PaymentActivities(repository, identity=f"{namespace}-worker")
    task_queue = new_task_queue(namespace)
    worker = await BackgroundWorker(connection.client, task_queue, activities).start()
    service = PaymentService(connection.client, task_queue, options=PaymentOptions(), ui_url=connection.ui_url)
    return Lab(namespace, connection, repository, activities, worker, service)


async def lesson_payments(lab: Lab) -> None:
    """The payments of lessons 01 and 02 a learner runs: one that completes, one declined, one retried."""
    await lab.pay("12.50", "EUR", show_link=False)
    await lab.pay("-5", "EUR", show_link=False)
    await lab.pay("20.00", "EUR", faults=FaultPlan.failing(charge=2), options=CHECK_FAST, show_link=False)


async def simulate(learner: SimulatedLearner, lab: Lab) -> list[Feedback]:
    """Play one learner's script on their lab; return the feedback of every check."""
    exercises = {e.id: e for e in all_exercises()}
    feedback: list[Feedback] = []
    if learner.behaviour == "idle":
        await lab.pay("12.50", "EUR", show_link=False)
        return feedback
    await lesson_payments(lab)
    for position, exercise_id in enumerate(learner.exercises):
        exercise = exercises[exercise_id]
        stuck_here = learner.behaviour == "stuck" and position == len(learner.exercises) - 1
        tries = [True] * learner.attempts if stuck_here else [True, False] if exercise_id in learner.red_first else [False]
        for wrong in tries:
            await asyncio.sleep(learner.think)
            feedback.append(await exercise.check_async(answer(exercise, lab, wrong=wrong), lab=lab))
    return feedback


async def run_room(address: str, learners: Sequence[SimulatedLearner] = DEMO_ROOM, *, seed: int = 7) -> dict[str, list[Feedback]]:
    """Run every learner's script at once, each in their namespace (which must exist); stop their workers after.

    Args:
        address: ``host:port`` of the room's server.
        learners: Who is in the room.
        seed: Seeds the small head start each learner takes, so runs are alike.

    Returns:
        Each learner's feedback, by name.
    """
    quiet_logs()
    labs = [await open_learner_lab(address, learner.name) for learner in learners]
    jitter = random.Random(seed)

    async def play(learner: SimulatedLearner, lab: Lab) -> list[Feedback]:
        await asyncio.sleep(jitter.uniform(0, 0.5))
        return await simulate(learner, lab)

    try:
        results = await asyncio.gather(*(play(learner, lab) for learner, lab in zip(learners, labs)))
    finally:
        for lab in labs:
            await lab.close()
    return {learner.name: result for learner, result in zip(learners, results)}


class SimulatedRoomProcess(processes.ChildProcess):
    """:func:`run_room` in a process of its own, tied to this one: the learners' work is not this kernel's.

    Args:
        address: ``host:port`` of the room's server.
        learners: Who is in the room.
    """

    def __init__(self, address: str, learners: Sequence[SimulatedLearner] = DEMO_ROOM) -> None:
        self.address = address
        self.learners = tuple(learners)
        super().__init__("The simulated room")

    def start(self) -> SimulatedRoomProcess:
        """Start the learners and return at once."""
        plan = json.dumps([dataclasses.asdict(learner) for learner in self.learners])
        self.launch([sys.executable, "-m", "payments_lab.simulated_room", self.address, plan], lambda: True, 5.0)
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Stop the learners' process (SIGINT, then SIGKILL after ``grace`` seconds)."""
        self.terminate(grace)

    async def finished(self, poll: float = 0.2) -> None:
        """Return once every learner is done; cancelled (the cell waiting for it interrupted), stop them.

        Raises:
            ProcessError: the simulation failed; its log is quoted.
        """
        try:
            while self.running:
                await asyncio.sleep(poll)
        except asyncio.CancelledError:
            # The facilitator stopped the cell that watched the learners: they stop with it,
            # rather than run their checks to the end unseen.
            self.stop()
            raise
        code = self._process.returncode if self._process is not None else None
        if code != 0:
            raise processes.ProcessError(f"{self.what} failed (exit code {code}). Its log ends with:\n{self.log_tail()}")


_DEMO_SERVERS: dict[str, EmbeddedServer] = {}
"""The demo room's server of this process, by name: a notebook cell run again replaces it."""


def demo_room_server(names: Sequence[str], *, key: str = "demo room") -> EmbeddedServer:
    """A headless dev server with a namespace per name, as ``payments-lab room`` starts one.

    Called again with the same ``key`` (the notebook cell run twice), it stops the server
    it started before: one server per notebook, and the notebook's ``server.stop()``
    leaves nothing running.

    Args:
        names: The learners' namespaces.
        key: Which demo server of this process this one replaces.
    """
    earlier = _DEMO_SERVERS.pop(key, None)
    if earlier is not None:
        earlier.stop()
    server = EmbeddedServer(ui=False, namespaces=list(names)).start()
    _DEMO_SERVERS[key] = server
    return server


def _main(address: str, plan: str) -> int:
    # JSON has lists where the learners have tuples; SimulatedLearner checks the values itself.
    fields: list[dict[str, Any]] = [{k: tuple(v) if isinstance(v, list) else v for k, v in item.items()} for item in json.loads(plan)]
    learners = [SimulatedLearner(**item) for item in fields]
    try:
        results = asyncio.run(run_room(address, learners))
    except Exception:  # noqa: BLE001 - reported in the log, and by the exit code
        traceback.print_exc()
        return 1
    for name, feedback in results.items():
        print(f"{name}: {', '.join(f.outcome.value for f in feedback) or 'no check'}", flush=True)
    return 0


if __name__ == "__main__":
    code = _main(*sys.argv[1:3])
    sys.stdout.flush()
    os._exit(code)  # Temporal's core threads can abort CPython's teardown (README, Known noise)
