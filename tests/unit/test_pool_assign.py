"""Which worker the store lets a pool job take.

The dispatcher hands a worker just released straight to the next waiting
job from what it knows in memory (PoolDispatch._hand_over), without reading
the pool and its workers again; `assign_worker` is the check that cannot be
stale: the worker must be READY and idle, and its pool must not be being
taken down, or no job gets it.
"""

from __future__ import annotations

from skytui.engine.store import NewTask, Store, WorkerStatus


def _pool_with_a_ready_worker(store: Store) -> int:
    store.apply_pool("p", {"run": "true", "pool": {"workers": 1}}, {}, 1)
    worker_id = store.insert_worker("p", 1)
    store.update_worker(worker_id, status=WorkerStatus.READY)
    return worker_id


def _pool_jobs(store: Store, n: int) -> list[int]:
    tasks = [NewTask("t", "sky-managed-x_{job_id}-0", "1x[CPU:1]", 1)]
    return store.submit_jobs(name="job", tasks=tasks, spec={"name": "job"}, secrets={}, pool="p", num_jobs=n)


def test_a_ready_idle_worker_goes_to_one_job_at_a_time(store: Store) -> None:
    worker_id = _pool_with_a_ready_worker(store)
    first, second = _pool_jobs(store, 2)
    assert store.assign_worker(worker_id, first) is True
    assert store.assign_worker(worker_id, second) is False  # taken
    store.release_worker(worker_id, first)
    assert store.assign_worker(worker_id, second) is True
    assert store.worker_of_job(second) is not None and store.worker_of_job(second).id == worker_id  # type: ignore[union-attr]


def test_no_job_takes_a_worker_once_its_pool_is_being_taken_down(store: Store) -> None:
    """A job that reached the queue as its pool went down (`pool down` is
    refused while the pool has unfinished jobs, so only a race gets here)."""
    worker_id = _pool_with_a_ready_worker(store)
    assert store.request_pool_down("p") == []
    [job_id] = _pool_jobs(store, 1)
    # Still READY and idle in its row: only the pool's down request refuses it.
    [worker] = [w for w in store.workers("p") if w.id == worker_id]
    assert worker.status == WorkerStatus.READY and worker.job_id is None
    assert store.assign_worker(worker_id, job_id) is False
    assert store.worker_of_job(job_id) is None


def test_a_worker_no_longer_ready_is_not_given(store: Store) -> None:
    worker_id = _pool_with_a_ready_worker(store)
    [job_id] = _pool_jobs(store, 1)
    store.update_worker(worker_id, status=WorkerStatus.NOT_READY)
    assert store.assign_worker(worker_id, job_id) is False
