"""Secrets at rest: a job's secrets live in the state DB only while it can
still run. Once every task has ended they are erased in the transaction that
ends the job, SQLite overwrites the old bytes (secure_delete) and the WAL is
truncated, so no copy is left in state.db, -wal or -shm for anyone who reads
the files later (a backup, a stolen laptop, a shared PostgreSQL)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from fixtures.env import Env, wait_for

from skytui.engine.status import TaskStatus
from skytui.engine.store import NewTask, Store

S = TaskStatus


def _state_files(home: Path) -> dict[str, bytes]:
    """The raw bytes of the SQLite DB and its WAL and shared-memory files."""
    out = {}
    for suffix in ("", "-wal", "-shm"):
        path = home / f"state.db{suffix}"
        if path.exists():
            out[path.name] = path.read_bytes()
    return out


def _holding(home: Path, canary: str) -> list[str]:
    return [name for name, data in _state_files(home).items() if canary.encode() in data]


def _submit(store: Store, secrets: dict[str, dict[str, str]], tasks: int = 1) -> int:
    return store.submit_jobs(
        name="sec",
        tasks=[NewTask(f"t{i}", "id-{job_id}-" + str(i), "-", 1) for i in range(tasks)],
        spec={"name": "sec"},
        secrets=secrets,
    )[0]


def _finish(store: Store, job_id: int, task_idx: int, to: TaskStatus = S.SUCCEEDED) -> None:
    for status in (S.STARTING, S.RUNNING, to):
        assert store.transition_task(job_id, task_idx, status)


# ------------------------------------------------------------------ end to end


def test_a_secret_reaches_the_running_job_and_leaves_no_copy_in_the_state_files(env: Env) -> None:
    canary = "canary-7f3e91c2-do-not-keep"
    task = env.write(
        "secret.yaml",
        "name: keeper\n"
        "run: |\n"
        "  echo \"digest $(printf %s \"$API_TOKEN\" | sha256sum | cut -c1-16)\"\n"
        "  sleep 4\n",
    )
    job_id = env.launch(task, "--secret", f"API_TOKEN={canary}")
    env.wait_status(job_id, "RUNNING")
    # While the job runs the secret is in the state (a restarted controller
    # needs it to relaunch the job): the grep below can see it.
    assert _holding(env.home, canary)
    env.wait_status(job_id, "SUCCEEDED", timeout=90)
    digest = hashlib.sha256(canary.encode()).hexdigest()[:16]
    assert f"digest {digest}".encode() in env.log(job_id)  # the job got it intact
    # The controller is still up, its connections open: the WAL is truncated
    # by its own scrub, not by the last connection closing.
    assert env.controller_pid() is not None
    wait_for(lambda: not _holding(env.home, canary), timeout=15, what="the canary to leave state.db*")
    assert env.controller_pid() is not None


# ------------------------------------------------------------------- the store


def test_a_pipeline_keeps_its_secrets_until_its_last_task_ends(home: Path) -> None:
    store = Store(f"sqlite:///{home / 'state.db'}")
    try:
        job_id = _submit(store, {"0": {"A": "first-secret"}, "1": {"B": "second-secret"}}, tasks=2)
        _finish(store, job_id, 0)
        # The second task has yet to run with its secret.
        assert store.job_spec(job_id)[1] == {"0": {"A": "first-secret"}, "1": {"B": "second-secret"}}
        _finish(store, job_id, 1, S.FAILED)
        assert store.job(job_id).status == "FAILED"
        assert store.job_spec(job_id)[1] == {}
    finally:
        store.close()


def test_a_failed_pipeline_erases_its_secrets_once_its_tail_is_cancelled(home: Path) -> None:
    store = Store(f"sqlite:///{home / 'state.db'}")
    try:
        job_id = _submit(store, {"1": {"B": "tail-secret"}}, tasks=2)
        _finish(store, job_id, 0, S.FAILED)
        assert store.job_spec(job_id)[1] == {"1": {"B": "tail-secret"}}
        store.cancel_pending_tasks(job_id, "an earlier task failed")
        assert store.job_spec(job_id)[1] == {}
    finally:
        store.close()


def test_the_wal_is_scrubbed_while_the_store_stays_open(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of endings share a few checkpoints, and none is skipped."""
    monkeypatch.setattr(Store, "SECRETS_SCRUB_DELAY_S", 0.3)
    store = Store(f"sqlite:///{home / 'state.db'}")
    try:
        canaries = [f"canary-{i:03d}-{'x' * 40}" for i in range(200)]
        job_ids = [_submit(store, {"0": {"TOKEN": canary}}) for canary in canaries]
        assert _holding(home, canaries[0])
        for job_id in job_ids:
            _finish(store, job_id, 0)
        wait_for(lambda: not any(_holding(home, c) for c in canaries), timeout=10,
                 what="every canary to leave state.db*")
        assert (home / "state.db-wal").stat().st_size < 64 * 1024  # truncated, not merely rewound
    finally:
        store.close()


def test_pool_secrets_are_erased_at_pool_down(home: Path) -> None:
    canary = "pool-canary-5d1c0a"
    store = Store(f"sqlite:///{home / 'state.db'}")
    try:
        store.apply_pool("p1", {"task": {}, "pool": {"workers": 1}}, {"TOKEN": canary}, 1)
        assert store.pool_spec("p1")[1] == {"TOKEN": canary}  # the workers' setup needs it meanwhile
        assert store.request_pool_down("p1") == []
        assert store.pool_spec("p1")[1] == {}
    finally:
        store.close()  # what a `pool down` CLI call does next
    assert not _holding(home, canary)


def test_the_controller_erases_what_an_older_version_left_behind(home: Path) -> None:
    canary = "legacy-canary-93ab"
    url = f"sqlite:///{home / 'state.db'}"
    store = Store(url)
    job_id = _submit(store, {})
    _finish(store, job_id, 0)
    store.close()
    # An ended job written by a skytui that never erased anything.
    with sqlite3.connect(home / "state.db") as db:
        db.execute("update jobs set secrets_json = ? where id = ?", (f'{{"0": {{"K": "{canary}"}}}}', job_id))
    assert _holding(home, canary)
    controller = Store(url)
    try:
        assert controller.hold_controller_lock()
        assert controller.job_spec(job_id)[1] == {}
        assert not _holding(home, canary)
    finally:
        controller.close()


def test_secrets_of_an_ended_job_are_gone_from_postgres(pg_url: str) -> None:
    """On PostgreSQL the row update is the erasure (the old row version stays
    in the heap as a dead tuple until VACUUM reclaims it)."""
    import psycopg

    canary = "pg-canary-41e7"
    store = Store(pg_url)
    try:
        job_id = _submit(store, {"0": {"TOKEN": canary}})
        dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")

        def table_text() -> str:
            with psycopg.connect(dsn) as conn:
                return " ".join(str(row) for row in conn.execute("select jobs::text from jobs"))

        assert canary in table_text()
        _finish(store, job_id, 0, S.FAILED)
        assert canary not in table_text()
        assert store.job_spec(job_id)[1] == {}
    finally:
        store.close()
