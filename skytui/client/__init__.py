"""The one API of both faces (the TUI and the headless CLI).

`Client` (api.py) submits, cancels and reads; `JobView` and `PoolView`
(views.py) are what the faces show; follow.py holds the one follow loop of
a job and of the queue. The store's row types and errors, and the infra
statuses, that the faces name are re-exported here, so that a face imports
from `skytui.client` and never from the engine. The plan types live in
`skytui.client.planning`, apart, because they load the optimizer.
"""

from __future__ import annotations

from skytui.client.api import Client
from skytui.client.follow import FollowStep, QueueUpdate
from skytui.client.views import JobView, PoolView, skypilot_task_id
from skytui.clouds.base import InfraStatus
from skytui.engine.store import (
    AttemptRow,
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

__all__ = [
    "AttemptRow",
    "Client",
    "ClusterRow",
    "EventRow",
    "FollowStep",
    "InfraStatus",
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
    "skypilot_task_id",
]
