"""Ctrl-C while following never kills a job: the CLI detaches with exit 130."""

from __future__ import annotations

import signal

from fixtures.env import Env, wait_for


def _ctrl_c_after_output(env: Env, *args: str) -> tuple[int, str, str]:
    proc = env.popen(*args)
    assert proc.stdout is not None
    seen = ""
    for line in proc.stdout:  # wait for the job's own output
        seen += line
        if "tick 2" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, seen + out, err


def test_ctrl_c_on_run_detaches_and_the_job_keeps_running(env: Env) -> None:
    task = env.write(
        "ticker.yaml", "name: ticker\nrun: |\n  for i in $(seq 1 40); do echo tick $i; sleep 0.25; done\n"
    )
    code, out, err = _ctrl_c_after_output(env, "--run", str(task))
    assert code == 130
    assert "(ticker, pid=" in out
    assert "keeps running" in err and "skytui jobs logs 1" in err and "skytui jobs cancel 1" in err
    assert env.job(1)["status"] == "RUNNING"
    # It really keeps going: more output arrives after the client left.
    wait_for(lambda: b"tick 10\n" in env.log(1), 30, what="output after detaching")
    env.wait_status(1, "SUCCEEDED", timeout=60)


def test_ctrl_c_on_logs_detaches(env: Env) -> None:
    task = env.write(
        "ticker.yaml", "name: ticker\nrun: |\n  for i in $(seq 1 400); do echo tick $i; sleep 0.1; done\n"
    )
    job_id = env.launch(task)
    code, out, _ = _ctrl_c_after_output(env, "jobs", "logs", str(job_id))
    assert code == 130 and "tick 1" in out
    assert env.job(job_id)["status"] == "RUNNING"
    env.cli("jobs", "cancel", "-y", str(job_id), check=True)
    env.wait_status(job_id, "CANCELLED", timeout=30)
