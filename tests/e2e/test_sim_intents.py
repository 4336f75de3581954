"""The sim chaos verbs as intents: `skytui sim preempt` and `sim stockout`
are recorded in the state DB and carried out by the controller, once, even
when they were written while it was down; the CLI says what it always said.
"""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

import pytest
from fixtures.env import Env, wait_for

from skytui.config import Paths, SimInfraConfig
from skytui.engine.store import AsyncStore, IntentOutcome, SimPreempt, SimStockout, Store

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parent.parent.parent

# The job blocks on its first attempt (until preempted), then finishes.
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


def block_once(env: Env, setup: str | None = None) -> int:
    """A job on sim that blocks until its first machine is reclaimed; its id, once it runs."""
    text = BLOCK_ONCE.format(flag=env.tmp / "first")
    if setup is not None:
        text += "setup: |\n" + "".join(f"  {line}\n" for line in setup.splitlines())
    job = env.launch(env.write("job.yaml", text))
    wait_for(lambda: (env.tmp / "first").exists(), 60, 0.05, "the job's first run")
    return job


def machine_names(env: Env, job_id: int) -> list[str]:
    """The names of the machines of a job's attempts, in order."""
    store = Store(Paths(env.home).db_url)
    try:
        ids = [a.cluster_id for a in store.attempts(job_id) if a.cluster_id is not None]
        return [row.name for row in (store.cluster(i) for i in ids) if row is not None]
    finally:
        store.close()


def preempted_line(job_id: int) -> re.Pattern[str]:
    return re.compile(rf"Preempted (\S+) \(job {job_id}\); the controller will recover the job\.\n")



# ------------------------------------------------------------ in the store


def test_an_intent_is_done_once_with_its_outcome(store: Store) -> None:
    first = store.request_intent(SimPreempt(7))
    second = store.request_intent(SimStockout("aws/us-east-1", True))
    assert [(i.id, i.request) for i in store.open_intents()] == [
        (first, SimPreempt(7, None)), (second, SimStockout("aws/us-east-1", True))
    ]
    assert store.intent_outcome(first) is None
    assert store.finish_intent(first, IntentOutcome(cluster="c-1"))
    # A second outcome for the same intent is refused: the first one stands.
    assert not store.finish_intent(first, IntentOutcome(error="late"))
    assert store.intent_outcome(first) == IntentOutcome(cluster="c-1")
    assert [i.id for i in store.open_intents()] == [second]
    store.finish_intent(second, IntentOutcome(region="aws/us-east-1", stockouts=("all", "aws/us-east-1")))
    assert store.intent_outcome(second) == IntentOutcome(region="aws/us-east-1",
                                                         stockouts=("all", "aws/us-east-1"))
    assert store.open_intents() == []


def test_intents_done_a_day_ago_are_dropped(store: Store, home: Path) -> None:
    import sqlite3

    old, recent, last = (store.request_intent(SimStockout("all", on)) for on in (True, False, True))
    store.finish_intent(old, IntentOutcome(region="all"))
    store.finish_intent(recent, IntentOutcome(region="all"))
    with sqlite3.connect(home / "state.db") as db:
        db.execute("UPDATE intents SET done_at = done_at - 25 * 3600 WHERE id = ?", (old,))
        db.execute("UPDATE intents SET done_at = done_at - 23 * 3600 WHERE id = ?", (recent,))
    store.finish_intent(last, IntentOutcome(region="all"))
    assert store.intent_outcome(old) is None
    assert store.intent_outcome(recent) == store.intent_outcome(last) == IntentOutcome(region="all")


def test_a_preemption_claims_its_machine_once(store: Store) -> None:
    """The machine is recorded before it is taken, with the job's event; a
    later claim (a restarted controller's) keeps the first."""
    intent = store.request_intent(SimPreempt(7))
    kw = {"job_id": 7, "task_idx": 0, "event_kind": "sim-preempt", "message": "reclaiming c-1 now"}
    assert store.claim_preempt_target(intent, "c-1", **kw) == "c-1"  # type: ignore[arg-type]
    assert store.claim_preempt_target(intent, "c-2", **kw) == "c-1"  # type: ignore[arg-type]
    (row,) = store.open_intents()
    assert row.target == "c-1"
    assert [(e.kind, e.message) for e in store.events(job_id=7)] == [("sim-preempt", "reclaiming c-1 now")]


def test_the_controller_carries_out_stockouts_through_its_sim_cloud(home: Path) -> None:
    """SimIntents in-process, over a real SimCloud: the outcome is recorded
    and the intent is not started twice by passes that overlap it."""
    from skytui.clouds.sim import SimCloud, read_stockouts
    from skytui.engine.sim_intents import SimIntents

    p = Paths(home)
    sync = Store(p.db_url)
    astore = AsyncStore(sync)
    sim = SimCloud(p, SimInfraConfig())
    good = sync.request_intent(SimStockout("sim:aws/us-east-1", True))
    bad = sync.request_intent(SimStockout("mars-north-1", True))

    async def run() -> None:
        intents = SimIntents(astore, {"sim": sim})
        await intents.deliver()
        await intents.deliver()  # before the first pass's coroutines end: nothing started twice
        while sync.open_intents():
            await asyncio.sleep(0.02)

    try:
        asyncio.run(run())
        assert sync.intent_outcome(good) == IntentOutcome(region="aws/us-east-1", stockouts=("aws/us-east-1",))
        outcome = sync.intent_outcome(bad)
        assert outcome is not None and outcome.error is not None and "unknown sim region" in outcome.error
        assert read_stockouts(p.sim_state) == {"aws/us-east-1"}
    finally:
        astore.close()


