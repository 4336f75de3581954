"""The state DB through the real Store on a real SQLite file.

What users notice of the store: a job's status and its event feed always
agree, a finished job is never rewritten, JOB DURATION counts running time
only, cancel is accepted once for a job that can still be cancelled, a newer
DB is refused instead of being corrupted, and the DB is private to its owner.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from skytui.config import paths
from skytui.engine.status import (
    IN_PROGRESS,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    TaskStatus,
    can_transition,
    job_status,
)
from skytui.engine.store import (
    SCHEMA_VERSION,
    ClusterStatus,
    NewTask,
    Store,
    StoreError,
)

S = TaskStatus



def new_task(name: str = "train", idx: int = 0) -> NewTask:
    return NewTask(
        name=name,
        skypilot_task_id=f"sky-managed-2024-01-01-00-00-00-000000_pipe_{{job_id}}-{idx}",
        requested="1x[CPU:1]",
        num_nodes=1,
    )


def submit(store: Store, n_tasks: int = 1, *, name: str = "job", priority: int = 0) -> int:
    return store.submit_jobs(
        name=name,
        tasks=[new_task(f"t{i}", i) for i in range(n_tasks)],
        spec={"name": name},
        secrets={},
        priority=priority,
    )[0]


def status_events(store: Store, job_id: int) -> list[tuple[int | None, str | None, str | None]]:
    return [
        (e.task_idx, e.from_status, e.to_status)
        for e in store.events(job_id=job_id)
        if e.kind == "status"
    ]


def walk(store: Store, job_id: int, task_idx: int, *path: TaskStatus) -> None:
    for to in path:
        assert store.transition_task(job_id, task_idx, to) is True


# ---------------------------------------------------------------- submission


def test_submit_fills_in_job_id_and_starts_pending(store: Store) -> None:
    first = submit(store, 1, name="a")
    second = submit(store, 3, name="pipe")
    assert second == first + 1

    tasks = store.tasks(second)
    assert [t.task_idx for t in tasks] == [0, 1, 2]
    assert [t.name for t in tasks] == ["t0", "t1", "t2"]
    for idx, task in enumerate(tasks):
        assert task.skypilot_task_id == (
            f"sky-managed-2024-01-01-00-00-00-000000_pipe_{second}-{idx}"
        )
        assert "{job_id}" not in task.skypilot_task_id
        assert task.status == "PENDING"
        assert task.job_duration_s == 0.0
        assert task.attempt == 0
    assert store.tasks(first)[0].skypilot_task_id.endswith(f"_{first}-0")

    job = store.job(second)
    assert job is not None
    assert job.status == "PENDING" and job.ended_at is None and job.cancel_requested_at is None
    kinds = [e.kind for e in store.events(job_id=second)]
    assert kinds == ["submitted"]


def test_secrets_are_kept_apart_from_the_spec(store: Store) -> None:
    job_id = store.submit_jobs(
        name="s", tasks=[new_task()], spec={"name": "s", "envs": {"A": "1"}},
        secrets={"0": {"TOKEN": "hunter2"}},
    )[0]
    spec, secrets = store.job_spec(job_id)
    assert spec == {"name": "s", "envs": {"A": "1"}}
    assert secrets == {"0": {"TOKEN": "hunter2"}}
    assert "hunter2" not in repr(store.job(job_id))
    assert "hunter2" not in repr(store.tasks(job_id))


# --------------------------------------------------------------- transitions


def test_legal_transitions_each_write_exactly_one_event(store: Store) -> None:
    job_id = submit(store)
    path = [S.STARTING, S.RUNNING, S.RECOVERING, S.RUNNING, S.CANCELLING, S.CANCELLED]
    before = store.last_event_id()
    previous = S.PENDING
    for to in path:
        assert store.transition_task(job_id, 0, to, message=f"to {to}") is True
        new = store.events(after_id=before)
        assert len(new) == 1, new
        event = new[0]
        assert (event.job_id, event.task_idx, event.kind) == (job_id, 0, "status")
        assert (event.from_status, event.to_status) == (previous.value, to.value)
        assert event.message == f"to {to}"
        assert store.task(job_id, 0).status == to.value
        before = event.id
        previous = to
    job = store.job(job_id)
    assert job is not None and job.status == "CANCELLED" and job.ended_at is not None


def test_status_change_and_its_event_commit_together(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the event row cannot be written, the status change is rolled back too."""
    job_id = submit(store)
    before_events = store.last_event_id()

    def broken_event(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    # The event row a status change writes (its insert, in the jobs repository).
    monkeypatch.setattr("skytui.engine.store.jobs.insert_event", broken_event)
    with pytest.raises(RuntimeError, match="disk full"):
        store.transition_task(job_id, 0, S.STARTING)
    monkeypatch.undo()

    assert store.task(job_id, 0).status == "PENDING"
    job = store.job(job_id)
    assert job is not None and job.status == "PENDING"
    assert store.last_event_id() == before_events
    # The store is still usable and the transition can be retried.
    assert store.transition_task(job_id, 0, S.STARTING) is True
    assert status_events(store, job_id) == [(0, "PENDING", "STARTING")]


@pytest.mark.parametrize(
    "path, illegal",
    [
        ([], S.RUNNING),  # PENDING cannot run without starting
        ([], S.SUCCEEDED),
        ([], S.FAILED),  # user code cannot fail before it ran
        ([S.STARTING], S.SUCCEEDED),
        ([S.STARTING, S.RUNNING], S.PENDING),
        ([S.STARTING, S.RUNNING], S.STARTING),
        ([S.STARTING, S.RUNNING, S.CANCELLING], S.RUNNING),  # a cancel is never undone
        ([S.STARTING, S.RUNNING, S.CANCELLING], S.SUCCEEDED),
    ],
)
def test_illegal_transition_raises_and_changes_nothing(
    store: Store, path: list[TaskStatus], illegal: TaskStatus
) -> None:
    job_id = submit(store)
    walk(store, job_id, 0, *path)
    task_before = store.task(job_id, 0)
    job_before = store.job(job_id)
    events_before = store.last_event_id()

    with pytest.raises(IllegalTransition) as info:
        store.transition_task(job_id, 0, illegal, exit_code=9, failure_reason="nope")
    current = path[-1] if path else S.PENDING
    assert info.value.current is current and info.value.wanted is illegal

    assert store.task(job_id, 0) == task_before  # not even the extra fields
    assert store.job(job_id) == job_before
    assert store.last_event_id() == events_before


@pytest.mark.parametrize("terminal", sorted(TERMINAL, key=lambda s: s.value))
def test_terminal_status_is_never_overwritten(store: Store, terminal: TaskStatus) -> None:
    job_id = submit(store)
    # Reach the terminal status by a legal path.
    if terminal is S.SUCCEEDED:
        walk(store, job_id, 0, S.STARTING, S.RUNNING, S.SUCCEEDED)
    elif terminal is S.CANCELLED:
        walk(store, job_id, 0, S.STARTING, S.CANCELLING, S.CANCELLED)
    elif terminal is S.FAILED_SETUP:
        walk(store, job_id, 0, S.STARTING, S.FAILED_SETUP)
    else:
        walk(store, job_id, 0, S.STARTING, S.RUNNING, terminal)
    task_before = store.task(job_id, 0)
    events_before = store.last_event_id()
    assert task_before.ended_at is not None

    for to in TaskStatus:
        with pytest.raises(IllegalTransition):
            store.transition_task(job_id, 0, to)
        # A guarded writer that expected the terminal status is refused as well.
        with pytest.raises(IllegalTransition):
            store.transition_task(job_id, 0, to, expect=terminal)
    assert store.task(job_id, 0) == task_before
    assert store.last_event_id() == events_before
    job = store.job(job_id)
    assert job is not None and job.status == terminal.value


def test_expect_returns_false_when_another_writer_moved_the_status(store: Store) -> None:
    job_id = submit(store)
    assert store.transition_task(job_id, 0, S.STARTING, expect=S.PENDING) is True
    events_before = store.last_event_id()

    # A second writer still believing the task PENDING loses, silently.
    assert store.transition_task(job_id, 0, S.CANCELLED, expect=S.PENDING) is False
    assert store.transition_task(job_id, 0, S.FAILED_PRECHECKS, expect=S.PENDING) is False
    assert store.task(job_id, 0).status == "STARTING"
    assert store.last_event_id() == events_before

    # With the right expectation it goes through.
    assert store.transition_task(job_id, 0, S.RUNNING, expect=S.STARTING) is True
    assert store.task(job_id, 0).status == "RUNNING"


def test_transition_records_extra_fields_and_end_time(store: Store) -> None:
    job_id = submit(store)
    walk(store, job_id, 0, S.STARTING, S.RUNNING)
    running = store.task(job_id, 0)
    assert running.started_at is not None and running.ended_at is None
    store.transition_task(
        job_id, 0, S.FAILED, exit_code=7, failure_reason="exit code 7", message="boom"
    )
    failed = store.task(job_id, 0)
    assert failed.status == "FAILED"
    assert failed.exit_code == 7 and failed.failure_reason == "exit code 7"
    assert failed.ended_at is not None and failed.ended_at >= running.started_at
    assert failed.started_at == running.started_at


# -------------------------------------------------------------- job duration


def test_job_duration_banks_only_running_time(store: Store) -> None:
    job_id = submit(store)
    walk(store, job_id, 0, S.STARTING)
    time.sleep(0.05)
    walk(store, job_id, 0, S.RUNNING)
    time.sleep(0.1)
    walk(store, job_id, 0, S.RECOVERING)
    time.sleep(0.3)  # recovering: must not count
    walk(store, job_id, 0, S.RUNNING)
    time.sleep(0.1)
    walk(store, job_id, 0, S.SUCCEEDED)

    task = store.task(job_id, 0)
    events = [e for e in store.events(job_id=job_id) if e.kind == "status"]
    # The stretches between entering RUNNING and leaving it, by the events' own clocks.
    running_time = sum(
        events[i + 1].at - events[i].at
        for i in range(len(events) - 1)
        if events[i].to_status == "RUNNING"
    )
    assert [e.to_status for e in events] == [
        "STARTING", "RUNNING", "RECOVERING", "RUNNING", "SUCCEEDED"
    ]
    assert task.job_duration_s == pytest.approx(running_time, abs=1e-6)
    assert task.run_started_at is None  # no open stretch once finished
    assert task.duration_s(time.time() + 1000) == task.job_duration_s
    assert task.ended_at is not None
    assert 0 < task.job_duration_s < task.ended_at - task.submitted_at
    # The recovery gap (0.3 s, longer than all running time) is excluded.
    recovering_gap = events[3].at - events[2].at
    assert task.job_duration_s <= (task.ended_at - task.started_at) - recovering_gap + 1e-6


def test_open_running_stretch_counts_while_running(store: Store) -> None:
    job_id = submit(store)
    walk(store, job_id, 0, S.STARTING, S.RUNNING)
    task = store.task(job_id, 0)
    assert task.run_started_at is not None
    assert task.job_duration_s == 0.0
    assert task.duration_s(task.run_started_at + 12.5) == pytest.approx(12.5)
    walk(store, job_id, 0, S.CANCELLING)  # leaving RUNNING banks the stretch
    cancelling = store.task(job_id, 0)
    assert cancelling.run_started_at is None and cancelling.job_duration_s > 0
    assert cancelling.duration_s(time.time() + 1000) == cancelling.job_duration_s


# ------------------------------------------------------------ job status


def test_pipeline_job_status_is_that_of_its_first_unfinished_task(store: Store) -> None:
    job_id = submit(store, 3)

    def job_status_now() -> str:
        job = store.job(job_id)
        assert job is not None
        return job.status

    assert job_status_now() == "PENDING"
    walk(store, job_id, 0, S.STARTING)
    assert job_status_now() == "STARTING"
    walk(store, job_id, 0, S.RUNNING)
    assert job_status_now() == "RUNNING"
    walk(store, job_id, 0, S.SUCCEEDED)
    assert job_status_now() == "PENDING"  # waiting for task 1
    job = store.job(job_id)
    assert job is not None and job.ended_at is None
    walk(store, job_id, 1, S.STARTING, S.RUNNING)
    assert job_status_now() == "RUNNING"
    walk(store, job_id, 1, S.SUCCEEDED)
    walk(store, job_id, 2, S.STARTING, S.RUNNING, S.SUCCEEDED)
    assert job_status_now() == "SUCCEEDED"
    job = store.job(job_id)
    assert job is not None and job.ended_at is not None


def test_failed_pipeline_reads_failed_not_cancelled(store: Store) -> None:
    job_id = submit(store, 3)
    walk(store, job_id, 0, S.STARTING, S.RUNNING, S.SUCCEEDED)
    walk(store, job_id, 1, S.STARTING, S.RUNNING, S.FAILED)
    assert store.cancel_pending_tasks(job_id, "an earlier task failed") == 1
    assert [t.status for t in store.tasks(job_id)] == ["SUCCEEDED", "FAILED", "CANCELLED"]
    job = store.job(job_id)
    assert job is not None
    assert job.status == "FAILED"
    assert job.ended_at is not None
    # The tail's cancellation is recorded as an event like any other change.
    assert status_events(store, job_id)[-1] == (2, "PENDING", "CANCELLED")


def test_pipeline_failing_in_setup_reads_that_failure(store: Store) -> None:
    job_id = submit(store, 2)
    walk(store, job_id, 0, S.STARTING, S.FAILED_SETUP)
    store.cancel_pending_tasks(job_id, "an earlier task failed")
    job = store.job(job_id)
    assert job is not None and job.status == "FAILED_SETUP"


def test_job_status_function() -> None:
    assert job_status([S.SUCCEEDED, S.RUNNING, S.PENDING]) is S.RUNNING
    assert job_status([S.SUCCEEDED, S.SUCCEEDED]) is S.SUCCEEDED
    assert job_status([S.PENDING, S.PENDING]) is S.PENDING
    assert job_status([S.SUCCEEDED, S.FAILED, S.CANCELLED]) is S.FAILED


def test_transition_table_is_closed_and_terminal_statuses_are_final() -> None:
    assert set(TRANSITIONS) == set(TaskStatus)
    for source, targets in TRANSITIONS.items():
        assert source not in targets  # no self-loops: every event is a change
        if source in TERMINAL:
            assert not targets
        else:
            # Every in-progress status can still fail or be cancelled somehow.
            assert targets & (TERMINAL | {S.CANCELLING})
    # The happy path and the recovery loop of DESIGN.md.
    for a, b in [
        (S.PENDING, S.STARTING), (S.STARTING, S.RUNNING), (S.RUNNING, S.SUCCEEDED),
        (S.RUNNING, S.RECOVERING), (S.RECOVERING, S.RUNNING), (S.CANCELLING, S.CANCELLED),
    ]:
        assert can_transition(a, b)
    assert IN_PROGRESS == frozenset(TaskStatus) - TERMINAL


# ------------------------------------------------------------------- cancel


def test_request_cancel_only_in_progress_and_only_once(store: Store) -> None:
    pending = submit(store, name="pending")
    running = submit(store, name="running")
    walk(store, running, 0, S.STARTING, S.RUNNING)
    done = submit(store, name="done")
    walk(store, done, 0, S.STARTING, S.RUNNING, S.SUCCEEDED)
    missing = done + 100

    accepted = store.request_cancel([pending, running, done, missing])
    assert accepted == [pending, running]
    # The pending job never started: it ended with the request. The running
    # one is the controller's to stop.
    assert store.cancel_requested() == [running]
    for job_id in (pending, running):
        job = store.job(job_id)
        assert job is not None and job.cancel_requested_at is not None
        assert [e.kind for e in store.events(job_id=job_id)].count("cancel_requested") == 1
    finished = store.job(done)
    assert finished is not None and finished.cancel_requested_at is None

    events_before = store.last_event_id()
    first_request = store.job(running)
    assert store.request_cancel([pending, running]) == []  # only once
    assert store.last_event_id() == events_before
    assert store.job(running) == first_request

    # Once the job has ended it no longer shows up as waiting to be cancelled.
    walk(store, running, 0, S.CANCELLING, S.CANCELLED)
    assert store.cancel_requested() == []


# ------------------------------------------------------ attempts and segments


def test_attempts_are_numbered_and_ended_once(store: Store) -> None:
    job_id = submit(store)
    first = store.start_attempt(job_id, 0, infra="local", instance_type="local", use_spot=False)
    assert first == 1
    task = store.task(job_id, 0)
    assert (task.attempt, task.infra, task.instance_type, task.use_spot) == (1, "local", "local", False)
    store.set_attempt_cluster(job_id, 0, first, 42)
    store.end_attempt(job_id, 0, first, reason="preempted", exit_code=None)
    store.end_attempt(job_id, 0, first, reason="LATER", exit_code=3)  # ignored: already ended
    second = store.start_attempt(
        job_id, 0, infra="sim/us-east-1", instance_type="p3.2xlarge", use_spot=True
    )
    assert second == 2
    attempts = store.attempts(job_id, 0)
    assert [a.attempt_no for a in attempts] == [1, 2]
    a1, a2 = attempts
    assert a1.cluster_id == 42 and a1.end_reason == "preempted" and a1.exit_code is None
    assert a1.ended_at is not None
    assert a2.ended_at is None and a2.infra == "sim/us-east-1" and a2.use_spot is True
    task = store.task(job_id, 0)
    assert (task.attempt, task.infra, task.use_spot) == (2, "sim/us-east-1", True)
    placements = [e.message for e in store.events(job_id=job_id) if e.kind == "placement"]
    assert len(placements) == 2 and "spot" in (placements[1] or "")


def test_open_segment_is_idempotent(store: Store) -> None:
    job_id = submit(store)
    seg = store.open_segment(job_id, 0, 1, 0, "setup", 0)
    again = store.open_segment(job_id, 0, 1, 0, "setup", 999)  # a restarted controller
    assert again == seg
    assert again.start_offset == 0 and not again.finished
    run = store.open_segment(job_id, 0, 1, 0, "run", 120)
    rank1 = store.open_segment(job_id, 0, 1, 1, "run", 0)
    assert len({seg.id, run.id, rank1.id}) == 3
    store.update_segment(run.id, pid=4321, finished=True)
    segments = store.segments(job_id, 0)
    assert [(s.phase, s.rank, s.start_offset) for s in segments] == [
        ("setup", 0, 0), ("run", 0, 120), ("run", 1, 0)
    ]
    assert segments[1].pid == 4321 and segments[1].finished is True
    assert store.open_segment(job_id, 0, 1, 0, "run", 0).finished is True


# ------------------------------------------------------------------ clusters


def test_clusters_live_until_terminated(store: Store) -> None:
    job_id = submit(store)
    c1 = store.insert_cluster(
        name="job-1-0-1", cloud="local", region=None, zone=None, instance_type="local",
        use_spot=False, num_nodes=2, job_id=job_id, task_idx=0, attempt_no=1,
    )
    c2 = store.insert_cluster(
        name="pool-w1", cloud="local", region=None, zone=None, instance_type="local",
        use_spot=False, num_nodes=1, pool="p", worker_id=1,
    )
    row = store.cluster(c1)
    assert row is not None and row.status == ClusterStatus.PROVISIONING
    assert row.handle == {} and row.ended_at is None
    assert [c.id for c in store.live_clusters()] == [c1, c2]
    assert [c.id for c in store.live_clusters(job_id=job_id)] == [c1]

    store.update_cluster(c1, status=ClusterStatus.UP, handle={"nodes": [{"rank": 0}]})
    up = store.cluster(c1)
    assert up is not None and up.status == "UP" and up.handle == {"nodes": [{"rank": 0}]}

    store.update_cluster(c1, status=ClusterStatus.TERMINATING)
    assert c1 in [c.id for c in store.live_clusters()]
    store.update_cluster(c1, status=ClusterStatus.TERMINATED, end_reason="job finished")
    gone = store.cluster(c1)
    assert gone is not None and gone.status == "TERMINATED"
    assert gone.ended_at is not None and gone.end_reason == "job finished"
    assert gone.handle == {"nodes": [{"rank": 0}]}  # kept for the leak sweep
    assert [c.id for c in store.live_clusters()] == [c2]
    assert store.live_clusters(job_id=job_id) == []
    assert {c.id for c in store.clusters()} == {c1, c2}
    assert store.cluster(9999) is None


def test_cluster_names_are_unique(store: Store) -> None:
    kwargs: dict[str, Any] = {
        "cloud": "local", "region": None, "zone": None, "instance_type": "local",
        "use_spot": False, "num_nodes": 1,
    }
    store.insert_cluster(name="same", **kwargs)
    with pytest.raises(IntegrityError):
        store.insert_cluster(name="same", **kwargs)
    assert len(store.clusters()) == 1


# ------------------------------------------------------------------- schema


def test_schema_version_is_recorded(store: Store, home: Path) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    with sqlite3.connect(home / "state.db") as conn:
        rows = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    assert rows == [(str(SCHEMA_VERSION),)]
    # Reopening an up-to-date DB keeps its data and its version.
    job_id = submit(store)
    again = Store(paths().db_url)
    try:
        assert again.schema_version() == SCHEMA_VERSION
        assert again.job(job_id) is not None
    finally:
        again.close()


def test_newer_schema_is_refused(store: Store, home: Path) -> None:
    job_id = submit(store)
    store.close()
    db = home / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    with pytest.raises(StoreError, match="newer"):
        Store(paths().db_url)
    # Nothing was rewritten: the newer skytui still finds its data and version.
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            str(SCHEMA_VERSION + 1),
        )
        assert conn.execute("SELECT id FROM jobs").fetchall() == [(job_id,)]


