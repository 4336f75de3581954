"""`jobs queue` fits its terminal: columns hide by `format.QUEUE_PRIORITY`,
the important ones stay whole, and a limited view says it is limited.

The real command (`cmd_queue`) on a real state DB; only the console it
prints to is given a width, as a terminal of that width would."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from skytui.cli import jobs as jobs_cli
from skytui.cli import render
from skytui.client import Client
from skytui.client.serve import Server
from skytui.client.wire import decode, encode
from skytui.config import paths
from skytui.engine.status import TaskStatus as S
from skytui.engine.store import NewTask
from skytui.format import QUEUE_COLUMNS

CORE = ("ID", "NAME", "STATUS", "JOB DURATION", "#RECOVERIES", "COST", "INFRA")


@pytest.fixture
def client(home: Path) -> Iterator[Client]:
    c = Client(paths())
    yield c
    c.close()


def _submit(client: Client, name: str, num_jobs: int = 1) -> list[int]:
    task = NewTask(name, "sky-managed-x_{job_id}-0", "1x[CPU:1+]", 1)
    return client.store.submit_jobs(name=name, tasks=[task], spec={}, secrets={}, num_jobs=num_jobs)


def _run_priced(client: Client, job_id: int) -> None:
    store = client.store
    store.transition_task(job_id, 0, S.STARTING)
    store.start_attempt(job_id, 0, infra="sim:aws/us-east-1", instance_type="g4dn.xlarge", use_spot=True,
                        price_per_hour=3600.0)
    store.transition_task(job_id, 0, S.RUNNING)


def _queue(client: Client, monkeypatch: pytest.MonkeyPatch, width: int, *flags: str) -> list[str]:
    buffer = io.StringIO()
    monkeypatch.setattr(render, "out", Console(file=buffer, width=width, highlight=False, soft_wrap=True))
    args = argparse.Namespace(all="-a" in flags, json=False, skip_finished="-s" in flags)
    assert jobs_cli.cmd_queue(client, args) == 0
    return buffer.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 120, 150, 200])
def test_the_table_fits_and_keeps_what_matters_whole(client: Client, monkeypatch: pytest.MonkeyPatch,
                                                     width: int) -> None:
    job = _submit(client, "train-resnet50")[0]
    _run_priced(client, job)
    lines = _queue(client, monkeypatch, width)
    header, row = lines[1], lines[2]
    assert all(len(line) <= width for line in lines), lines
    shown = [name for name in QUEUE_COLUMNS if name in header]
    assert shown[:1] == ["ID"] and "train-resnet50" in row and "RUNNING" in row
    if width >= 120:
        assert set(CORE) <= set(shown), header
        assert "sim:aws/us-east-1" in row and "…" not in row
    if width >= 150:
        assert shown == list(QUEUE_COLUMNS), header
    else:
        # The least important go first: POOL, then REQUESTED, TOT. DURATION...
        assert "POOL" not in shown


def test_a_limited_queue_says_how_much_it_left_out(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _submit(client, "sweep", num_jobs=57)
    client.store.cancel_unstarted(ids[:-3])
    lines = _queue(client, monkeypatch, 160)
    assert lines[-1] == "showing 50 of 57 · -a for all"
    assert not any("showing" in line for line in _queue(client, monkeypatch, 160, "-a"))
    # In progress only: 3 jobs, all shown, so nothing to say.
    assert not any("showing" in line for line in _queue(client, monkeypatch, 160, "-s"))


def test_a_short_queue_has_no_footer(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    _submit(client, "one", num_jobs=50)
    assert not any("showing" in line for line in _queue(client, monkeypatch, 160))
    assert client.job_count() == 50 and client.job_count(skip_finished=True) == 50


def test_the_count_crosses_the_remote_controllers_api(client: Client) -> None:
    """`job_count` is answered by the API process on a controller machine (serve.Server)."""
    ids = _submit(client, "sweep", num_jobs=7)
    client.store.cancel_unstarted(ids[:5])
    answers = io.BytesIO()
    server = Server(client, answers)
    server.handle({"id": 1, "call": "job_count", "args": encode([]), "kwargs": encode({})})
    server.handle({"id": 2, "call": "job_count", "args": encode([]), "kwargs": encode({"skip_finished": True})})
    results = [decode(json.loads(line)["result"]) for line in answers.getvalue().splitlines()]
    assert results == [7, 2]
