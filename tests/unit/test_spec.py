"""Tests for skytui.spec: the task YAML, its errors, and the launch flags."""

from __future__ import annotations

import pickle
import re
import textwrap
import warnings
from pathlib import Path

import pytest

from skytui.spec import (
    AcceleratorRequest,
    FileMount,
    JobRecovery,
    Overrides,
    Pipeline,
    Resources,
    SpecError,
    Task,
    load_pipeline,
    load_pipeline_text,
    parse_env_flag,
)

REPO = Path(__file__).resolve().parent.parent.parent
CORPUS = Path(__file__).resolve().parent.parent / "invalid_specs"
EXAMPLES = REPO / "examples"
EXPECT = re.compile(r"^# expect: (\S+) @ (\d+)$")
SECRET = "s3cr3t-value"


def write(tmp_path: Path, text: str, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, overrides: Overrides | None = None, name: str = "task.yaml") -> Pipeline:
    return load_pipeline(write(tmp_path, text, name), overrides)


def load_task(tmp_path: Path, text: str, overrides: Overrides | None = None) -> Task:
    pipeline = load(tmp_path, text, overrides)
    assert len(pipeline.tasks) == 1
    return pipeline.tasks[0]


def resources(tmp_path: Path, text: str) -> Resources:
    return load_task(tmp_path, "resources:\n" + textwrap.indent(textwrap.dedent(text), "  ")).resources


def error(tmp_path: Path, text: str, overrides: Overrides | None = None) -> SpecError:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text, overrides)
    return info.value


def accel(name: str | None, count: float = 1.0, **extra: object) -> AcceleratorRequest:
    return AcceleratorRequest(name=name, count=count, **extra)


# ---------------------------------------------------------------- basics


def test_minimal_task(tmp_path: Path) -> None:
    pipeline = load(tmp_path, "name: hello\nrun: echo hi\n")
    assert pipeline.name == "hello"
    assert not pipeline.is_pipeline
    task = pipeline.tasks[0]
    assert task.name == "hello"
    assert task.run == "echo hi"
    assert task.num_nodes == 1
    assert task.resources == Resources()
    assert pipeline.source == str(tmp_path / "task.yaml")
    assert pipeline.warnings == []


def test_full_task_fields(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "data.txt").write_text("x")
    task = load_task(
        tmp_path,
        """
        name: full
        workdir: code
        num_nodes: 2
        resources:
          instance_type: m5.xlarge
          disk_size: 100
          disk_tier: High
          ports: [8080, "9000-9010"]
          image_id: docker:ubuntu:22.04
          labels: {team: ml}
          autostop: {idle_minutes: 10, down: true}
          priority: -5
        file_mounts:
          /remote/data.txt: data.txt
          /bucket: s3://my-bucket/path
          /out:
            name: out-bucket
            store: S3
            mode: copy
            persistent: false
        setup: pip install torch
        run: python train.py
        config:
          jobs: {controller: {resources: {cpus: 2}}}
        """,
    )
    assert task.workdir == str(tmp_path / "code")
    assert task.num_nodes == 2
    res = task.resources
    assert (res.instance_type, res.disk_size, res.disk_tier) == ("m5.xlarge", 100, "high")
    assert res.ports == ["8080", "9000-9010"]
    assert res.image_id == "docker:ubuntu:22.04"
    assert res.labels == {"team": "ml"}
    assert res.autostop == {"idle_minutes": 10, "down": True}
    assert res.priority == -5
    assert task.file_mounts["/remote/data.txt"] == str(tmp_path / "data.txt")
    assert task.file_mounts["/bucket"] == "s3://my-bucket/path"
    assert task.file_mounts["/out"] == FileMount(name="out-bucket", store="s3", mode="COPY", persistent=False)
    assert task.config == {"jobs": {"controller": {"resources": {"cpus": 2}}}}


def test_relative_paths_resolve_against_the_yaml_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(project, "workdir: src\nfile_mounts:\n  /cfg: src/\nrun: ls\n")
    task = load_pipeline(path).tasks[0]
    assert task.workdir == str(project / "src")
    assert task.file_mounts["/cfg"] == str(project / "src") + "/"  # rsync's trailing slash is kept


def test_git_workdir_is_kept_as_a_mapping(tmp_path: Path) -> None:
    task = load_task(tmp_path, "workdir: {url: 'https://github.com/a/b', ref: main}\nrun: ls\n")
    assert task.workdir == {"url": "https://github.com/a/b", "ref": "main"}


def test_resources_null_is_empty(tmp_path: Path) -> None:
    assert load_task(tmp_path, "resources:\nrun: ls\n").resources == Resources()


def test_load_pipeline_text_uses_the_given_file_name(tmp_path: Path) -> None:
    pipeline = load_pipeline_text("run: echo\n", str(tmp_path / "inline.yaml"))
    assert pipeline.name == "inline"
    with pytest.raises(SpecError) as info:
        load_pipeline_text("runn: echo\n", "virtual.yaml")
    assert str(info.value).startswith("virtual.yaml:1: runn:")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_pipeline(tmp_path / "nope.yaml")
    assert info.value.line is None
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: (file): no such file"


def test_round_trip_through_model_dump(tmp_path: Path) -> None:
    task = load_task(
        tmp_path,
        """
        resources:
          cpus: 4+
          accelerators: {H100: 8, A100: 8}
          job_recovery: {strategy: failover, recover_on_exit_codes: 29}
          any_of:
            - infra: aws
            - infra: gcp/us-central1
              use_spot: true
        file_mounts:
          /b: {name: bucket, store: gcs}
        secrets: {TOKEN: abc}
        run: ls
        """,
    )
    assert Task.model_validate(task.model_dump()) == task
    assert Task.model_validate_json(task.model_dump_json()) == task
    assert Task.model_validate(task.model_dump()).resources.candidates() == task.resources.candidates()


