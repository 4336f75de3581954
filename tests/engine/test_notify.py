"""Notifications (config.yaml's `jobs.notify`) from the engine in-process on
sim, to a real HTTP receiver on 127.0.0.1 and a real command: a job's end, a
recovery, retries after failures, a sink that hangs or refuses beside one
that works, and a controller restarted without repeating or skipping."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from fixtures.engine import InProcessEngine
from fixtures.env import FAST_CONFIG, Env
from infra.webhook import WebhookServer

from skytui.config import Paths
from skytui.engine import event_kinds
from skytui.engine.notify_events import notifications_for
from skytui.engine.store import AsyncStore, Store

Start = Callable[..., Awaitable[InProcessEngine]]


def task(run: str) -> str:
    lines = ["name: train", "resources:", "  infra: sim/aws", "  use_spot: true", "run: |"]
    return "\n".join([*lines, *(f"  {line}" for line in run.splitlines())]) + "\n"


@pytest.fixture
def webhook() -> Iterator[Callable[..., WebhookServer]]:
    servers: list[WebhookServer] = []

    def make(**kwargs: Any) -> WebhookServer:
        servers.append(WebhookServer(**kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
async def start(env: Env) -> AsyncIterator[Start]:
    """Start the engine with these sinks in config.yaml (JSON is YAML)."""
    world: InProcessEngine | None = None

    async def start_with(*sinks: dict[str, Any]) -> InProcessEngine:
        nonlocal world
        notify = "  notify:\n" + "".join(f"    - {json.dumps(sink)}\n" for sink in sinks)
        env.config(FAST_CONFIG.replace("jobs:\n", "jobs:\n" + notify, 1))
        world = InProcessEngine(env.home, env.tmp)
        world.hold_lock()
        await world.start()
        return world

    yield start_with
    if world is not None:
        await world.close()


async def test_a_job_that_succeeds_is_one_terminal_post(start: Start, webhook: Callable[..., WebhookServer]) -> None:
    hook = webhook()
    engine = await start({"webhook": hook.url()})
    [job] = await engine.submit(task("echo hello"))
    await engine.wait_status(job, "SUCCEEDED")
    await engine.wait_until(lambda: hook.delivered("terminal", job), "the terminal POST")
    await engine.wait_until(lambda: not engine.machines(), "the machine to be torn down")
    [body] = hook.delivered(job=job)
    assert body["status"] == "SUCCEEDED" and body["name"] == "train" and body["task"] == 0
    assert body["reason"] is None and body["at"].endswith("Z")
    assert body["cost"] is not None and body["cost"] >= 0


async def test_a_preempted_job_tells_of_its_recovery_then_its_end(
    start: Start, webhook: Callable[..., WebhookServer],
) -> None:
    hook = webhook()
    engine = await start({"webhook": hook.url()})
    flag = engine.work / "first"
    [job] = await engine.submit(task(f"if [ ! -f {flag} ]; then touch {flag}; sleep 600; fi\necho done"))
    await engine.wait_until(flag.exists, "the first attempt to run")
    await engine.wait_status(job, "RUNNING")
    await engine.preempt(job)
    await engine.wait_status(job, "SUCCEEDED")
    await engine.wait_until(lambda: hook.delivered("terminal", job), "the terminal POST")
    assert [b["event"] for b in hook.delivered(job=job)] == ["recovery", "terminal"]
    recovery = hook.delivered("recovery", job)[0]
    assert recovery["status"] == "RECOVERING" and recovery["reason"]


async def test_a_receiver_that_fails_twice_gets_it_on_the_third_try(
    start: Start, webhook: Callable[..., WebhookServer],
) -> None:
    hook = webhook(answers=[500, 503])
    engine = await start({"webhook": hook.url()})
    [job] = await engine.submit(task("echo hello"))
    await engine.wait_status(job, "SUCCEEDED")
    await engine.wait_until(lambda: hook.delivered("terminal", job), "the POST after two retries", timeout=15)
    assert [r.status for r in hook.requests] == [500, 503, 200]
    assert len(hook.delivered(job=job)) == 1


async def test_a_command_sink_gets_the_event_in_its_environment(env: Env, start: Start) -> None:
    out = env.tmp / "notified.env"
    engine = await start({"command": f'env > "{out}"', "events": ["terminal"]})
    [job] = await engine.submit(task("echo failing\nexit 3"))
    await engine.wait_status(job, "FAILED")
    await engine.wait_until(out.exists, "the command to run")
    await engine.wait_until(lambda: "SKYTUI_COST_USD=" in out.read_text(), "the command to finish writing")
    seen = dict(line.split("=", 1) for line in out.read_text().splitlines() if line.startswith("SKYTUI_"))
    assert seen["SKYTUI_EVENT"] == "terminal" and seen["SKYTUI_STATUS"] == "FAILED"
    assert seen["SKYTUI_JOB_ID"] == str(job) and seen["SKYTUI_JOB_NAME"] == "train"
    assert "3" in seen["SKYTUI_REASON"]


async def test_a_hung_or_refusing_sink_does_not_hold_up_another_and_its_token_stays_out_of_the_log(
    start: Start, webhook: Callable[..., WebhookServer], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="skytui.notify")
    hung, refusing, good = webhook(hang=True), webhook(answers=[404]), webhook()
    engine = await start(
        {"webhook": hung.url()}, {"webhook": refusing.url("/hook?token=s3cr3t")}, {"webhook": good.url()},
    )
    [job] = await engine.submit(task("echo hello"))
    await engine.wait_status(job, "SUCCEEDED")
    # The hung receiver holds each try for 10 s: delivered in order, the good one would wait for a minute.
    await engine.wait_until(lambda: good.delivered("terminal", job), "the good sink's POST")
    await engine.wait_until(lambda: "HTTP 404" in caplog.text, "the refusal logged")
    assert f"{refusing.url('/hook')}: terminal of job {job}" in caplog.text
    assert "s3cr3t" not in caplog.text and caplog.text.count("HTTP 404") == 1  # a 404 is not retried


async def test_a_restarted_controller_neither_repeats_nor_skips(
    start: Start, webhook: Callable[..., WebhookServer],
) -> None:
    hook = webhook()
    engine = await start({"webhook": hook.url()})
    [first] = await engine.submit(task("echo one"))
    await engine.wait_status(first, "SUCCEEDED")
    await engine.wait_until(lambda: hook.delivered("terminal", first), "the first job's POST")
    await engine.stop()
    # While no controller runs, a job is submitted and cancelled (the client ends it itself).
    [cancelled] = await engine.submit(task("echo never"))
    await engine.cancel(cancelled)
    await engine.start()
    [second] = await engine.submit(task("echo two"))
    await engine.wait_status(second, "SUCCEEDED")
    await engine.wait_until(lambda: hook.delivered("terminal", second), "the second job's POST")
    assert len(hook.delivered(job=first)) == 1
    [ended] = hook.delivered(job=cancelled)
    assert ended["event"] == "terminal" and ended["status"] == "CANCELLED"
    await engine.wait_until(lambda: not engine.machines(), "every machine to be torn down")


async def test_a_pipeline_that_fails_is_one_terminal_post_with_the_failing_tasks_reason(
    env: Env, start: Start, webhook: Callable[..., WebhookServer],
) -> None:
    hook = webhook()
    engine = await start({"webhook": hook.url()})
    stages = ["name: stages", "name: first\nresources: {infra: sim/aws}\nrun: exit 3",
              "name: second\nresources: {infra: sim/aws}\nrun: echo never"]
    [job] = await engine.submit("\n---\n".join(stages) + "\n")
    await engine.wait_status(job, "FAILED")
    await engine.wait_until(lambda: hook.delivered("terminal", job), "the terminal POST")
    await engine.wait_until(lambda: not engine.machines(), "the machine to be torn down")
    [body] = hook.delivered(job=job)
    assert body["status"] == "FAILED" and "3" in body["reason"] and body["task"] == 0
    # Task 1 ended CANCELLED just after task 0 FAILED: a notifier that reads
    # both at once (one restarted meanwhile) still sends one, with task 0's reason.
    store = AsyncStore(Store(Paths(env.home).db_url))
    try:
        found = await notifications_for(store, await store.events(job_id=job), time.time())
    finally:
        await asyncio.to_thread(store.close)
    [terminal] = [n for n in found.values() if n.event == "terminal"]
    assert terminal.status == "FAILED" and "exit code 3" in (terminal.reason or "") and terminal.task == 0


async def test_a_sink_hears_only_the_events_it_lists(
    env: Env, start: Start, webhook: Callable[..., WebhookServer],
) -> None:
    every, budgets = webhook(), webhook()
    engine = await start({"webhook": every.url()}, {"webhook": budgets.url(), "events": ["budget", "stall"]})
    [job] = await engine.submit(task("echo hello"))
    await engine.wait_status(job, "SUCCEEDED")
    # The budget and stall events are the controller's (the lead's part of issue 15): written as it would.
    store = Store(Paths(env.home).db_url)
    try:
        await asyncio.to_thread(store.note, job, 0, event_kinds.BUDGET_WARNING, "80 % of $1.00 spent")
        await asyncio.to_thread(store.note, job, 0, event_kinds.STALL, "no log byte for 30m")
    finally:
        store.close()
    await engine.wait_until(lambda: len(budgets.delivered(job=job)) == 2, "the budget and stall POSTs")
    await engine.wait_until(lambda: len(every.delivered(job=job)) == 3, "all three POSTs")
    assert [b["event"] for b in budgets.delivered(job=job)] == ["budget-80", "stall"]
    assert budgets.delivered(job=job)[0]["reason"] == "80 % of $1.00 spent"
    assert [b["event"] for b in every.delivered(job=job)] == ["terminal", "budget-80", "stall"]
