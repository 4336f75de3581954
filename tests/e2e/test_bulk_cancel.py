"""Cancelling many jobs at once, as a user notices it.

Jobs that never started (PENDING, nothing provisioned) end CANCELLED in the
cancel's own transaction, with an event per task; a job that has started
something is left to the controller. Whatever the interleaving with a
controller starting the same job, exactly one side wins: either the job is
CANCELLED and nothing was ever provisioned for it, or something was and the
job is the controller's to cancel. Through the CLI: `jobs cancel -a` of a few
hundred PENDING jobs leaves none PENDING when it returns, and a cancel while
jobs are being launched lets none of them start afterwards. Id lists read as
ranges.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures.env import Env, wait_for

from skytui.config import paths
from skytui.engine.status import TaskStatus
from skytui.engine.store import CancelRequested, ClusterStatus, NewTask, Store
from skytui.format import id_ranges, jobs_phrase, parse_id_ranges

S = TaskStatus



def submit(store: Store, n_tasks: int = 1, num_jobs: int = 1, secrets: dict[str, Any] | None = None) -> list[int]:
    tasks = [NewTask(f"t{i}", f"sky-managed-x_{{job_id}}-{i}", "1x[CPU:1]", 1) for i in range(n_tasks)]
    return store.submit_jobs(name="job", tasks=tasks, spec={"name": "job"}, secrets=secrets or {}, num_jobs=num_jobs)


def machine(store: Store, job_id: int, name: str) -> int:
    return store.insert_cluster(
        name=name, cloud="local", region=None, zone=None, instance_type="local", use_spot=False,
        num_nodes=1, job_id=job_id, task_idx=0, attempt_no=1,
    )


# ------------------------------------------------------------------ ranges


def test_ids_read_as_ranges() -> None:
    assert id_ranges(range(1, 10_001)) == "1-10000"
    assert id_ranges([12, 1, 2, 3, 4, 5, 9, 13, 14, 15, 16, 17, 18, 19, 20, 3]) == "1-5, 9, 12-20"
    assert id_ranges([7]) == "7"
    assert parse_id_ranges("1-5, 9, 12-20") == [1, 2, 3, 4, 5, 9, *range(12, 21)]
    assert jobs_phrase([7]) == "job 7" and jobs_phrase(list(range(1, 11))) == "jobs 1-10"


def test_a_scattered_list_is_cut_short() -> None:
    text = id_ranges(range(1, 10_001, 2))  # 5,000 single ids
    assert len(text) < 200
    assert text.startswith("1, 3, 5") and text.endswith("9999 (5000 ids)")
    assert len(id_ranges(range(1, 10_001, 2), max_parts=None).split(", ")) == 5000


# ------------------------------------------------------------------- store


def test_pending_jobs_end_cancelled_in_the_request(store: Store) -> None:
    pipelines = submit(store, n_tasks=3, num_jobs=200, secrets={"0": {"TOKEN": "s3cret"}})
    accepted = store.request_cancel(pipelines)
    assert accepted == pipelines
    assert store.cancel_requested() == []  # nothing left for the controller
    for job_id in (pipelines[0], pipelines[-1]):
        job = store.job(job_id)
        assert job is not None and job.status == "CANCELLED" and job.ended_at is not None
        assert [t.status for t in store.tasks(job_id)] == ["CANCELLED"] * 3
        statuses = [(e.task_idx, e.from_status, e.to_status, e.message)
                    for e in store.events(job_id=job_id) if e.kind == "status"]
        assert statuses == [(i, "PENDING", "CANCELLED", "cancelled by user") for i in range(3)]
        assert store.job_spec(job_id)[1] == {}  # its secrets went with it


def test_cancelling_a_scattered_set_cancels_exactly_that_set(store: Store) -> None:
    job_ids = submit(store, num_jobs=1500)
    chosen = job_ids[:2] + job_ids[3:1400:2] + job_ids[1400:1450]  # runs of 2, singles, a span
    assert store.request_cancel(chosen + [job_ids[-1] + 5]) == sorted(chosen)
    cancelled = {job.id for job in store.jobs() if job.status == "CANCELLED"}
    assert cancelled == set(chosen)
    assert store.pending_among(job_ids) == sorted(set(job_ids) - set(chosen))
    assert len(store.job_specs(chosen)) == len(chosen) == len(store.jobs_by_ids(chosen))


def test_a_job_that_started_something_is_left_to_the_controller(store: Store) -> None:
    waiting, provisioning, started = submit(store, num_jobs=3)
    machine(store, provisioning, "m-provisioning")  # PENDING, its machine being asked for
    store.transition_task(started, 0, S.STARTING)
    assert store.request_cancel([waiting, provisioning, started]) == [waiting, provisioning, started]
    assert [store.job(j).status for j in (waiting, provisioning, started)] == [  # type: ignore[union-attr]
        "CANCELLED", "PENDING", "STARTING",
    ]
    assert sorted(store.cancel_requested()) == [provisioning, started]
    assert store.pending_among([waiting, provisioning, started]) == [provisioning]


def test_nothing_starts_for_a_job_once_its_cancel_is_requested(store: Store) -> None:
    cancelled, stopping = submit(store, num_jobs=2)
    store.transition_task(stopping, 0, S.STARTING)
    store.request_cancel([cancelled, stopping])
    for job_id in (cancelled, stopping):
        with pytest.raises(CancelRequested):
            machine(store, job_id, f"m-{job_id}")
        with pytest.raises(CancelRequested):
            store.assign_worker(1, job_id)
    assert store.live_clusters() == []
    assert store.runnable_jobs(set(), 10) == []
    # A stale "waiting for a launch slot" is not written over a cancelled task.
    store.set_task_fields(cancelled, 0, status_reason="waiting for a launch slot")
    assert store.task(cancelled, 0).status_reason is None


def test_a_cancel_racing_a_launch_has_one_winner(store: Store, home: Path) -> None:
    """A client cancelling while the controller records machines for the same
    jobs (each on its own connection, as two processes would): every job ends
    either CANCELLED with no machine, or with its machine and the cancel left
    to the controller. Never both, never neither."""
    job_ids = submit(store, num_jobs=300)
    launcher_store = Store(paths().db_url)
    recorded: dict[int, int] = {}
    refused: set[int] = set()
    start = threading.Barrier(2)

    def launch_all() -> None:
        start.wait()
        for job_id in job_ids:
            try:
                recorded[job_id] = machine(launcher_store, job_id, f"m-{job_id}")
            except CancelRequested:
                refused.add(job_id)
            time.sleep(0.002)  # a controller does other work between launches

    launcher = threading.Thread(target=launch_all)
    launcher.start()
    start.wait()
    wait_for(lambda: len(recorded) >= 20, 30, 0.001, "the launcher to record a few machines")
    accepted = store.request_cancel(job_ids)
    launcher.join(timeout=60)
    launcher_store.close()
    assert accepted == job_ids
    live = {c.job_id for c in store.live_clusters()}
    assert live == set(recorded)
    for job_id in job_ids:
        status = store.job(job_id).status  # type: ignore[union-attr]
        if job_id in recorded:
            assert status == "PENDING" and job_id in store.cancel_requested()
        else:
            assert job_id in refused and status == "CANCELLED"
    assert recorded and refused  # the race really happened both ways
    assert all(c.status == ClusterStatus.PROVISIONING for c in store.live_clusters())


# --------------------------------------------------------------------- CLI


def test_cancel_all_leaves_no_job_pending(env: Env) -> None:
    """A few hundred PENDING jobs behind a controller that runs two at a time."""
    env.config("jobs:\n  controller:\n    max_running: 2\n    max_launching: 2\n")
    task = env.write("wait.yaml", "name: wait\nresources:\n  infra: local\nrun: sleep 30\n")
    launched = env.cli("jobs", "launch", "-y", "-d", str(task), "--num-jobs", "300", check=True)
    assert "Managed jobs 1-300 submitted" in launched.stdout
    wait_for(lambda: any(j["status"] in ("STARTING", "RUNNING") for j in env.queue()), 60, 0.2,
             "the controller to start a job")
    result = env.cli("jobs", "cancel", "-a", "-y", check=True)
    assert "Cancelling managed jobs 1-300." in result.stdout
    assert not [j["id"] for j in env.queue() if j["status"] == "PENDING"]
    wait_for(lambda: all(j["status"] == "CANCELLED" for j in env.queue()), 60, 0.5, "every job CANCELLED")


def test_cancel_while_jobs_are_being_launched_lets_none_start_afterwards(env: Env) -> None:
    """Launches keep coming while `cancel -a` runs; once a cancel has
    returned, no job it named ever starts."""
    env.config("jobs:\n  controller:\n    max_running: 16\n    max_launching: 4\n")
    task = env.write("wait.yaml", "name: wait\nresources:\n  infra: local\nrun: sleep 30\n")
    env.cli("jobs", "launch", "-y", "-d", str(task), "--num-jobs", "100", check=True)
    launcher = env.popen("jobs", "launch", "-y", "-d", str(task), "--num-jobs", "100")
    cancelled: list[tuple[float, list[int]]] = []
    for _ in range(3):
        result = env.cli("jobs", "cancel", "-a", "-y", check=True)
        line = next((ln for ln in result.stdout.splitlines() if ln.startswith("Cancelling managed")), None)
        if line is not None:
            ids = line.removeprefix("Cancelling managed ").rstrip(".").split(" ", 1)[1]
            cancelled.append((time.time(), parse_id_ranges(ids)))
    launcher.communicate(timeout=120)
    env.cli("jobs", "cancel", "-a", "-y", check=True)  # whatever the last launch added
    assert cancelled
    wait_for(lambda: all(j["status"] == "CANCELLED" for j in env.queue()), 90, 0.5, "every job CANCELLED")
    store = Store(paths_db_url(env))
    try:
        for returned_at, ids in cancelled:
            for job_id in ids:
                starts = [e.at for e in store.events(job_id=job_id)  # leaving PENDING is starting
                          if e.kind == "status" and e.from_status == "PENDING"
                          and e.to_status in ("STARTING", "RECOVERING")]
                assert all(at < returned_at for at in starts), f"job {job_id} started after its cancel returned"
    finally:
        store.close()


def paths_db_url(env: Env) -> str:
    return f"sqlite:///{env.home / 'state.db'}"


def test_controller_stop_in_the_middle_of_cancels_leaves_them_to_the_next_one(env: Env) -> None:
    """`controller stop` right after `cancel -a` of running jobs stops cleanly
    (the cancels in flight are cut short, not waited for); the next controller
    finishes every one of them and leaves no machine up."""
    env.config("jobs:\n  controller:\n    max_running: 12\n")
    task = env.write("wait.yaml", "name: wait\nresources:\n  infra: local\nrun: sleep 600\n")
    env.cli("jobs", "launch", "-y", "-d", str(task), "--num-jobs", "30", check=True)
    wait_for(lambda: sum(j["status"] == "RUNNING" for j in env.queue()) >= 6, 90, 0.3, "jobs RUNNING")
    env.cli("jobs", "cancel", "-a", "-y", check=True)
    stopped = env.cli("controller", "stop", check=True)
    assert "Traceback" not in stopped.stdout + stopped.stderr
    assert "Controller stopped" in stopped.stdout
    # The next command revives a controller for the unfinished cancels.
    wait_for(lambda: all(j["status"] == "CANCELLED" for j in env.queue()), 90, 0.5, "every job CANCELLED")
    wait_for(lambda: not list((env.home / "nodes").glob("*/.skytui-node.json")), 60, 0.5, "every machine gone")