# ---------------------------------------------------------- accelerators


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("H100", accel("H100")),
        ("H100:8", accel("H100", 8)),
        ("'H100:0.5'", accel("H100", 0.5)),
        ("tpu-v4-8", accel("tpu-v4-8")),
        ("A100-80GB:4", accel("A100-80GB", 4)),
        ("80GB+", accel(None, min_memory_gb=80)),
        ("'nvidia:80GB+:1'", accel(None, 1, min_memory_gb=80, manufacturer="nvidia")),
        ("'NVIDIA:24GB+:2'", accel(None, 2, min_memory_gb=24, manufacturer="nvidia")),
        ("'48GB+:4'", accel(None, 4, min_memory_gb=48)),
    ],
)
def test_accelerator_string_forms(tmp_path: Path, written: str, expected: AcceleratorRequest) -> None:
    res = resources(tmp_path, f"accelerators: {written}\n")
    assert res.accelerators == [expected]
    assert not res.accelerators_ordered


def test_accelerator_str() -> None:
    assert str(accel("H100", 8)) == "H100:8"
    assert str(accel("H100", 0.5)) == "H100:0.5"
    assert str(accel(None, 2, min_memory_gb=80, manufacturer="nvidia")) == "nvidia:80GB+:2"


def test_accelerator_set_expands_unordered(tmp_path: Path) -> None:
    res = resources(tmp_path, "accelerators: {H100: 1, H200: 2, L4: null}\ncpus: 8\n")
    assert res.accelerators == [accel("H100"), accel("H200", 2), accel("L4")]
    assert not res.accelerators_ordered
    candidates, ordered = res.candidates()
    assert not ordered
    assert [c.accelerators for c in candidates] == [[accel("H100")], [accel("H200", 2)], [accel("L4")]]
    assert all(c.cpus == "8" and not c.any_of and not c.ordered for c in candidates)


def test_accelerator_list_is_ordered(tmp_path: Path) -> None:
    res = resources(tmp_path, "accelerators: [H100:8, A100:8, 'nvidia:40GB+:8']\n")
    assert res.accelerators_ordered
    candidates, ordered = res.candidates()
    assert ordered
    assert [str(c.accelerators[0]) for c in candidates] == ["H100:8", "A100:8", "nvidia:40GB+:8"]
    assert not any(c.accelerators_ordered for c in candidates)


def test_no_accelerator_is_one_candidate(tmp_path: Path) -> None:
    res = resources(tmp_path, "cpus: 2\n")
    candidates, ordered = res.candidates()
    assert (len(candidates), ordered) == (1, False)
    assert candidates[0].accelerators == [] and candidates[0].cpus == "2"


def test_any_of_merges_over_base(tmp_path: Path) -> None:
    res = resources(
        tmp_path,
        """
        cpus: 4+
        use_spot: true
        infra: aws
        any_of:
          - infra: gcp
            accelerators: {L4: 1, T4: 1}
          - accelerators: A10G:1
            use_spot: false
        """,
    )
    candidates, ordered = res.candidates()
    assert not ordered
    summary = [(c.infra, c.cpus, str(c.accelerators[0]), c.use_spot) for c in candidates]
    assert summary == [
        ("gcp", "4+", "L4:1", True),
        ("gcp", "4+", "T4:1", True),
        ("aws", "4+", "A10G:1", False),
    ]
    assert all(not c.any_of and not c.ordered for c in candidates)


def test_ordered_candidates_keep_order(tmp_path: Path) -> None:
    res = resources(
        tmp_path,
        """
        accelerators: H100:8
        ordered:
          - infra: gcp/us-central1
          - infra: aws/us-east-1
            accelerators: A100:8
          - infra: kubernetes
        """,
    )
    candidates, ordered = res.candidates()
    assert ordered
    assert [(c.infra, str(c.accelerators[0])) for c in candidates] == [
        ("gcp/us-central1", "H100:8"),
        ("aws/us-east-1", "A100:8"),
        ("kubernetes", "H100:8"),
    ]


# ------------------------------------------------------- infra, cpus, memory


@pytest.mark.parametrize(
    ("written", "infra", "cloud", "region", "zone"),
    [
        ("infra: AWS", "aws", "aws", None, None),
        ("infra: aws/us-east-1", "aws/us-east-1", "aws", "us-east-1", None),
        ("infra: gcp/us-central1/us-central1-a", "gcp/us-central1/us-central1-a", "gcp", "us-central1", "us-central1-a"),
        ("infra: k8s", "kubernetes", "kubernetes", None, None),
        ("infra: k8s/my-ctx/with/slashes", "kubernetes/my-ctx/with/slashes", "kubernetes", "my-ctx/with/slashes", None),
        ("infra: '*/us-east-1'", "*/us-east-1", None, "us-east-1", None),
        ("infra: local", "local", "local", None, None),
        # sim's regions name the cloud they mirror; the table's `sim:` spelling is accepted back.
        ("infra: sim/aws", "sim/aws", "sim", "aws", None),
        ("infra: sim/aws/us-east-1", "sim/aws/us-east-1", "sim", "aws/us-east-1", None),
        ("infra: 'sim:gcp/us-central1/us-central1-a'", "sim/gcp/us-central1/us-central1-a", "sim", "gcp/us-central1",
         "us-central1-a"),
        ("cloud: aws", "aws", "aws", None, None),
        ("cloud: AWS\nregion: us-east-1", "aws/us-east-1", "aws", "us-east-1", None),
        ("cloud: gcp\nregion: us-central1\nzone: us-central1-a", "gcp/us-central1/us-central1-a", "gcp", "us-central1", "us-central1-a"),
        ("region: us-east-1", "*/us-east-1", None, "us-east-1", None),
        ("cloud: aws\nzone: us-east-1a", "aws/*/us-east-1a", "aws", None, "us-east-1a"),
    ],
)
def test_infra_and_legacy_location(
    tmp_path: Path, written: str, infra: str, cloud: str | None, region: str | None, zone: str | None
) -> None:
    res = resources(tmp_path, written + "\n")
    assert (res.infra, res.cloud, res.region, res.zone) == (infra, cloud, region, zone)


