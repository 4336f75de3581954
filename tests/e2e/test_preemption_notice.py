"""Preemption notices on sim: `skytui sim preempt JOB --notice S` writes the
notice on the job's timeline with its deadline, signals the job's running
processes at once and takes the machine S seconds later; a job that
checkpoints in that time to a bucket mount finds its checkpoint on the next
attempt, and a job that exits in answer to the notice is recovered, never
counted as done or failed.

The bucket is moto's S3 (it must exist: prechecks ask S3). The MOUNT goes
through the node's mount tool, here a stand-in for mount-s3 (no FUSE
mount runs in a test) that links the mount point to a directory standing
for the bucket's contents, outside the machine: what a real mount gives a
job, that its writes outlive the machine.

On aws (moto's EC2, the real sshd as the VM), the node's watcher hears a
spot interruption from a fake IMDS on 127.0.0.1, the job checkpoints on its
SIGTERM, the controller puts the notice with its deadline on the timeline
once, and the reclaim that follows is recovered. On kubernetes (the fake
API server), a pod deleted with a grace period is a notice whose deadline is
its deletionTimestamp, and the job hears the kubelet's TERM only.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from fixtures.env import FAST_CONFIG, Env, events, wait_for
from test_kubernetes import kube  # noqa: F401 - the fake cluster, a fixture used by name

from skytui.config import Paths
from skytui.engine.store import Store

pytestmark = pytest.mark.timeout(240)

BUCKET = "ckpt-bucket"

# First attempt: wait to be told, checkpoint on SIGTERM and exit 0 (the
# hardest case: without the notice, that would read as success).
CHECKPOINTING = """\
name: ckpt
resources:
  infra: sim/aws
  cpus: 2
  use_spot: true
