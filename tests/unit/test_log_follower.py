"""The client's log follower: prefixes, attempt separators, big logs, partial lines."""

from __future__ import annotations

from pathlib import Path

from skytui.client import Client
from skytui.config import paths
from skytui.engine.store import NewTask
from skytui.logs.store import task_log_path


def _job(client: Client, name: str = "train") -> int:
    return client.store.submit_jobs(
        name=name, tasks=[NewTask(name, "id-{job_id}-0", "-", 1)], spec={"name": name}, secrets={}
    )[0]


def _log(client: Client, job_id: int) -> Path:
    path = task_log_path(client.paths.job_logs, job_id, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_lines_are_prefixed_and_partial_lines_wait(home: Path) -> None:
    client = Client(paths())
    job_id = _job(client)
    path = _log(client, job_id)
    segment = client.store.open_segment(job_id, 0, 1, 0, "run", 0)
    client.store.update_segment(segment.id, pid=42)
    follower = client.log_follower(job_id)
    path.write_bytes(b"step 1\nstep 2\nhalf")
    assert follower.poll() == ["(train, pid=42) step 1", "(train, pid=42) step 2"]
    with open(path, "ab") as f:
        f.write(b" a line\n")
    assert follower.poll() == ["(train, pid=42) half a line"]
    assert follower.poll() == []


def test_attempts_are_separated_with_where_and_why(home: Path) -> None:
    client = Client(paths())
    job_id = _job(client)
    path = _log(client, job_id)
    first = client.store.start_attempt(job_id, 0, infra="local", instance_type="local", use_spot=False)
    client.store.open_segment(job_id, 0, first, 0, "run", 0)
    path.write_bytes(b"first try\n")
    client.store.end_attempt(job_id, 0, first, reason="machine lost: preempted")
    second = client.store.start_attempt(job_id, 0, infra="local", instance_type="local", use_spot=False)
    client.store.open_segment(job_id, 0, second, 0, "run", path.stat().st_size)
    with open(path, "ab") as f:
        f.write(b"second try\n")
    lines = client.log_follower(job_id).poll()
    assert lines[0].endswith("first try")
    assert "attempt 2 on local" in lines[1] and "machine lost: preempted" in lines[1]
    assert lines[2].endswith("second try")


def test_a_huge_log_opens_at_its_end_and_is_read_in_steps(home: Path) -> None:
    client = Client(paths())
    job_id = _job(client)
    path = _log(client, job_id)
    client.store.open_segment(job_id, 0, 1, 0, "run", 0)
    line = b"x" * 99 + b"\n"
    with open(path, "wb") as f:
        for _ in range(200):  # 20 MB
            f.write(line * 1000)
        f.write(b"the very last line\n")
    tail = client.log_follower(job_id, tail_bytes=1000).poll()
    assert len(tail) <= 10 and tail[-1].endswith("the very last line")
    whole = client.log_follower(job_id)
    first_poll = whole.poll()
    # One poll reads a bounded amount, the rest comes on the next polls.
    assert 0 < len(first_poll) * 100 <= client.log_follower(job_id).POLL_BUDGET + 200
    total = len(first_poll)
    while batch := whole.poll():
        total += len(batch)
    assert total == 200_001