@pytest.mark.parametrize(
    ("written", "stored", "minimum", "exact"),
    [("4", "4", 4.0, True), ("'4+'", "4+", 4.0, False), ("0.5", "0.5", 0.5, True), ("' 8 + '", "8+", 8.0, False)],
)
def test_cpus(tmp_path: Path, written: str, stored: str, minimum: float, exact: bool) -> None:
    res = resources(tmp_path, f"cpus: {written}\n")
    assert (res.cpus, res.cpus_min, res.cpus_exact) == (stored, minimum, exact)


@pytest.mark.parametrize(
    ("written", "stored", "minimum", "exact", "per_cpu"),
    [
        ("16", "16", 16.0, True, None),
        ("16+", "16+", 16.0, False, None),
        ("32GB+", "32GB+", 32.0, False, None),
        ("1TB", "1TB", 1024.0, True, None),
        ("512MB+", "512MB+", 0.5, False, None),
        ("4x", "4x", None, False, 4.0),
    ],
)
def test_memory(
    tmp_path: Path, written: str, stored: str, minimum: float | None, exact: bool, per_cpu: float | None
) -> None:
    res = resources(tmp_path, f"memory: {written}\n")
    assert (res.memory, res.memory_min, res.memory_exact, res.memory_per_cpu) == (stored, minimum, exact, per_cpu)


def test_unset_sizes(tmp_path: Path) -> None:
    res = resources(tmp_path, "use_spot: true\n")
    assert (res.cpus_min, res.cpus_exact, res.memory_min, res.memory_exact) == (None, False, None, False)


# ----------------------------------------------------------- job recovery


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("job_recovery: failover", JobRecovery(strategy="FAILOVER")),
        ("job_recovery: {strategy: Eager_Next_Region}", JobRecovery(strategy="EAGER_NEXT_REGION")),
        ("job_recovery: {max_restarts_on_errors: 3}", JobRecovery(max_restarts_on_errors=3)),
        ("job_recovery: {recover_on_exit_codes: 29}", JobRecovery(recover_on_exit_codes=[29])),
        (
            "job_recovery: {strategy: FAILOVER, max_restarts_on_errors: 1, recover_on_exit_codes: [29, 33]}",
            JobRecovery(strategy="FAILOVER", max_restarts_on_errors=1, recover_on_exit_codes=[29, 33]),
        ),
        ("job_recovery:", None),
    ],
)
def test_job_recovery_forms(tmp_path: Path, written: str, expected: JobRecovery | None) -> None:
    assert resources(tmp_path, written + "\n").job_recovery == expected


def test_job_recovery_default_strategy_is_none(tmp_path: Path) -> None:
    recovery = resources(tmp_path, "job_recovery: {max_restarts_on_errors: 2}\n").job_recovery
    assert recovery is not None and recovery.strategy is None


def test_job_recovery_duplicate_exit_code(tmp_path: Path) -> None:
    err = error(tmp_path, "resources:\n  job_recovery:\n    recover_on_exit_codes: [29, 29]\n")
    assert (err.field, err.line) == ("resources.job_recovery.recover_on_exit_codes[1]", 3)


def test_job_recovery_inherited_by_candidates(tmp_path: Path) -> None:
    res = resources(
        tmp_path,
        """
        job_recovery: FAILOVER
        any_of:
          - infra: aws
          - infra: gcp
            job_recovery: {strategy: failover}
        """,
    )
    candidates, _ = res.candidates()
    assert {c.job_recovery.strategy for c in candidates if c.job_recovery} == {"FAILOVER"}
    assert all(c.job_recovery is not None for c in candidates)


def test_spot_recovery_is_accepted_with_a_warning(tmp_path: Path) -> None:
    pipeline = load(tmp_path, "resources:\n  use_spot: true\n  spot_recovery: FAILOVER\nrun: ls\n")
    assert pipeline.tasks[0].resources.job_recovery == JobRecovery(strategy="FAILOVER")
    assert pipeline.warnings == [f"{tmp_path / 'task.yaml'}:3: resources.spot_recovery: is deprecated; use job_recovery"]


def test_spot_recovery_in_code_warns() -> None:
    with pytest.warns(DeprecationWarning, match="spot_recovery"):
        res = Resources.model_validate({"spot_recovery": "EAGER_NEXT_REGION"})
    assert res.job_recovery == JobRecovery(strategy="EAGER_NEXT_REGION")


def test_spot_recovery_and_job_recovery_together(tmp_path: Path) -> None:
    err = error(tmp_path, "resources:\n  job_recovery: FAILOVER\n  spot_recovery: FAILOVER\n")
    assert (err.field, err.line) == ("resources.spot_recovery", 3)


