"""SkyPilot's own YAMLs, unchanged: `validate` gives SkyPilot's verdict (issue 12).

Each rule has its own small YAML here, written for these tests: what SkyPilot
0.14's schema and loader accept loads (acted on, or kept with one warning
line), what they refuse is refused with file, line and field, and whether a
spec fits the infra enabled here is `validate --here` / `jobs launch
--dryrun`, never plain `validate`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from fixtures.env import Env

from skytui import cli
from skytui.client import Client
from skytui.config import paths
from skytui.engine.optimizer import InfeasibleError
from skytui.spec import Overrides, SpecError, Task, load_pipeline, load_pool


def write(tmp_path: Path, text: str, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def refused(path: Path, **options: object) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_pipeline(path, **options)  # type: ignore[arg-type]
    return info.value


# ---------------------------------------------------------- the spec alone


GPU_ON_AWS = """\
    name: train
    resources:
      infra: aws/us-east-1
      accelerators: {H100:8, H200:8}
      cpus: 64+
      use_spot: true
    run: python train.py
    """


def test_validate_judges_the_spec_not_this_machine(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(env.tmp, GPU_ON_AWS)  # only `local` is enabled here: no GPU, no AWS credentials
    assert cli.main(["validate", str(path)]) == 0
    assert f"{path}: valid task 'train'" in capsys.readouterr().out

    assert cli.main(["validate", "--here", str(path)]) == 2
    assert f"{path}: infeasible here: task 'train': nothing fits" in capsys.readouterr().err

    assert cli.main(["jobs", "launch", "--dryrun", "-y", str(path)]) == 2
    assert "infeasible" in capsys.readouterr().err


def test_validate_exit_code_says_whether_every_file_is_valid(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(env.tmp, GPU_ON_AWS, "good.yaml")
    bad = write(env.tmp, "name: my job\nrun: echo\n", "bad.yaml")
    assert cli.main(["validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"{good}: valid task" in captured.out
    assert f"{bad}:1: name: 'my job' is not a valid task name" in captured.err
    assert not env.home.exists(), "validate writes nothing"


# ------------------------------------------------ fields kept and ignored


KEPT = """\
    name: serve-and-train
    resources:
      cpus: 1
      network_tier: best
      local_disk: nvme
      accelerator_args: {runtime_version: tpu-vm-base, tpu_vm: true}
      priority_class: high
      _no_missing_accel_warnings: true
    service:
      readiness_probe: /health
      replicas: 2
    inputs: {"s3://bucket/data": 100}
    api_server_access: false
    event_callback: echo done
    volumes: {/mnt/vol: my-volume}
    file_mounts:
      /data:
        source: s3://some-bucket/data
        mode: MOUNT_CACHED
        type: DATASET_RO
        config: {mount_cached: {transfers: 4}}
    run: echo hi
    """


def test_skypilot_fields_skytui_does_not_act_on_load_with_one_warning_each(tmp_path: Path) -> None:
    path = write(tmp_path, KEPT)
    pipeline = load_pipeline(path)
    task = pipeline.tasks[0]
    assert set(task.kept) == {"service", "inputs", "api_server_access", "event_callback", "volumes"}
    assert set(task.resources.kept) == {
        "network_tier", "local_disk", "accelerator_args", "priority_class", "_no_missing_accel_warnings"}
    storage = task.file_mounts["/data"]
    assert not isinstance(storage, str) and set(storage.kept) == {"type", "config"}
    expected = [
        (4, "resources.network_tier"), (5, "resources.local_disk"), (6, "resources.accelerator_args"),
        (7, "resources.priority_class"), (8, "resources._no_missing_accel_warnings"), (9, "service"),
        (12, "inputs"), (13, "api_server_access"), (14, "event_callback"), (15, "volumes"),
        (20, "file_mounts./data.type"), (21, "file_mounts./data.config"),
    ]
    assert [w.split(": skytui does not act on this")[0] for w in pipeline.warnings] == [
        f"{path}:{line}: {field}" for line, field in expected
    ]
    # What the controller reads back from the DB is what was kept.
    assert Task.model_validate(task.model_dump(mode="json")) == task


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        ("resources:\n  network_tier: fastest\nrun: x\n", "resources.network_tier", 2),
        ("inputs: {a: 1, b: 2}\nrun: x\n", "inputs", 1),
        ("api_server_access: 'yes'\nrun: x\n", "api_server_access", 1),
        ("resources:\n  accelerator_args: {tpu_vm: 1}\nrun: x\n", "resources.accelerator_args", 2),
        ("event_callback: 3\nrun: x\n", "event_callback", 1),
        ("file_mounts:\n  /d:\n    name: b\n    type: BOGUS\nrun: x\n", "file_mounts./d.type", 4),
        ("resources:\n  ephemeral_storage: 1.5TB\nrun: x\n", "resources.ephemeral_storage", 2),
        ("managed_secrets: [{A: {path: /x}}]\nrun: x\n", "managed_secrets", 1),
        ("servce: {}\nrun: x\n", "servce", 1),
        ("service:\n  port: 8000\n  readiness_probe: /\nrun: x\n", "service", 1),
        ("service:\n  readiness_probe: /\n  replica_policy: {min_replicas: 1, init_replicas: 2}\nrun: x\n",
         "service", 1),
        ("service:\n  readiness_probe: {initial_delay_seconds: 5}\nrun: x\n", "service", 1),
        ("service:\n  readiness_probe: /\n  tls: {key: k}\nrun: x\n", "service", 1),
    ],
)
def test_what_skypilot_refuses_in_those_fields_is_refused(tmp_path: Path, text: str, field: str, line: int) -> None:
    error = refused(write(tmp_path, text), spec_only=True)
    assert (error.field, error.line) == (field, line)


def test_a_misspelt_skypilot_field_is_suggested(tmp_path: Path) -> None:
    assert refused(write(tmp_path, "servce: {}\nrun: x\n")).suggestion == "service"


# ---------------------------------------------------------------- clouds


@pytest.mark.parametrize("infra", ["infra: azure/eastus", "infra: lambda", "cloud: nebius"])
def test_clouds_skytui_does_not_run_on_are_valid_and_infeasible_here(
    env: Env, capsys: pytest.CaptureFixture[str], infra: str
) -> None:
    path = write(env.tmp, f"resources:\n  {infra}\nrun: echo\n")
    cloud = infra.split(": ")[1].split("/")[0]
    assert cli.main(["validate", str(path)]) == 0
    assert f"{path}:2: resources.{infra.split(':')[0]}: skytui does not run on {cloud}" in capsys.readouterr().err
    assert cli.main(["jobs", "launch", "--dryrun", "-y", str(path)]) == 2


def test_an_unknown_cloud_is_still_refused(tmp_path: Path) -> None:
    error = refused(write(tmp_path, "resources:\n  infra: azur\nrun: x\n"), spec_only=True)
    assert (error.field, error.suggestion) == ("resources.infra", "azure")


# --------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "secrets", ["secrets:\n  HF_TOKEN:\n", "secrets: [secrets:HF_TOKEN]\n", "secrets:\n  secrets:workspace.HF_TOKEN:\n"]
)
def test_a_secret_without_a_value_is_asked_for_at_launch(tmp_path: Path, secrets: str) -> None:
    path = write(tmp_path, secrets + "run: echo\n")
    pipeline = load_pipeline(path, spec_only=True)
    assert pipeline.tasks[0].secrets_wanted == ["HF_TOKEN"]
    line = 2 if "  HF_TOKEN:" in secrets else 1  # a reference's own key, else the secrets: line
    assert pipeline.warnings == [f"{path}:{line}: secrets.HF_TOKEN: has no value: give it at launch "
                                 "with --secret HF_TOKEN=VALUE"]
    error = refused(path)
    assert error.field.startswith("secrets") and "--secret HF_TOKEN=VALUE" in error.message
    given = load_pipeline(path, Overrides(secrets={"HF_TOKEN": "hf_x"})).tasks[0]
    assert given.secrets == {"HF_TOKEN": "hf_x"} and given.secrets_wanted == []


@pytest.mark.parametrize(
    ("text", "field"),
    [("secrets: [HF_TOKEN]\n", "secrets[0]"), ("secrets:\n  secrets:HF_TOKEN: abc\n", "secrets.secrets:HF_TOKEN")],
)
def test_secret_forms_skypilot_refuses(tmp_path: Path, text: str, field: str) -> None:
    error = refused(write(tmp_path, text + "run: echo\n"), spec_only=True)
    assert error.field == field
    assert "abc" not in str(error)


# ------------------------------------------------ file_mounts and storage


def test_envs_fill_in_file_mounts_and_workdir(tmp_path: Path) -> None:
    (tmp_path / "data-v2").mkdir()
    path = write(tmp_path, """\
        envs:
          VERSION: v2
        workdir: ./data-${VERSION}
        file_mounts:
          /mnt/data-$VERSION: ./data-${VERSION}
          /mnt/other: s3://bucket/${VERSION}/${UNSET}
        run: echo
        """)
    task = load_pipeline(path).tasks[0]
    assert task.workdir == str(tmp_path / "data-v2")
    assert task.file_mounts == {"/mnt/data-v2": str(tmp_path / "data-v2"), "/mnt/other": "s3://bucket/v2/${UNSET}"}


def test_a_local_path_missing_here_is_for_launch_to_refuse(tmp_path: Path) -> None:
    path = write(tmp_path, "workdir: ./gone\nfile_mounts:\n  /x: ./${NOPE}/data\nrun: echo\n")
    warnings = load_pipeline(path, spec_only=True).warnings
    assert [w.split(": ")[0:2] for w in warnings] == [[f"{path}:1", "workdir"], [f"{path}:3", "file_mounts./x"]]
    assert refused(path).field == "workdir"


def test_a_storage_mount_with_only_a_name_is_valid(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(env.tmp, "file_mounts:\n  /ckpt:\n    name: my-ckpt-bucket\n    store: s3\n    persistent: false\n"
                          "  /r2:\n    name: other-bucket\n    store: r2\nrun: echo\n")
    assert cli.main(["validate", str(path)]) == 0


# ------------------------------------------------------------------ pools


def test_a_pool_yaml_with_run_is_valid_and_its_run_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "pool:\n  workers: 2\nsetup: pip install -r req.txt\nrun: python serve.py\n")
    definition = load_pool(path)
    assert definition.task.run is None and definition.task.setup == "pip install -r req.txt"
    assert definition.warnings == [f"{path}:4: run: ignored in a pool YAML (each job launched into the pool "
                                   "brings its own; setup runs once per worker)"]


# ------------------------------------------------------------ values and names


@pytest.mark.parametrize("name", ["a", "train.v2", "my--job", "A_1", "9lives", "x__y.z"])
def test_task_names_skypilot_accepts(tmp_path: Path, name: str) -> None:
    assert load_pipeline(write(tmp_path, f"name: '{name}'\nrun: echo\n")).tasks[0].name == name


@pytest.mark.parametrize("name", ["my job", "a---b", "_a", "a_", "a/b", "na\u00efve", "a\tb"])
def test_task_names_skypilot_refuses(tmp_path: Path, name: str) -> None:
    error = refused(write(tmp_path, f"name: \"{name}\"\nrun: echo\n"), spec_only=True)
    assert (error.field, error.line) == ("name", 1)


def test_launch_flag_names_follow_the_same_rule(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_pipeline(write(tmp_path, "run: echo\n"), Overrides(name="my job"))
    assert info.value.field == "--name"


@pytest.mark.parametrize(
    "autostop", ["30m", "2h", "1D", "10", 10, "{idle_minutes: 5, down: true, wait_for: JOBS, hook: 'echo bye', "
                                             "hook_timeout: 5}"]
)
def test_autostop_forms_skypilot_accepts(tmp_path: Path, autostop: object) -> None:
    load_pipeline(write(tmp_path, f"resources:\n  autostop: {autostop}\nrun: echo\n"))


@pytest.mark.parametrize("autostop", ["30s", "{hook_timeout: 0}", "{idle: 5}", "-5m"])
def test_autostop_forms_skypilot_refuses(tmp_path: Path, autostop: str) -> None:
    assert refused(write(tmp_path, f"resources:\n  autostop: {autostop}\nrun: echo\n")).line == 2


@pytest.mark.parametrize(("size", "gb"), [("100", 100), ("'100'", 100), ("100GB", 100), ("1TB", 1024), ("512Gi", 512)])
def test_disk_size_forms(tmp_path: Path, size: str, gb: int) -> None:
    task = load_pipeline(write(tmp_path, f"resources:\n  disk_size: {size}\nrun: echo\n")).tasks[0]
    assert task.resources.disk_size == gb


@pytest.mark.parametrize("size", ["100G", "0", "1.5TB", "512MB", "lots"])
def test_disk_sizes_refused(tmp_path: Path, size: str) -> None:
    assert refused(write(tmp_path, f"resources:\n  disk_size: {size}\nrun: echo\n")).field == "resources.disk_size"


# --------------------------------------------------------- acted on: cost cap


def test_max_hourly_cost_caps_what_the_optimizer_considers(env: Env) -> None:
    client = Client(paths())
    try:
        uncapped = client.plan(load_pipeline(write(env.tmp, "resources:\n  infra: sim\n  accelerators: H100:1\n"
                                                            "run: echo\n")))[0]
        prices = sorted({offer.price_per_hour for offer in uncapped.offers})
        assert len(prices) > 1
        cap = (prices[0] + prices[1]) / 2
        capped = client.plan(load_pipeline(write(env.tmp, f"resources:\n  infra: sim\n  accelerators: H100:1\n"
                                                          f"  max_hourly_cost: {cap}\nrun: echo\n")))[0]
        assert {offer.price_per_hour for offer in capped.offers} == {prices[0]}
        with pytest.raises(InfeasibleError, match="max_hourly_cost"):
            client.plan(load_pipeline(write(env.tmp, f"resources:\n  infra: sim\n  accelerators: H100:1\n"
                                                     f"  max_hourly_cost: {prices[0] / 2}\nrun: echo\n")))
    finally:
        client.close()


# ------------------------------------------------------- instance types


def test_instance_types_are_judged_by_the_catalogs(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    shapes = {
        "known.yaml": "resources:\n  infra: aws\n  instance_type: m6i.large\nrun: echo\n",
        "not-listed.yaml": "resources:\n  infra: aws\n  instance_type: t3.micro\nrun: echo\n",
        "gcp.yaml": "resources:\n  infra: gcp\n  instance_type: n2-standard-8\nrun: echo\n",
        "other-cloud.yaml": "resources:\n  infra: azure\n  instance_type: Standard_D2s_v5\nrun: echo\n",
    }
    files = [str(write(env.tmp, text, name)) for name, text in shapes.items()]
    assert cli.main(["validate", *files]) == 0
    captured = capsys.readouterr()
    assert captured.out.count(": valid task") == 4
    assert "'t3.micro' is not in skytui's aws catalog" in captured.err

    wrong = write(env.tmp, "resources:\n  ordered:\n    - infra: aws\n      instance_type: H100-huge\nrun: echo\n")
    assert cli.main(["validate", str(wrong)]) == 2
    assert f"{wrong}:4: resources.ordered[0].instance_type: 'H100-huge' is not an instance type of aws" in \
        capsys.readouterr().err


# ------------------------------------------------------------ job groups


GROUP = """\
    name: rl-run
    execution: parallel
    primary_tasks: [trainer]
    termination_delay: {default: 30s, server: 1m}
    ---
    name: trainer
    resources: {infra: aws, accelerators: H100:8}
    run: python train.py
    ---
    name: server
    resources: {cpus: 2}
    run: python serve.py
    """


def test_a_job_group_is_validated(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(env.tmp, GROUP)
    pipeline = load_pipeline(path, spec_only=True)
    assert (pipeline.name, pipeline.is_group, pipeline.primary_tasks) == ("rl-run", True, ["trainer"])
    assert [task.name for task in pipeline.tasks] == ["trainer", "server"]
    assert cli.main(["validate", str(path)]) == 0
    assert f"{path}: valid job group of 2 tasks 'rl-run'" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "field", "line"),
    [
        (("name: rl-run", "name: rl run"), "name", 1),
        (("name: server", "name: server.v2"), "name", 10),
        (("---\nname: server\n", "---\n"), "name", 10),
        (("{default: 30s, server: 1m}", "{default: 30s, servr: 1m}"), "termination_delay.servr", 4),
        (("{default: 30s, server: 1m}", "soon"), "termination_delay", 4),
        (("execution: parallel", "execution: parallell"), "execution", 2),
    ],
)
def test_job_group_rules(tmp_path: Path, change: tuple[str, str], field: str, line: int) -> None:
    text = textwrap.dedent(GROUP).replace(*change)
    if change[0].startswith("execution"):  # no longer a group header: checked as a pipeline's
        for header_only in ("primary_tasks: [trainer]\n", "termination_delay: {default: 30s, server: 1m}\n"):
            text = text.replace(header_only, "")
    with pytest.raises(SpecError) as info:
        load_pipeline(write(tmp_path, text, "group.yaml"), spec_only=True)
    assert (info.value.field, info.value.line) == (field, line), str(info.value)


def test_a_kept_registry_password_is_never_stored(tmp_path: Path) -> None:
    path = write(tmp_path, "resources:\n  _docker_login_config: {username: u, password: hunter2-secret, server: r.io}\n"
                           "run: echo\n")
    task = load_pipeline(path).tasks[0]
    assert "hunter2-secret" not in task.model_dump_json() and "hunter2-secret" not in str(task.redacted())
    assert task.resources.kept["_docker_login_config"]["username"] == "u"


def test_a_bucket_is_named_once(tmp_path: Path) -> None:
    path = write(tmp_path, "file_mounts:\n  /d:\n    name: b1\n    source: s3://b1/data\nrun: echo\n")
    error = refused(path, spec_only=True)
    assert (error.field, error.line) == ("file_mounts./d.name", 3)
