"""Getting a task a machine with its setup done: re-attach to the one it had,
provision a new one (failing over across places, waiting PENDING for
capacity), or take a pool's worker (job_worker); then copy its files and
run its setup.

Owns the attempt's start (its row, its cluster row, the task's STARTING /
RECOVERING / PENDING while it waits) and the launch slot. May touch the
store, the infras (through the Provisioner) and the job's files; what the
task does after (run, watch, recover) is the controller's.
"""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
import time

from skytui.clouds.base import ClusterHandle, ClusterState, InstanceOffer, PrecheckError
from skytui.engine.file_sync import FileSyncError, UnsafePathError, sync_task_files
from skytui.engine.job_base import TaskFailed, log
from skytui.engine.job_cleanup import CleanupSteps
from skytui.engine.job_phases import PhaseSteps
from skytui.engine.optimizer import InfeasibleError, plan_task
from skytui.engine.phase_runner import LiveCluster
from skytui.engine.provisioner import NoCapacity, Provisioner
from skytui.engine.recovery import CapacityBackoff, RecoveryPolicy, launch_order
from skytui.engine.status import TaskStatus
from skytui.engine.store import CancelRequested, ClusterStatus, TaskRow
from skytui.spec import Task

S = TaskStatus


def _market(offer: InstanceOffer) -> str:
    return "spot" if offer.use_spot else "on-demand"


def _refusals(errors: list[str]) -> str:
    """"2 place(s) said no (sim:aws/us-east-1: stocked out; …)": the first few, for one line."""
    shown = "; ".join(errors[:2]) + ("; …" if len(errors) > 2 else "")
    return f"{len(errors)} place(s) said no ({shown})"