# --------------------------------------------------------------- pipelines


def test_pipeline_with_header(tmp_path: Path) -> None:
    pipeline = load(
        tmp_path,
        """
        name: flow
        execution: serial
        ---
        name: prepare
        run: echo prepare
        ---
        run: echo train
        ---
        name: eval
        run: echo eval
        """,
    )
    assert pipeline.name == "flow"
    assert pipeline.is_pipeline
    assert [t.name for t in pipeline.tasks] == ["prepare", "flow-1", "eval"]


def test_pipeline_without_header_is_named_after_the_file(tmp_path: Path) -> None:
    pipeline = load(tmp_path, "run: echo a\n---\nname: b\nrun: echo b\n", name="steps.yaml")
    assert pipeline.name == "steps"
    assert pipeline.is_pipeline
    assert [t.name for t in pipeline.tasks] == ["steps-0", "b"]


def test_header_with_a_single_task_is_a_pipeline(tmp_path: Path) -> None:
    pipeline = load(tmp_path, "name: one\n---\nname: only\nrun: echo\n")
    assert pipeline.is_pipeline
    assert (pipeline.name, pipeline.tasks[0].name) == ("one", "only")


def test_single_name_only_document_is_a_task(tmp_path: Path) -> None:
    pipeline = load(tmp_path, "name: idle\n")
    assert not pipeline.is_pipeline
    assert pipeline.tasks[0].name == "idle" and pipeline.tasks[0].run is None


def test_unnamed_single_task_takes_the_file_stem(tmp_path: Path) -> None:
    pipeline = load(tmp_path, "run: echo\n", name="hello.yaml")
    assert (pipeline.name, pipeline.tasks[0].name) == ("hello", "hello")


def test_stray_document_separators_are_ignored(tmp_path: Path) -> None:
    pipeline = load(tmp_path, "---\nrun: echo\n---\n", name="x.yaml")
    assert len(pipeline.tasks) == 1 and not pipeline.is_pipeline


def test_duplicate_task_names(tmp_path: Path) -> None:
    err = error(tmp_path, "name: a\nrun: x\n---\nname: b\nrun: y\n---\nname: a\nrun: z\n")
    assert (err.field, err.line) == ("name", 7)
    assert "'a'" in err.message and "line 1" in err.message


def test_duplicate_with_a_default_name(tmp_path: Path) -> None:
    err = error(tmp_path, "name: p\n---\nname: p-1\nrun: x\n---\nrun: y\n")
    assert (err.field, err.line) == ("name", 6)


def test_header_without_tasks(tmp_path: Path) -> None:
    err = error(tmp_path, "name: p\nexecution: serial\n")
    assert (err.field, err.line) == ("(document)", 1)


def test_second_document_not_a_mapping(tmp_path: Path) -> None:
    err = error(tmp_path, "run: x\n---\njust a string\n")
    assert (err.field, err.line) == ("(document)", 3)


# --------------------------------------------------------------- overrides


def test_overrides_win_over_the_yaml(tmp_path: Path) -> None:
    task = load_task(
        tmp_path,
        """
        name: job
        num_nodes: 1
        resources:
          infra: gcp
          cpus: 2
          memory: 8
          use_spot: false
          accelerators: {H100: 1, A100: 1}
        envs: {A: yaml, B: yaml}
        run: ls
        """,
        Overrides(infra="aws/us-east-1", cpus="8+", memory="32+", use_spot=True, gpus="L4:2", num_nodes=3, envs={"B": "flag"}),
    )
    res = task.resources
    assert (res.infra, res.cpus, res.memory, res.use_spot) == ("aws/us-east-1", "8+", "32+", True)
    assert res.accelerators == [accel("L4", 2)] and not res.accelerators_ordered
    assert task.num_nodes == 3
    assert task.envs == {"A": "yaml", "B": "flag"}


def test_overrides_reach_every_candidate(tmp_path: Path) -> None:
    task = load_task(
        tmp_path,
        "resources:\n  any_of:\n    - infra: aws\n      cpus: 2\n    - infra: gcp\nrun: ls\n",
        Overrides(infra="sim", cpus="4"),
    )
    candidates, _ = task.resources.candidates()
    assert [(c.infra, c.cpus) for c in candidates] == [("sim", "4"), ("sim", "4")]


def test_overrides_apply_to_every_pipeline_task(tmp_path: Path) -> None:
    pipeline = load(
        tmp_path, "name: p\n---\nrun: a\n---\nrun: b\n", Overrides(name="renamed", envs={"X": "1"}, use_spot=True)
    )
    assert pipeline.name == "renamed"
    assert [t.name for t in pipeline.tasks] == ["renamed-0", "renamed-1"]
    assert all(t.envs == {"X": "1"} and t.resources.use_spot for t in pipeline.tasks)


def test_name_flag_renames_a_single_task(tmp_path: Path) -> None:
    pipeline = load(tmp_path, "name: from-yaml\nrun: ls\n", Overrides(name="from-flag"))
    assert (pipeline.name, pipeline.tasks[0].name) == ("from-flag", "from-flag")


def test_name_flag_keeps_pipeline_task_names(tmp_path: Path) -> None:
    pipeline = load(tmp_path, "name: p\n---\nname: a\nrun: x\n", Overrides(name="job"))
    assert (pipeline.name, pipeline.tasks[0].name) == ("job", "a")