# -------------------------------------------------------------- permissions


def test_db_files_are_owner_only_even_under_umask_zero(home: Path) -> None:
    old = os.umask(0o000)
    try:
        store = Store(paths().db_url)
        db = home / "state.db"
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        # Hold a connection so the WAL stays on disk, then write through the store.
        holder = sqlite3.connect(db)
        try:
            holder.execute("SELECT count(*) FROM jobs").fetchall()
            submit(store)
            wal = home / "state.db-wal"
            assert wal.exists()
            assert stat.S_IMODE(wal.stat().st_mode) == 0o600
            shm = home / "state.db-shm"
            if shm.exists():
                assert stat.S_IMODE(shm.stat().st_mode) == 0o600
        finally:
            holder.close()
        store.close()
        # Reopening keeps them private too.
        reopened = Store(paths().db_url)
        submit(reopened)
        reopened.close()
        for path in home.glob("state.db*"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        os.umask(old)


# ------------------------------------------------------------------ ordering


def test_runnable_jobs_resumed_first_then_priority_then_id(store: Store) -> None:
    low_old = submit(store, name="low-old", priority=0)  # 1
    high = submit(store, name="high", priority=5)  # 2
    resumed_low = submit(store, name="resumed-low", priority=0)  # 3
    walk(store, resumed_low, 0, S.STARTING, S.RUNNING)
    high_later = submit(store, name="high-later", priority=5)  # 4
    finished = submit(store, name="finished", priority=100)  # 5
    walk(store, finished, 0, S.STARTING, S.RUNNING, S.SUCCEEDED)
    resumed_high = submit(store, name="resumed-high", priority=3)  # 6
    walk(store, resumed_high, 0, S.STARTING, S.RUNNING, S.RECOVERING)
    excluded = submit(store, name="excluded", priority=9)  # 7
    low_new = submit(store, name="low-new", priority=0)  # 8

    order = [j.id for j in store.runnable_jobs(exclude={excluded}, limit=100)]
    assert order == [resumed_high, resumed_low, high, high_later, low_old, low_new]
    assert finished not in order
    assert [j.id for j in store.runnable_jobs(exclude={excluded}, limit=3)] == order[:3]
    assert [j.id for j in store.runnable_jobs(exclude=set(), limit=4)] == [
        resumed_high, resumed_low, excluded, high
    ]
    assert store.runnable_jobs(exclude=set(), limit=0) == []


def test_runnable_jobs_count_a_pipeline_between_tasks_as_resumed(store: Store) -> None:
    """A pipeline whose first task already succeeded has started: after a
    controller restart it is resumed before new jobs, whatever their priority,
    just as a job caught RUNNING is (it holds its place in the run limit)."""
    pipeline = submit(store, 2, name="half-done", priority=0)
    walk(store, pipeline, 0, S.STARTING, S.RUNNING, S.SUCCEEDED)
    newcomer = submit(store, name="newcomer", priority=5)
    job = store.job(pipeline)
    assert job is not None and job.status == "PENDING"  # waiting for task 1
    assert [j.id for j in store.runnable_jobs(exclude=set(), limit=1)] == [pipeline]
    assert [j.id for j in store.runnable_jobs(exclude=set(), limit=10)] == [pipeline, newcomer]


def test_a_v1_db_is_migrated_without_losing_data(home: Path) -> None:
    """A DB written by the first release opens in this one: data kept, new column added."""
    import sqlite3

    db_path = home / "state.db"
    store = Store(paths().db_url)
    job_id = submit(store)
    store.start_attempt(job_id, 0, infra="local", instance_type="local", use_spot=False)
    store.close()
    with sqlite3.connect(db_path) as db:  # make it what release 1 wrote
        db.execute("ALTER TABLE attempts DROP COLUMN price_per_hour")
        for table, column in (("jobs", "worker_id"), ("pools", "secrets_json"), ("pools", "target_workers"),
                              ("pools", "updated_at"), ("pool_workers", "status_reason"),
                              ("pool_workers", "ready_at"), ("pool_workers", "jobs_done"), ("tasks", "group_role"),
                              ("jobs", "max_cost_usd"), ("jobs", "stall_timeout_s"), ("clusters", "price_per_hour")):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute("DROP TABLE intents")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    store = Store(paths().db_url)
    try:
        assert store.schema_version() == 7
        assert store.job(job_id).worker_id is None  # v3's pool columns are there
        assert store.tasks(job_id)[0].group_role is None  # and v4's job group role
        assert store.open_intents() == []  # and v5's intents table
        assert store.job(job_id).max_cost_usd is None  # and v7's budget
        (old,) = store.attempts(job_id)
        assert (old.infra, old.attempt_no, old.price_per_hour) == ("local", 1, None)
        assert store.job(job_id) is not None and store.tasks(job_id)[0].attempt == 1
        store.start_attempt(job_id, 0, infra="local", instance_type="local", use_spot=False, price_per_hour=3.5)
        assert store.attempts(job_id)[1].price_per_hour == 3.5
    finally:
        store.close()


def test_a_v5_db_gets_the_intent_targets(home: Path) -> None:
    """v6 adds the preemption target to the intents v5 made: an intent left
    open by a v5 controller is still there, with no target."""
    import sqlite3

    from skytui.engine.store import SimPreempt

    store = Store(paths().db_url)
    intent = store.request_intent(SimPreempt(3))
    store.close()
    with sqlite3.connect(home / "state.db") as db:
        db.execute("ALTER TABLE intents DROP COLUMN target")
        db.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    store = Store(paths().db_url)
    try:
        assert store.schema_version() == 7
        (row,) = store.open_intents()
        assert (row.id, row.request, row.target) == (intent, SimPreempt(3), None)
    finally:
        store.close()


# ------------------------------------------------- runs that end together


def _running(store: Store, n_tasks: int = 1) -> int:
    job_id = submit(store, n_tasks)
    store.transition_task(job_id, 0, S.STARTING)
    store.start_attempt(job_id, 0, infra="sim", instance_type="x", use_spot=False)
    store.transition_task(job_id, 0, S.RUNNING)
    return job_id


def test_runs_ending_together_are_each_recorded_as_if_alone(store: Store) -> None:
    """A thousand jobs ending at once are written in one transaction; each
    still gets its status, event, ended attempt, closed log segment, retired
    machine and erased secrets, and one that a cancel already ended is left
    as the cancel left it."""
    from skytui.engine.store import RunEndRequest

    ok, pipeline, cancelled, failed = (_running(store), _running(store, 2), _running(store), _running(store))
    segment = store.open_segment(ok, 0, 1, 0, "run", 0)
    cluster = store.insert_cluster(name="c-ok", cloud="sim", region="r", zone=None, instance_type="x",
                                   use_spot=False, num_nodes=1, job_id=ok, task_idx=0, attempt_no=1)
    store.update_cluster(cluster, status=ClusterStatus.UP)
    store.request_cancel([cancelled])
    store.transition_task(cancelled, 0, S.CANCELLING, message="cancelled by user")
    store.transition_task(cancelled, 0, S.CANCELLED, message="cancelled by user")
    started = store.task(ok, 0).run_started_at
    assert started is not None
    time.sleep(0.05)
    results = store.end_runs([
        RunEndRequest(ok, 0, 1, S.SUCCEEDED, reason="succeeded", exit_code=0, ran_until=started + 0.02,
                      finish_segments=(segment.id,), retire_clusters=True),
        RunEndRequest(pipeline, 0, 1, S.SUCCEEDED, reason="succeeded", exit_code=0, ran_until=None),
        RunEndRequest(cancelled, 0, 1, S.SUCCEEDED, reason="succeeded", exit_code=0, ran_until=None),
        RunEndRequest(failed, 0, 1, S.FAILED, reason="job exited with exit code 3", exit_code=3, ran_until=None),
    ])
    assert [getattr(r, "ended", r) for r in results] == [True, True, False, True]
    assert [c.name for c in results[0].terminating] == ["c-ok"]  # type: ignore[union-attr]
    assert store.cluster(cluster).status == ClusterStatus.TERMINATING  # type: ignore[union-attr]

    assert store.job(ok).status == "SUCCEEDED"  # type: ignore[union-attr]
    # Its second task is still to run: the job reads as the store's rule says.
    assert store.job(pipeline).status == job_status([S.SUCCEEDED, S.PENDING]).value  # type: ignore[union-attr]
    assert store.job(cancelled).status == "CANCELLED"  # type: ignore[union-attr]
    assert store.job(failed).status == "FAILED"  # type: ignore[union-attr]
    task = store.task(failed, 0)
    assert (task.exit_code, task.failure_reason) == (3, "job exited with exit code 3")
    assert store.task(ok, 0).ended_at == pytest.approx(started + 0.02)  # by the node's clock
    assert [s.finished for s in store.segments(ok, 0)] == [True]
    assert [(a.end_reason, a.exit_code) for a in store.attempts(ok)] == [("succeeded", 0)]
    assert status_events(store, ok)[-1] == (0, "RUNNING", "SUCCEEDED")
    assert status_events(store, cancelled)[-1] == (0, "CANCELLING", "CANCELLED")
    assert store.job_spec(failed)[1] == {}  # an ended job keeps no secrets


async def test_concurrent_writes_share_a_commit_and_fail_alone(store: Store) -> None:
    """Writes made together by many job coroutines go in one commit; one
    that is refused (a finished job is never rewritten) fails for its caller
    only."""
    import asyncio

    from skytui.engine.store import AsyncStore, RunEndRequest

    jobs = [_running(store) for _ in range(20)]
    done = jobs[0]
    store.transition_task(done, 0, S.SUCCEEDED)
    astore = AsyncStore(store, owns_store=False)
    try:
        results = await asyncio.gather(
            *(astore.transition_task(job_id, 0, S.FAILED, message="x") for job_id in jobs),
            *(astore.end_run(RunEndRequest(job_id, 0, 1, S.SUCCEEDED, reason="succeeded", exit_code=0,
                                           ran_until=None)) for job_id in jobs[10:]),
            return_exceptions=True,
        )
    finally:
        astore.close()
    assert isinstance(results[0], IllegalTransition)
    assert results[1:20] == [True] * 19
    assert [r.ended for r in results[20:]] == [False] * 10  # type: ignore[union-attr]  # already FAILED
    assert [store.job(j).status for j in jobs] == ["SUCCEEDED"] + ["FAILED"] * 19  # type: ignore[union-attr]


def test_the_async_store_mirrors_the_store() -> None:
    """Each AsyncStore method takes what its Store method takes (same names,
    defaults and types) and returns what it returns, awaited; the job
    coroutines' writes, and only they, share commits."""
    import inspect

    from skytui.engine.store import AsyncStore

    methods = {
        name: method for name, method in inspect.getmembers(AsyncStore, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    for name, method in methods.items():
        assert inspect.signature(method) == inspect.signature(getattr(Store, name)), name
    grouped = {name for name, method in methods.items() if "self._grouped(" in inspect.getsource(method)}
    assert grouped == {
        "transition_task", "set_task_fields", "note", "start_attempt", "end_attempt", "set_attempt_cluster",
        "open_segment", "update_segment", "insert_cluster", "update_cluster", "update_worker",
        "assign_worker", "release_worker",
    }
