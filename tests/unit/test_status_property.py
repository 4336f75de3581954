"""Property tests of the transition table as the real Store enforces it.

Whatever the controller, the TUI and a second controller ask for, and in
whatever order, a task's recorded history is a walk through
`status.TRANSITIONS` from PENDING, the last event always says what the task
shows, and a finished task stays finished.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skytui.engine.status import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    TaskStatus,
    can_transition,
)
from skytui.engine.store import NewTask, Store

STATUSES = sorted(TaskStatus, key=lambda s: s.value)
# The statuses a task can cycle through (PENDING -> STARTING -> RUNNING ->
# RECOVERING -> RUNNING/PENDING ...) and the ones that head for the end.
CYCLING = [TaskStatus.PENDING, TaskStatus.STARTING, TaskStatus.RUNNING, TaskStatus.RECOVERING]
ENDING = sorted(TERMINAL | {TaskStatus.CANCELLING}, key=lambda s: s.value)


def pick(rng: random.Random) -> TaskStatus:
    """Mostly cycling targets, so that the writers fight over a long walk."""
    return rng.choice(ENDING if rng.random() < 0.03 else CYCLING)


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("status-property") / "home"
    home.mkdir(mode=0o700)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKYTUI_HOME", str(home))
        mp.delenv("SKYTUI_DB_URL", raising=False)
        yield f"sqlite:///{home / 'state.db'}"


@pytest.fixture(scope="module")
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def submit(store: Store) -> int:
    return store.submit_jobs(
        name="prop",
        tasks=[NewTask(name="t", skypilot_task_id="id-{job_id}-0", requested="-", num_nodes=1)],
        spec={},
        secrets={},
    )[0]


def status_chain(store: Store, job_id: int) -> list[tuple[str | None, str | None]]:
    return [
        (e.from_status, e.to_status)
        for e in store.events(job_id=job_id, limit=100_000)
        if e.kind == "status"
    ]


def assert_legal_path(chain: list[tuple[str | None, str | None]]) -> None:
    """A path through TRANSITIONS from PENDING, with no gap and nothing after an end."""
    current = TaskStatus.PENDING
    for i, (source, target) in enumerate(chain):
        assert source is not None and target is not None
        assert TaskStatus(source) is current, f"event {i} starts at {source}, task was {current}: {chain}"
        assert can_transition(current, TaskStatus(target)), f"event {i}: {source} -> {target} is illegal"
        assert not current.is_terminal, f"event {i} rewrites terminal {current}: {chain}"
        current = TaskStatus(target)


requests = st.lists(
    st.tuples(
        st.sampled_from(STATUSES),
        # `expect`: none, the right one, or a random (maybe stale) one.
        st.one_of(st.none(), st.just("current"), st.sampled_from(STATUSES)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_any_request_sequence_records_a_legal_path(
    store: Store, steps: list[tuple[TaskStatus, object]]
) -> None:
    job_id = submit(store)
    model = TaskStatus.PENDING
    for wanted, expect_choice in steps:
        expect = model if expect_choice == "current" else expect_choice
        assert expect is None or isinstance(expect, TaskStatus)
        before = store.last_event_id()
        if expect is not None and expect is not model:
            assert store.transition_task(job_id, 0, wanted, expect=expect) is False
        elif can_transition(model, wanted):
            assert store.transition_task(job_id, 0, wanted, expect=expect) is True
            model = wanted
        else:
            with pytest.raises(IllegalTransition):
                store.transition_task(job_id, 0, wanted, expect=expect)
        if model.is_terminal:
            # Once finished, nothing moves, whatever is asked.
            for other in STATUSES:
                with pytest.raises(IllegalTransition):
                    store.transition_task(job_id, 0, other)
        written = [e for e in store.events(after_id=before) if e.kind == "status"]
        assert len(written) <= 1
        assert store.task(job_id, 0).status == model.value

    chain = status_chain(store, job_id)
    assert_legal_path(chain)
    final = chain[-1][1] if chain else TaskStatus.PENDING.value
    assert store.task(job_id, 0).status == final == model.value
    job = store.job(job_id)
    assert job is not None and job.status == model.value
    assert (job.ended_at is not None) == (model in TERMINAL)


WRITERS = 4
ATTEMPTS_PER_WRITER = 40


@pytest.fixture(scope="module")
def writer_stores(db_url: str) -> Iterator[list[Store]]:
    """One Store per writer on the same SQLite file, as separate processes would have."""
    stores = [Store(db_url) for _ in range(WRITERS)]
    yield stores
    for s in stores:
        s.close()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 2**32 - 1), min_size=WRITERS, max_size=WRITERS))
def test_concurrent_writers_never_lose_an_update(
    store: Store, writer_stores: list[Store], seeds: list[int]
) -> None:
    job_id = submit(store)
    barrier = threading.Barrier(WRITERS)
    applied: list[list[tuple[str, str]]] = [[] for _ in range(WRITERS)]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        rng = random.Random(seeds[n])
        s = writer_stores[n]
        try:
            barrier.wait(timeout=30)
            for _ in range(ATTEMPTS_PER_WRITER):
                wanted = pick(rng)
                # Half the writers read first and compare-and-set, as the
                # controller does; the others write blindly, as a racing client might.
                expect = None
                if rng.random() < 0.5:
                    expect = TaskStatus(s.task(job_id, 0).status)
                try:
                    before = s.task(job_id, 0).status if expect is None else expect.value
                    if s.transition_task(job_id, 0, wanted, expect=expect):
                        applied[n].append((before, wanted.value))
                except IllegalTransition:
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert not errors, errors

    chain = status_chain(store, job_id)
    assert_legal_path(chain)
    # Every successful write is exactly one event, and every event was a success.
    successes = sum(len(a) for a in applied)
    assert len(chain) == successes
    assert sorted(t for a in applied for _, t in a) == sorted(t for _, t in chain)
    final = chain[-1][1] if chain else TaskStatus.PENDING.value
    assert store.task(job_id, 0).status == final
    job = store.job(job_id)
    assert job is not None and job.status == final
    # No transition outside the table was ever recorded.
    for source, target in chain:
        assert TaskStatus(target) in TRANSITIONS[TaskStatus(source)]  # type: ignore[arg-type]
