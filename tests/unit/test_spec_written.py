"""Tests for skytui.spec.written: a stored `resources:` shown in the user's words.

What the job view's Resources panel prints must read as the YAML the user
wrote, and must load again to the same resources.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
import yaml

from skytui.spec import Resources, load_pipeline_text, resources_yaml, written_resources


def stored_resources(resources_block: str) -> dict[str, Any]:
    """The `resources:` of a one-task YAML, as `jobs launch` stores it."""
    text = "name: t\nresources:\n" + textwrap.indent(textwrap.dedent(resources_block), "  ") + "run: echo\n"
    task = load_pipeline_text(text, "task.yaml").tasks[0]
    dumped: dict[str, Any] = task.model_dump(mode="json")["resources"]
    return dumped


def test_the_issue_example_reads_as_written() -> None:
    stored = stored_resources("""
        infra: aws
        accelerators: {H100:8, H200:8}
        use_spot: true
        cpus: 4+
        memory: 32GB+
        job_recovery: {strategy: failover, max_restarts_on_errors: 2}
    """)
    assert resources_yaml(stored).splitlines() == [
        "infra: aws",
        "cpus: 4+",
        "memory: 32GB+",
        "accelerators: {H100: 8, H200: 8}",
        "use_spot: true",
        "job_recovery: {strategy: FAILOVER, max_restarts_on_errors: 2}",
    ]


def test_one_line_per_field_even_when_all_are_plain() -> None:
    """PyYAML would print a mapping of plain values as `{cpus: 2+}`: a
    field is a line of its own, as in a task file."""
    shown = resources_yaml(stored_resources("cpus: 2+\naccelerators: H100:8\nuse_spot: true\n"))
    assert shown == "cpus: 2+\naccelerators: H100:8\nuse_spot: true\n"


def test_alternatives_are_a_line_each() -> None:
    shown = resources_yaml(stored_resources("any_of:\n  - {infra: gcp}\n  - {infra: aws, accelerators: A100:8}\n"))
    assert shown.splitlines() == ["any_of:", "- {infra: gcp}", "- {infra: aws, accelerators: 'A100:8'}"]


def test_defaults_and_none_are_left_out() -> None:
    stored = stored_resources("cpus: 2+\n")
    # The dump carries every field; the user wrote one.
    assert "disk_size" in stored and "accelerators_ordered" in stored
    assert written_resources(stored) == {"cpus": "2+"}
    assert resources_yaml(stored_resources("{}\n")) == ""


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("accelerators: H100:8", "H100:8"),
        ("accelerators: H100", "H100:1"),
        ("accelerators: {H100: 8, A100: 4}", {"H100": 8, "A100": 4}),
        ("accelerators: [H100:8, A100:8]", ["H100:8", "A100:8"]),
        ("accelerators: 'nvidia:80GB+:2'", "nvidia:80GB+:2"),
        ("accelerators: tpu-v5e-8:0.5", "tpu-v5e-8:0.5"),
    ],
)
def test_accelerators_keep_their_form(written: str, shown: Any) -> None:
    assert written_resources(stored_resources(written + "\n"))["accelerators"] == shown


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("job_recovery: failover", "FAILOVER"),
        ("job_recovery: {max_restarts_on_errors: 3}", {"max_restarts_on_errors": 3}),
        ("job_recovery: {strategy: EAGER_NEXT_REGION, recover_on_exit_codes: [33]}",
         {"strategy": "EAGER_NEXT_REGION", "recover_on_exit_codes": [33]}),
    ],
)
def test_job_recovery_shows_only_what_was_given(written: str, shown: Any) -> None:
    assert written_resources(stored_resources(written + "\n"))["job_recovery"] == shown


def test_numbers_as_typed() -> None:
    written = written_resources(stored_resources("cpus: 4\nmemory: 0.5\nports: [8080, 8000-8010]\nuse_spot: false\n"))
    assert written == {"cpus": 4, "memory": 0.5, "use_spot": False, "ports": [8080, "8000-8010"]}


def test_alternatives_and_kept_fields() -> None:
    stored = stored_resources("""
        infra: k8s
        ordered:
          - {accelerators: H100:1}
          - {infra: gcp, accelerators: A100:2}
        network_tier: best
    """)
    assert written_resources(stored) == {
        "infra": "kubernetes",
        "ordered": [{"accelerators": "H100:1"}, {"infra": "gcp", "accelerators": "A100:2"}],
        "network_tier": "best",
    }


@pytest.mark.parametrize(
    "block",
    [
        "infra: aws\naccelerators: {H100:8, H200:8}\nuse_spot: true\njob_recovery: {max_restarts_on_errors: 2}\n",
        "accelerators: [A100:8, 'nvidia:80GB+:2']\ncpus: 4\nmemory: 4x\nports: 8080\nlabels: {team: ml}\n",
        "infra: gcp/us-central1\nany_of:\n  - {use_spot: true}\n  - {accelerators: L4:1, disk_size: 200}\n",
        "image_id: docker:ubuntu:22.04\ndisk_tier: high\nmax_hourly_cost: 12.5\nautostop: 30m\npriority: -3\n",
    ],
)
def test_the_yaml_shown_loads_to_the_same_resources(block: str) -> None:
    """A user can copy the panel into a task file: it asks for the same thing."""
    stored = stored_resources(block)
    shown = resources_yaml(stored)
    again = stored_resources(shown)
    assert again == stored
    assert Resources.model_validate(again) == Resources.model_validate(stored)
    assert isinstance(yaml.safe_load(shown), dict)