def test_env_file_then_env_flags(tmp_path: Path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text("# comment\n\nexport A=1\nB='two words'\nC=plain # trailing comment\nD=\"x=y\"\n")
    task = load_task(
        tmp_path,
        "envs:\n  A: yaml\n  E: yaml\nrun: ls\n",
        Overrides(env_file=str(env_file), envs={"C": "flag"}),
    )
    assert task.envs == {"A": "1", "E": "yaml", "B": "two words", "C": "flag", "D": "x=y"}


def test_null_env_supplied_by_flag(tmp_path: Path) -> None:
    task = load_task(tmp_path, "envs:\n  DATASET:\nrun: ls\n", Overrides(envs={"DATASET": "imagenet"}))
    assert task.envs == {"DATASET": "imagenet"}


def test_null_env_supplied_by_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DATASET=imagenet\n")
    task = load_task(tmp_path, "envs:\n  DATASET: null\nrun: ls\n", Overrides(env_file=str(env_file)))
    assert task.envs == {"DATASET": "imagenet"}


def test_env_values_become_strings(tmp_path: Path) -> None:
    task = load_task(tmp_path, "envs:\n  LR: 0.001\n  EPOCHS: 3\n  DEBUG: true\n  NAME: x\nrun: ls\n")
    assert task.envs == {"LR": "0.001", "EPOCHS": "3", "DEBUG": "True", "NAME": "x"}


# ------------------------------------------------------------------ flags


def test_parse_env_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_env_flag("K=V") == ("K", "V")
    assert parse_env_flag("K=") == ("K", "")
    assert parse_env_flag("K=a=b") == ("K", "a=b")
    monkeypatch.setenv("FROM_SHELL", "yes")
    assert parse_env_flag("FROM_SHELL") == ("FROM_SHELL", "yes")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("FOO BAR", "--env: 'FOO BAR' is not KEY=VALUE"),
        ("1X=2", "--env: '1X' is not a valid variable name"),
        ("=v", "--env: '' is not a valid variable name"),
        ("SKYTUI_TEST_SURELY_UNSET", "--env: 'SKYTUI_TEST_SURELY_UNSET' is not set in the environment"),
    ],
)
def test_bad_env_flag(monkeypatch: pytest.MonkeyPatch, value: str, text: str) -> None:
    monkeypatch.delenv("SKYTUI_TEST_SURELY_UNSET", raising=False)
    with pytest.raises(SpecError) as info:
        parse_env_flag(value)
    assert (info.value.field, info.value.line, info.value.file) == ("--env", None, "")
    assert str(info.value).startswith(text)


@pytest.mark.parametrize(
    ("overrides", "flag", "suggestion"),
    [
        (Overrides(gpus="H100:x"), "--gpus", None),
        (Overrides(gpus="H100:1:2"), "--gpus", None),
        (Overrides(cpus="abc"), "--cpus", None),
        (Overrides(cpus="-2"), "--cpus", None),
        (Overrides(memory="lots"), "--memory", None),
        (Overrides(infra="awz"), "--infra", "aws"),
        (Overrides(infra="aws/a/b/c"), "--infra", None),
        (Overrides(num_nodes=0), "--num-nodes", None),
        (Overrides(envs={"BAD KEY": "x"}), "--env", None),
        (Overrides(name=" "), "--name", None),
        # NaN, infinity, overflow and NUL from the command line (or the TUI's launch form)
        (Overrides(cpus="nan"), "--cpus", None),
        (Overrides(cpus="1" + "0" * 400), "--cpus", None),
        (Overrides(memory="inf"), "--memory", None),
        (Overrides(memory="99999999999999999999TB"), "--memory", None),
        (Overrides(gpus="H100:nan"), "--gpus", None),
        (Overrides(gpus="H100:inf"), "--gpus", None),
        (Overrides(gpus="H100:1" + "0" * 400), "--gpus", None),
        (Overrides(gpus="1" + "0" * 400 + "GB+"), "--gpus", None),
        (Overrides(num_nodes=99999999999999999999999), "--num-nodes", None),
        (Overrides(envs={"A": "x\0y"}), "--env", None),
        (Overrides(secrets={"TOKEN": f"{SECRET}\0"}), "--secret", None),
        (Overrides(name="job\0"), "--name", None),
        (Overrides(infra="aws\0"), "--infra", None),
    ],
)
def test_bad_flags(tmp_path: Path, overrides: Overrides, flag: str, suggestion: str | None) -> None:
    err = error(tmp_path, "run: ls\n", overrides)
    assert (err.field, err.line, err.file, err.suggestion) == (flag, None, "", suggestion)
    assert str(err).startswith(f"{flag}: ")
    assert SECRET not in str(err) and "\0" not in str(err)


def test_nul_in_an_env_file_names_the_line_not_the_value(tmp_path: Path) -> None:
    env_file = tmp_path / "nul.env"
    env_file.write_text(f"A=1\nTOKEN={SECRET}\0tail\n")
    err = error(tmp_path, "run: ls\n", Overrides(env_file=str(env_file)))
    assert (err.file, err.line, err.field) == (str(env_file), 2, "--env-file")
    assert "NUL" in err.message and SECRET not in str(err)


def test_missing_env_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.env")
    err = error(tmp_path, "run: ls\n", Overrides(env_file=missing))
    assert (err.file, err.line, err.field) == (missing, None, "--env-file")
    assert str(err) == f"{missing}: --env-file: no such file"