file_mounts:
  ~/ckpt: {{source: s3://{bucket}, mode: MOUNT}}
run: |
  if [ -f ~/ckpt/step ]; then echo "resumed from step $(cat ~/ckpt/step)"; exit 0; fi
  trap 'echo 42 > ~/ckpt/step; echo "checkpointed at $(date +%s)"; exit 0' TERM
  touch {started}
  while :; do sleep 0.1; done
"""


def mount_stand_in(env: Env, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A mount-s3 on the node's PATH that mounts by linking; the bucket's directory."""
    contents = env.tmp / "bucket-contents"
    contents.mkdir()
    tools = env.tmp / "bin"
    tools.mkdir()
    tool = tools / "mount-s3"
    tool.write_text(f'#!/bin/sh\n# mount-s3 BUCKET DIR\nrmdir "$2" && ln -s {contents} "$2"\n')
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    return contents


def test_a_job_checkpoints_on_notice_and_resumes_from_its_checkpoint(
    env: Env, moto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    contents = mount_stand_in(env, monkeypatch)
    env.config(FAST_CONFIG)
    started = env.tmp / "started"
    job = env.launch(env.write("job.yaml", CHECKPOINTING.format(bucket=BUCKET, started=started)))
    wait_for(started.exists, 60, 0.05, "the job's first run")

    result = env.cli("sim", "preempt", str(job), "--notice", "5", check=True)
    assert re.search(rf"Preempted \S+ \(job {job}\) after 5s of notice", result.stdout), result.stdout

    env.wait_status(job, "SUCCEEDED", timeout=120)
    assert (contents / "step").read_text() == "42\n"
    log = env.log(job).decode()
    assert "checkpointed at" in log
    assert "resumed from step 42" in log

    timeline = events(env, job)
    [notice] = [e for e in timeline if e.startswith("preemption-notice:")]
    assert re.search(r"deadline \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in [45]s\)", notice), notice
    assert "SIGTERM sent to the job's processes" in notice
    # The machine went at the end of the notice, after the job checkpointed, and was recovered.
    taken = [e for e in timeline if e.startswith("sim-preempt:")]
    assert taken and "at the end of its notice" in taken[0]
    assert timeline.index(notice) < timeline.index(taken[0])
    assert any(e.startswith("status:RECOVERING:") for e in timeline)
    assert not any(e.startswith("status:FAILED") for e in timeline)
    store = Store(Paths(env.home).db_url)
    try:
        at = {e.kind: e.at for e in reversed(store.events(job_id=job))}
    finally:
        store.close()
    assert at["sim-preempt"] - at["preemption-notice"] >= 5  # the job had its whole notice



# ----------------------------------------------------------------------- aws

SPOT_ON_AWS = """\
name: ckpt
resources: {{infra: aws/{region}, cpus: 2, use_spot: true}}
run: |
  if [ -f ~/ckpt ]; then echo "resumed from step $(cat ~/ckpt)"; exit 0; fi
  trap 'echo 7 > ~/ckpt; echo checkpointed; exit 0' TERM
  touch {started}
  while :; do sleep 0.1; done
"""


def test_an_aws_spot_interruption_notice_reaches_the_job_and_its_timeline(
    env: Env, moto: Any, ssh_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto plays EC2, the real sshd the VM, a fake IMDS on 127.0.0.1 its metadata."""
    from infra.fake_metadata import FakeMetadata
    from test_aws import (
        REGION,
        assert_no_instances,
        authorize_vm_key,
        aws_config,
        ec2,
        running_instance,
    )

    from skytui.engine.notices import deadline_text

    metadata = FakeMetadata()
    try:
        monkeypatch.setenv("SKYTUI_AWS_METADATA_URL", metadata.url)
        env.config(aws_config(ssh_user, regions=[REGION]))
        authorize_vm_key(env, ssh_user)
        started = ssh_user.home / "started"
        job = env.launch(env.write("job.yaml", SPOT_ON_AWS.format(region=REGION, started=started)))
        wait_for(started.exists, 90, 0.2, "the job to start on the aws node")
        first = wait_for(lambda: running_instance(job), 30, 0.2, "the job's instance")

        at = metadata.interrupt_spot(in_s=120)
        wait_for((ssh_user.home / "ckpt").exists, 30, 0.2, "the job's checkpoint on SIGTERM")
        notice = wait_for(
            lambda: next((e for e in events(env, job) if e.startswith("preemption-notice:")), None),
            30, 0.2, "the notice on the job's timeline",
        )
        assert f"deadline {deadline_text(at)}" in notice and "aws instance metadata" in notice, notice
        assert "SIGTERM sent to the job's processes" in notice
        # The job exited 0 on the notice: still RUNNING, waiting for its machine to go.
        time.sleep(1.0)
        assert env.job(job)["status"] == "RUNNING"

        metadata.instance_action = None  # the next VM has had no notice
        ec2().terminate_instances(InstanceIds=[first])  # the reclaim the notice announced
        env.wait_status(job, "SUCCEEDED", timeout=120)
        assert env.job(job)["recoveries"] == 1
        log = env.log(job).decode()
        assert "checkpointed" in log and "resumed from step 7" in log
        assert [e for e in events(env, job) if e.startswith("preemption-notice:")] == [notice]  # once
        assert metadata.refused == 0
        assert_no_instances(REGION)
    finally:
        metadata.stop()


# ---------------------------------------------------------------- kubernetes

ON_A_POD = """\
name: train
resources: {{infra: kubernetes}}
run: |
  if [ -f {started} ]; then echo resumed; exit 0; fi
  trap 'echo TERM >> {terms}' TERM
  touch {started}
  while :; do sleep 0.1; done
"""


def test_a_pod_deleted_with_a_grace_period_is_a_notice_on_the_timeline_signalled_once(
    env: Env, kube: Any  # noqa: F811 - the fixture imported above
) -> None:
    """The kubelet's TERM is the job's only one; the notice's deadline is the
    pod's deletionTimestamp, the end of the grace period it was given."""
    from kubernetes import client
    from kubernetes import config as kube_config
    from test_kubernetes import write_config

    write_config(env)
    started, terms = env.tmp / "started", env.tmp / "terms"
    job = env.launch(env.write("job.yaml", ON_A_POD.format(started=started, terms=terms)))
    wait_for(started.exists, 60, what="the first run")
    env.wait_status(job, "RUNNING")
    [first] = kube.pod_names()
    api = client.CoreV1Api(kube_config.new_client_from_config(config_file=os.environ["KUBECONFIG"]))
    deleted = api.delete_namespaced_pod(first, "default", grace_period_seconds=10)
    deadline = deleted.metadata.deletion_timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")

    done = env.wait_status(job, "SUCCEEDED", timeout=90)
    assert done["recoveries"] == 1
    [notice] = [e for e in events(env, job) if e.startswith("preemption-notice:")]
    assert f"deadline {deadline}" in notice and "kubernetes API" in notice, notice
    assert terms.read_text() == "TERM\n"  # the kubelet's, never a second one from skytui
    assert "resumed" in env.log(job).decode()
