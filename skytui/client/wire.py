"""The client API's wire form, between a `RemoteClient` and the API server on
the controller machine (`client.serve`): one JSON document per line.

Owns `encode`/`decode` of the values the client's methods take and return,
and the request/answer shapes. Only the types named in `WIRE_TYPES` are ever
built from the wire (no pickle, nothing imported by name): a controller
machine can send data, never code. May touch the view and row types it names.

    request  {"id": 7, "call": "queue_json", "args": [...], "kwargs": {...}}
    cancel   {"id": 7, "cancel": true}          (stop a stream)
    answer   {"id": 7, "result": ...}           (a plain call)
             {"id": 7, "item": ...} ... {"id": 7, "end": true}   (a stream)
             {"id": 7, "error": {"type": "ValueError", "message": "..."}}
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import PurePosixPath
from typing import Any

from skytui.client.follow import FollowStep, QueueUpdate
from skytui.client.ledger_views import CostLine, CostReport, JobCost
from skytui.client.submission import Submission
from skytui.client.views import JobView, PoolView
from skytui.clouds.base import InfraStatus
from skytui.engine.daemon import ControllerInfo
from skytui.engine.store import (
    AttemptRow,
    AttemptSpend,
    ClusterRow,
    EventRow,
    JobRow,
    NewTask,
    PoolRow,
    SegmentRow,
    StoreError,
    TaskRow,
    WorkerRow,
)

WIRE_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        AttemptRow, AttemptSpend, ClusterRow, ControllerInfo, CostLine, CostReport, EventRow, FollowStep,
        InfraStatus, JobCost, JobRow, JobView, NewTask, PoolRow, PoolView, QueueUpdate, SegmentRow, Submission,
        TaskRow, WorkerRow,
    )
}

# The errors a call may raise on the far side that mean the same here (a
# usage or input problem: exit code 2). Anything else arrives as RemoteError.
# Most specific first.
RAISED: dict[str, type[Exception]] = {"StoreError": StoreError, "ValueError": ValueError, "RuntimeError": RuntimeError}


class RemoteError(RuntimeError):
    """The controller machine failed a call in a way that is not the user's input."""


def encode(value: Any) -> Any:
    """A value as JSON-able data: tagged dataclasses, tuples and non-text keys kept apart."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, tuple):
        return {"$tuple": [encode(item) for item in value]}
    if isinstance(value, (set, frozenset)):
        return {"$set": [encode(item) for item in value]}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {"$dict": {key: encode(item) for key, item in value.items()}}
        return {"$pairs": [[encode(key), encode(item)] for key, item in value.items()]}
    if isinstance(value, bytes):
        return {"$b64": base64.b64encode(value).decode()}
    if isinstance(value, PurePosixPath):
        return {"$path": str(value)}
    name = type(value).__name__
    if dataclasses.is_dataclass(value) and WIRE_TYPES.get(name) is type(value):
        return {"$t": name, "f": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise TypeError(f"cannot send a {name} over the wire")


def decode(data: Any) -> Any:
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(item) for item in data]
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise ValueError(f"not a wire value: {str(data)[:80]}")
    if "$t" in data:
        cls = WIRE_TYPES.get(data["$t"])
        if cls is None:
            raise ValueError(f"unknown wire type {data['$t']!r}")
        return cls(**{key: decode(item) for key, item in data["f"].items()})
    ((tag, inner),) = data.items()
    if tag == "$tuple":
        return tuple(decode(item) for item in inner)
    if tag == "$set":
        return frozenset(decode(item) for item in inner)
    if tag == "$dict":
        return {key: decode(item) for key, item in inner.items()}
    if tag == "$pairs":
        return {decode(key): decode(item) for key, item in inner}
    if tag == "$b64":
        return base64.b64decode(inner)
    if tag == "$path":
        return PurePosixPath(inner)
    raise ValueError(f"unknown wire tag {tag!r}")


def dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def error_of(exc: BaseException) -> dict[str, str]:
    known = next((name for name, cls in RAISED.items() if isinstance(exc, cls)), type(exc).__name__)
    return {"type": known, "message": str(exc)}


def raise_error(error: dict[str, str]) -> None:
    """Raise what the far side raised, as the same type when it is a known one."""
    cls = RAISED.get(error.get("type", ""))
    message = error.get("message", "")
    if cls is not None:
        raise cls(message)
    raise RemoteError(f"the controller failed: {error.get('type')}: {message}")