def test_bad_env_file_line_names_the_line_not_the_value(tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text(f"A=1\n# fine\nPASSWORD {SECRET}\n")
    err = error(tmp_path, "run: ls\n", Overrides(env_file=str(env_file)))
    assert (err.file, err.line, err.field) == (str(env_file), 3, "--env-file")
    assert SECRET not in str(err)


# ----------------------------------------------------------------- secrets


SECRET_TASK = f"""
name: secretive
envs:
  PUBLIC: visible
secrets:
  HF_TOKEN: {SECRET}
  PORT: 1234
run: echo $HF_TOKEN
"""


def test_secrets_are_loaded(tmp_path: Path) -> None:
    task = load_task(tmp_path, SECRET_TASK)
    assert task.secrets == {"HF_TOKEN": SECRET, "PORT": "1234"}


def test_secrets_absent_from_repr_and_str(tmp_path: Path) -> None:
    pipeline = load(tmp_path, SECRET_TASK, Overrides(secrets={"EXTRA": SECRET}))
    task = pipeline.tasks[0]
    assert task.secrets["EXTRA"] == SECRET
    for text in (repr(task), str(task), repr(pipeline), str(pipeline), repr(Overrides(secrets={"A": SECRET}))):
        assert SECRET not in text
    assert "visible" in repr(task)


def test_redacted(tmp_path: Path) -> None:
    pipeline = load(tmp_path, SECRET_TASK)
    redacted = pipeline.redacted()
    assert SECRET not in repr(redacted)
    task = redacted["tasks"][0]
    assert task["secrets"] == {"HF_TOKEN": "<redacted>", "PORT": "<redacted>"}
    assert task["envs"] == {"PUBLIC": "visible"}
    assert redacted["name"] == "secretive"
    import json

    json.dumps(redacted)  # JSON-able


@pytest.mark.parametrize(
    "text",
    [
        f"secrets:\n  bad-name: {SECRET}\n",
        f"secrets:\n  OK: {SECRET}\n  LIST: [{SECRET}]\n",
        f"secrets:\n  OK: {SECRET}\n  OK: {SECRET}\n",
        f"secrets:\n  OK: {SECRET}\n    bad: indent\n",
        f"secrets:\n  OK: '{SECRET}\n",
        f"secrets: [{SECRET}]\n",
        f"secrets:\n  OK: {SECRET}\nrunn: x\n",
    ],
)
def test_secret_values_never_in_errors(tmp_path: Path, text: str) -> None:
    err = error(tmp_path, text)
    assert SECRET not in str(err)
    assert SECRET not in repr(err)
    assert SECRET not in err.message


def test_secret_errors_hidden_from_pydantic_too() -> None:
    with pytest.raises(Exception) as info:
        Task(secrets={"A": [SECRET]})  # type: ignore[dict-item]
    assert SECRET not in str(info.value)


# ------------------------------------------------------- more error shapes


def test_spec_error_rendering() -> None:
    err = SpecError("examples/bad.yaml", 4, "resources.acclerators", "unknown field", "accelerators")
    assert str(err) == "examples/bad.yaml:4: resources.acclerators: unknown field; did you mean 'accelerators'?"
    assert str(SpecError("f.yaml", None, "x", "msg")) == "f.yaml: x: msg"
    assert str(SpecError("", None, "--env", "'FOO BAR' is not KEY=VALUE")) == "--env: 'FOO BAR' is not KEY=VALUE"
    assert isinstance(err, ValueError)
    clone = pickle.loads(pickle.dumps(err))
    assert (clone.file, clone.line, clone.field, clone.message, clone.suggestion, str(clone)) == (
        err.file,
        err.line,
        err.field,
        err.message,
        err.suggestion,
        str(err),
    )


@pytest.mark.parametrize(
    ("text", "field", "line", "suggestion"),
    [
        ("runn: x\n", "runn", 1, "run"),
        ("name: a\nresources:\n  acclerators: H100\n", "resources.acclerators", 3, "accelerators"),
        ("num_node: 2\n", "num_node", 1, "num_nodes"),
        ("colour: red\n", "colour", 1, None),
        ("resources:\n  job_recovery:\n    stratgy: FAILOVER\n", "resources.job_recovery.stratgy", 3, "strategy"),
        ("resources:\n  ordered:\n    - infra: aws\n    - clodu: gcp\n", "resources.ordered[1].clodu", 4, "cloud"),
        ("resources:\n  job_recovery: {strategy: FAILOVR}\n", "resources.job_recovery.strategy", 2, "FAILOVER"),
        ("resources:\n  infra: gpc/us-central1\n", "resources.infra", 2, "gcp"),
        ("resources:\n  autostop: {idle_minute: 5}\n", "resources.autostop.idle_minute", 2, "idle_minutes"),
        ("workdir: {url: x, reff: main}\n", "workdir.reff", 1, "ref"),
        ("resources:\n  accelerators_ordered: true\n", "resources.accelerators_ordered", 2, "accelerators"),
    ],
)
def test_unknown_keys_everywhere(tmp_path: Path, text: str, field: str, line: int, suggestion: str | None) -> None:
    err = error(tmp_path, text)
    assert (err.field, err.line, err.suggestion) == (field, line, suggestion)


def test_a_pool_yaml_is_not_a_job(tmp_path: Path) -> None:
    err = error(tmp_path, "pool: {workers: 2}\n")
    assert (err.field, err.line) == ("pool", 1)
    assert "jobs pool apply" in err.message


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        ("resources:\n  cpus: true\n", "resources.cpus", 2),
        ("resources:\n  cpus: 0\n", "resources.cpus", 2),
        ("resources:\n  memory: 4GBx\n", "resources.memory", 2),
        ("resources:\n  accelerators: 'H100:1.5'\n", "resources.accelerators", 2),
        ("resources:\n  accelerators: '80GB'\n", "resources.accelerators", 2),
        ("resources:\n  accelerators: [H100:1, 'A100:x']\n", "resources.accelerators[1]", 2),
        ("resources:\n  accelerators: 8\n", "resources.accelerators", 2),
        ("resources:\n  ports: [8080, 70000]\n", "resources.ports[1]", 2),
        ("resources:\n  ports: '9000-8000'\n", "resources.ports", 2),
        ("resources:\n  disk_size: big\n", "resources.disk_size", 2),
        ("resources:\n  autostop: -3\n", "resources.autostop", 2),
        ("resources:\n  infra: aws//zone\n", "resources.infra", 2),
        ("resources: [cpus]\n", "resources", 1),
        ("resources:\n  any_of: {infra: aws}\n", "resources.any_of", 2),
        ("resources:\n  any_of:\n    - infra: aws\n      any_of: [{cpus: 2}]\n", "resources.any_of[0].any_of", 4),
        ("resources:\n  ordered:\n    - accelerators: {A: 1, B: 1}\n", "resources.ordered[0].accelerators", 3),
        ("resources:\n  any_of:\n    - accelerators: [A, B]\n", "resources.any_of[0].accelerators", 3),
        ("resources:\n  job_recovery: [FAILOVER]\n", "resources.job_recovery", 2),
        ("resources:\n  job_recovery:\n    recover_on_exit_codes: true\n", "resources.job_recovery.recover_on_exit_codes", 3),
        ("resources:\n  ordered:\n    - job_recovery: FAILOVER\n    - infra: gcp\n", "resources.ordered[0].job_recovery", 3),
        ("resources:\n  region: us-east-1\n  infra: aws\n", "resources.region", 2),
        ("envs: [A, B]\n", "envs", 1),
        ("envs:\n  A: {x: 1}\n", "envs.A", 2),
        ("file_mounts:\n  /data: {store: s3}\n", "file_mounts./data", 2),
        ("file_mounts:\n  /data: {name: b, store: dropbox}\n", "file_mounts./data.store", 2),
        ("file_mounts:\n  /data: {name: b, mode: SYNC}\n", "file_mounts./data.mode", 2),
        ("file_mounts:\n  /data:\n    source: [./missing-a]\n", "file_mounts./data.source[0]", 3),
        ("file_mounts:\n  /data: 3\n", "file_mounts./data", 2),
        ("setup: {a: 1}\n", "setup", 1),
        ("name: ''\n", "name", 1),
        ("name: [a]\n", "name", 1),
        ("num_nodes: 2.5\n", "num_nodes", 1),
        ("num_nodes: true\n", "num_nodes", 1),
        ("config: 3\n", "config", 1),
        ("workdir: {ref: main}\n", "workdir", 1),
        ("name: p\nexecution: later\n---\nrun: x\n", "execution", 2),
        ("name: 3\n---\nrun: x\n", "name", 1),
        ("run: a\n? [1, 2]\n: b\n", "(yaml)", 2),
    ],
)
def test_invalid_values(tmp_path: Path, text: str, field: str, line: int) -> None:
    err = error(tmp_path, text)
    assert (err.field, err.line) == (field, line), str(err)
    assert str(err).startswith(f"{tmp_path / 'task.yaml'}:{line}: {field}: ")


