"""The remote controller's client side without a machine: the wire codec
round-trips what the faces are shown, the far side's errors keep their
meaning, and `RemoteClient` answers every state-touching call of `Client`
remotely (a method left to the base class would read a local DB that is not
there, and say "no jobs")."""

from __future__ import annotations

import inspect
import json

import pytest

from skytui.client import Client, EventRow, JobRow, JobView, StoreError, TaskRow
from skytui.client.follow import FollowStep, QueueUpdate
from skytui.client.remote import RemoteClient
from skytui.client.serve import CALLS, STREAMS
from skytui.client.wire import RemoteError, decode, encode, error_of, raise_error

JOB = JobRow(id=3, name="train", pool=None, status="RUNNING", priority=0, submitted_at=1.5, ended_at=None,
             cancel_requested_at=None, job_rank=0, num_jobs=1, source="/home/me/train.yaml")
EVENT = EventRow(id=9, job_id=3, task_idx=0, at=2.5, kind="status", from_status="STARTING", to_status="RUNNING",
                 message="attempt 1")


def round_trip(value: object) -> object:
    return decode(json.loads(json.dumps(encode(value))))


def test_what_the_faces_are_shown_survives_the_wire() -> None:
    fields = {name: None for name in TaskRow.__dataclass_fields__}  # every field, however many there are
    fields.update(job_id=3, task_idx=0, name="train", status="RUNNING", attempt=1)
    task = TaskRow(**fields)  # type: ignore[arg-type]
    view = JobView(JOB, [task], [])
    step = FollowStep(view, ["(train, pid=1) step 1", EVENT], False)
    assert round_trip(step) == step
    assert round_trip(QueueUpdate([view], True)) == QueueUpdate([view], True)
    assert round_trip(([view], 17)) == ([view], 17)  # a snapshot: a tuple stays a tuple
    assert round_trip({4: "x", 5: None}) == {4: "x", 5: None}  # non-text keys (PoolView.clusters)
    assert round_trip({"$t": "JobRow"}) == {"$t": "JobRow"}  # a user's dict is never taken for a type
    assert round_trip(b"\x00\xffbytes") == b"\x00\xffbytes"


def test_only_named_types_are_built_from_the_wire() -> None:
    with pytest.raises(ValueError, match="unknown wire type 'Popen'"):
        decode({"$t": "Popen", "f": {"args": ["rm", "-rf", "/"]}})
    with pytest.raises(TypeError, match="cannot send a Client"):
        encode(Client())


def test_errors_keep_their_meaning_across_the_wire() -> None:
    with pytest.raises(ValueError, match="^no managed job 9$"):
        raise_error(error_of(ValueError("no managed job 9")))
    with pytest.raises(StoreError, match="locked"):
        raise_error(error_of(StoreError("the DB is locked")))
    with pytest.raises(RemoteError, match="ZeroDivisionError: boom"):
        raise_error(error_of(ZeroDivisionError("boom")))


# Client methods that need only this machine (planning reads the catalogs and
# config.yaml here; `check` is about this machine's credentials).
LOCAL = {"plan", "instance_type_problem", "infra_report", "close", "controller_where", "notices"}


def test_the_remote_client_answers_every_state_call_remotely() -> None:
    public = {name for name, _ in inspect.getmembers(Client, inspect.isfunction) if not name.startswith("_")}
    inherited = {name for name in public if getattr(RemoteClient, name) is getattr(Client, name)}
    assert inherited == LOCAL - {"close", "controller_where", "notices"}
    # And the far side answers every call the remote client makes.
    source = inspect.getsource(RemoteClient)
    for name in CALLS | STREAMS:
        assert f'"{name}"' in source, f"{name} is served but never called"
