"""`jobs queue --json` in one read: the same document as the per-job views.

The JSON queue is written by the database itself (SQLite's json_object,
PostgreSQL's json_build_object) instead of one record per row; whatever the
mix of jobs (pipelines, priced attempts, a task running now, finished and
unfinished ones, a limit, a filter), it must say exactly what the per-job
views say, in the same key order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skytui.client import Client
from skytui.config import paths
from skytui.engine.status import TaskStatus
from skytui.engine.store import NewTask, Store

S = TaskStatus


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.needs("postgresql"))])
def client(home: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """Each database writes the JSON itself, with its own functions: both are read."""
    if request.param == "postgresql":
        monkeypatch.setenv("SKYTUI_DB_URL", request.getfixturevalue("pg_url"))
    c = Client(paths())
    assert c.store.url.startswith(request.param)
    yield c
    c.close()


def build_mixed_queue(store: Store) -> None:
    def submit(n_tasks: int, num_jobs: int = 1, pool: str | None = None) -> list[int]:
        tasks = [NewTask(f"t{i}", f"sky-managed-x_{{job_id}}-{i}", "1x[CPU:1]", 1) for i in range(n_tasks)]
        return store.submit_jobs(name="mix", tasks=tasks, spec={}, secrets={}, num_jobs=num_jobs, pool=pool)

    pending = submit(1, num_jobs=3)
    pipeline = submit(3)[0]
    running = submit(1)[0]
    recovered = submit(1)[0]
    pool_job = submit(1, pool="p")[0]
    # A pipeline: task 0 succeeded on a priced machine, task 1 runs on another.
    store.transition_task(pipeline, 0, S.STARTING)
    store.start_attempt(pipeline, 0, infra="sim/aws/us-east-1", instance_type="c6i.large", use_spot=True,
                        price_per_hour=0.0321)
    store.transition_task(pipeline, 0, S.RUNNING)
    store.transition_task(pipeline, 0, S.SUCCEEDED, exit_code=0)
    store.end_attempt(pipeline, 0, 1, reason="succeeded", exit_code=0)
    store.transition_task(pipeline, 1, S.STARTING)
    store.start_attempt(pipeline, 1, infra="sim/gcp/us-central1", instance_type="n2-standard-2",
                        use_spot=False, price_per_hour=0.097)
    store.transition_task(pipeline, 1, S.RUNNING)
    # Running on an unpriced machine; another preempted once, then failed.
    store.transition_task(running, 0, S.STARTING)
    store.start_attempt(running, 0, infra="local", instance_type="local", use_spot=False)
    store.transition_task(running, 0, S.RUNNING)
    store.transition_task(recovered, 0, S.STARTING)
    store.start_attempt(recovered, 0, infra="sim/aws/us-west-2", instance_type="g4dn.xlarge", use_spot=True,
                        price_per_hour=0.1578)
    store.transition_task(recovered, 0, S.RUNNING)
    store.end_attempt(recovered, 0, 1, reason="preempted")
    store.transition_task(recovered, 0, S.RECOVERING, recoveries=1)
    store.start_attempt(recovered, 0, infra="sim/aws/us-east-1", instance_type="g4dn.xlarge", use_spot=True,
                        price_per_hour=0.1612)
    store.transition_task(recovered, 0, S.RUNNING)
    store.transition_task(recovered, 0, S.FAILED, exit_code=3, failure_reason="job exited with exit code 3")
    store.end_attempt(recovered, 0, 2, reason="failed", exit_code=3)
    store.request_cancel(pending[:1])
    assert pool_job


@pytest.mark.parametrize(
    "options", [{}, {"limit": 2}, {"skip_finished": True}, {"skip_finished": True, "limit": 1}]
)
def test_json_queue_says_what_the_job_views_say(client: Client, options: dict[str, object]) -> None:
    build_mixed_queue(client.store)
    now = time.time() + 7200  # read two hours on: open attempts have cost something, running tasks ran
    views = client.queue(**options)  # type: ignore[arg-type]
    expected = {"jobs": [view.to_json(now) for view in views]}
    document = json.loads(client.queue_json(now=now, **options))  # type: ignore[arg-type]
    assert document == expected
    for job, view in zip(document["jobs"], expected["jobs"], strict=True):
        assert list(job) == list(view)
        assert [list(task) for task in job["tasks"]] == [list(task) for task in view["tasks"]]

    if "limit" not in options:  # the newest jobs (what a limit keeps) have no priced machine up
        assert any(job["cost_usd"] for job in expected["jobs"])


def test_an_empty_queue_is_an_empty_document(client: Client) -> None:
    assert json.loads(client.queue_json()) == {"jobs": []}

