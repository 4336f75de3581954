"""A job's phases on its machines: the environment they run with and the
run of one phase (start or re-attach, follow, its log segments on record).

Owns the SKYPILOT_* variables a task sees (with the pool's and the task's
envs and secrets, and a job group's names) and `_run_phase`. May touch the
store's log segments and the job's log files; decides nothing about the
task's status (the caller reads the exit codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from skytui.clouds.preemption_notices import notice_env
from skytui.engine.file_sync import WORKDIR
from skytui.engine.job_base import JobBase, phase_id_for
from skytui.engine.notice_watch import NoticeWatch
from skytui.engine.phase_runner import (
    UNREACHABLE_GRACE_S,
    LiveCluster,
    NodeLost,
    PhaseNeverBegan,
    PhaseOutcome,
)
from skytui.logs.store import file_size, task_log_path
from skytui.spec import Task


class PhaseSteps(JobBase):
    """The phases of a job's tasks (see the module docstring)."""

    def _env(self, cluster: LiveCluster, idx: int, task: Task, rank: int, phase: str) -> dict[str, str]:
        ips = "\n".join(info.internal_ip for info in cluster.handle.nodes)
        gpus = sum(cluster.handle.accelerators.values())
        row_task_id = self._task_ids[idx]
        env: dict[str, str] = {}
        if self._pool_task is not None:
            env.update(self._pool_task.envs)
            env.update(self._pool_task.secrets)
        env.update(task.envs)
        env.update(task.secrets)
        env.update(
            SKYPILOT_TASK_ID=row_task_id,
            SKYPILOT_TASK_IDS="\n".join(self._task_ids),
            SKYPILOT_JOB_ID=str(self.job.id),
            SKYPILOT_MANAGED_JOB_ID=str(self.job.id),
            SKYPILOT_JOB_RANK=str(self.job.job_rank),
            SKYPILOT_NUM_JOBS=str(self.job.num_jobs),
            SKYPILOT_NUM_NODES=str(len(cluster.handle.nodes)),
            SKYPILOT_CLUSTER_INFO=json.dumps(
                {"cluster_name": cluster.row.name, "cloud": cluster.row.cloud,
                 "region": cluster.row.region, "zone": cluster.row.zone}
            ),
        )
        # A spot VM's phases watch its metadata for the infra's notice (none elsewhere).
        env.update(notice_env(cluster.row.cloud, cluster.row.use_spot, self.ctx.notice_signal))
        if self.group is not None:
            env.update(self.group.env(self.job.id))
            if self._names is not None:
                env.update(self._names.env(cluster, rank, env.get("LD_PRELOAD")))
        if phase == "setup":
            env.update(
                SKYPILOT_SETUP_NODE_RANK=str(rank),
                SKYPILOT_SETUP_NODE_IPS=ips,
                SKYPILOT_SETUP_NUM_GPUS_PER_NODE=f"{gpus:g}",
            )
        else:
            env.update(
                SKYPILOT_NODE_RANK=str(rank),
                SKYPILOT_NODE_IPS=ips,
                SKYPILOT_NUM_GPUS_PER_NODE=f"{gpus:g}",
            )
        return env

    async def _run_phase(
        self, cluster: LiveCluster, idx: int, attempt: int, phase: str, script: str, task: Task
    ) -> PhaseOutcome:
        """Start (or re-attach to) a phase on every node and wait for its exit
        codes; each node's output goes to its log, in a segment on record."""
        phase_id = phase_id_for(self.job.id, idx, attempt, phase)
        paths = [
            task_log_path(self.ctx.paths.job_logs, self.job.id, idx, rank)
            for rank in range(len(cluster.nodes))
        ]
        segments = [
            await self.store.open_segment(
                self.job.id, idx, attempt, rank, phase, await asyncio.to_thread(file_size, paths[rank])
            )
            for rank in range(len(cluster.nodes))
        ]
        # A pool job runs in the pool's workdir (its own was ignored, as in SkyPilot).
        owner = self._pool_task if self.job.pool is not None else task
        cwd = cluster.nodes[0].info.path(WORKDIR) if owner is not None and isinstance(owner.workdir, str) else None
        runner = self._runner(cluster)

        def env_for(rank: int) -> dict[str, str]:
            return self._env(cluster, idx, task, rank, phase)

        pids = await runner.start(
            phase_id, script, env_for, cwd=cwd,
            give_up_after_s=None if phase == "run" and any(s.pid for s in segments) else UNREACHABLE_GRACE_S,
        )
        for segment, pid in zip(segments, pids):
            if segment.pid != pid:
                await self.store.update_segment(segment.id, pid=pid)
        if any(not s.finished for s in segments):
            self._say(f"task {idx}: {phase} started (attempt {attempt}, pid {', '.join(map(str, pids))})")

        open_ranks = {rank for rank, segment in enumerate(segments) if not segment.finished}

        async def node_done(rank: int) -> None:
            open_ranks.discard(rank)
            if phase == "run" and not open_ranks:
                # The run's last segment closes in the transaction that ends
                # its attempt (`_unclosed_segments`): one commit per job end.
                self._unclosed_segments.setdefault(idx, []).append(segments[rank].id)
                return
            await self.store.update_segment(segments[rank].id, finished=True)

        # The infra's notice, on the timeline while the phase runs (the node or the kubelet signals the job).
        watch = NoticeWatch(self.store, cluster, phase_id, job_id=self.job.id, task_idx=idx,
                            signal_name=self.ctx.notice_signal)
        notices = asyncio.create_task(watch.run(), name=f"notices-{phase_id}")
        try:
            while True:
                try:
                    return await runner.follow(phase_id, paths, [s.start_offset for s in segments], node_done)
                except PhaseNeverBegan as never:
                    rank = never.rank
                    self._say(f"task {idx}: {phase} on node {rank} was killed before it began; starting it again")
                    [pid] = await runner.start(phase_id, script, env_for, cwd=cwd, ranks=[rank])
                    await self.store.update_segment(segments[rank].id, pid=pid)
        except NodeLost:
            with contextlib.suppress(Exception):
                await watch.last_look()
            raise
        finally:
            notices.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await notices
