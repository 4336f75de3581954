"""The cost ledger on a seeded DB: known machines, attempts and prices,
written at known times, read at a fixed `now`, give exact dollars.

What a user notices: a preempted attempt's dollars are all lost, a
succeeded one loses only its provisioning, a running one loses nothing of
its run yet, a pool job costs nothing of its own while its pool's workers
cost the pool (lost until ready), and `--days` leaves older spend out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skytui.cli.main import main
from skytui.client.wire import decode, encode
from skytui.client import Client
from skytui.config import paths
from skytui.engine.store import ClusterStatus, NewTask, Store

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
NOW = T0 + 3760
DAY = 86400.0
OLD = T0 - 40 * DAY  # 2026-12-06 08:00 UTC, outside a 30-day window
SIM_AWS = "sim:aws/us-east-1"
SIM_GCP = "sim:gcp/us-central1"
PER_S_36 = 3.6 / 3600  # $3.60/h: a thousandth of a dollar a second


def _task(name: str, idx: int = 0) -> NewTask:
    return NewTask(name, f"sky-managed-2027-01-15-08-00-00-000000_{name}_{{job_id}}-{idx}", "1x[CPU:1+]", 1)


class World:
    def __init__(self, store: Store, clock: dict[str, float]) -> None:
        self.store = store
        self.clock = clock

    def at(self, when: float) -> None:
        self.clock["now"] = when

    def job(self, name: str, tasks: int = 1, pool: str | None = None) -> int:
        return self.store.submit_jobs(name=name, tasks=[_task(f"{name}{i}", i) for i in range(tasks)],
                                      spec={"name": name}, secrets={}, pool=pool)[0]

    def attempt(self, job_id: int, idx: int, *, machine_at: float, opened_at: float, ended_at: float | None,
                reason: str | None, price: float, infra: str) -> None:
        """A machine recorded at `machine_at` (provisioning), up and its attempt opened at `opened_at`."""
        self.at(machine_at)
        cluster = self.store.insert_cluster(
            name=f"c-{job_id}-{idx}-{machine_at}", cloud="sim", region=infra.split(":")[1], zone=None,
            instance_type="sim-4", use_spot=True, num_nodes=1, job_id=job_id, task_idx=idx, attempt_no=1,
            price_per_hour=price,
        )
        self.at(opened_at)
        attempt_no = self.store.start_attempt(job_id, idx, infra=infra, instance_type="sim-4", use_spot=True,
                                              price_per_hour=price)
        self.store.set_attempt_cluster(job_id, idx, attempt_no, cluster)
        if ended_at is not None:
            self.at(ended_at)
            self.store.end_attempt(job_id, idx, attempt_no, reason=reason or "?")
            self.store.update_cluster(cluster, status=ClusterStatus.TERMINATED)

    def worker(self, pool: str, *, created_at: float, ready_at: float | None, ended_at: float | None) -> int:
        self.at(created_at)
        worker = self.store.insert_worker(pool, 1)
        cluster = self.store.insert_cluster(
            name=f"w-{worker}", cloud="sim", region="aws/us-east-1", zone=None, instance_type="sim-4",
            use_spot=False, num_nodes=1, pool=pool, worker_id=worker, price_per_hour=3.6,
        )
        self.store.update_worker(worker, cluster_id=cluster, ready_at=ready_at)
        if ended_at is not None:
            self.at(ended_at)
            self.store.update_cluster(cluster, status=ClusterStatus.TERMINATED)
        return cluster


@pytest.fixture
def world(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Five jobs and a pool of two workers, written at frozen times."""
    clock = {"now": T0}
    monkeypatch.setattr(time, "time", lambda: clock["now"])
    store = Store(paths().db_url)
    w = World(store, clock)
    ids: dict[str, int] = {}
    try:
        ids["spot"] = w.job("spot")
        # Provisioned 100 s, ran 900 s, preempted: $1.00, all lost.
        w.attempt(ids["spot"], 0, machine_at=T0, opened_at=T0 + 100, ended_at=T0 + 1000,
                  reason="preempted in sim", price=3.6, infra=SIM_AWS)
        # Provisioned 200 s, ran 2000 s, succeeded: $2.20, its provisioning ($0.20) lost.
        w.attempt(ids["spot"], 0, machine_at=T0 + 1100, opened_at=T0 + 1300, ended_at=T0 + 3300,
                  reason="succeeded", price=3.6, infra=SIM_AWS)
        ids["pipe"] = w.job("pipe", tasks=2)
        # $7.20/h: 650 s succeeded ($1.30, $0.10 lost), then 60 s + 3000 s still running ($6.12, $0.12 lost).
        w.attempt(ids["pipe"], 0, machine_at=T0, opened_at=T0 + 50, ended_at=T0 + 650,
                  reason="succeeded", price=7.2, infra=SIM_GCP)
        w.attempt(ids["pipe"], 1, machine_at=T0 + 700, opened_at=T0 + 760, ended_at=None,
                  reason=None, price=7.2, infra=SIM_GCP)
        ids["broken"] = w.job("broken")
        w.attempt(ids["broken"], 0, machine_at=T0 + 10, opened_at=T0 + 20, ended_at=T0 + 120,
                  reason="job exited with exit code 7", price=3.6, infra=SIM_AWS)
        store.apply_pool("warm", {"name": "warm", "tasks": [{}]}, {}, 2)
        # Up 3760 s so far, READY after 300 s: $3.76, $0.30 lost.
        worker_cluster = w.worker("warm", created_at=T0, ready_at=T0 + 300, ended_at=None)
        # Never READY, gone after 400 s: $0.40, all lost.
        w.worker("warm", created_at=T0 + 500, ready_at=None, ended_at=T0 + 900)
        ids["pooled"] = w.job("pooled", pool="warm")
        w.at(T0 + 400)
        store.start_attempt(ids["pooled"], 0, infra=SIM_AWS, instance_type="sim-4", use_spot=False,
                            cluster_id=worker_cluster)
        w.at(T0 + 1400)
        store.end_attempt(ids["pooled"], 0, 1, reason="succeeded")
        ids["old"] = w.job("old")
        # 40 days ago: 10 s + 3600 s, succeeded: $3.61, $0.01 lost.
        w.attempt(ids["old"], 0, machine_at=OLD, opened_at=OLD + 10, ended_at=OLD + 3610,
                  reason="succeeded", price=3.6, infra=SIM_AWS)
    finally:
        store.close()
    monkeypatch.undo()
    monkeypatch.setenv("SKYTUI_HOME", str(home))
    yield ids