def cluster_name_for(task_name: str, job_id: int, task_idx: int, attempt: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", task_name.lower()).strip("-")[:20] or "task"
    return f"{slug}-{job_id}-{task_idx}-{attempt}"


class LaunchSteps(CleanupSteps, PhaseSteps):
    """A task's launch (see the module docstring)."""

    async def _launch(self, row: TaskRow, task: Task, policy: RecoveryPolicy) -> tuple[LiveCluster, int]:
        """Get the task a machine with setup done: re-attach or provision,
        holding a launch slot; when no place has capacity, wait PENDING
        (slot given back) and try again, forever, as SkyPilot does."""
        idx = row.task_idx
        if self.job.pool is not None:
            return await self._launch_on_worker(row)
        backoff = CapacityBackoff(self.ctx.recovery.backoff_initial_s, self.ctx.recovery.backoff_max_s)
        while True:
            async with self.ctx.scheduler.launch_slot(on_wait=lambda why: self._waiting(idx, why)):
                row = await self.store.task(self.job.id, idx)
                if row.status_enum.is_terminal:
                    raise CancelRequested(self.job.id)  # cancelled while it waited for the slot
                try:
                    cluster = await self._reattach(row) or await self._provision(row, task, policy)
                except NoCapacity as exc:
                    wait = backoff.next_wait()
                    await self._wait_for_capacity(idx, exc, wait, backoff.rounds)
                else:
                    attempt = cluster.row.attempt_no or row.attempt
                    await self._placed(idx)
                    await self._runner(cluster).connect()
                    await self._publish_group_names()
                    if not await self._any_phase_started(idx, attempt):
                        await self._sync_files(cluster, idx, task)
                    if task.setup:
                        codes = (await self._run_phase(cluster, idx, attempt, "setup", task.setup, task)).codes
                        failed = [(rank, code) for rank, code in enumerate(codes) if code != 0]
                        if failed:
                            rank, code = failed[0]
                            raise TaskFailed(
                                S.FAILED_SETUP, f"setup failed with exit code {code} on node {rank}", code,
                                exit_codes=codes,
                            )
                    return cluster, attempt
            await asyncio.sleep(wait)

    async def _placed(self, idx: int, *, keep_reason: bool = False) -> None:
        """A place said yes: a task that waited PENDING for one starts now
        (a relaunch stays a recovery). While its machine boots, the reason
        ("provisioning on …") stays shown."""
        row = await self.store.task(self.job.id, idx)
        if row.status_enum is S.PENDING:
            await self.store.transition_task(
                self.job.id, idx, S.RECOVERING if row.recoveries else S.STARTING,
                status_reason=row.status_reason if keep_reason else None,
            )
        elif row.status_reason and not keep_reason:
            await self.store.set_task_fields(self.job.id, idx, status_reason=None)

    async def _wait_for_capacity(self, idx: int, exc: NoCapacity, wait: float, rounds: int) -> None:
        """One round found no place: PENDING until the next, told once per round."""
        # The next round starts from the cheapest place again: the place that
        # was lost is no worse than any other once every place has said no.
        self._lost_at.pop(idx, None)
        next_at = time.strftime("%H:%M:%S", time.localtime(time.time() + wait))
        why = f"{exc}; round {rounds}, next at {next_at} (in {wait:.0f}s)"
        self._say(f"task {idx}: {why}")
        short = f"no capacity in any of {exc.places} place(s); next round at {next_at}"
        row = await self.store.task(self.job.id, idx)
        if row.status_enum is S.PENDING:
            await self.store.note(self.job.id, idx, "capacity", f"round {rounds}: {why}")
            await self.store.set_task_fields(self.job.id, idx, status_reason=short)
        else:
            await self.store.transition_task(
                self.job.id, idx, S.PENDING, message=f"round {rounds}: {why}", status_reason=short,
            )

    async def _any_phase_started(self, idx: int, attempt: int) -> bool:
        return any(s.attempt_no == attempt for s in await self.store.segments(self.job.id, idx))

    async def _reattach(self, row: TaskRow) -> LiveCluster | None:
        """The current attempt's cluster if it is still up; anything else of the
        task still standing (half-provisioned, gone under us) is torn down."""
        idx = row.task_idx
        if self.job.pool is not None and self.ctx.pools is not None:
            # Even before an attempt: the controller may have died between
            # taking a worker and recording the attempt on it.
            return await self._reattach_worker(row)
        for existing in await self.store.live_clusters(self.job.id):
            if existing.task_idx != idx:
                continue
            cloud = self.ctx.clouds.get(existing.cloud)
            if (
                cloud is not None
                and existing.status == ClusterStatus.UP
                and existing.attempt_no == row.attempt
                and existing.handle_json
            ):
                handle = ClusterHandle.from_json(existing.handle)
                if await cloud.cluster_state(handle) is ClusterState.UP:
                    self._say(f"task {idx}: re-attached to {existing.name}")
                    cluster = LiveCluster(existing, handle, cloud)
                    self._clusters[existing.id] = cluster
                    return cluster
            # A machine of an earlier attempt, or one that came up just as the
            # controller died, before its attempt was recorded: not ours to keep.
            await self._teardown(existing, reason="not usable after a controller restart")
        if row.attempt:
            # Idempotent: an attempt already ended keeps its first reason.
            await self.store.end_attempt(
                self.job.id, idx, row.attempt, reason="its machine was lost while the controller was down"
            )
        return None

    async def _provision(self, row: TaskRow, task: Task, policy: RecoveryPolicy) -> LiveCluster:
        """Ask each place in turn (cheapest first, as the strategy orders
        them) until one says yes. Only a machine that came up opens an
        attempt: its cost runs from then, and places that said no leave no
        attempt, no log line and no record behind (NoCapacity sums them up)."""
        idx = row.task_idx
        try:
            plan = plan_task(task, self.ctx.clouds)
        except InfeasibleError as exc:
            # Infeasible now (an infra was disabled, say): fail at once, never wait PENDING.
            raise TaskFailed(S.FAILED_PRECHECKS, str(exc)) from exc
        offers = launch_order(plan.offers, policy.strategy, self._lost_at.get(idx))
        base_name = cluster_name_for(row.name, self.job.id, idx, row.attempt + 1)

        async def name_for(tried: int) -> str:
            # A fresh name per place (a refused one may still be winding down),
            # and past one left over from before a controller restart.
            if tried or await self.store.cluster_name_taken(base_name):
                return f"{base_name}-{secrets.token_hex(2)}"
            return base_name

        async def trying(tried: int, offer: InstanceOffer) -> None:
            await self.store.set_task_fields(
                self.job.id, idx,
                status_reason=f"provisioning on {offer.infra} ({offer.instance_type}, {_market(offer)}); "
                              f"place {tried + 1} of {len(offers)}",
            )

        async def record(offer: InstanceOffer, name: str) -> int:
            log.debug("job %s task %s: trying %s on %s", self.job.id, idx, name, offer.infra)
            cluster_id: int = await self.store.insert_cluster(
                name=name, cloud=offer.cloud, region=offer.region, zone=offer.zone,
                instance_type=offer.instance_type, use_spot=offer.use_spot,
                num_nodes=task.num_nodes, job_id=self.job.id, task_idx=idx, attempt_no=row.attempt + 1,
                price_per_hour=offer.price_per_hour * task.num_nodes,
            )
            return cluster_id

        try:
            placed = await Provisioner(self.store, self.ctx.clouds).provision_with_failover(
                offers, num_nodes=task.num_nodes, labels={"skytui-job": str(self.job.id), "skytui-task": str(idx)},
                name_for=name_for, record=record, trying=trying,
                accepted=functools.partial(self._placed, idx, keep_reason=True),
            )
        except PrecheckError as exc:
            raise TaskFailed(S.FAILED_PRECHECKS, str(exc)) from exc
        offer = placed.offer
        refused = f"after {_refusals(placed.refusals)}" if placed.refusals else None
        attempt = await self.store.start_attempt(
            self.job.id, idx, infra=offer.infra, instance_type=offer.instance_type,
            use_spot=offer.use_spot, price_per_hour=offer.price_per_hour * task.num_nodes, message=refused,
        )
        await self.store.set_attempt_cluster(self.job.id, idx, attempt, placed.cluster_id)
        self._say(f"task {idx}: {placed.name} is up on {offer.infra} ({offer.instance_type}, {_market(offer)}, "
                  f"{task.num_nodes} node(s))" + (f", {refused}" if refused else ""))
        cluster_row = await self.store.cluster(placed.cluster_id)
        assert cluster_row is not None
        cluster = LiveCluster(cluster_row, placed.handle, self.ctx.clouds[offer.cloud])
        self._clusters[placed.cluster_id] = cluster
        return cluster

    async def _sync_files(self, cluster: LiveCluster, idx: int, task: Task) -> None:
        try:
            await self._runner(cluster).while_up("copying files", lambda: sync_task_files(
                cluster.nodes, task, absolute_mounts=cluster.cloud.absolute_mounts,
                staging=self._staging(), staging_part=f"task-{idx}" if idx else "",
                buckets=self._buckets().for_task(idx, cluster.row.cloud, cluster.row.region),
            ))
        except UnsafePathError as exc:
            # The bucket or the spec points outside its target: nothing was written there.
            raise TaskFailed(S.FAILED_SETUP, str(exc)) from exc
        except FileSyncError as exc:
            raise TaskFailed(S.FAILED_PRECHECKS, str(exc)) from exc
