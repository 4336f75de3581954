"""The one API of both faces (the TUI and the headless CLI).

`Client` (api.py) submits, cancels and reads; `open_client` (opening.py)
gives it, or a `RemoteClient` (remote.py) when config.yaml puts the
controller on a machine of its own; `JobView` and `PoolView`
(views.py) are what the faces show, `CostReport` (ledger_views.py) the
ledger's sums; follow.py holds the one follow loop of
a job and of the queue. The store's row types and errors, and the infra
statuses, that the faces name are re-exported here, so that a face imports
from `skytui.client` and never from the engine. The plan types live in
`skytui.client.planning`, apart, because they load the optimizer.
"""

from __future__ import annotations

from skytui.client.api import Client
from skytui.client.opening import open_client
from skytui.client.follow import FollowStep, QueueUpdate
from skytui.client.ledger_views import CostLine, CostReport, JobCost
from skytui.client.views import JobView, PoolView, skypilot_task_id
from skytui.clouds.base import InfraStatus
from skytui.engine.store import (
    AttemptRow,
    AttemptSpend,
    ClusterRow,
    EventRow,
    JobRow,
    PoolRow,
    SegmentRow,
    StoreError,
    TaskRow,
    WorkerRow,
)
from skytui.logs.follow import LogFollower
from skytui.remote.errors import LinkError as ControllerLinkError

__all__ = [
    "AttemptRow",
    "AttemptSpend",
    "Client",
    "ClusterRow",
    "ControllerLinkError",
    "CostLine",
    "CostReport",
    "EventRow",
    "FollowStep",
    "InfraStatus",
    "JobCost",
    "JobRow",
    "JobView",
    "LogFollower",
    "PoolRow",
    "PoolView",
    "QueueUpdate",
    "SegmentRow",
    "StoreError",
    "TaskRow",
    "WorkerRow",
    "open_client",
    "skypilot_task_id",
]
