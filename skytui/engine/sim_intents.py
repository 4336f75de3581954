"""The sim chaos verbs as the controller carries them out: `skytui sim
preempt` and `skytui sim stockout` reach it as intents in the DB, as a
cancel does, and it acts on them through the sim Cloud it already holds.

Owns `SimIntents`, which the Reconciler asks to deliver the open intents on
each pass. May touch the store (the intents, and the job, tasks, machines and
pool worker a preemption needs to find its machine) and the `sim` Cloud of
the engine's clouds; nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from skytui.clouds.base import Cloud, CloudError
from skytui.clouds.sim import SimCloud
from skytui.engine import event_kinds
from skytui.engine.notices import notice_message
from skytui.engine.status import TaskStatus
from skytui.engine.store import (
    AsyncStore,
    ClusterStatus,
    IntentOutcome,
    IntentRow,
    SimPreempt,
    SimStockout,
    TaskRow,
)

log = logging.getLogger("skytui.sim_intents")

# The event kind of an injected reclaim, written just before the machine goes.
PREEMPT_EVENT = event_kinds.SIM_PREEMPT


def _current_task(tasks: list[TaskRow]) -> TaskRow | None:
    """The task a preemption without --task means: the first not yet
    SUCCEEDED (the last, once all have), as the job views show it."""
    for task in tasks:
        if task.status_enum is not TaskStatus.SUCCEEDED:
            return task
    return tasks[-1] if tasks else None


class SimIntents:
    """Carries out each open sim intent once, each in a coroutine of its
    own (a reclaim waits out the machine's grace period: the loop does not),
    and records its outcome, which marks it done."""

    def __init__(self, store: AsyncStore, clouds: dict[str, Cloud], *, notice_signal: str = "TERM") -> None:
        self.store = store
        self.clouds = clouds
        # What a notice sends the job's processes (config jobs.preemption_notice_signal).
        self.notice_signal = notice_signal
        # Intents being carried out: a pass before one ends must not start it again.
        self._running: dict[int, asyncio.Task[None]] = {}

    async def deliver(self) -> None:
        """Start every open intent not already under way."""
        for intent in await self.store.open_intents():
            if intent.id not in self._running:
                self._running[intent.id] = asyncio.create_task(
                    self._carry_out(intent), name=f"sim-intent-{intent.id}"
                )

    async def carry_out_waiting(self) -> None:
        """At controller start, before any job coroutine re-attaches: carry
        out the intents written while no controller ran, and wait for them.
        They were asked of the machines as they stood then (a client that ran
        them itself had done so before this start), and a reclaim racing a
        re-attach could be mistaken for the run's own end."""
        try:
            await self.deliver()
        except Exception:  # noqa: BLE001 - a DB hiccup must not stop the start; the loop delivers them
            log.exception("could not read the sim intents at start; the loop retries")
        if self._running:
            await asyncio.wait(list(self._running.values()))

    async def _carry_out(self, intent: IntentRow) -> None:
        try:
            try:
                outcome = await self._outcome(intent)
            except Exception as exc:  # noqa: BLE001 - the client waits for an answer, whatever happened
                log.exception("sim intent %d (%s) failed", intent.id, intent.request)
                outcome = IntentOutcome(error=f"the controller could not carry it out: {exc}")
            log.info("sim intent %d (%s): %s", intent.id, intent.request, outcome)
            await self.store.finish_intent(intent.id, outcome)
        finally:
            self._running.pop(intent.id, None)

    async def _outcome(self, intent: IntentRow) -> IntentOutcome:
        sim = self.clouds.get("sim")
        if not isinstance(sim, SimCloud):
            return IntentOutcome(error="the sim infra is not set up in the controller")
        request = intent.request
        if isinstance(request, SimPreempt):
            if intent.target is not None:
                # A controller stopped after choosing this machine (and perhaps
                # after taking it): finish that, and never take the job's next one
                # (not before the notice it gave ran out: the job may be checkpointing).
                await asyncio.sleep(max(0.0, intent.requested_at + request.notice_s - time.time()))
                await sim.preempt(intent.target)
                return IntentOutcome(cluster=intent.target)
            return await self._preempt(sim, intent.id, request)
        return await self._stock_out(sim, request)

    @staticmethod
    async def _stock_out(sim: SimCloud, request: SimStockout) -> IntentOutcome:
        try:
            region, stockouts = await asyncio.to_thread(sim.stock_out, request.region, request.on)
        except CloudError as exc:  # an unknown or ambiguous region
            return IntentOutcome(error=str(exc))
        return IntentOutcome(region=region, stockouts=tuple(sorted(stockouts)))

    async def _preempt(self, sim: SimCloud, intent_id: int, request: SimPreempt) -> IntentOutcome:
        """Reclaim the sim machine under a job's task now. The error says why
        not (unknown job, not on sim, no machine)."""
        job_id, task_idx = request.job_id, request.task_idx
        job = await self.store.job(job_id)
        if job is None:
            return IntentOutcome(error=f"no managed job {job_id}")
        tasks = await self.store.tasks(job_id)
        if task_idx is None:
            current = _current_task(tasks)
            task_idx = current.task_idx if current is not None else 0
        clusters = [c for c in await self.store.live_clusters(job_id) if c.task_idx == task_idx]
        worker = await self.store.worker_of_job(job_id) if job.pool else None
        if worker is not None and worker.cluster_id is not None:
            # A pool job runs on its worker's machine: preempting it takes the worker.
            cluster_row = await self.store.cluster(worker.cluster_id)
            clusters = [cluster_row] if cluster_row is not None and cluster_row.status in ClusterStatus.LIVE else []
        # A record can name a machine that is not up: one a cloud is still
        # being asked for, or one a stocked-out region just refused.
        clusters = [c for c in clusters if c.cloud != "sim" or await sim.has_machines(c.name)]
        if not clusters:
            return IntentOutcome(error=f"job {job_id} task {task_idx} has no machine up ({tasks[task_idx].status})"
                                 if task_idx < len(tasks) else f"job {job_id} has no task {task_idx}")
        cluster = clusters[-1]
        if cluster.cloud != "sim":
            return IntentOutcome(error=f"job {job_id} runs on {cluster.cloud}; only sim machines can be preempted")
        # Claimed, and on the job's timeline, before it is done: the recovery
        # that follows reads as the answer to it (and a benchmark times
        # detection from it).
        if request.notice_s > 0:
            await self._give_notice(sim, intent_id, cluster.name, job_id, task_idx, request.notice_s)
        else:
            await self.store.claim_preempt_target(
                intent_id, cluster.name, job_id=job_id, task_idx=task_idx, event_kind=PREEMPT_EVENT,
                message=f"reclaiming {cluster.name} now, as a spot preemption (skytui sim preempt)",
            )
        if not await sim.preempt(cluster.name):
            return IntentOutcome(error=f"{cluster.name} is already gone")
        return IntentOutcome(cluster=cluster.name)

    async def _give_notice(
        self, sim: SimCloud, intent_id: int, cluster: str, job_id: int, task_idx: int, notice_s: float
    ) -> None:
        """A spot interruption notice, as a cloud gives one: on the job's
        timeline with its deadline, the job's running processes signalled,
        then the notice's time waited out before the machine is taken."""
        deadline = time.time() + notice_s
        signum = None if self.notice_signal == "none" else signal.Signals[f"SIG{self.notice_signal}"]
        await self.store.claim_preempt_target(
            intent_id, cluster, job_id=job_id, task_idx=task_idx, event_kind=event_kinds.PREEMPTION_NOTICE,
            message=notice_message(cluster, deadline, self.notice_signal, source="skytui sim preempt --notice"),
        )
        await sim.give_notice(cluster, deadline, signum)
        await asyncio.sleep(max(0.0, deadline - time.time()))
        await self.store.note(
            job_id, task_idx, PREEMPT_EVENT, f"reclaiming {cluster} now, at the end of its notice (skytui sim preempt)"
        )
