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
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
from fixtures.env import FAST_CONFIG, Env, events, wait_for

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

