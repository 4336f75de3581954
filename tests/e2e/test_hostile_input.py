"""Hostile task YAMLs: refused quickly with file, line and reason, never a traceback.

Each file here once hung the CLI for more than 30 s, grew it to gigabytes or
ended in a RecursionError/ValueError traceback. Through the real binary they
must now exit 2 within a subprocess timeout far below "hanging", naming the
file, and write nothing.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures.env import Env

from skytui.spec import SpecError, load_pipeline


@dataclass(frozen=True)
class Hostile:
    name: str
    text: str
    field: str
    line: int | None
    says: str  # a piece of the message


def _alias_bomb() -> str:
    """Billion laughs: 9 levels of 9 aliases, 9**9 strings once expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]")
        previous = name
    return "\n".join(lines) + "\nrun: echo hi\nconfig: *i\n"


def _merge_chain(length: int) -> str:
    """Each mapping merges the previous one: quadratic once flattened."""
    lines = ["run: echo", "a0: &a0 {k0: 1}"]
    lines += [f"a{i}: &a{i} {{<<: *a{i - 1}, k{i}: 1}}" for i in range(1, length)]
    return "\n".join(lines) + "\n"


HOSTILE = [
    Hostile("alias-bomb", _alias_bomb(), "f[0]", 5, "once aliases (*name) are expanded"),
    Hostile("deep-flow", "run: echo\nconfig: " + "[" * 10_000 + "]" * 10_000 + "\n", "(yaml)", 2, "nest"),
    Hostile("deep-mapping", "run: echo\nconfig: " + "{a: " * 5_000 + "1" + "}" * 5_000 + "\n", "(yaml)", 2,
            "nested more than 64 levels deep"),
    Hostile("deep-block", "run: echo\nconfig:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(1_000)),
            "(yaml)", 65, "nested more than 64 levels deep"),
    Hostile("self-alias-list", "run: echo\nconfig: &a [*a]\n", "config[0]", 2, "cycle"),
    Hostile("self-alias-mapping", "run: echo\nconfig: &a\n  x: *a\n", "config.x", 3, "cycle"),
    Hostile("merge-cycle", "run: echo\nconfig: &a\n  <<: *a\n  x: 1\n", "config", 2, "cycle"),
    Hostile("merge-chain", _merge_chain(10_000), "", None, "values"),
    Hostile("too-many-values", "run: echo\nconfig: [" + ",".join(["1"] * 200_000) + "]\n", "(yaml)", 2,
            "more than 100000 values"),
    Hostile("too-many-documents", "run: echo\n---\n" * 1_001, "(yaml)", 2001, "more than 1000 documents"),
    Hostile("too-big", "run: |\n" + ("  echo " + "x" * 70 + "\n") * 150_000, "(file)", None, "at most 1 MiB"),
    Hostile("huge-integer", "run: echo\nnum_nodes: " + "9" * 5_000 + "\n", "num_nodes", 2, "not a valid value"),
    Hostile("impossible-date", "run: echo\nname: 2024-13-45\n", "name", 2, "not a valid value"),
    Hostile("nul-escape", 'name: t\nrun: "echo a\\0b"\n', "run", 2, "NUL"),
    Hostile("raw-control-character", "name: t\nrun: echo a\x00b\n", "(yaml)", 2, "control characters"),
]
IDS = [case.name for case in HOSTILE]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "hostile"
    folder.mkdir()
    written = {}
    for case in HOSTILE:
        path = folder / f"{case.name}.yaml"
        path.write_text(case.text)
        written[case.name] = path
    return written


def _skytui(env: Env, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # A generous bound: long enough for a loaded CI machine, far shorter than
    # the 30 s and more that the alias bomb used to run for.
    return subprocess.run(
        [sys.executable, "-m", "skytui.cli", *args], capture_output=True, text=True,
        env=env.environ, cwd=env.tmp, stdin=subprocess.DEVNULL, timeout=timeout,
    )


@pytest.mark.parametrize("case", HOSTILE, ids=IDS)
def test_loading_refuses_with_the_place(case: Hostile, files: dict[str, Path]) -> None:
    path = files[case.name]
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    err = info.value
    assert case.says in err.message, str(err)
    if case.field:
        assert (err.field, err.line) == (case.field, case.line), str(err)
    assert str(err).startswith(str(path))


def test_validate_refuses_every_hostile_file(env: Env, files: dict[str, Path]) -> None:
    result = _skytui(env, "validate", *(str(path) for path in files.values()), timeout=90)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for case in HOSTILE:
        where = f"{files[case.name]}:{case.line}" if case.line else str(files[case.name])
        line = next((text for text in result.stderr.splitlines() if text.startswith(where)), None)
        assert line is not None and case.says in line, f"{case.name}: {result.stderr[-3000:]}"
    assert result.stdout == ""
    assert not env.home.exists()


@pytest.mark.parametrize("case", HOSTILE, ids=IDS)
def test_launch_dryrun_refuses_quickly(case: Hostile, env: Env, files: dict[str, Path]) -> None:
    result = _skytui(env, "jobs", "launch", "--dryrun", str(files[case.name]), timeout=20)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"Error: {files[case.name]}" in result.stderr and case.says in result.stderr
    assert not env.home.exists(), "a refused launch must write nothing"


def test_launch_of_an_alias_bomb_submits_nothing(env: Env, files: dict[str, Path]) -> None:
    result = _skytui(env, "jobs", "launch", "-y", "-d", str(files["alias-bomb"]), timeout=20)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert env.queue() == []


def test_an_endless_file_is_refused_without_reading_it_all(env: Env) -> None:
    """/dev/zero never ends: only the first MiB and a byte are ever read."""
    result = _skytui(env, "validate", "/dev/zero", timeout=20)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "/dev/zero" in result.stderr and "at most 1 MiB" in result.stderr


def test_anchors_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    """Shared nodes are converted once, and a legitimate reuse still loads."""
    path = tmp_path / "shared.yaml"
    path.write_text(
        "name: shared\n"
        "envs: &env {A: '1', B: '2'}\n"
        "secrets: *env\n"
        "resources:\n"
        "  any_of:\n"
        "    - &res {infra: aws, cpus: 2, memory: 4}\n"
        "    - <<: *res\n"
        "      infra: gcp\n"
        "run: echo $A\n"
    )
    task = load_pipeline(path).tasks[0]
    assert task.envs == task.secrets == {"A": "1", "B": "2"}
    assert [(r.infra, r.cpus, r.memory) for r in task.resources.any_of] == [("aws", "2", "4"), ("gcp", "2", "4")]


@pytest.mark.parametrize("case", [c for c in HOSTILE if c.name in ("alias-bomb", "deep-flow", "merge-cycle")],
                         ids=lambda c: c.name)
def test_a_hostile_config_yaml_is_an_error_not_a_traceback(case: Hostile, env: Env) -> None:
    env.config(case.text)
    result = _skytui(env, "check", timeout=20)
    assert result.returncode == 2, result.stderr
    assert "config.yaml" in result.stderr and "Traceback" not in result.stderr