def test_the_client_acts_on_no_infra() -> None:
    """No module of the client imports the sim cloud: the controller acts."""
    for path in sorted((REPO / "skytui" / "client").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            assert not any(name.startswith("skytui.clouds.sim") for name in names), path


# ------------------------------------------------------------ end to end


def test_a_preempt_intent_is_carried_out_by_the_controller_and_the_job_recovers(fast_env: Env) -> None:
    env = fast_env
    job = block_once(env)
    result = env.cli("sim", "preempt", str(job), check=True)
    match = preempted_line(job).fullmatch(result.stdout)
    assert match is not None, result.stdout
    assert match.group(1) == machine_names(env, job)[0]
    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    assert done["recoveries"] == 1
    # Carried out once, by the controller: one intent, done, naming that machine.
    store = Store(Paths(env.home).db_url)
    try:
        assert store.open_intents() == []
        assert store.intent_outcome(1) == IntentOutcome(cluster=match.group(1))
    finally:
        store.close()
    # A finished job has no machine to take, and an unknown one is said so.
    result = env.cli("sim", "preempt", str(job))
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr == f"Error: job {job} task 0 has no machine up (SUCCEEDED)\n"
    result = env.cli("sim", "preempt", "99")
    assert (result.code, result.stderr) == (2, "Error: no managed job 99\n")


def test_an_intent_written_while_the_controller_is_stopped_is_carried_out_at_its_start(fast_env: Env) -> None:
    env = fast_env
    job = block_once(env)
    first_machine = machine_names(env, job)[0]
    env.cli("controller", "stop", check=True)
    store = Store(Paths(env.home).db_url)
    try:
        preempt = store.request_intent(SimPreempt(job))
        stockout = store.request_intent(SimStockout("mars-north-1", True))
        assert store.intent_outcome(preempt) is None  # nobody to carry it out yet
        # Read from the DB: any CLI read would start a controller (work is in progress).
        row = store.job(job)
        assert row is not None and row.status == "RUNNING"
        env.cli("controller", "start", check=True)
        wait_for(lambda: not store.open_intents(), 30, 0.1, "the controller to carry out the intents")
        assert store.intent_outcome(preempt) == IntentOutcome(cluster=first_machine)
        outcome = store.intent_outcome(stockout)
        assert outcome is not None and outcome.error is not None and "unknown sim region" in outcome.error
    finally:
        store.close()
    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    assert done["recoveries"] == 1


def test_a_preemption_cut_short_by_a_controller_kill_takes_no_second_machine(fast_env: Env) -> None:
    """A controller killed after taking the machine of a preempt intent, and
    before recording its outcome, left the intent open with its target
    claimed. The job has recovered onto a new machine since; the next
    controller reports the machine that was taken and leaves the new one be
    (before v6 it took the new one too: one preempt, two recoveries)."""
    env = fast_env
    runs, release = env.tmp / "runs", env.tmp / "release"
    job = env.launch(env.write("job.yaml", f"""\
name: train
resources:
  infra: sim/aws
  accelerators: H100:8
  use_spot: true
run: |
  echo run >> {runs}
  while [ ! -f {release} ]; do sleep 0.1; done
  echo done
"""))
    wait_for(lambda: runs.exists(), 60, 0.05, "the job's first run")
    first_machine = env.cli("sim", "preempt", str(job), check=True).stdout.split()[1]
    wait_for(lambda: len(runs.read_text().splitlines()) == 2, 90, 0.05, "the run on the recovery's machine")
    env.cli("controller", "stop", check=True)
    store = Store(Paths(env.home).db_url)
    try:
        # What the killed controller had written: the intent, its claimed target, its event.
        intent = store.request_intent(SimPreempt(job))
        store.claim_preempt_target(intent, first_machine, job_id=job, task_idx=0, event_kind="sim-preempt",
                                   message=f"reclaiming {first_machine} now, as a spot preemption")
        env.cli("controller", "start", check=True)
        wait_for(lambda: not store.open_intents(), 30, 0.1, "the controller to carry out the intent")
        assert store.intent_outcome(intent) == IntentOutcome(cluster=first_machine)
    finally:
        store.close()
    release.touch()
    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    assert done["recoveries"] == 1
    assert len(runs.read_text().splitlines()) == 2
    assert len(machine_names(env, job)) == 2


def test_a_second_preempt_of_a_recovering_job_says_what_it_says_today(fast_env: Env) -> None:
    """While a recovery sets up on its new machine, the job is RECOVERING and
    that machine is the one a second preempt takes; once every region is
    stocked out and the job waits for capacity, there is none to take."""
    env = fast_env
    counter = env.tmp / "setups"
    setup = (f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}\n"
             f"if [ $n -eq 1 ]; then touch {env.tmp}/in-setup; sleep 600; fi")
    job = block_once(env, setup)
    env.cli("sim", "preempt", str(job), check=True)
    wait_for(lambda: (env.tmp / "in-setup").exists(), 60, 0.05, "the recovery's setup")
    assert env.job(job)["status"] == "RECOVERING"
    env.cli("sim", "stockout", "all", "on", check=True)
    result = env.cli("sim", "preempt", str(job), check=True)
    match = preempted_line(job).fullmatch(result.stdout)
    assert match is not None, result.stdout
    assert match.group(1) == machine_names(env, job)[1]
    env.wait_status(job, "PENDING", timeout=30)  # no capacity anywhere: it waits
    result = env.cli("sim", "preempt", str(job))
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr == f"Error: job {job} task 0 has no machine up (PENDING)\n"
    result = env.cli("sim", "stockout", "all", "off", check=True)
    assert result.stdout == "sim all: capacity back; stock-outs now: none\n"
    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    assert done["recoveries"] == 1
