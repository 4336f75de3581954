"""Storage mounts whose bucket skytui provides: `file_mounts: {/data: {name: b, ...}}`.

A name-only mount (or a name with local `source:` files) gets its bucket
created when it does not exist (on `store:`, else the store of the cloud the
task runs on), the local files uploaded once per job, and is then copied or
mounted like any bucket. A bucket skytui created for a `persistent: false`
mount is deleted when the job ends (however it ends), never before; an
existing bucket is used and never deleted. S3 runs on moto's server, GCS on
the loopback fake (tests/infra/fake_gcs.py), both through the real CLI and
controller on the local (or sim) infra.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any, cast

import boto3
import pytest
from fixtures.env import FAST_CONFIG, Env, events, wait_for
from infra.fake_gcs import FakeGCS, ServiceAccount
from test_buckets_gcs import config as gcs_config
from test_buckets_gcs import gcs, gcs_session, no_secret_in  # noqa: F401 - fixtures, used by name

from skytui import cli
from skytui.clouds.base import PrecheckError
from skytui.clouds.buckets import BucketURL, GCSBucket, S3Bucket, bucket_name_problem
from skytui.engine.file_sync import unsupported_transfer
from skytui.engine.named_buckets import BucketHistory, JobBuckets, NamedMount, unplaceable_storage
from skytui.engine.store import EventRow
from skytui.spec import FileMount, Task

BUCKET = "sky-made-bucket-123"
OTHER = "sky-kept-bucket-456"
SIGNED = ("X-Amz-Signature", "X-Amz-Credential", "X-Goog-Signature", "X-Goog-Credential")


def s3() -> Any:
    return boto3.client("s3")


def buckets() -> list[str]:
    return sorted(b["Name"] for b in s3().list_buckets()["Buckets"])


def keys(bucket: str) -> list[str]:
    response = s3().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in response.get("Contents", []))


def dataset(env: Env, name: str = "dataset") -> Path:
    """A local directory to upload: a nested file and an executable one."""
    root = env.tmp / name
    (root / "sub").mkdir(parents=True)
    (root / "train.csv").write_text("a,b\n1,2\n")
    (root / "sub" / "more.txt").write_text("nested\n")
    return root


def no_signed_url_in(env: Env, job: int) -> None:
    """Signed URLs grant access: none may reach a log, an event or an error."""
    texts = [env.log(job).decode(), (env.home / "logs" / "controller.log").read_text(), "\n".join(events(env, job))]
    for text in texts:
        assert not [marker for marker in SIGNED if marker in text]


def bucket_events(env: Env, job: int) -> list[str]:
    return [line.split(":", 1)[0] for line in events(env, job) if line.startswith("bucket-")]


# ---------------------------------------------------------------- end to end


def test_a_named_mount_creates_its_bucket_and_persistent_false_deletes_it_after_success(
    env: Env, moto: Any
) -> None:
    env.config(FAST_CONFIG)
    data = dataset(env)
    gate = env.tmp / "gate"
    job = env.launch(env.write("job.yaml", (
        "name: made\n"
        "file_mounts:\n"
        f"  ~/data: {{name: {BUCKET}, source: {data}, store: s3, persistent: false, mode: COPY}}\n"
        f"  ~/empty: {{name: {OTHER}, store: S3, mode: COPY}}\n"  # name only; persistent by default
        "run: |\n"
        "  cat ~/data/train.csv ~/data/sub/more.txt; ls -A ~/empty | wc -l\n"
        f"  while [ ! -e {gate} ]; do sleep 0.1; done\n"
    )))
    env.wait_status(job, "RUNNING", timeout=60)
    wait_for(lambda: b"nested" in env.log(job), 30, what="the run to print the uploaded files")
    # The local files went into the new bucket (a lone directory: its contents at the root).
    assert keys(BUCKET) == ["sub/more.txt", "train.csv"]
    assert OTHER in buckets() and keys(OTHER) == []
    gate.touch()
    env.wait_status(job, "SUCCEEDED", timeout=60)
    assert env.log(job).decode().split() == ["a,b", "1,2", "nested", "0"]
    wait_for(lambda: BUCKET not in buckets(), 30, what="the non-persistent bucket to be deleted")
    assert OTHER in buckets()  # persistent (the default): kept
    assert bucket_events(env, job) == ["bucket-create", "bucket-upload", "bucket-create", "bucket-delete"]
    deleted = [line for line in events(env, job) if line.startswith("bucket-delete")]
    assert f"s3://{BUCKET} deleted at the job's end, with its 2 object(s)" in deleted[0]
    no_signed_url_in(env, job)


def test_mode_mount_mounts_the_bucket_it_created(env: Env, moto: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """MOUNT goes through the node's mount tool as for any bucket (here a stand-in
    for mount-s3 that records its arguments and leaves the directory writable)."""
    tools = env.tmp / "bin"
    tools.mkdir()
    record = env.tmp / "mount-s3.args"
    fake = tools / "mount-s3"
    fake.write_text(f'#!/bin/sh\necho "$@" > {record}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    env.config(FAST_CONFIG)
    job = env.launch(env.write("job.yaml", (
        f"name: mounted\nfile_mounts:\n  ~/data: {{name: {BUCKET}, store: s3}}\n"
        "run: echo written > ~/data/out.txt && cat ~/data/out.txt\n"
    )))
    env.wait_status(job, "SUCCEEDED", timeout=60)
    assert b"written" in env.log(job)
    bucket, target = record.read_text().split()
    assert (bucket, target) == (BUCKET, "data")  # ~/data: in the node's home
    assert BUCKET in buckets()  # persistent by default


def test_an_existing_bucket_is_used_and_never_deleted(env: Env, moto: Any) -> None:
    s3().create_bucket(Bucket=BUCKET)
    s3().put_object(Bucket=BUCKET, Key="theirs.txt", Body=b"someone else's data\n")
    env.config(FAST_CONFIG)
    extra = env.write("notes.txt", "uploaded note\n")
    job = env.launch(env.write("job.yaml", (
        f"name: reuse\nfile_mounts:\n  ~/data: {{name: {BUCKET}, source: [{extra}], persistent: false, "
        "store: s3, mode: COPY}\n"
        "run: cat ~/data/theirs.txt ~/data/notes.txt\n"
    )))
    env.wait_status(job, "SUCCEEDED", timeout=60)
    assert env.log(job).decode() == "someone else's data\nuploaded note\n"
    # persistent: false deletes only what skytui created: this bucket was there before.
    assert BUCKET in buckets() and keys(BUCKET) == ["notes.txt", "theirs.txt"]
    assert bucket_events(env, job) == ["bucket-use", "bucket-upload"]


def test_a_recovery_keeps_the_bucket_and_its_objects_and_only_the_end_deletes_it(env: Env, moto: Any) -> None:
    env.config(FAST_CONFIG)
    data = dataset(env)
    gate = env.tmp / "gate"
    job = env.launch(env.write("job.yaml", (
        "name: recover\nresources: {infra: sim}\n"
        f"file_mounts:\n  ~/data: {{name: {BUCKET}, source: {data}, store: s3, persistent: false, mode: COPY}}\n"
        "run: |\n"
        "  echo attempt; ls ~/data\n"
        f"  while [ ! -e {gate} ]; do sleep 0.1; done\n"
    )))
    wait_for(lambda: b"train.csv" in env.log(job), 60, what="the first attempt to run")
    # What the first attempt leaves in the bucket (as a job writing to a MOUNT would),
    # and a local edit after the launch: the job keeps the bucket and what it was launched with.
    s3().put_object(Bucket=BUCKET, Key="checkpoint-1.pt", Body=b"step 1\n")
    (data / "train.csv").write_text("edited later\n")
    env.cli("sim", "preempt", str(job), check=True)
    wait_for(lambda: env.log(job).count(b"attempt") == 2 and b"checkpoint-1.pt" in env.log(job), 90,
             what="the recovered attempt to see the first attempt's objects")
    assert BUCKET in buckets()
    assert keys(BUCKET) == ["checkpoint-1.pt", "sub/more.txt", "train.csv"]
    assert s3().get_object(Bucket=BUCKET, Key="train.csv")["Body"].read() == b"a,b\n1,2\n"
    gate.touch()
    done = env.wait_status(job, "SUCCEEDED", timeout=60)
    assert done["recoveries"] == 1
    wait_for(lambda: BUCKET not in buckets(), 30, what="the bucket to be deleted at the end")
    # Created and filled once, deleted once: the recovery did neither.
    assert bucket_events(env, job) == ["bucket-create", "bucket-upload", "bucket-delete"]


@pytest.mark.parametrize("ending", ["cancel", "failure"])
def test_a_job_that_ends_otherwise_deletes_its_bucket_too(env: Env, moto: Any, ending: str) -> None:
    env.config(FAST_CONFIG)
    gate = env.tmp / "gate"
    run = f"while [ ! -e {gate} ]; do sleep 0.1; done; exit 3" if ending == "failure" else "sleep 600"
    job = env.launch(env.write("job.yaml", (
        f"name: ends\nfile_mounts:\n  ~/data: {{name: {BUCKET}, store: s3, persistent: false, mode: COPY}}\n"
        f"run: echo started; {run}\n"
    )))
    wait_for(lambda: b"started" in env.log(job), 60, what="the run to start")
    assert BUCKET in buckets()
    if ending == "cancel":
        env.cli("jobs", "cancel", "-y", str(job), check=True)
        env.wait_status(job, "CANCELLED", timeout=60)
    else:
        gate.touch()
        env.wait_status(job, "FAILED", timeout=60)
    wait_for(lambda: BUCKET not in buckets(), 30, what="the bucket to be deleted at the end")


def running_with_a_made_bucket_and_no_controller(env: Env) -> tuple[int, Path]:
    """A job that made its bucket (persistent: false) and runs until its gate
    file appears, its controller killed with SIGKILL: (job id, gate)."""
    env.config(FAST_CONFIG)
    gate = env.tmp / "gate"
    job = env.launch(env.write("job.yaml", (
        f"name: crash\nfile_mounts:\n  ~/data: {{name: {BUCKET}, store: s3, persistent: false, mode: COPY}}\n"
        f"run: echo started; while [ ! -e {gate} ]; do sleep 0.1; done\n"
    )))
    wait_for(lambda: b"started" in env.log(job), 60, what="the run to start")
    pid = env.controller_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "not running" in env.cli("controller", "status").stdout, 10, what="the controller to be gone")
    return job, gate


def test_a_controller_killed_after_creating_still_deletes_the_bucket_at_the_end(env: Env, moto: Any) -> None:
    job, gate = running_with_a_made_bucket_and_no_controller(env)
    assert BUCKET in buckets()  # nothing deletes it while the job is alive
    env.cli("controller", "start", check=True)
    gate.touch()
    env.wait_status(job, "SUCCEEDED", timeout=90)
    wait_for(lambda: BUCKET not in buckets(), 30, what="the restarted controller to delete the bucket")


def test_a_controller_that_died_between_the_end_and_the_deletion_deletes_at_its_next_start(
    env: Env, moto: Any
) -> None:
    """The job ended (recorded) and the controller died before deleting the
    bucket: the next controller's start finds it in the job's events."""
    from skytui.config import Paths
    from skytui.engine.status import TaskStatus
    from skytui.engine.store import Store

    job, gate = running_with_a_made_bucket_and_no_controller(env)
    store = Store(Paths(env.home).db_url)
    try:  # what the controller had recorded when it died: the job's end
        store.transition_task(job, 0, TaskStatus.FAILED, exit_code=1, failure_reason="ended as the controller died")
    finally:
        store.close()
    assert BUCKET in buckets()
    env.cli("controller", "start", check=True)
    wait_for(lambda: BUCKET not in buckets(), 30, what="the next controller to delete the bucket")
    assert "bucket-delete" in bucket_events(env, job)
    gate.touch()


# ---------------------------------------------------------- refused at launch


@pytest.mark.parametrize(("mount", "said"), [
    (f"{{name: {BUCKET}, store: azure}}", "store 'azure' is valid in SkyPilot, but skytui cannot serve it"),
    (f"{{name: {BUCKET}, store: r2, mode: COPY}}", "store 'r2' is valid in SkyPilot, but skytui cannot serve it"),
    ("{name: My_Bucket, store: s3}", "bucket name 'My_Bucket' is not valid for s3: it can hold only lowercase"),
    ("{name: ab, store: s3}", "bucket name 'ab' is not valid for s3: it must be 3 to 63 characters long"),
    ("{name: my-google-data, store: gcs}", "bucket name 'my-google-data' is not valid for gcs"),
    ("{name: 192.168.5.4, store: s3}", "it may not look like an IP address"),
    (f"{{name: {BUCKET}}}", f"bucket {BUCKET!r} would be created on the store of the cloud the task runs on, "
                            "and local has none; name one in the mount: `store: s3` or `store: gcs`"),
    ("{source: ./dataset}", "local files"),
])
def test_storage_skytui_cannot_make_is_refused_at_launch_naming_the_mount(
    env: Env, moto: Any, capsys: pytest.CaptureFixture[str], mount: str, said: str
) -> None:
    dataset(env)
    task = env.write("job.yaml", f"name: refused\nfile_mounts:\n  /data: {mount}\nrun: ls /data\n")
    assert cli.main(["jobs", "launch", "-y", "-d", str(task)]) == 2
    shown = " ".join(capsys.readouterr().err.split())
    assert "file_mounts['/data']" in shown and said in shown
    assert not env.home.exists()  # nothing submitted, nothing written
    assert buckets() == []


def test_the_headless_run_refuses_too(env: Env, moto: Any) -> None:
    task = env.write("job.yaml", "name: refused\nfile_mounts:\n  /data: {name: Bad_Name, store: s3}\nrun: ls\n")
    result = env.cli("--run", str(task))
    assert result.code == 2
    assert "file_mounts['/data']: bucket name 'Bad_Name' is not valid for s3" in " ".join(result.stderr.split())
    assert env.queue() == []


# ----------------------------------------------------------------------- GCS


def test_on_gcs_a_named_mount_creates_its_bucket_and_the_end_deletes_it(
    env: Env, gcs: FakeGCS, gcs_session: tuple[FakeGCS, ServiceAccount]  # noqa: F811
) -> None:
    env.config(gcs_config())
    data = dataset(env)
    job = env.launch(env.write("job.yaml", (
        f"name: gmade\nfile_mounts:\n  ~/data: {{name: {BUCKET}, source: [{data}], store: gcs, persistent: false, "
        "mode: COPY}\n"
        "run: cat ~/data/dataset/train.csv ~/data/dataset/sub/more.txt\n"
    )))
    env.wait_status(job, "SUCCEEDED", timeout=60)
    # In a list of sources, a directory goes under its own name.
    assert env.log(job).decode().split() == ["a,b", "1,2", "nested"]
    assert [name for name, _ in gcs.created_buckets] == [BUCKET]
    assert "GET signed" in gcs.calls  # the node fetched through signed URLs
    wait_for(lambda: BUCKET not in gcs.buckets, 30, what="the bucket to be deleted at the end")
    assert "DELETE bucket" in gcs.calls
    for text in (env.log(job).decode(), (env.home / "logs" / "controller.log").read_text(),
                 "\n".join(events(env, job))):
        no_secret_in(text, gcs_session[1])


def test_gcs_bucket_create_exists_and_remove(gcs: FakeGCS, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "a.txt").write_text("A")
    bucket = GCSBucket(BUCKET)

    async def scenario() -> tuple[bool, bool, bool, int, bool, int]:
        before = await bucket.exists()
        created = await bucket.create("us-central1")
        after = await bucket.exists()
        await bucket.upload(tmp_path, BucketURL("gs", BUCKET))
        removed = await bucket.remove()
        return before, created, after, removed, await bucket.exists(), await bucket.remove()

    assert asyncio.run(scenario()) == (False, True, True, 1, False, 0)
    assert gcs.created_buckets == [(BUCKET, "us-central1")]
    gcs.create_bucket(OTHER)  # held by someone else: this account can see it exists, create says 409
    with pytest.raises(PrecheckError, match=f"the bucket name '{OTHER}' is taken by someone else"):
        asyncio.run(GCSBucket(OTHER).create(None))


def test_s3_bucket_create_in_a_region_exists_and_remove(moto: Any, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("A")
    bucket = S3Bucket(BUCKET)

    async def scenario() -> tuple[bool, bool, bool, int, bool]:
        before = await bucket.exists()
        created = await bucket.create("eu-west-1")
        after = await bucket.exists()
        await bucket.upload(tmp_path, BucketURL("s3", BUCKET))
        return before, created, after, await bucket.remove(), await bucket.exists()

    assert asyncio.run(scenario()) == (False, True, True, 1, False)
    assert BUCKET not in buckets()
    asyncio.run(S3Bucket(OTHER).create("eu-west-1"))
    assert s3().get_bucket_location(Bucket=OTHER)["LocationConstraint"] == "eu-west-1"


# --------------------------------------------------------------- the rules


@pytest.mark.parametrize(("name", "store", "ok"), [
    ("my-sky-bucket-123", "s3", True), ("my.sky.bucket", "s3", True), ("abc", "gcs", True),
    ("with_underscore", "gcs", True), ("with_underscore", "s3", False), ("UPPER", "s3", False),
    ("-leading", "s3", False), ("trailing.", "gcs", False), ("a" * 63, "s3", True), ("a" * 64, "s3", False),
    ("two..dots", "s3", False), ("xn--punycode", "s3", False), ("x-s3alias", "s3", False),
    ("googled", "gcs", False), ("my-g00gle", "gcs", False), ("10.0.0.1", "gcs", False),
    (".".join(["a" * 63] * 3), "gcs", True), (".".join(["a" * 64, "b"]), "gcs", False),
])
def test_bucket_names_follow_the_providers_rules(name: str, store: str, ok: bool) -> None:
    assert (bucket_name_problem(name, store) is None) == ok


def test_without_a_store_the_bucket_goes_on_the_placed_clouds_store() -> None:
    task = Task(file_mounts={"/data": FileMount(name=BUCKET)}, run="ls")
    assert unsupported_transfer(task) is None  # the store depends on the placement
    assert unplaceable_storage(task, "aws") is None and unplaceable_storage(task, "gcp") is None
    for cloud in ("local", "sim", "ssh", "kubernetes"):
        problem = unplaceable_storage(task, cloud)
        assert problem is not None and f"and {cloud} has none" in problem and "`store: s3`" in problem
    google = Task(file_mounts={"/data": FileMount(name="google-things")}, run="ls")
    assert unplaceable_storage(google, "aws") is None
    assert "not valid for gcs" in str(unplaceable_storage(google, "gcp"))


def test_the_history_of_a_jobs_buckets_reads_back_from_its_events() -> None:
    history = BucketHistory()
    history.add("bucket-create", 0, f"s3://{BUCKET} for file_mounts['/a']: creating the bucket; kept")
    history.add("bucket-upload", 0, f"s3://{BUCKET} for file_mounts['/a']: uploaded 2 local file(s)")
    history.add("bucket-use", 0, f"gs://{OTHER} for file_mounts['/b']: the bucket exists; using it")
    history.add("bucket-create", 1, "gs://lost for file_mounts['/c']: creating the bucket; kept")
    history.add("bucket-not-created", 1, "gs://lost was not created")
    history.add("capacity", 1, "s3://ignored: not a bucket event")
    assert list(history.ours) == [f"s3://{BUCKET}"]
    assert history.uploaded == {(0, f"s3://{BUCKET}")}
    mount = NamedMount("file_mounts['/b']", OTHER, None, True, ())
    assert history.bucket_for(mount) == BucketURL("gs", OTHER)
    # A mount naming another store does not take a same-named bucket of this one.
    assert history.bucket_for(NamedMount("file_mounts['/b']", OTHER, "s3", True, ())) is None


class EventLog:
    """The two store calls JobBuckets makes, in memory: a job's events."""

    def __init__(self) -> None:
        self.rows: list[EventRow] = []

    async def events(self, *, after_id: int = 0, job_id: int | None = None, limit: int = 1000) -> list[EventRow]:
        return [row for row in self.rows if row.id > after_id][:limit]

    async def note(self, job_id: int, task_idx: int | None, kind: str, message: str) -> None:
        self.rows.append(EventRow(len(self.rows) + 1, job_id, task_idx, 0.0, kind, None, None, message))


def test_a_bucket_recorded_as_being_created_but_missing_is_created_by_the_next_attempt(
    moto: Any, tmp_path: Path
) -> None:
    """The controller died between recording the create and making the call:
    the next attempt makes it, still as skytui's own (deleted at the end)."""
    (tmp_path / "f.txt").write_text("F")
    task = Task(file_mounts={"/data": FileMount(name=BUCKET, source=str(tmp_path), store="s3", persistent=False)},
                run="ls")
    log = EventLog()
    asyncio.run(log.note(1, 0, "bucket-create", f"s3://{BUCKET} for file_mounts['/data']: creating the bucket"))
    job = JobBuckets(cast(Any, log), 1, [task])
    urls = asyncio.run(job.for_task(0, "local", None).provide(task))
    assert urls == {"file_mounts['/data']": BucketURL("s3", BUCKET)}
    assert keys(BUCKET) == ["f.txt"]
    # A second attempt finds it all there: nothing created or uploaded again.
    asyncio.run(job.for_task(0, "local", None).provide(task))
    assert [row.kind for row in log.rows] == ["bucket-create", "bucket-upload"]
    assert list(asyncio.run(job.history()).ours) == [f"s3://{BUCKET}"]
