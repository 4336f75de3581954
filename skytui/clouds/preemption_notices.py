"""Where a VM hears that its infra will take it: the instance metadata the
phase wrapper's notice watcher polls on the node (clouds/phase_scripts.py,
WRAPPER), and the environment that starts that watcher with a phase.

AWS gives a spot instance two minutes' notice at
`/latest/meta-data/spot/instance-action` (IMDSv2: a token first); GCP says a
preemptible or spot VM is being preempted at
`/computeMetadata/v1/instance/preempted` (`Metadata-Flavor: Google`), about
30 s ahead. The endpoints can be pointed elsewhere (`SKYTUI_AWS_METADATA_URL`,
`SKYTUI_GCP_METADATA_URL` in the controller's environment), as a test points
them at a fake metadata server on 127.0.0.1. Pure: reads the environment only.

An infra whose API says when it takes a machine (Kubernetes: a pod being
deleted or evicted has its deletionTimestamp, the end of its grace period)
is a `GivesNotice`: the controller asks it, and its own runtime has already
signalled the processes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from skytui.clouds.base import ClusterHandle

AWS_METADATA_URL = "http://169.254.169.254"
GCP_METADATA_URL = "http://metadata.google.internal"
_OVERRIDES = {"aws": ("SKYTUI_AWS_METADATA_URL", AWS_METADATA_URL),
              "gcp": ("SKYTUI_GCP_METADATA_URL", GCP_METADATA_URL)}
# How often the node asks (AWS suggests every five seconds).
POLL_EVERY_S = 5.0


def notice_env(cloud: str, use_spot: bool, signal_name: str) -> dict[str, str]:
    """The variables that start the notice watcher with a phase on a spot VM
    of `cloud` (none elsewhere: only spot machines are given notice, and only
    AWS and GCP say so in their metadata). `signal_name` is what the job's
    processes get ("none": the notice is only recorded)."""
    if not use_spot or cloud not in _OVERRIDES:
        return {}
    variable, default = _OVERRIDES[cloud]
    return {
        "SKYTUI_NOTICE_KIND": cloud,
        "SKYTUI_NOTICE_URL": (os.environ.get(variable) or default).rstrip("/"),
        "SKYTUI_NOTICE_SIGNAL": signal_name,
        "SKYTUI_NOTICE_EVERY_S": f"{POLL_EVERY_S:g}",
    }


@runtime_checkable
class GivesNotice(Protocol):
    async def preemption_notice(self, handle: ClusterHandle, *, fresh: bool = False) -> float | None:
        """When the infra takes the cluster's machine (epoch seconds), if it
        has said it will; None otherwise (or if it cannot be asked now).
        `fresh`: ask the infra now, not what a shared look last saw."""
        ...
