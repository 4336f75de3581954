"""`skytui cost` end to end on `sim`: a spot job preempted once, then
finished. The preempted attempt's dollars are all lost; the one that
succeeded loses only its provisioning; the job's and the grand totals add
them up, in the JSON contract and in the table."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fixtures.env import Env, wait_for

pytestmark = pytest.mark.timeout(240)

BLOCK_ONCE = """\
name: train
resources:
  infra: sim/aws
  accelerators: H100:8
  use_spot: true
run: |
  if [ ! -f {flag} ]; then touch {flag}; sleep 600; fi
  echo done
"""


def test_a_preempted_attempts_dollars_are_lost(fast_env: Env) -> None:
    env = fast_env
    flag = env.tmp / "first"
    job = env.launch(env.write("job.yaml", BLOCK_ONCE.format(flag=flag)))
    wait_for(flag.exists, 60, 0.05, "the first attempt to run")
    env.cli("sim", "preempt", str(job), check=True)
    env.wait_status(job, "SUCCEEDED", timeout=90)

    one = json.loads(env.cli("cost", "--job", str(job), "--json", check=True).stdout)
    assert one["prices"] == "catalog"
    preempted, succeeded = one["attempts"]
    assert preempted["end_reason"].startswith("preempted") and succeeded["end_reason"] == "succeeded"
    assert preempted["price_per_hour"] > 0 and preempted["run_s"] > 0
    assert preempted["spent_usd"] > 0 and preempted["lost_usd"] == preempted["spent_usd"]
    assert preempted["lost_share"] == 1.0
    for attempt in (preempted, succeeded):
        seconds = attempt["provisioning_s"] + attempt["run_s"]
        assert attempt["spent_usd"] == pytest.approx(attempt["price_per_hour"] * seconds / 3600, abs=1e-4)
    provisioning = succeeded["price_per_hour"] * succeeded["provisioning_s"] / 3600
    assert succeeded["lost_usd"] == pytest.approx(provisioning, abs=1e-4)
    assert succeeded["lost_usd"] < succeeded["spent_usd"]
    (job_line,) = one["jobs"]
    assert job_line["id"] == job
    assert job_line["lost_usd"] == pytest.approx(preempted["lost_usd"] + succeeded["lost_usd"], abs=2e-4)

    everything = json.loads(env.cli("cost", "--json", check=True).stdout)
    assert [j["id"] for j in everything["jobs"]] == [job] and everything["days"] == 30
    assert everything["total"]["lost_usd"] == pytest.approx(job_line["lost_usd"], abs=1e-4)
    assert {line["infra"] for line in everything["by_infra"]} == {preempted["infra"], succeeded["infra"]}

    table = env.cli("cost", check=True).stdout
    assert "Total: spent $" in table and "prices: catalog" in table
    assert any(line.split()[:2] == [str(job), "train"] for line in table.splitlines()), table


def test_the_ledgers_sums_on_postgres(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sums run in SQL (a day number, casts, CASE): PostgreSQL gives the
    figures SQLite gives, and that each attempt's own arithmetic gives."""
    from skytui.engine.store import ClusterStatus, NewTask, Store

    t0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
    clock = {"now": t0}
    monkeypatch.setattr(time, "time", lambda: clock["now"])
    store = Store(pg_url)
    try:
        job = store.submit_jobs(name="pg", tasks=[NewTask("pg", "id-{job_id}-0", "-", 1)], spec={"name": "pg"},
                                secrets={})[0]
        for machine_at, up_at, end_at, reason in ((0, 100, 1000, "preempted"), (1100, 1300, None, None)):
            clock["now"] = t0 + machine_at
            cluster = store.insert_cluster(name=f"pg-{machine_at}", cloud="sim", region="aws/us-east-1", zone=None,
                                           instance_type="x", use_spot=True, num_nodes=1, job_id=job, task_idx=0,
                                           attempt_no=1, price_per_hour=3.6)
            clock["now"] = t0 + up_at
            attempt = store.start_attempt(job, 0, infra="sim:aws/us-east-1", instance_type="x", use_spot=True,
                                          price_per_hour=3.6, cluster_id=cluster)
            if end_at is not None:
                clock["now"] = t0 + end_at
                store.end_attempt(job, 0, attempt, reason=reason or "?")
                store.update_cluster(cluster, status=ClusterStatus.TERMINATED)
        now = t0 + 3300  # the second attempt: 200 s provisioning, 2000 s running so far
        sums = store.spend_sums(now=now)
        each = store.attempt_spend(now=now, job_ids=[job])
    finally:
        store.close()
    (task,) = sums.tasks
    assert (round(task.spent, 6), round(task.lost, 6)) == (3.2, 1.2)  # $1.00 preempted + $2.20, $0.20 provisioning
    assert round(sum(a.spent for a in each), 6) == 3.2 and round(sum(a.lost for a in each), 6) == 1.2
    assert {day: (round(s, 6), round(lo, 6)) for day, (s, lo) in sums.by_day.items()} == {"2027-01-15": (3.2, 1.2)}
    assert list(sums.by_infra) == ["sim:aws/us-east-1"]


def test_cost_answers_from_a_remote_controller(remote_env: Env, ssh_user: Any) -> None:
    """`skytui cost` through a RemoteClient: the controller machine's ledger.
    A cancelled attempt's dollars are lost too."""
    env = remote_env
    job = env.launch(env.write("spot.yaml", "name: spot\nresources: {infra: sim/aws, accelerators: H100:8, "
                                            "use_spot: true}\nrun: sleep 600\n"))
    env.wait_status(job, "RUNNING", timeout=90)
    running = json.loads(env.cli("cost", "--job", str(job), "--json", check=True).stdout)
    (attempt,) = running["attempts"]
    assert attempt["end_reason"] is None and attempt["price_per_hour"] > 0
    provisioning = attempt["price_per_hour"] * attempt["provisioning_s"] / 3600
    assert attempt["lost_usd"] == pytest.approx(provisioning, abs=1e-4)  # its run is not lost (yet)
    env.cli("jobs", "cancel", "-y", str(job), check=True)
    env.wait_status(job, "CANCELLED", timeout=90)
    done = json.loads(env.cli("cost", "--job", str(job), "--json", check=True).stdout)
    (attempt,) = done["attempts"]
    assert attempt["spent_usd"] > 0 and attempt["lost_usd"] == attempt["spent_usd"]
