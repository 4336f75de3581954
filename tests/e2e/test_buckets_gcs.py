"""gs:// buckets end to end: google-cloud-storage against a loopback GCS
(tests/infra/fake_gcs.py), through the real CLI and controller on the local infra.

The client reaches the fake through STORAGE_EMULATOR_HOST (the library's own
setting) with a service-account key made for the test, whose token_uri is the
fake: uploads, listings and deletes are authorised by a token the fake issued
for a verified JWT, and nodes fetch from V4 signed URLs the fake verifies
against the key. HTTP(S)_PROXY point at the fake too, so any request for
anywhere but 127.0.0.1 is refused and recorded: every test asserts none was.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.env import FAST_CONFIG, Env, wait_for
from infra.fake_gcs import PROJECT, FakeGCS, ServiceAccount, start_fake_gcs

from skytui.clouds.base import PrecheckError
from skytui.clouds.buckets import (
    BucketURL,
    GCSBucket,
    SignedObject,
    fetch_command,
    fetch_input,
)

STAGE = "skytui-stage"
DATA = "team-data"
BIG = 9 * 1024 * 1024  # above google-cloud-storage's 8 MiB multipart limit: a resumable upload


@pytest.fixture(scope="session")
def gcs_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeGCS, ServiceAccount]]:
    fake = start_fake_gcs()
    account = fake.service_account(tmp_path_factory.mktemp("gcs-key"))
    try:
        yield fake, account
    finally:
        fake.stop()


@pytest.fixture
def gcs(gcs_session: tuple[FakeGCS, ServiceAccount], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGCS]:
    """An empty fake GCS, with this test's client (and its CLI and controller) pointed at it."""
    fake, account = gcs_session
    fake.reset()
    fake.page_size = 3  # listings of a few objects take several pages
    for name, value in {
        "STORAGE_EMULATOR_HOST": fake.endpoint,
        "GOOGLE_APPLICATION_CREDENTIALS": str(account.key_path),
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "HTTP_PROXY": fake.endpoint, "HTTPS_PROXY": fake.endpoint, "NO_PROXY": "127.0.0.1,localhost",
    }.items():
        monkeypatch.setenv(name, value)
    yield fake
    assert not fake.escapes, f"requests tried to leave 127.0.0.1: {fake.escapes}"


def config(bucket: str | None = None) -> str:
    """FAST_CONFIG, the gcp infra off (the key would enable it, and it is not under test here)."""
    text = FAST_CONFIG.replace("infra:\n", "infra:\n  gcp: {enabled: false}\n")
    return text.replace("jobs:\n", f"jobs:\n  bucket: gs://{bucket}/runs\n") if bucket else text


def get(url: str) -> bytes:
    """GET without proxies. Not urllib.request.urlopen: its opener, built once per process,
    would keep this test's HTTP_PROXY for every later test."""
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=10) as response:
        data: bytes = response.read()
        return data


def no_secret_in(text: str, account: ServiceAccount) -> None:
    info = json.loads(account.key_path.read_text())
    assert "X-Goog-Signature" not in text and "X-Goog-Credential" not in text
    assert info["private_key_id"] not in text and "PRIVATE KEY" not in text and "fake-token-" not in text


def test_workdir_and_file_mounts_go_through_the_bucket_and_are_deleted_when_the_job_ends(
    env: Env, gcs: FakeGCS, gcs_session: tuple[FakeGCS, ServiceAccount]
) -> None:
    gcs.create_bucket(STAGE)
    env.config(config(STAGE))
    work = env.tmp / "proj"
    (work / "pkg").mkdir(parents=True)
    (work / "pkg" / "data.txt").write_text("nested data\n")
    script = work / "go.sh"
    script.write_text("#!/bin/sh\necho script ran\n")
    script.chmod(0o755)
    private = work / "key.pem"
    private.write_text("secret-ish\n")
    private.chmod(0o600)
    big = os.urandom(BIG)
    (work / "weights.bin").write_bytes(big)
    shared = env.tmp / "shared"
    shared.mkdir()
    (shared / "a.txt").write_text("shared a\n")
    single = env.tmp / "settings.yaml"
    single.write_text("lr: 0.1\n")
    gate = env.tmp / "gate"
    job = env.launch(env.write("job.yaml", (
        f"name: staged\nworkdir: {work}\n"
        f"file_mounts:\n  ~/shared: {shared}\n  ~/conf/settings.yaml: {single}\n"
        "run: |\n"
        "  cat pkg/data.txt; ./go.sh; cat ~/shared/a.txt; cat ~/conf/settings.yaml\n"
        "  echo mode $(stat -c %a key.pem); sha256sum weights.bin\n"
        f"  while [ ! -e {gate} ]; do sleep 0.1; done\n"
    )))
    env.wait_status(job, "RUNNING", timeout=60)
    wait_for(lambda: b"weights.bin" in env.log(job), 30, what="the run to print what it was given")
    install = (env.home / "install_id").read_text().strip()
    root = f"runs/skytui-{install}/job-{job}/"
    staged = gcs.objects(STAGE, root)
    assert {f"{root}workdir/pkg/data.txt", f"{root}workdir/go.sh", f"{root}workdir/weights.bin",
            f"{root}local-file-mounts/0/a.txt", f"{root}tmp-files/1", f"{root}tmp-files/manifest.json"} <= set(staged)
    assert staged[f"{root}workdir/weights.bin"] == big
    # The big file went up resumable, the rest multipart; the node fetched through signed URLs.
    assert "POST upload/resumable" in gcs.calls and "POST upload/multipart" in gcs.calls
    assert gcs.calls.count("GET signed") >= 6
    gate.touch()
    env.wait_status(job, "SUCCEEDED", timeout=60)
    log = env.log(job).decode()
    # The executable bit and a private mode survived the trip, nested paths and big files too.
    for line in ("nested data", "script ran", "shared a", "lr: 0.1", "mode 600",
                 f"{hashlib.sha256(big).hexdigest()}  weights.bin"):
        assert line in log
    # The job's files are gone; the bucket itself is kept.
    wait_for(lambda: not gcs.objects(STAGE, "runs/"), 30, what="the staged files to be deleted")
    assert STAGE in gcs.buckets
    # Signed URLs grant access: none may reach a log; nor may a key or a token.
    shown = env.cli("jobs", "logs", str(job), "--no-follow", check=True).stdout
    controller_log = (env.home / "logs" / "controller.log").read_text()
    for text in (log, shown, controller_log):
        no_secret_in(text, gcs_session[1])


