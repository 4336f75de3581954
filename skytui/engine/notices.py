"""Preemption notices as the job's timeline says them: the words of a
PREEMPTION_NOTICE event (engine/event_kinds.py), whatever infra gave it (the
sim, an AWS or GCP VM's metadata, a Kubernetes eviction). Pure: touches nothing.
"""

from __future__ import annotations

import time


def deadline_text(deadline: float) -> str:
    """The deadline as every face prints it: UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deadline))


def notice_message(cluster: str, deadline: float, signal_name: str, *, source: str) -> str:
    """The event's message: the machine, its deadline (absolute, and how far
    off when the notice came), what the job's processes were sent, and who
    gave the notice."""
    left = max(0.0, deadline - time.time())
    sent = "no signal sent (jobs.preemption_notice_signal: none)" if signal_name == "none" \
        else f"SIG{signal_name} sent to the job's processes"
    return (
        f"preemption notice: {cluster} is taken at deadline {deadline_text(deadline)} "
        f"(in {left:.0f}s); {sent} ({source})"
    )