@pytest.mark.parametrize(
    ("text", "field", "line", "says"),
    [
        ("resources:\n  cpus: .nan\n", "resources.cpus", 2, "NaN"),
        ("resources:\n  cpus: .inf\n", "resources.cpus", 2, "at most 100000"),
        ("resources:\n  cpus: 99999999999999999999999\n", "resources.cpus", 2, "at most 100000"),
        ("resources:\n  cpus: '1" + "0" * 400 + "+'\n", "resources.cpus", 2, "at most 100000"),
        ("resources:\n  memory: .inf\n", "resources.memory", 2, "at most 1000000 GB"),
        ("resources:\n  memory: -.inf\n", "resources.memory", 2, "positive"),
        ("resources:\n  memory: .nan\n", "resources.memory", 2, "NaN"),
        ("resources:\n  memory: 99999999999999TB+\n", "resources.memory", 2, "at most 1000000 GB"),
        ("resources:\n  accelerators: {H100: .nan}\n", "resources.accelerators.H100", 2, "NaN"),
        ("resources:\n  accelerators: 'H100:99999999999999999999999'\n", "resources.accelerators", 2, "at most"),
        ("resources:\n  accelerators: 1" + "0" * 400 + "GB+\n", "resources.accelerators", 2, "memory"),
        ("resources:\n  disk_size: 99999999999999999999999\n", "resources.disk_size", 2, "at most"),
        ("resources:\n  autostop: 99999999999999999999999\n", "resources.autostop", 2, "idle minutes"),
        ("resources:\n  autostop: {idle_minutes: 99999999999999999999999}\n", "resources.autostop.idle_minutes", 2,
         "minutes"),
        ("resources:\n  job_recovery: {max_restarts_on_errors: 99999999999999999999999}\n",
         "resources.job_recovery.max_restarts_on_errors", 2, "at most"),
        ("num_nodes: 99999999999999999999999\n", "num_nodes", 1, "at most 10000"),
        ("num_nodes: 1" + "0" * 5000 + "\n", "num_nodes", 1, "not a valid value"),
        ('run: "echo \\0"\n', "run", 1, "NUL"),
        ('setup: "echo \\0"\n', "setup", 1, "NUL"),
        ('name: "a\\0b"\n', "name", 1, "NUL"),
        ('envs:\n  A: "x\\0"\n', "envs.A", 2, "NUL"),
        ('workdir: "./x\\0"\n', "workdir", 1, "NUL"),
        ('resources:\n  labels: {team: "a\\0"}\n', "resources.labels.team", 2, "NUL"),
        ('resources:\n  image_id: "docker:x\\0"\n', "resources.image_id", 2, "NUL"),
        ('file_mounts:\n  "/d\\0": s3://b/x\n', "file_mounts", 2, "a key contains a NUL"),
    ],
)
def test_nan_infinity_overflow_and_nul_are_refused(
    tmp_path: Path, text: str, field: str, line: int, says: str
) -> None:
    err = error(tmp_path, text + ("run: ls\n" if "run:" not in text else ""))
    assert (err.field, err.line) == (field, line), str(err)
    assert says in err.message, str(err)
    assert "\0" not in str(err)


