"""The job view's Resources panel as text (skytui.widgets.job_details): the
user's `resources:` in YAML terms, then what was chosen."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

from rich.console import Console

from skytui.client import AttemptRow, TaskRow
from skytui.spec import load_pipeline_text, stored_job_spec
from skytui.widgets.job_details import attempt_label, attempt_place, resources_text

TASK = TaskRow(
    job_id=1, task_idx=0, name="train", status="PENDING", status_reason=None, skypilot_task_id="sky-1-0",
    requested="1x[H100:8]", num_nodes=2, submitted_at=0.0, started_at=None, ended_at=None, run_started_at=None,
    job_duration_s=0.0, recoveries=0, restarts_on_errors=0, attempt=0, exit_code=None, failure_reason=None,
    infra=None, instance_type=None, use_spot=None, group_role=None,
)
ATTEMPT = AttemptRow(
    id=1, job_id=1, task_idx=0, attempt_no=1, cluster_id=None, infra="gcp/us-central1", instance_type="a3-highgpu-8g",
    use_spot=False, started_at=0.0, ended_at=None, end_reason=None, exit_code=None, price_per_hour=88.25,
)


def shown(renderable: Any, width: int = 100) -> list[str]:
    console = Console(width=width, file=io.StringIO(), color_system=None)
    with console.capture() as capture:
        console.print(renderable)
    return [line.rstrip() for line in capture.get().splitlines()]


def spec_of(resources_block: str) -> dict[str, Any]:
    text = "name: train\nresources:\n" + resources_block + "run: echo\n"
    task: dict[str, Any] = stored_job_spec(load_pipeline_text(text, "train.yaml"))["tasks"][0]
    return task


def test_alternatives_and_what_was_chosen() -> None:
    spec = spec_of("  any_of:\n    - {infra: gcp, accelerators: H100:8}\n    - {infra: aws}\n")
    lines = shown(resources_text(TASK, spec, ATTEMPT))
    assert lines == [
        "task:      0 train · 1x[H100:8] × 2 nodes",
        "resources:",
        "  any_of:",
        "  -       {infra: gcp, accelerators: 'H100:8'}",
        "  -       {infra: aws}",
        "chosen:    gcp/us-central1 · a3-highgpu-8g · on-demand · $88.25/h",
        "task id:   sky-1-0",
    ]


def test_nothing_asked_nothing_chosen_yet() -> None:
    lines = shown(resources_text(TASK, {"name": "train"}, None))
    assert "resources: {}  (none given: the defaults)" in lines
    assert "chosen:    nothing yet" in lines
    finished = replace(TASK, exit_code=3, infra="local", instance_type="local", use_spot=False)
    lines = shown(resources_text(finished, {}, None))
    assert "chosen:    local · local · on-demand" in lines and "exit code: 3" in lines


def test_an_attempt_says_how_long_and_what_it_cost_before_where() -> None:
    first = shown(attempt_label(ATTEMPT, now=1800.0))[0]
    assert first == "attempt 1 · 30m 0s · $44.12 · current"
    assert shown(attempt_place(ATTEMPT)) == ["gcp/us-central1 · a3-highgpu-8g · on-demand"]
