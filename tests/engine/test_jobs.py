"""Managed jobs through the engine in-process, on sim: a run, a preemption, a
failing run with restarts, a cancel. Real sim machines (sandboxes served by
the node host), real processes and logs; no CLI, no daemon process."""

from __future__ import annotations

from fixtures.engine import InProcessEngine


def task(run: str, *, recovery: str | None = None, infra: str = "sim/aws") -> str:
    lines = ["name: train", "resources:", f"  infra: {infra}", "  use_spot: true"]
    if recovery:
        lines.append(f"  job_recovery: {recovery}")
    lines += ["run: |", *(f"  {line}" for line in run.splitlines())]
    return "\n".join(lines) + "\n"


async def test_a_job_runs_to_succeeded_with_its_log_stored(engine: InProcessEngine) -> None:
    [job] = await engine.submit(task("echo hello from $SKYPILOT_TASK_ID\necho second line"))
    view = await engine.wait_status(job, "SUCCEEDED")
    assert view.tasks[0].infra.startswith("sim:aws/")
    assert view.tasks[0].exit_code == 0 and view.tasks[0].recoveries == 0
    lines = engine.log(job).splitlines()
    assert any(line.startswith("hello from ") for line in lines)
    assert "second line" in lines
    await engine.wait_until(lambda: not engine.machines(), "the machine to be torn down")


async def test_a_sim_preemption_is_recovered(engine: InProcessEngine) -> None:
    flag = engine.work / "first"
    run = f"echo attempt\nif [ ! -f {flag} ]; then touch {flag}; sleep 600; fi\necho done"
    [job] = await engine.submit(task(run))
    await engine.wait_until(flag.exists, "the first attempt to run")
    await engine.wait_status(job, "RUNNING")
    first = (await engine.job(job)).tasks[0].infra
    await engine.preempt(job)
    view = await engine.wait_status(job, "SUCCEEDED")
    assert view.tasks[0].recoveries == 1 and view.tasks[0].restarts_on_errors == 0
    walk = [e.split(":")[1] for e in await engine.events(job) if e.startswith("status:")]
    at = walk.index("RECOVERING")
    assert walk[at - 1] == "RUNNING" and "RUNNING" in walk[at + 1:]
    assert walk[-1] == "SUCCEEDED"
    assert f"preempted in {first}" in next(e for e in await engine.events(job) if "recovered" in e)
    log = engine.log(job).splitlines()
    assert log.count("attempt") == 2 and log.count("done") == 1
    await engine.wait_until(lambda: not engine.machines(), "every machine to be torn down")


async def test_a_failing_run_restarts_then_fails(engine: InProcessEngine) -> None:
    [job] = await engine.submit(task("echo attempt\nexit 3", recovery="{max_restarts_on_errors: 1}"))
    view = await engine.wait_status(job, "FAILED", "FAILED_SETUP", "FAILED_NO_RESOURCE", "FAILED_CONTROLLER")
    assert view.status.value == "FAILED"
    # A restart is a recovery too (SkyPilot's recovery count), one that uses the budget.
    assert view.tasks[0].restarts_on_errors == 1 and view.tasks[0].recoveries == 1
    assert view.tasks[0].exit_code == 3
    assert "all 1 restarts on errors used" in (view.tasks[0].failure_reason or "")
    assert len(view.attempts) == 2
    assert engine.log(job).splitlines().count("attempt") == 2
    await engine.wait_until(lambda: not engine.machines(), "every machine to be torn down")


async def test_cancel_of_a_running_job_ends_cancelled_and_its_machine_is_gone(engine: InProcessEngine) -> None:
    started = engine.work / "started"
    [job] = await engine.submit(task(f"touch {started}\nsleep 600"))
    await engine.wait_until(started.exists, "the run to start")
    await engine.wait_status(job, "RUNNING")
    assert engine.machines()
    assert await engine.cancel(job) == [job]
    view = await engine.wait_status(job, "CANCELLED")
    assert view.tasks[0].status == "CANCELLED"
    await engine.wait_until(lambda: not engine.machines(), "the machine to be torn down")
    live = await engine.client(lambda c: c.store.live_clusters(job))
    assert live == []