def test_bucket_file_mounts_are_copied_to_the_node(env: Env, gcs: FakeGCS) -> None:
    gcs.create_bucket(DATA)
    gcs.put_object(DATA, "train/part-0.csv", b"a,b\n1,2\n")
    gcs.put_object(DATA, "train/nested/part-1.csv", b"3,4\n")
    gcs.put_object(DATA, "train/nested/more/part-2.csv", b"5,6\n")
    gcs.put_object(DATA, "vocab.txt", b"hello\n")
    before = gcs.objects(DATA)
    env.config(config())  # no jobs.bucket: bucket mounts need none
    job = env.launch(env.write("job.yaml", (
        "name: data\n"
        "file_mounts:\n"
        f"  ~/data: gs://{DATA}/train\n"
        f"  ~/copy: {{source: gs://{DATA}/train/nested, mode: COPY}}\n"
        f"  ~/vocab.txt: gs://{DATA}/vocab.txt\n"
        "run: cat ~/data/part-0.csv ~/data/nested/part-1.csv ~/copy/part-1.csv ~/copy/more/part-2.csv ~/vocab.txt\n"
    )))
    env.wait_status(job, "SUCCEEDED", timeout=60)
    assert env.log(job).decode().split() == ["a,b", "1,2", "3,4", "3,4", "5,6", "hello"]
    assert gcs.calls.count("GET signed") == 6  # 3 + 2 objects under the prefixes, 1 single object
    assert gcs.objects(DATA) == before  # a copy takes nothing away and leaves nothing behind


def test_a_missing_bucket_fails_prechecks_and_names_it(
    env: Env, gcs: FakeGCS, gcs_session: tuple[FakeGCS, ServiceAccount]
) -> None:
    env.config(config("no-such-stage"))
    work = env.tmp / "w"
    work.mkdir()
    (work / "f").write_text("x")
    job = env.launch(env.write("job.yaml", f"name: nb\nworkdir: {work}\nrun: cat f\n"))
    done = env.wait_status(job, "FAILED_PRECHECKS", timeout=60)
    reason = done["tasks"][0]["failure_reason"]
    assert "bucket 'no-such-stage' does not exist" in reason
    assert "Traceback" not in reason
    no_secret_in(reason, gcs_session[1])
    assert not gcs.buckets  # nothing was created on the way


def test_object_names_that_leave_their_target_fail_setup_and_nothing_is_fetched(env: Env, gcs: FakeGCS) -> None:
    gcs.create_bucket(DATA)
    gcs.put_object(DATA, "evil/ok.txt", b"fine\n")
    gcs.put_object(DATA, "evil/../../.bashrc", b"PWNED\n")
    env.config(config())
    job = env.launch(env.write("job.yaml", (
        f"name: evil\nfile_mounts:\n  ~/copied: {{source: gs://{DATA}/evil, mode: COPY}}\nrun: cat ~/copied/ok.txt\n"
    )))
    done = env.wait_status(job, "FAILED_SETUP", "FAILED_PRECHECKS", "FAILED", "SUCCEEDED", timeout=60)
    reason = done["tasks"][0]["failure_reason"]
    assert "file_mounts['~/copied']" in reason and "'evil/../../.bashrc'" in reason
    assert "GET signed" not in gcs.calls  # refused before any node fetched anything
    assert not (env.home / "nodes" / ".bashrc").exists()
    assert done["status"] == "FAILED_SETUP"


# ----------------------------------------------- the bucket class on its own


