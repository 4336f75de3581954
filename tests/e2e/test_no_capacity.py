"""No capacity anywhere: the job waits PENDING, is told once per round (not
once per place), costs nothing while no machine exists, and lands on the
cheapest place that fits once capacity returns."""

from __future__ import annotations

import pytest
from fixtures.env import Env, events, wait_for

from skytui.client import Client
from skytui.config import Paths
from skytui.spec import load_pipeline

pytestmark = pytest.mark.timeout(240)

SPOT_H100 = """\
name: train
resources:
  infra: sim/aws
  accelerators: H100:8
  use_spot: true
run: echo trained
"""


def _rounds(env: Env, job: int) -> list[str]:
    return [e for e in events(env, job) if "no capacity in any of" in e]


def test_a_stocked_out_job_waits_pending_one_event_a_round_then_takes_the_cheapest_place(fast_env: Env) -> None:
    env = fast_env
    path = env.write("train.yaml", SPOT_H100)
    client = Client(Paths(env.home))
    try:
        offers = client.plan(load_pipeline(str(path)))[0].offers
    finally:
        client.close()
    assert len(offers) >= 3  # several places to try in each round
    env.cli("sim", "stockout", "all", "on", check=True)

    job = env.launch(path)
    wait_for(lambda: len(_rounds(env, job)) >= 3, 60, 0.2, "three rounds of capacity search")
    queued = env.job(job)
    assert queued["status"] == "PENDING"
    assert queued["cost_usd"] == 0  # no machine, no cost
    history = events(env, job)
    assert not any(e.startswith("placement:") for e in history), history  # no attempt per place
    assert not any(":STARTING:" in e for e in history), history  # no place said yes
    rounds = _rounds(env, job)
    assert f"no capacity in any of {len(offers)} place(s)" in rounds[0]
    assert "next at" in rounds[0]
    log = env.cli("jobs", "logs", "--controller", "--no-follow", str(job), check=True).stdout
    # The job's own log tells each round in one line, never each place.
    assert len(rounds) <= log.count("no capacity in any of") <= len(_rounds(env, job))
    assert len(log.splitlines()) <= len(_rounds(env, job)) + 2, log

    env.cli("sim", "stockout", "all", "off", check=True)
    done = env.wait_status(job, "SUCCEEDED", "FAILED", timeout=60)
    assert done["status"] == "SUCCEEDED" and done["recoveries"] == 0
    assert b"trained" in env.log(job)
    task = done["tasks"][0]
    cheapest = offers[0]
    assert (task["infra"], task["instance_type"]) == (cheapest.infra, cheapest.instance_type)
    assert done["cost_usd"] >= 0
    placements = [e for e in events(env, job) if e.startswith("placement:")]
    assert len(placements) == 1, placements
    wait_for(lambda: not env.node_dirs() or all(
        not (d / ".skytui-node.json").exists() for d in env.node_dirs()), 30, what="machine torn down")


def test_capacity_search_cost_starts_with_the_machine(fast_env: Env) -> None:
    """The one attempt a job gets opens when its machine is up: none of the
    time spent asking places shows in its cost or its attempts."""
    env = fast_env
    env.cli("sim", "stockout", "all", "on", check=True)
    job = env.launch(env.write("train.yaml", SPOT_H100.replace("echo trained", "sleep 1; echo trained")))
    wait_for(lambda: len(_rounds(env, job)) >= 2, 60, 0.2, "two rounds")
    env.cli("sim", "stockout", "all", "off", check=True)
    env.wait_status(job, "SUCCEEDED", timeout=60)
    from skytui.engine.store import Store

    store = Store(Paths(env.home).db_url)
    try:
        attempts = store.attempts(job)
        clusters = [c for c in store.clusters() if c.job_id == job]
    finally:
        store.close()
    assert len(attempts) == 1 and attempts[0].end_reason == "succeeded"
    # Only the machine that came up is on record; refused places left nothing.
    assert len(clusters) == 1 and clusters[0].attempt_no == 1