def _client() -> Client:
    return Client(paths())


def test_attempts_spend_and_lose_what_they_should(world: dict[str, int]) -> None:
    store = Store(paths().db_url)
    try:
        spends = store.attempt_spend(now=NOW, job_ids=[world["spot"], world["pipe"], world["pooled"]])
    finally:
        store.close()
    figures = [(s.job_id, s.task_idx, s.attempt_no, round(s.provisioning_s), round(s.run_s),
                round(s.spent, 6), round(s.lost, 6)) for s in spends]
    assert figures == [
        (world["spot"], 0, 1, 100, 900, 1.0, 1.0),  # preempted: all of it
        (world["spot"], 0, 2, 200, 2000, 2.2, 0.2),  # succeeded: its provisioning
        (world["pipe"], 0, 1, 50, 600, 1.3, 0.1),
        (world["pipe"], 1, 1, 60, 3000, 6.12, 0.12),  # running: its run is not lost yet
        (world["pooled"], 0, 1, 0, 1000, 0.0, 0.0),  # a worker's machine: the pool's cost
    ]


def test_report_sums_per_job_day_infra_and_pool(world: dict[str, int]) -> None:
    report = _client().cost_report(days=30, now=NOW)
    jobs = {j.job_id: (round(j.spent, 6), round(j.lost, 6)) for j in report.jobs}
    assert jobs == {world["spot"]: (3.2, 1.2), world["pipe"]: (7.42, 0.22), world["broken"]: (0.11, 0.11),
                    world["pooled"]: (0.0, 0.0)}  # "old" ended 39 days ago: outside the window
    assert [j.job_id for j in report.jobs] == sorted(jobs, reverse=True)
    pipe = next(j for j in report.jobs if j.job_id == world["pipe"])
    assert [(t.key, round(t.spent, 6), round(t.lost, 6)) for t in pipe.tasks] == [("0", 1.3, 0.1), ("1", 6.12, 0.12)]
    assert [(p.key, round(p.spent, 6), round(p.lost, 6)) for p in report.by_pool] == [("warm", 4.16, 0.7)]
    assert [(i.key, round(i.spent, 6), round(i.lost, 6)) for i in report.by_infra] == [
        (SIM_AWS, 7.47, 2.01), (SIM_GCP, 7.42, 0.22),  # sim:aws: jobs 3.31 + the pool's 4.16
    ]
    assert [(d.key, round(d.spent, 6)) for d in report.by_day] == [("2027-01-15", 14.89)]
    assert (round(report.total.spent, 6), round(report.total.lost, 6)) == (14.89, 2.23)
    assert round(report.total.lost_share, 4) == round(2.23 / 14.89, 4)
    assert report.prices == "catalog" and report.attempts == []


