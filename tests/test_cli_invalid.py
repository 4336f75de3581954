"""Bad input never half-happens: exit 2, a message with file, line and field, nothing written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import EXAMPLES, Env

from skytui import cli

CORPUS = sorted((Path(__file__).parent / "invalid_specs").glob("*.yaml"))
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
    assert "creating a bucket from a storage mount" in capsys.readouterr().err
    assert not env.home.exists()