def test_pool_delays_must_be_finite(tmp_path: Path) -> None:
    from skytui.spec import load_pool

    path = write(tmp_path, "pool: {max_workers: 2, upscale_delay_seconds: .inf}\n", "pool.yaml")
    with pytest.raises(SpecError) as info:
        load_pool(path)
    assert (info.value.field, info.value.line) == ("pool.upscale_delay_seconds", 1), str(info.value)


def test_sizes_within_the_bounds_still_load(tmp_path: Path) -> None:
    res = resources(tmp_path, "cpus: 100000\nmemory: 1000000\naccelerators: H100:8\ndisk_size: 1000000\n")
    assert (res.cpus, res.memory, res.disk_size) == ("100000", "1000000", 1000000)
    assert load_task(tmp_path, "num_nodes: 10000\nrun: ls\n").num_nodes == 10000
    assert load_task(tmp_path, "envs: {RATE: .nan}\nrun: ls\n").envs == {"RATE": "nan"}  # a string, as SkyPilot


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    res = resources(
        tmp_path,
        """
        any_of:
          - &base
            infra: aws
            cpus: 2
            memory: 8
          - <<: *base
            infra: gcp
            cpus: 4
        """,
    )
    assert [(r.infra, r.cpus, r.memory) for r in res.any_of] == [("aws", "2", "8"), ("gcp", "4", "8")]


def test_duplicate_key_next_to_a_merge_key_is_refused(tmp_path: Path) -> None:
    err = error(tmp_path, "base: &b {cpus: 2}\nresources:\n  <<: *b\n  cpus: 4\n  cpus: 8\n")
    assert (err.field, err.line) == ("resources.cpus", 5)


def test_first_error_by_line_wins(tmp_path: Path) -> None:
    err = error(tmp_path, "num_nodes: 0\nresources:\n  cpus: abc\nrun: 5\n")
    assert (err.field, err.line) == ("num_nodes", 1)


def test_models_built_in_code_skip_file_checks() -> None:
    task = Task(workdir="/surely/not/here", file_mounts={"/d": "./nowhere"}, run="ls")
    assert task.workdir == "/surely/not/here"
    res = Resources(accelerators="H100:8", cpus=4)
    assert res.accelerators == [accel("H100", 8)] and res.cpus == "4"


# ------------------------------------------------------------------ corpus


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.yaml"))


def test_corpus_is_large_enough() -> None:
    files = corpus_files()
    assert len(files) >= 32
    for path in files:
        assert re.match(r"^\d\d-[a-z0-9-]+\.yaml$", path.name), path.name
        assert EXPECT.match(path.read_text().splitlines()[0]), path.name


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.stem)
def test_invalid_corpus(path: Path) -> None:
    match = EXPECT.match(path.read_text().splitlines()[0])
    assert match, f"{path.name}: first line must be '# expect: <field> @ <line>'"
    field, line = match.group(1), int(match.group(2))
    with pytest.raises(SpecError) as info:
        load_pipeline(path)
    err = info.value
    assert (err.field, err.line) == (field, line), str(err)
    text = str(err)
    assert path.name in text
    assert f":{line}:" in text
    assert field in text
    assert SECRET not in text


# ---------------------------------------------------------------- examples


@pytest.mark.parametrize("name", ["hello", "train", "pipeline", "failing", "setup_envs"])
def test_examples_load(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipeline = load_pipeline(EXAMPLES / f"{name}.yaml")
    assert pipeline.warnings == []
    for task in pipeline.tasks:
        assert task.run
        assert task.resources.accelerators == []
        assert task.resources.infra is None


def test_example_shapes() -> None:
    assert load_pipeline(EXAMPLES / "hello.yaml").tasks[0].name == "hello"
    train = load_pipeline(EXAMPLES / "train.yaml").tasks[0]
    assert train.setup and {"LR", "EPOCHS"} <= set(train.envs) and "SKYPILOT_TASK_ID" in (train.run or "")
    pipeline = load_pipeline(EXAMPLES / "pipeline.yaml")
    assert pipeline.is_pipeline and [t.name for t in pipeline.tasks] == ["prepare", "train", "eval"]
    assert "exit 7" in (load_pipeline(EXAMPLES / "failing.yaml").tasks[0].run or "")
    setup_envs = load_pipeline(EXAMPLES / "setup_envs.yaml").tasks[0]
    assert setup_envs.setup and "SKYPILOT_NODE_RANK" in (setup_envs.run or "")
