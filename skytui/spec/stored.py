"""The stored form of a job's and a pool's spec: the one owner of its shape.

What `jobs launch` and `jobs pool apply` write to the state DB, and what the
controller, the pool manager and `pool apply --workers` read back. The JSON
is the models' `model_dump(mode="json")` without secrets (those are stored
apart, by task index), so a DB written by any earlier skytui still loads:
change a shape here only together with a migration of the rows.

Imports only the models (`task`, `pool`) of its own package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skytui.spec.pool import PoolSpec
from skytui.spec.task import Pipeline, Task


def stored_job_spec(pipeline: Pipeline) -> dict[str, Any]:
    """A job's spec as stored: its name, source and tasks (no secrets), and
    for a job group its execution and termination delays."""
    spec: dict[str, Any] = {
        "name": pipeline.name,
        "source": pipeline.source,
        "tasks": [task.model_dump(mode="json", exclude={"secrets"}) for task in pipeline.tasks],
    }
    if pipeline.is_group:
        spec["execution"] = "parallel"
        spec["termination_delay_s"] = pipeline.termination_delay_s
    return spec


def stored_job_secrets(pipeline: Pipeline) -> dict[str, dict[str, str]]:
    """The secrets of a job's tasks, by task index (as a string), stored apart
    from the spec; tasks without secrets are left out."""
    return {str(i): dict(task.secrets) for i, task in enumerate(pipeline.tasks) if task.secrets}


def tasks_from_stored(spec: dict[str, Any], secrets: dict[str, dict[str, str]]) -> list[Task]:
    """Rebuild the job's tasks from the stored spec and their secrets."""
    return [
        Task.model_validate({**task, "secrets": secrets.get(str(index), {})})
        for index, task in enumerate(spec["tasks"])
    ]


@dataclass(frozen=True)
class StoredGroup:
    """A job group's header as stored: its name and how long each auxiliary
    task (or "default") runs on after the primaries all succeeded."""

    name: str
    termination_delay_s: dict[str, float]


def stored_group(spec: dict[str, Any]) -> StoredGroup | None:
    """The job group header of a stored job spec; None for a single task or a pipeline."""
    if spec.get("execution") != "parallel":
        return None
    return StoredGroup(str(spec["name"]), {k: float(v) for k, v in (spec.get("termination_delay_s") or {}).items()})


def stored_pool_spec(task: Task, pool: PoolSpec) -> dict[str, Any]:
    """A pool's spec as stored: the workers' task (no secrets, no pool) and the pool's shape."""
    return {"task": task.model_dump(mode="json", exclude={"secrets", "pool"}), "pool": pool.model_dump(mode="json")}


def stored_pool_secrets(task: Task) -> dict[str, str]:
    """The secrets of a pool's workers' task, stored apart from the spec."""
    return dict(task.secrets)


def pool_from_stored(spec: dict[str, Any], secrets: dict[str, str]) -> tuple[Task, PoolSpec]:
    """Rebuild the workers' task and the pool's shape from the stored spec and secrets."""
    return Task.model_validate({**spec["task"], "secrets": secrets}), PoolSpec.model_validate(spec["pool"])


def stored_pool_workers(spec: dict[str, Any]) -> int | None:
    """The fixed number of workers of a stored pool; None when it autoscales."""
    workers: int | None = spec["pool"].get("workers")
    return workers


def stored_pool_min_workers(spec: dict[str, Any]) -> int:
    """The fewest workers an autoscaling stored pool keeps (0 when unset)."""
    return int(spec["pool"].get("min_workers") or 0)


def stored_pool_resized(spec: dict[str, Any], workers: int) -> dict[str, Any]:
    """A stored pool spec with a new fixed number of workers, the rest as stored."""
    return {**spec, "pool": {**spec["pool"], "workers": workers}}
