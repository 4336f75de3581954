"""The pool manager and the reconcile loop in-process, on sim: a pool runs
its jobs one per worker, and a job outlives the Reconciler that started it
(a new one on the same DB re-attaches, never starting it twice)."""

from __future__ import annotations

from fixtures.engine import InProcessEngine


async def test_a_pool_runs_its_jobs_one_per_worker(engine: InProcessEngine) -> None:
    setups = engine.work / "setups"
    await engine.apply_pool("p", (
        "name: workers\nresources:\n  infra: sim/aws\n"
        f"setup: |\n  echo setup-ran >> {setups}\n"
        "pool:\n  workers: 2\n"
    ))
    release = engine.work / "release"
    # Each job holds its worker until both run: two jobs on two workers, at once.
    ids = await engine.submit(
        "name: shard\n"
        "setup: echo job-setup-must-not-run\n"
        "run: |\n"
        f"  touch {engine.work}/ran-$SKYPILOT_JOB_RANK\n"
        f"  until [ -e {release} ]; do sleep 0.05; done\n"
        "  echo rank $SKYPILOT_JOB_RANK of $SKYPILOT_NUM_JOBS\n",
        pool="p", num_jobs=2,
    )
    await engine.wait_until(lambda: all((engine.work / f"ran-{rank}").exists() for rank in (0, 1)),
                            "both jobs to run at once")
    release.touch()
    views = [await engine.wait_status(job, "SUCCEEDED") for job in ids]
    workers = {view.job.worker_id for view in views}
    assert len(workers) == 2 and None not in workers  # one job per worker
    assert sorted(engine.log(job).strip() for job in ids) == ["rank 0 of 2", "rank 1 of 2"]
    assert setups.read_text().count("setup-ran") == 2  # once per worker, never per job
    [pool] = await engine.client(lambda c: c.pools("p"))
    assert pool.ready == 2 and len(pool.workers) == 2
    await engine.client(lambda c: c.pool_down("p"))
    engine.wake()
    await engine.wait_until(lambda: not engine.machines(), "the pool's machines to be torn down")


async def test_a_new_reconciler_resumes_a_job_the_stopped_one_started(engine: InProcessEngine) -> None:
    release = engine.work / "release"
    [job] = await engine.submit(
        "name: long\nresources:\n  infra: sim/aws\n"
        "run: |\n"
        "  echo started\n"
        f"  until [ -e {release} ]; do sleep 0.05; done\n"
        "  echo finished\n"
    )
    await engine.wait_status(job, "RUNNING")
    await engine.wait_until(lambda: "started" in engine.log(job), "the run's first line to be stored")
    machines = engine.machines()
    await engine.stop()
    # Stopped, the controller leaves the job running on its machine.
    assert (await engine.job(job)).status.value == "RUNNING"
    assert engine.machines() == machines
    release.touch()
    await engine.start()
    view = await engine.wait_status(job, "SUCCEEDED")
    assert view.tasks[0].recoveries == 0 and len(view.attempts) == 1  # re-attached, not relaunched
    assert engine.log(job).splitlines() == ["started", "finished"]  # byte-exact across the restart
    await engine.wait_until(lambda: not engine.machines(), "the machine to be torn down")