def test_signed_urls_are_refused_once_tampered_with_and_the_fetch_error_hides_the_url(
    gcs: FakeGCS, tmp_path: Path
) -> None:
    gcs.create_bucket(STAGE)
    gcs.put_object(STAGE, "x/a.txt", b"A")
    gcs.put_object(STAGE, "x/b.txt", b"B")
    bucket = GCSBucket(STAGE)
    assert asyncio.run(bucket.list(BucketURL.parse(f"gs://{STAGE}/x"))) == ["a.txt", "b.txt"]
    url = bucket.sign(BucketURL.parse(f"gs://{STAGE}/x/a.txt"))
    assert url.startswith(f"{gcs.endpoint}/{STAGE}/x/a.txt?")  # the client's own endpoint
    assert get(url) == b"A"
    for tampered in (url.replace("/x/a.txt?", "/x/b.txt?"), url.replace("X-Goog-Expires=21600", "X-Goog-Expires=99999"),
                     url.split("&X-Goog-Signature=")[0]):
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(tampered)
        assert refused.value.code in (400, 403)
    assert gcs.refused_signed == ["SignatureDoesNotMatch", "SignatureDoesNotMatch", "AuthorizationQueryParametersError"]
    # The node's fetch script names the file and the status, never the URL.
    objects = [SignedObject("a.txt", 0o640, url), SignedObject("b.txt", 0o644, url.replace("/x/a.txt?", "/x/b.txt?"))]
    target = tmp_path / "fetched"
    done = subprocess.run(["sh", "-c", fetch_command(str(target))], input=fetch_input(objects), text=True,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 1 and "cannot fetch b.txt: HTTP 403" in done.stderr
    assert "X-Goog" not in done.stderr + done.stdout
    assert (target / "a.txt").read_bytes() == b"A" and oct((target / "a.txt").stat().st_mode & 0o777) == "0o640"


def test_no_credentials_is_a_precheck_error_with_the_fix(gcs: FakeGCS, monkeypatch: pytest.MonkeyPatch) -> None:
    gcs.create_bucket(STAGE)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    with pytest.raises(PrecheckError) as error:
        asyncio.run(GCSBucket(STAGE).list(BucketURL.parse(f"gs://{STAGE}/x")))
    assert str(error.value) == (
        f"gs://{STAGE}: no GCP credentials found on this machine; set GOOGLE_APPLICATION_CREDENTIALS to a "
        "service account key file (nodes fetch through signed URLs, which need credentials that can sign)"
    )
    assert gcs.calls == []


def test_credentials_that_cannot_sign_are_a_precheck_error_that_says_what_can(
    gcs: FakeGCS, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gcs.create_bucket(STAGE)
    user = {"type": "authorized_user", "client_id": "cid.apps.googleusercontent.com",
            "client_secret": "very-secret-client-secret", "refresh_token": "1//very-secret-refresh-token",
            "token_uri": f"{gcs.endpoint}/token"}
    key_file = tmp_path / "adc.json"
    key_file.write_text(json.dumps(user))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    with pytest.raises(PrecheckError) as error:
        asyncio.run(GCSBucket(STAGE).get_json(BucketURL.parse(f"gs://{STAGE}/x/manifest.json")))
    message = str(error.value)
    assert "user credentials (gcloud auth application-default login)" in message
    assert "cannot sign" in message and "service account key" in message and "IAM signBlob" in message
    assert "very-secret" not in message
    assert gcs.calls == []


def test_a_missing_bucket_is_named_whatever_the_call(gcs: FakeGCS, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    bucket = GCSBucket("no-such-data")
    where = BucketURL.parse("gs://no-such-data/x")
    calls = [bucket.get_json(where.child("manifest.json")), bucket.list(where), bucket.upload(tmp_path, where),
             bucket.put_json(where.child("m.json"), {}), bucket.delete(where)]
    for call in calls:
        with pytest.raises(PrecheckError, match=r"^gs://no-such-data/x\S*: bucket 'no-such-data' does not exist$"):
            asyncio.run(call)
    assert not gcs.buckets


def test_without_an_emulator_signed_urls_name_storage_googleapis_com(
    gcs: FakeGCS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production's endpoint; signing is local (the key), so nothing is sent anywhere."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    url = GCSBucket(STAGE).sign(BucketURL.parse(f"gs://{STAGE}/runs/a b.txt"))
    assert url.startswith(f"https://storage.googleapis.com/{STAGE}/runs/a%20b.txt?X-Goog-Algorithm=GOOG4-RSA-SHA256&")
    assert "X-Goog-Expires=21600&" in url and "&X-Goog-Signature=" in url
    assert gcs.calls == []


def test_a_key_the_token_endpoint_refuses_is_a_precheck_error(
    gcs: FakeGCS, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gcs.create_bucket(STAGE)
    revoked = gcs.service_account(tmp_path, "deleted-key", known=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(revoked.key_path))
    with pytest.raises(PrecheckError) as error:
        asyncio.run(GCSBucket(STAGE).upload(tmp_path, BucketURL.parse(f"gs://{STAGE}/x")))
    assert str(error.value) == (f"gs://{STAGE}/x: the GCP credentials were refused when asking for an access token; "
                                "check that the service account key is still valid")
    assert gcs.objects(STAGE) == {}
