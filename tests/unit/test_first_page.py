"""The TUI's first rows, read before SQLAlchemy is loaded (engine/store/first_page.py).

What a user would notice: the first rows are the same jobs, tasks, attempts
and costs the full read shows a moment later (a spot attempt stays spot, a
pipeline keeps its tasks), and a DB the reader is not sure of is left to the
Store, which migrates it, rather than shown wrong.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


from skytui.client import Client
from skytui.config import paths
from skytui.engine.status import TaskStatus
from skytui.engine.store import SCHEMA_VERSION, NewTask, Store
from skytui.engine.store.first_page import read_newest_jobs

S = TaskStatus



def submit(store: Store, name: str, n_tasks: int = 1) -> int:
    tasks = [
        NewTask(name=f"{name}-{i}", skypilot_task_id=f"sky-{{job_id}}-{i}", requested="1x[CPU:1]", num_nodes=1)
        for i in range(n_tasks)
    ]
    return store.submit_jobs(name=name, tasks=tasks, spec={"name": name}, secrets={})[0]


def fill(store: Store) -> list[int]:
    """A queued job, a pipeline whose first task was preempted on spot and
    recovered on demand, a finished job, and a cancelled one."""
    waiting = submit(store, "waiting")
    pipeline = submit(store, "pipeline", n_tasks=2)
    store.transition_task(pipeline, 0, S.STARTING)
    first = store.start_attempt(pipeline, 0, infra="sim/us-east-1", instance_type="g5.xlarge", use_spot=True,
                                price_per_hour=0.42)
    store.transition_task(pipeline, 0, S.RUNNING)
    store.end_attempt(pipeline, 0, first, reason="preempted")
    store.transition_task(pipeline, 0, S.RECOVERING)
    store.start_attempt(pipeline, 0, infra="sim/us-west-2", instance_type="g5.xlarge", use_spot=False,
                        price_per_hour=1.01)
    store.transition_task(pipeline, 0, S.RUNNING, recoveries=1)
    done = submit(store, "done")
    store.transition_task(done, 0, S.STARTING)
    attempt = store.start_attempt(done, 0, infra="local", instance_type=None, use_spot=False)
    store.transition_task(done, 0, S.RUNNING)
    store.transition_task(done, 0, S.SUCCEEDED, exit_code=0)
    store.end_attempt(done, 0, attempt, reason="succeeded", exit_code=0)
    cancelled = submit(store, "cancelled")
    store.request_cancel([cancelled])
    store.cancel_unstarted([cancelled])
    return [waiting, pipeline, done, cancelled]


def test_the_first_page_is_what_the_store_reads(store: Store) -> None:
    fill(store)
    for limit in (1, 3, 200):
        newest = read_newest_jobs(paths().db_file, limit)
        assert newest is not None
        jobs = store.jobs(limit=limit)
        ids = [job.id for job in jobs]
        assert newest.jobs == jobs
        assert newest.tasks == store.tasks_of_jobs(ids)
        assert newest.attempts == store.attempts_of_jobs(ids)
        assert newest.last_event_id == store.last_event_id()
    pipeline_attempts = read_newest_jobs(paths().db_file, 200)
    assert pipeline_attempts is not None
    # SQLite answers 0/1, which compare equal to False/True: the types are checked too.
    spot = [a.use_spot for attempts in pipeline_attempts.attempts.values() for a in attempts]
    assert spot.count(True) == 1 and all(isinstance(flag, bool) for flag in spot)
    placed = [t.use_spot for tasks in pipeline_attempts.tasks.values() for t in tasks if t.use_spot is not None]
    assert placed == [False, False] and all(isinstance(flag, bool) for flag in placed)


def test_the_client_shows_the_same_views_either_way(store: Store) -> None:
    fill(store)
    fresh = Client()  # its store not opened: the first page comes without SQLAlchemy
    quick, quick_event = fresh.snapshot(limit=200)
    assert "store" not in fresh.__dict__
    full, full_event = Client().queue(limit=200), store.last_event_id()
    assert [(v.job, v.tasks, v.attempts) for v in quick] == [(v.job, v.tasks, v.attempts) for v in full]
    assert quick_event == full_event
    assert [v.cost(2e9, None) for v in quick] == [v.cost(2e9, None) for v in full]


def test_a_db_it_is_not_sure_of_is_left_to_the_store(home: Path) -> None:
    assert read_newest_jobs(paths().db_file, 200) is None  # no DB yet: the Store makes it
    store = Store(paths().db_url)
    job_id = submit(store, "old")
    store.close()
    with sqlite3.connect(paths().db_file) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION - 1),))
    assert read_newest_jobs(paths().db_file, 200) is None
    views, _ = Client().snapshot(limit=200)  # through the Store, which brings the DB up to date first
    assert [v.job.id for v in views] == [job_id]
    assert read_newest_jobs(paths().db_file, 200) is not None


def test_the_tui_first_rows_load_no_sqlalchemy(store: Store, home: Path) -> None:
    """The import is 0.1-0.25 s of a 0.6 s start: the first rows must not wait for it."""
    fill(store)
    probe = (
        "import sys\n"
        "from skytui.app import SkyTUI\n"
        "from skytui.client import Client\n"
        "views, _ = Client().snapshot(limit=200)\n"
        "print(len(views), 'sqlalchemy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "SKYTUI_HOME": str(home)},
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert out == ["4", "False"]
