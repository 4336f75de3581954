"""Notifications from the real daemon: `kill -9` of the controller, a job
that ends while it is down, and a restart that sends that end once and
nothing it had already sent; the webhook's token never reaches the log."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest
from fixtures.env import Env, wait_for
from infra.webhook import WebhookServer


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.close()


def test_a_killed_controller_restarted_neither_repeats_nor_skips(env: Env, hook: WebhookServer) -> None:
    url = hook.url("/hook?token=s3cr3t")
    env.config(f"jobs:\n  notify:\n    - {json.dumps({'webhook': url})}\n")
    first = env.launch(env.write("quick.yaml", "name: quick\nrun: echo quick\n"))
    env.wait_status(first, "SUCCEEDED")
    wait_for(lambda: hook.delivered("terminal", first), 15, what="the first job's POST")
    gate = env.tmp / "gate"
    second = env.launch(env.write("gated.yaml", f"name: gated\nrun: |\n  while [ ! -e {gate} ]; do sleep 0.05; done\n"))
    env.wait_status(second, "RUNNING")
    pid = env.controller_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "not running" in env.cli("controller", "status").stdout, 10, what="controller gone")
    gate.touch()  # the job ends while no controller watches it
    wait_for(lambda: list(env.home.glob("nodes/*/.skytui/phases/*-run/exit_code")), 30, what="the run to end")
    env.cli("controller", "start", check=True)
    env.wait_status(second, "SUCCEEDED")
    wait_for(lambda: hook.delivered("terminal", second), 15, what="the second job's POST")
    wait_for(lambda: not env.node_dirs(), 15, what="the machine torn down")
    assert [b["status"] for b in hook.delivered(job=first)] == ["SUCCEEDED"]
    assert [b["status"] for b in hook.delivered(job=second)] == ["SUCCEEDED"]
    assert all(r.path == "/hook?token=s3cr3t" for r in hook.requests)
    controller_log = (env.home / "logs" / "controller.log").read_text()
    assert "notifications go to webhook http://127.0.0.1" in controller_log
    assert "s3cr3t" not in controller_log
