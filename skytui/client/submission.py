"""A job or a pool in the form the controller stores it, made on the
client's side: what `Client.submit` writes, and what a `RemoteClient` sends
to its controller machine (after its files went there).

Owns `Submission`, `prepare_submission` and `prepare_pool`. May touch the
spec's models and stored form, and the planning helpers (loaded lazily).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skytui.client.views import skypilot_task_id
from skytui.config import Paths, load_config
from skytui.engine.status import AUXILIARY, PRIMARY
from skytui.engine.store import NewTask

if TYPE_CHECKING:
    from skytui.spec import Pipeline, PoolDefinition


@dataclass(frozen=True)
class Submission:
    """A job as the store takes it: its tasks' rows, its stored spec, and its secrets apart."""

    name: str
    tasks: list[NewTask]
    spec: dict[str, Any]
    secrets: dict[str, dict[str, str]]
    source: str | None
    priority: int
    max_cost_usd: float | None = None
    """The job's budget (`--max-cost`, or jobs.max_cost_usd): stopped when reached."""
    stall_timeout_s: float | None = None
    """RUNNING this long without a log byte is a stall (`--stall-timeout`, or jobs.stall_timeout)."""


def prepare_submission(
    pipeline: Pipeline, priority: int | None = None, *, max_cost_usd: float | None = None,
    stall_timeout_s: float | None = None, paths: Paths | None = None,
) -> Submission:
    """The job as the store takes it; a budget or stall timeout not given
    comes from config.yaml (`jobs.max_cost_usd`, `jobs.stall_timeout`) when
    `paths` says where that is."""
    if paths is not None and (max_cost_usd is None or stall_timeout_s is None):
        defaults = load_config(paths).jobs
        max_cost_usd = max_cost_usd if max_cost_usd is not None else defaults.max_cost_usd
        stall_timeout_s = stall_timeout_s if stall_timeout_s is not None else defaults.stall_timeout_s
    from skytui.client.planning import requested_str
    from skytui.spec.stored import stored_job_secrets, stored_job_spec

    now = time.time()
    tasks = [
        NewTask(
            name=task.name or f"{pipeline.name}-{i}",
            skypilot_task_id=skypilot_task_id(pipeline.name, task.name or str(i), i, pipeline.is_pipeline, now),
            requested=requested_str(task.resources, task.num_nodes),
            num_nodes=task.num_nodes,
            group_role=(PRIMARY if pipeline.is_primary(task.name or "") else AUXILIARY)
            if pipeline.is_group else None,
        )
        for i, task in enumerate(pipeline.tasks)
    ]
    return Submission(
        name=pipeline.name, tasks=tasks, spec=stored_job_spec(pipeline), secrets=stored_job_secrets(pipeline),
        source=os.path.abspath(pipeline.source) if pipeline.source else None,
        priority=priority if priority is not None else (pipeline.tasks[0].resources.priority or 0),
        max_cost_usd=max_cost_usd, stall_timeout_s=stall_timeout_s,
    )


def prepare_pool(definition: PoolDefinition, workers: int | None) -> tuple[dict[str, Any], dict[str, str]]:
    """A pool's (stored spec, secrets), with `--workers` applied."""
    from skytui.spec.stored import stored_pool_secrets, stored_pool_spec

    pool_spec = definition.spec
    if workers is not None:
        if pool_spec.autoscaling:
            raise ValueError("--workers cannot be combined with an autoscaling pool YAML")
        pool_spec = pool_spec.model_copy(update={"workers": workers})
    return stored_pool_spec(definition.task, pool_spec), stored_pool_secrets(definition.task)
