"""Money and attention (issue 15): a job's budget (`--max-cost`) is warned
at 80 % and acted on at 100 % (CANCELLED, "budget reached ($X of $Y)",
nothing left running); a job that stops printing (`--stall-timeout`) is
marked, told of, and with `jobs.stall_action: restart` restarted as a
failure of its code. All on sim, through the real CLI and daemon."""

from __future__ import annotations

import json
import re

import pytest
from fixtures.env import FAST_CONFIG, Env, events, wait_for

pytestmark = pytest.mark.timeout(180)

SPOT_H100 = "resources:\n  infra: sim/aws/us-east-2\n  accelerators: H100:8\n  use_spot: true\n"


def job(env: Env, name: str, run: str, extra: str = "") -> str:
    body = "".join(f"  {line}\n" for line in run.splitlines())
    return str(env.write(f"{name}.yaml", f"name: {name}\n{SPOT_H100}{extra}run: |\n{body}"))


def kinds(env: Env, job_id: int, kind: str) -> list[str]:
    return [line.split(":", 2)[2] for line in events(env, job_id) if line.startswith(f"{kind}:")]


def test_dryrun_says_what_the_budget_buys(fast_env: Env) -> None:
    result = fast_env.cli("jobs", "launch", "--dryrun", "--max-cost", "10", job(fast_env, "plan", "echo hi"))
    assert result.code == 0, result.stderr
    # sim:aws/us-east-2 p5.48xlarge spot is $14.38/h: $10 lasts 41.7 minutes.
    assert "Budget $10.00 at $14.38/h: it lasts about 42m, then the job is stopped." in result.stdout
    assert "Dry run: nothing submitted." in result.stdout
    bad = fast_env.cli("jobs", "launch", "--dryrun", "--max-cost", "0", job(fast_env, "plan", "echo hi"))
    assert (bad.code, bad.stdout) == (2, "")
    assert bad.stderr == "Error: --max-cost: must be a positive number of dollars, got 0\n"
    bad = fast_env.cli("jobs", "launch", "--dryrun", "--stall-timeout", "soon", job(fast_env, "plan", "echo hi"))
    assert bad.code == 2 and "--stall-timeout: 'soon' is not a duration such as 30m, 2h or 90s" in bad.stderr


def test_a_job_is_warned_then_stopped_at_its_budget(fast_env: Env) -> None:
    env = fast_env
    # $14.38/h is $0.004 a second: a cent is spent within a few seconds.
    job_id = env.launch(job(env, "spender", "sleep 600"), "--max-cost", "0.01")
    done = env.wait_status(job_id, "CANCELLED", timeout=90)
    assert done["cost_usd"] >= 0.01
    (warning,) = kinds(env, job_id, "budget-80")
    assert re.fullmatch(r"\d+% of the budget spent \(\$0\.0\d of \$0\.01\)", warning), warning
    (reached,) = kinds(env, job_id, "budget-reached")
    assert re.fullmatch(r"budget reached \(\$0\.0\d of \$0\.01\): stopping the job", reached), reached
    reason = reached.removesuffix(": stopping the job")
    # The task ends CANCELLED with that reason, not "cancelled by user".
    assert f"status:CANCELLED:{reason}" in events(env, job_id)
    logs = env.cli("jobs", "logs", str(job_id)).stdout
    assert reason in logs and "cancelled by user" not in logs


def test_a_job_with_room_in_its_budget_is_left_alone(fast_env: Env) -> None:
    job_id = fast_env.launch(job(fast_env, "thrifty", "echo done"), "--max-cost", "100")
    fast_env.wait_status(job_id, "SUCCEEDED", timeout=60)
    assert kinds(fast_env, job_id, "budget-80") == kinds(fast_env, job_id, "budget-reached") == []


def test_a_silent_job_is_marked_stalled_and_cleared_when_it_prints_again(fast_env: Env) -> None:
    env = fast_env
    flag = env.tmp / "speak"
    job_id = env.launch(job(env, "quiet", f"echo first\nuntil [ -f {flag} ]; do sleep 0.2; done\nwhile true; do echo tick; sleep 0.3; done"),
                        "--stall-timeout", "2s")
    env.wait_status(job_id, "RUNNING", timeout=60)
    wait_for(lambda: kinds(env, job_id, "stall"), 30, 0.2, "the stall event")
    (stall,) = kinds(env, job_id, "stall")
    assert stall.startswith("stalled: no log output for 2s (last output at ") and stall.endswith("it keeps running")
    queue = env.cli("jobs", "queue", check=True).stdout
    assert re.search(rf"^{job_id}\s.*RUNNING ⚠ stalled", queue, re.M), queue
    flag.touch()
    wait_for(lambda: kinds(env, job_id, "stall-cleared"), 30, 0.2, "the stall to clear")
    assert "⚠ stalled" not in env.cli("jobs", "queue", check=True).stdout
    assert json.loads(env.cli("jobs", "queue", "--json", check=True).stdout)["jobs"][0]["status"] == "RUNNING"
    env.cli("jobs", "cancel", "-y", str(job_id), check=True)
    env.wait_status(job_id, "CANCELLED", timeout=60)


def test_a_stall_restarts_the_run_with_stall_action_restart(env: Env) -> None:
    env.config(FAST_CONFIG.replace("jobs:\n", "jobs:\n  stall_action: restart\n"))
    runs = env.tmp / "runs"
    job_id = env.launch(job(env, "hung", f"echo run >> {runs}\necho started\nsleep 600",
                            extra="  job_recovery:\n    max_restarts_on_errors: 1\n"), "--stall-timeout", "2s")
    done = env.wait_status(job_id, "FAILED", timeout=120)
    # Restarted once (counted against max_restarts_on_errors), then failed when it stalled again.
    assert runs.read_text() == "run\nrun\n"
    (task,) = done["tasks"]
    assert task["restarts_on_errors"] == 1
    assert task["failure_reason"].startswith("stalled: no log output for 2s; its run was stopped")
    assert len(kinds(env, job_id, "stall")) == 2


def test_budget_and_stall_news_reach_the_notification_sinks(env: Env) -> None:
    """The whole chain on the real daemon: the watch writes the events, the
    notifier POSTs them (80 %, the budget reached, the stall, the end)."""
    from infra.webhook import WebhookServer

    hook = WebhookServer()
    try:
        env.config(FAST_CONFIG.replace("jobs:\n", f"jobs:\n  notify:\n    - {{webhook: {hook.url('/news')}}}\n"))
        spender = env.launch(job(env, "spender", "sleep 600"), "--max-cost", "0.01")
        quiet = env.launch(job(env, "quiet", "echo once\nsleep 600"), "--stall-timeout", "2s")
        env.wait_status(spender, "CANCELLED", timeout=90)
        wait_for(lambda: hook.delivered("terminal", spender), 30, 0.2, "the spender's end")
        events = [body["event"] for body in hook.delivered(job=spender)]
        assert events == ["budget-80", "budget-reached", "terminal"], events
        final = hook.delivered("terminal", spender)[0]
        assert final["status"] == "CANCELLED" and final["reason"].startswith("budget reached ($0.0")
        wait_for(lambda: hook.delivered("stall", quiet), 30, 0.2, "the stall notification")
        env.cli("jobs", "cancel", "-y", str(quiet), check=True)
        env.wait_status(quiet, "CANCELLED", timeout=60)
    finally:
        hook.close()
