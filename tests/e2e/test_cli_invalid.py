"""Bad input never half-happens: exit 2, a message with file, line and field, nothing written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.env import EXAMPLES, Env, Result, wait_for

from skytui import cli
from skytui.client import Client
from skytui.engine.daemon import ControllerInfo

CORPUS = sorted((Path(__file__).parent.parent / "invalid_specs").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (?P<field>\S+) @ (?P<line>\d+)$")


def _expectation(path: Path) -> tuple[str, int]:
    match = EXPECT.match(path.read_text().splitlines()[0])
    assert match, f"{path.name} lacks its '# expect:' line"
    return match["field"], int(match["line"])


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_invalid_yaml_is_refused_by_launch(
    path: Path, env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    field, line = _expectation(path)
    code = cli.main(["jobs", "launch", "-y", "-d", str(path)])
    captured = capsys.readouterr()
    assert code == 2
    assert f"{path}:{line}: {field}" in captured.err, captured.err
    assert captured.out == ""
    assert not env.home.exists(), "an invalid launch must write nothing"


@pytest.mark.parametrize("path", CORPUS[:5], ids=[p.stem for p in CORPUS[:5]])
def test_validate_gives_the_same_message(path: Path, env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    field, line = _expectation(path)
    code = cli.main(["validate", str(EXAMPLES / "hello.yaml"), str(path)])
    captured = capsys.readouterr()
    assert code == 2
    assert f"{path}:{line}: {field}" in captured.err
    assert "hello.yaml: valid task 'hello'" in captured.out
    assert not env.home.exists()


def test_validate_accepts_every_example(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    examples = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    assert cli.main(["validate", *examples]) == 0
    assert capsys.readouterr().out.count(": valid") == len(examples)


BAD_FLAGS = [
    (["--env", "NOT A PAIR"], "--env"),
    (["--env", "1BAD=x"], "--env"),
    (["--secret", "=x"], "--secret"),
    (["--env-file", "/nonexistent/.env"], "--env-file"),
    (["--gpus", "H100:many"], "--gpus"),
    (["--cpus", "lots"], "--cpus"),
    (["--memory", "-4"], "--memory"),
    (["--infra", "aws/us-east-1/a/b"], "--infra"),
    (["--infra", "azzure"], "--infra"),
    (["--num-nodes", "0"], "--num-nodes"),
    (["--num-jobs", "0"], "--num-jobs"),
    (["--priority", "5000"], "--priority"),
    (["--name", ""], "--name"),
    (["--cpus", "4096+"], "infeasible"),
    (["--gpus", "H100:8"], "infeasible"),
    (["--use-spot"], "infeasible"),
    # NaN, infinity, overflow and NUL: refused before anything is written
    (["--cpus", "nan"], "--cpus"),
    (["--cpus", "1" + "0" * 400], "--cpus"),
    (["--memory", "inf"], "--memory"),
    (["--memory", "99999999999999999999999"], "--memory"),
    (["--gpus", "H100:inf"], "--gpus"),
    (["--gpus", "H100:nan"], "--gpus"),
    (["--gpus", "H100:99999999999999999999999"], "--gpus"),
    (["--num-nodes", "99999999999999999999999"], "--num-nodes"),
    (["--num-jobs", "99999999999999999999999"], "--num-jobs"),
    (["--env", "A=x\0y"], "--env"),  # argv cannot carry a NUL, but main() called from code can
    (["--secret", "TOKEN=x\0y"], "--secret"),
]


@pytest.mark.parametrize(("flags", "named"), BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_invalid_flags_are_refused(
    flags: list[str], named: str, env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["jobs", "launch", "-y", "-d", str(EXAMPLES / "hello.yaml"), *flags])
    captured = capsys.readouterr()
    assert code == 2
    assert named in captured.err, captured.err
    assert not env.home.exists()


def test_env_file_error_names_the_line_but_not_its_secret(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    dotenv = env.write("bad.env", "GOOD=1\n# comment\nthis line holds hunter2 and no equals\n")
    code = cli.main(["jobs", "launch", "-y", "-d", str(EXAMPLES / "hello.yaml"), "--env-file", str(dotenv)])
    err = capsys.readouterr().err
    assert code == 2 and f"{dotenv}:3: --env-file" in err and "hunter2" not in err


def test_infeasible_request_says_what_to_change(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    task = env.write("big.yaml", "name: big\nresources:\n  accelerators: H100:8\nrun: echo\n")
    assert cli.main(["jobs", "launch", "-y", str(task)]) == 2
    err = capsys.readouterr().err
    assert "accelerators=H100:8" in err and "skytui check" in err
    assert "local: this machine" in err and "--infra sim" in err  # what exists, and where to find it


def test_usage_errors_through_the_real_binary(env: Env) -> None:
    """The installed entry point, as a script would run it."""
    missing = env.cli("--run", "no-such-file.yaml")
    assert missing.code == 2 and "no-such-file.yaml" in missing.stderr
    assert env.cli("jobs", "launch").code == 2  # argparse: FILE is required
    assert env.cli("jobs", "frobnicate").code == 2
    assert env.cli("jobs", "logs", "7").code == 2
    typo = env.write("typo.yaml", "name: t\nresources:\n  acclerators: H100:1\nrun: echo\n")
    result = env.cli("--run", str(typo))
    assert result.code == 2
    assert f"{typo}:3: resources.acclerators" in result.stderr and "did you mean 'accelerators'" in result.stderr
    assert env.queue() == []


def test_storage_the_infra_cannot_provide_is_refused_at_launch(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    task = env.write("bucket.yaml", "name: b\nfile_mounts:\n  /data: r2://my-bucket/data\nrun: ls /data\n")
    assert cli.main(["jobs", "launch", "-y", "-d", str(task)]) == 2
    assert "file_mounts['/data']: 'r2://my-bucket/data': only s3://, gs:// buckets are supported" in capsys.readouterr().err
    created = env.write("named.yaml", "name: b\nfile_mounts:\n  /data: {name: new-bucket}\nrun: ls /data\n")
    assert cli.main(["jobs", "launch", "-y", "-d", str(created)]) == 2
    # A bucket to create goes on the store of the cloud the task is placed on: this machine has none.
    assert "file_mounts['/data']: bucket 'new-bucket' would be created on the store of the cloud" in " ".join(
        capsys.readouterr().err.split())
    assert not env.home.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "launch", "-y", "-d", "--use-spot", "--no-use-spot"],
        ["jobs", "launch", "-y", "-d", "--no-use-spot", "--use-spot"],
        ["--use-spot", "--no-use-spot", "--run"],
    ],
    ids=["launch", "launch-reversed", "run"],
)
def test_contradictory_flags_are_refused(argv: list[str], env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, str(EXAMPLES / "hello.yaml")])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert not env.home.exists()


@pytest.mark.parametrize(
    "argv",
    [["jobs", "logs", "99999999999999999999999"], ["jobs", "cancel", "-y", "99999999999999999999999"],
     ["sim", "preempt", "99999999999999999999999"], ["jobs", "cancel", "-y", "0"]],
    ids=["logs", "cancel", "preempt", "zero"],
)
def test_job_ids_beyond_a_database_integer_are_refused(
    argv: list[str], env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2 and "is not a job ID" in capsys.readouterr().err
    assert not env.home.exists()


def test_a_pool_worker_count_beyond_the_bound_is_refused(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["jobs", "pool", "apply", "-y", "-p", "p", "--workers", "99999999999999999999999"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert not env.home.exists()


# ------------------------------------------------------------------ prompts


def _answering(env: Env, answer: str | None, *args: str) -> Result:
    """The real CLI with `answer` piped on stdin (None: stdin at end of file)."""
    proc = subprocess.run(
        [sys.executable, "-m", "skytui.cli", *args], capture_output=True, text=True, env=env.environ,
        cwd=env.tmp, timeout=120, input=answer if answer is not None else "",
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("answer", ["n\n", "no\n", "whatever\n", None], ids=["n", "no", "other", "eof"])
def test_launch_answered_no_or_eof_submits_nothing(answer: str | None, env: Env) -> None:
    result = _answering(env, answer, "jobs", "launch", "-d", str(EXAMPLES / "hello.yaml"))
    assert result.code == 1, result.stdout + result.stderr
    assert "Proceed? [Y/n]" in result.stdout and "Aborted" in result.stderr
    assert "submitted" not in result.stdout
    assert env.queue() == []


@pytest.mark.parametrize("answer", ["y\n", "\n"], ids=["y", "default"])
def test_launch_answered_yes_submits(answer: str, env: Env) -> None:
    result = _answering(env, answer, "jobs", "launch", "-d", str(EXAMPLES / "hello.yaml"))
    assert result.code == 0, result.stdout + result.stderr
    assert "Managed job 1 submitted" in result.stdout
    assert [job["id"] for job in env.queue()] == [1]


def test_cancel_asks_and_only_yes_cancels(env: Env) -> None:
    job_id = env.launch(env.write("sleepy.yaml", "name: sleepy\nrun: sleep 120\n"))
    for answer in ("n\n", None):
        refused = _answering(env, answer, "jobs", "cancel", str(job_id))
        assert refused.code == 1 and "Aborted" in refused.stderr, refused.stdout + refused.stderr
        assert env.job(job_id)["status"] not in ("CANCELLING", "CANCELLED")
    accepted = _answering(env, "y\n", "jobs", "cancel", str(job_id))
    assert accepted.code == 0 and f"Cancelling managed job {job_id}." in accepted.stdout
    env.wait_status(job_id, "CANCELLED")


def test_pool_apply_and_down_ask(env: Env) -> None:
    pool_yaml = str(env.write("pool.yaml", "pool: {workers: 0}\nsetup: echo ready\n"))

    def pools() -> list[dict[str, object]]:
        result = env.cli("jobs", "pool", "status", "--json", check=True)
        return list(json.loads(result.stdout)["pools"])

    refused = _answering(env, None, "jobs", "pool", "apply", "-p", "p", pool_yaml)
    assert refused.code == 1 and "Aborted" in refused.stderr, refused.stdout + refused.stderr
    assert pools() == []
    assert _answering(env, "y\n", "jobs", "pool", "apply", "-p", "p", pool_yaml).code == 0
    assert [pool["name"] for pool in pools()] == ["p"]
    kept = _answering(env, "n\n", "jobs", "pool", "down", "p")
    assert kept.code == 1 and "Aborted" in kept.stderr
    assert [pool["name"] for pool in pools()] == ["p"]
    assert _answering(env, "y\n", "jobs", "pool", "down", "p").code == 0
    wait_for(lambda: pools() == [], 60, 0.5, "the pool to go")


# -------------------------------------------------------------- controller


def test_controller_that_will_not_stop_is_one_clear_line(
    env: Env, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def stuck(self: Client) -> bool:
        raise RuntimeError("the controller (pid 4242) did not stop within 30s")

    monkeypatch.setattr(Client, "stop_controller", stuck)
    monkeypatch.setattr(Client, "controller_info", lambda self: ControllerInfo(True, 4242))
    assert cli.main(["controller", "stop"]) == 1
    err = capsys.readouterr().err
    assert "pid 4242" in err and "did not stop" in err and "kill -9 4242" in err
    assert len(err.strip().splitlines()) == 1
