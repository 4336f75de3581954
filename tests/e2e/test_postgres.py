"""The same engine on PostgreSQL: a team shares one controller through one DB.

Nothing in the engine may assume SQLite beyond the default URL; these tests
run the store's guarantees and a whole job through a real PostgreSQL server.
"""

from __future__ import annotations

import threading

import pytest
from fixtures.env import Env

from skytui.engine.status import IllegalTransition, TaskStatus
from skytui.engine.store import NewTask, Store

S = TaskStatus


def _submit(store: Store, tasks: int = 1) -> int:
    return store.submit_jobs(
        name="pg",
        tasks=[NewTask(f"t{i}", "id-{job_id}-" + str(i), "-", 1) for i in range(tasks)],
        spec={"name": "pg"},
        secrets={},
    )[0]


def test_store_guarantees_hold_on_postgres(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        assert store.schema_version() >= 1
        job_id = _submit(store, tasks=2)
        assert store.tasks(job_id)[1].skypilot_task_id == f"id-{job_id}-1"
        assert store.transition_task(job_id, 0, S.STARTING)
        assert store.transition_task(job_id, 0, S.RUNNING)
        assert store.transition_task(job_id, 0, S.SUCCEEDED)
        with pytest.raises(IllegalTransition):
            store.transition_task(job_id, 0, S.RUNNING)
        assert store.transition_task(job_id, 1, S.RUNNING, expect=S.STARTING) is False
        assert store.job(job_id).status == "PENDING"  # the pipeline's current task
        store.cancel_pending_tasks(job_id, "test")
        assert store.job(job_id).status == "CANCELLED"
        events = [(e.from_status, e.to_status) for e in store.events(job_id=job_id) if e.kind == "status"]
        assert events == [("PENDING", "STARTING"), ("STARTING", "RUNNING"), ("RUNNING", "SUCCEEDED"),
                          ("PENDING", "CANCELLED")]
        assert [j.id for j in store.runnable_jobs(set(), 10)] == []
    finally:
        store.close()


def test_concurrent_writers_on_postgres_never_lose_an_update(pg_url: str) -> None:
    """Row locks make each compare-and-set atomic across connections."""
    setup = Store(pg_url)
    job_id = _submit(setup)
    setup.close()
    chain = [S.STARTING, S.RUNNING, S.RECOVERING, S.RUNNING, S.RECOVERING, S.RUNNING, S.SUCCEEDED]
    successes: list[TaskStatus] = []
    lock = threading.Lock()

    def writer() -> None:
        store = Store(pg_url)
        try:
            for wanted in chain:
                current = store.task(job_id, 0).status_enum
                try:
                    if store.transition_task(job_id, 0, wanted, expect=current):
                        with lock:
                            successes.append(wanted)
                except IllegalTransition:
                    pass
        finally:
            store.close()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check = Store(pg_url)
    events = [e for e in check.events(job_id=job_id) if e.kind == "status"]
    assert len(events) == len(successes)
    previous = "PENDING"
    for event in events:
        assert event.from_status == previous
        previous = event.to_status
    assert check.task(job_id, 0).status == previous
    check.close()


def test_only_one_controller_owns_a_postgres_db(pg_url: str) -> None:
    first, second = Store(pg_url), Store(pg_url)
    try:
        assert first.hold_controller_lock()
        assert not second.hold_controller_lock()
        first.close()
        assert second.hold_controller_lock()
    finally:
        second.close()


def test_a_job_runs_end_to_end_on_postgres(env: Env, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYTUI_DB_URL", pg_url)
    env.db_url = pg_url
    pipeline = env.write("p.yaml", "name: pgpipe\n---\nname: a\nrun: echo from-a\n---\nname: b\nrun: exit 4\n")
    result = env.cli("--run", str(pipeline))
    assert result.code == 1 and "(a, pid=" in result.stdout
    job = env.queue()[0]
    assert [t["status"] for t in job["tasks"]] == ["SUCCEEDED", "FAILED"]
    assert job["tasks"][1]["exit_code"] == 4
    assert not (env.home / "state.db").exists()  # everything went to PostgreSQL