def test_all_time_counts_older_days_and_one_job_shows_its_attempts(world: dict[str, int]) -> None:
    client = _client()
    report = client.cost_report(days=None, now=NOW)
    assert [(d.key, round(d.spent, 6), round(d.lost, 6)) for d in report.by_day] == [
        ("2026-12-06", 3.61, 0.01), ("2027-01-15", 14.89, 2.23),
    ]
    one = client.cost_report(job_id=world["spot"], days=None, now=NOW)
    assert [j.job_id for j in one.jobs] == [world["spot"]] and one.by_pool == []
    assert [(a.attempt_no, a.end_reason) for a in one.attempts] == [(1, "preempted in sim"), (2, "succeeded")]
    assert (round(one.total.spent, 6), round(one.total.lost, 6)) == (3.2, 1.2)
    # A remote controller's answer is the same report (RemoteClient.cost_report).
    for sent in (report, one):
        assert decode(json.loads(json.dumps(encode(sent)))) == sent


def test_the_sums_in_sql_agree_with_each_attempts_figures(world: dict[str, int]) -> None:
    """`cost` sums in SQL, the job view adds up its attempts in Python: one
    job's figures are the same either way."""
    client = _client()
    every = {j.job_id: j for j in client.cost_report(days=None, now=NOW).jobs}
    for job_id in world.values():
        (alone,) = client.cost_report(job_id=job_id, days=None, now=NOW).jobs
        summed = every[job_id]
        assert (alone.name, alone.pool) == (summed.name, summed.pool)
        assert [(t.key, round(t.spent, 9), round(t.lost, 9)) for t in alone.tasks] == \
            [(t.key, round(t.spent, 9), round(t.lost, 9)) for t in summed.tasks]


def test_cost_command_json_and_table(
    world: dict[str, int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW)
    assert main(["cost", "--json", "--days", "30"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["prices"] == "catalog" and document["days"] == 30
    assert document["total"] == {"spent_usd": 14.89, "lost_usd": 2.23, "lost_share": round(2.23 / 14.89, 4)}
    spot = next(j for j in document["jobs"] if j["id"] == world["spot"])
    assert (spot["spent_usd"], spot["lost_usd"], spot["lost_share"]) == (3.2, 1.2, 0.375)
    assert document["by_pool"] == [{"pool": "warm", "spent_usd": 4.16, "lost_usd": 0.7, "lost_share": 0.1683}]
    assert main(["cost", "--job", str(world["spot"]), "--json"]) == 0
    attempts = json.loads(capsys.readouterr().out)["attempts"]
    assert [(a["attempt"], a["lost_usd"], a["provisioning_s"]) for a in attempts] == [(1, 1.0, 100.0), (2, 0.2, 200.0)]
    assert main(["cost"]) == 0
    text = capsys.readouterr().out
    assert "Total: spent $14.89, lost $2.23 (15 %)" in text
    assert "prices: catalog" in text
    spot_line = next(line for line in text.splitlines() if line.split()[:2] == [str(world["spot"]), "spot"])
    assert spot_line.split()[-4:] == ["$3.20", "$1.20", "38", "%"]


def test_cost_of_an_unknown_job_is_a_usage_error(world: dict[str, int]) -> None:
    assert main(["cost", "--job", "999"]) == 2

