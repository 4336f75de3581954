"""Files through a bucket (jobs.bucket) and bucket file_mounts, on moto's S3.

The controller uploads a job's workdir and local file_mounts once, nodes fetch
them from signed URLs (no credentials on nodes), recoveries get the same
snapshot, and the job's files are deleted when it ends (the bucket stays).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import boto3
from fixtures.env import FAST_CONFIG, Env, wait_for

STAGE = "skytui-stage"
DATA = "team-data"


def s3() -> Any:
    return boto3.client("s3")


def keys(bucket: str, prefix: str = "") -> list[str]:
    response = s3().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in response.get("Contents", []))


def use_bucket(env: Env, extra: str = "") -> str:
    s3().create_bucket(Bucket=STAGE)
    env.config(FAST_CONFIG.replace("jobs:\n", f"jobs:\n  bucket: s3://{STAGE}/runs\n") + extra)
    return (env.home / "install_id").read_text().strip() if (env.home / "install_id").exists() else ""


def project(env: Env) -> tuple[str, str]:
    """A workdir with a nested file and an executable script, a directory mount and a file mount."""
    work = env.tmp / "proj"
    (work / "pkg").mkdir(parents=True)
    (work / "pkg" / "data.txt").write_text("nested data\n")
    script = work / "go.sh"
    script.write_text("#!/bin/sh\necho script ran\n")
    script.chmod(0o755)
    shared = env.tmp / "shared"
    shared.mkdir()
    (shared / "a.txt").write_text("shared a\n")
    single = env.tmp / "settings.yaml"
    single.write_text("lr: 0.1\n")
    return str(work), (
        f"workdir: {work}\n"
        "file_mounts:\n"
        f"  ~/shared: {shared}\n"
        f"  ~/conf/settings.yaml: {single}\n"
    )


def test_workdir_and_file_mounts_go_through_the_bucket_and_are_deleted_when_the_job_ends(
    env: Env, moto: Any
) -> None:
    use_bucket(env)
    _, files = project(env)
    gate = env.tmp / "gate"
    job = env.launch(env.write("job.yaml", (
        "name: staged\n" + files
        + "run: |\n"
        "  cat pkg/data.txt; ./go.sh; cat ~/shared/a.txt; cat ~/conf/settings.yaml\n"
        f"  while [ ! -e {gate} ]; do sleep 0.1; done\n"
    )))
    env.wait_status(job, "RUNNING", timeout=60)
    wait_for(lambda: b"lr: 0.1" in env.log(job), 30, what="the run to print the mounted file")
    install = (env.home / "install_id").read_text().strip()
    root = f"runs/skytui-{install}/job-{job}/"
    staged = keys(STAGE, root)
    assert f"{root}workdir/pkg/data.txt" in staged and f"{root}workdir/go.sh" in staged
    assert f"{root}local-file-mounts/0/a.txt" in staged
    assert f"{root}tmp-files/1" in staged and f"{root}tmp-files/manifest.json" in staged
    gate.touch()
    env.wait_status(job, "SUCCEEDED", timeout=60)
    log = env.log(job).decode()
    # The executable bit survived the trip (./go.sh ran), nested paths too.
    for line in ("nested data", "script ran", "shared a", "lr: 0.1"):
        assert line in log
    # The job's files are gone; the bucket itself is kept.
    wait_for(lambda: not keys(STAGE, root), 30, what="the staged files to be deleted")
    assert STAGE in [b["Name"] for b in s3().list_buckets()["Buckets"]]
    # Signed URLs grant access: none may reach a log or an event.
    shown = env.cli("jobs", "logs", str(job), "--no-follow", check=True).stdout
    controller_log = (env.home / "logs" / "controller.log").read_text()
    for text in (log, shown, controller_log):
        assert "X-Amz-Signature" not in text and "X-Amz-Credential" not in text


def test_a_recovery_gets_the_snapshot_taken_at_launch(env: Env, moto: Any) -> None:
    use_bucket(env)
    work, files = project(env)
    gate = env.tmp / "gate"
    job = env.launch(env.write("job.yaml", (
        "name: snap\nresources: {infra: sim}\n" + files
        + "run: |\n"
        "  cat pkg/data.txt\n"
        f"  while [ ! -e {gate} ]; do sleep 0.1; done\n"
    )))
    wait_for(lambda: b"nested data" in env.log(job), 60, what="the first attempt to run")
    # The user edits the workdir after launching: the job keeps what it was launched with.
    (env.tmp / "proj" / "pkg" / "data.txt").write_text("edited later\n")
    env.cli("sim", "preempt", str(job), check=True)
    wait_for(lambda: env.log(job).count(b"nested data") == 2, 90, what="the recovered attempt to run")
    gate.touch()
    env.wait_status(job, "SUCCEEDED", timeout=60)
    assert b"edited later" not in env.log(job)
    assert os.path.isdir(work)


def test_bucket_file_mounts_are_copied_to_the_node(env: Env, moto: Any) -> None:
    client = s3()
    client.create_bucket(Bucket=DATA)
    client.put_object(Bucket=DATA, Key="train/part-0.csv", Body=b"a,b\n1,2\n")
    client.put_object(Bucket=DATA, Key="train/nested/part-1.csv", Body=b"3,4\n")
    client.put_object(Bucket=DATA, Key="vocab.txt", Body=b"hello\n")
    env.config(FAST_CONFIG)  # no jobs.bucket: bucket mounts need none
    job = env.launch(env.write("job.yaml", (
        "name: data\n"
        "file_mounts:\n"
        f"  ~/data: s3://{DATA}/train\n"
        f"  ~/copy: {{source: s3://{DATA}/train/nested, mode: COPY}}\n"
        f"  ~/vocab.txt: s3://{DATA}/vocab.txt\n"
        "run: cat ~/data/part-0.csv ~/data/nested/part-1.csv ~/copy/part-1.csv ~/vocab.txt\n"
    )))
    env.wait_status(job, "SUCCEEDED", timeout=60)
    assert env.log(job).decode().split() == ["a,b", "1,2", "3,4", "3,4", "hello"]


def test_mount_without_a_mount_tool_on_the_node_fails_prechecks_with_the_fix(env: Env, moto: Any) -> None:
    s3().create_bucket(Bucket=DATA)
    s3().put_object(Bucket=DATA, Key="x/y.txt", Body=b"y")
    env.config(FAST_CONFIG)
    job = env.launch(env.write("job.yaml", (
        f"name: m\nfile_mounts:\n  /data: {{source: s3://{DATA}/x, mode: MOUNT}}\nrun: ls /data\n"
    )))
    done = env.wait_status(job, "FAILED_PRECHECKS", timeout=60)
    reason = done["tasks"][0]["failure_reason"]
    assert "file_mounts['/data']" in reason and "needs mount-s3 (mountpoint-s3) or goofys" in reason
    assert "mode: COPY" in reason


def test_a_missing_bucket_fails_prechecks_and_names_it(env: Env, moto: Any) -> None:
    env.config(FAST_CONFIG.replace("jobs:\n", "jobs:\n  bucket: s3://no-such-stage\n"))
    work = env.tmp / "w"
    work.mkdir()
    (work / "f").write_text("x")
    job = env.launch(env.write("job.yaml", f"name: nb\nworkdir: {work}\nrun: cat f\n"))
    done = env.wait_status(job, "FAILED_PRECHECKS", timeout=60)
    assert "bucket 'no-such-stage' does not exist" in done["tasks"][0]["failure_reason"]
    assert "testing" not in done["tasks"][0]["failure_reason"]  # no credential ever shown


def test_staged_files_keep_their_modes(env: Env, moto: Any) -> None:
    use_bucket(env)
    work = env.tmp / "modes"
    work.mkdir()
    private = work / "key.pem"
    private.write_text("secret-ish\n")
    private.chmod(0o600)
    job = env.launch(env.write("job.yaml", f"name: modes\nworkdir: {work}\nrun: stat -c %a key.pem\n"))
    env.wait_status(job, "SUCCEEDED", timeout=60)
    assert env.log(job).decode().strip() == oct(stat.S_IMODE(private.stat().st_mode))[2:]


def test_a_pools_workdir_goes_through_the_bucket_and_goes_with_the_pool(env: Env, moto: Any) -> None:
    use_bucket(env)
    work = env.tmp / "poolwork"
    work.mkdir()
    (work / "model.txt").write_text("weights v1\n")
    env.cli("jobs", "pool", "apply", "-y", "-p", "warm", str(env.write("pool.yaml", (
        f"resources: {{infra: local}}\nworkdir: {work}\nsetup: cat model.txt\npool: {{workers: 1}}\n"
    ))), check=True)
    job = env.launch(env.write("job.yaml", "name: use\nrun: cat model.txt\n"), "-p", "warm")
    env.wait_status(job, "SUCCEEDED", timeout=90)
    assert "weights v1" in env.log(job).decode()
    install = (env.home / "install_id").read_text().strip()
    root = f"runs/skytui-{install}/pool-warm/"
    assert f"{root}v1/workdir/model.txt" in keys(STAGE, root)
    env.cli("jobs", "pool", "down", "warm", "-y", check=True)
    wait_for(lambda: not keys(STAGE, root), 60, what="the pool's staged files to be deleted")


# ------------------------------------------------ nothing outside the target


def written_anywhere(root: Path, payload: bytes) -> list[Path]:
    """Every file under `root` holding `payload`."""
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and payload in p.read_bytes()]


def test_bucket_keys_that_leave_their_target_fail_setup_name_the_keys_and_write_nothing(
    env: Env, moto: Any
) -> None:
    client = s3()
    client.create_bucket(Bucket=DATA)
    client.put_object(Bucket=DATA, Key="evil/ok.txt", Body=b"fine\n")
    # From ~/copied on the node: the sandbox's parent (on an ssh host, the
    # user's real home), and the node's home beside the target.
    client.put_object(Bucket=DATA, Key="evil/../../.bashrc", Body=b"PWNED-BASHRC\n")
    client.put_object(Bucket=DATA, Key="evil/../x", Body=b"PWNED-X\n")
    env.config(FAST_CONFIG)
    job = env.launch(env.write("job.yaml", (
        f"name: evil\nfile_mounts:\n  ~/copied: s3://{DATA}/evil\nrun: cat ~/copied/ok.txt; cat ~/x\n"
    )))
    done = env.wait_status(job, "FAILED_SETUP", "FAILED_PRECHECKS", "FAILED", "SUCCEEDED", timeout=60)
    reason = done["tasks"][0]["failure_reason"]
    assert "file_mounts['~/copied']" in reason
    assert "'evil/../../.bashrc'" in reason and "'evil/../x'" in reason
    assert "X-Amz" not in reason
    assert not (env.home / "nodes" / ".bashrc").exists()
    assert written_anywhere(env.tmp.parent, b"PWNED") == []
    assert b"fine" not in env.log(job)  # the run never started
    assert done["status"] == "FAILED_SETUP"


def test_bucket_keys_that_resolve_inside_are_copied_where_they_resolve(env: Env, moto: Any) -> None:
    client = s3()
    client.create_bucket(Bucket=DATA)
    client.put_object(Bucket=DATA, Key="good/./a.txt", Body=b"A\n")
    client.put_object(Bucket=DATA, Key="good/sub/../b.txt", Body=b"B\n")
    client.put_object(Bucket=DATA, Key="good/sub/c.txt", Body=b"C\n")
    env.config(FAST_CONFIG)
    job = env.launch(env.write("job.yaml", (
        f"name: good\nfile_mounts:\n  ~/copied: s3://{DATA}/good\n"
        "run: cat ~/copied/a.txt ~/copied/b.txt ~/copied/sub/c.txt\n"
    )))
    env.wait_status(job, "SUCCEEDED", timeout=60)
    assert env.log(job).decode().split() == ["A", "B", "C"]


def test_a_destination_that_escapes_the_sandbox_fails_setup_and_writes_nothing(env: Env, moto: Any) -> None:
    use_bucket(env)  # local files then travel through the bucket and are fetched on the node
    secret = env.write("payload.txt", "PWNED-DESTINATION\n")
    job = env.launch(env.write("job.yaml", (
        f"name: climb\nfile_mounts:\n  /../../escaped.txt: {secret}\nrun: echo ran\n"
    )))
    done = env.wait_status(job, "FAILED_SETUP", "FAILED_PRECHECKS", "FAILED", "SUCCEEDED", timeout=60)
    reason = done["tasks"][0]["failure_reason"]
    assert "file_mounts['/../../escaped.txt']" in reason and "outside the node's home" in reason
    assert not (env.home / "escaped.txt").exists()
    assert [p for p in written_anywhere(env.tmp.parent, b"PWNED") if p != secret] == []
    assert b"ran" not in env.log(job)
    assert done["status"] == "FAILED_SETUP"
