"""Managed-job task statuses and the only transitions the store will write.

The names and meanings are SkyPilot's ManagedJobStatus. Every status change in
the DB is a compare-and-set against this table, so concurrent writers can never
regress a task (CANCELLING overwritten by RUNNING) or rewrite a finished one.
"""

from __future__ import annotations

import enum


# A RUNNING task's status_reason while it is stalled (no log byte for its
# --stall-timeout): the faces mark it, the stall watch clears it.
STALLED_PREFIX = "stalled:"


def is_stalled(status: str, status_reason: str | None) -> bool:
    return status == "RUNNING" and bool(status_reason) and str(status_reason).startswith(STALLED_PREFIX)


class TaskStatus(str, enum.Enum):
    PENDING = "PENDING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    RECOVERING = "RECOVERING"
    CANCELLING = "CANCELLING"
    SUCCEEDED = "SUCCEEDED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    FAILED_SETUP = "FAILED_SETUP"
    FAILED_PRECHECKS = "FAILED_PRECHECKS"
    FAILED_NO_RESOURCE = "FAILED_NO_RESOURCE"
    FAILED_CONTROLLER = "FAILED_CONTROLLER"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_failure(self) -> bool:
        return self in FAILURES


FAILURES: frozenset[TaskStatus] = frozenset(
    {
        TaskStatus.FAILED,
        TaskStatus.FAILED_SETUP,
        TaskStatus.FAILED_PRECHECKS,
        TaskStatus.FAILED_NO_RESOURCE,
        TaskStatus.FAILED_CONTROLLER,
    }
)
TERMINAL: frozenset[TaskStatus] = FAILURES | {TaskStatus.SUCCEEDED, TaskStatus.CANCELLED}
IN_PROGRESS: frozenset[TaskStatus] = frozenset(TaskStatus) - TERMINAL
# The same set as plain strings, for rows read from the DB (hot loops compare names).
TERMINAL_NAMES: frozenset[str] = frozenset(s.value for s in TERMINAL)

_S = TaskStatus
# Failures that can strike whatever the controller was doing.
_ANY_FAILURE = {_S.FAILED_PRECHECKS, _S.FAILED_NO_RESOURCE, _S.FAILED_CONTROLLER}

TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    # PENDING -> CANCELLED directly: a task that never started needs no cleanup
    # (pending cancel, and the later tasks of a failed pipeline).
    # PENDING -> RECOVERING: a relaunch resumes after waiting for capacity.
    _S.PENDING: frozenset({_S.STARTING, _S.RECOVERING, _S.CANCELLING, _S.CANCELLED} | _ANY_FAILURE),
    # STARTING -> PENDING: capacity backoff, the launch slot is given back.
    _S.STARTING: frozenset(
        {_S.RUNNING, _S.PENDING, _S.RECOVERING, _S.CANCELLING, _S.FAILED_SETUP, _S.FAILED}
        | _ANY_FAILURE
    ),
    _S.RUNNING: frozenset(
        {_S.SUCCEEDED, _S.FAILED, _S.RECOVERING, _S.CANCELLING} | _ANY_FAILURE
    ),
    _S.RECOVERING: frozenset(
        {_S.RUNNING, _S.PENDING, _S.CANCELLING, _S.FAILED, _S.FAILED_SETUP} | _ANY_FAILURE
    ),
    _S.CANCELLING: frozenset({_S.CANCELLED, _S.FAILED_CONTROLLER}),
    **{terminal: frozenset() for terminal in TERMINAL},
}


class IllegalTransition(RuntimeError):
    """A status change that the transition table does not allow."""

    def __init__(self, current: TaskStatus, wanted: TaskStatus) -> None:
        super().__init__(f"illegal status transition {current} -> {wanted}")
        self.current = current
        self.wanted = wanted


def can_transition(current: TaskStatus, wanted: TaskStatus) -> bool:
    return wanted in TRANSITIONS[current]


def job_status(task_statuses: list[TaskStatus]) -> TaskStatus:
    """A job's status is that of its current task: the first one not SUCCEEDED."""
    for status in task_statuses:
        if status is not TaskStatus.SUCCEEDED:
            return status
    return TaskStatus.SUCCEEDED


# A task's part in a job group (tasks.group_role); None for a single task or
# a pipeline's.
PRIMARY, AUXILIARY = "primary", "auxiliary"


def derived_job_status(statuses: list[TaskStatus], roles: list[str | None]) -> TaskStatus:
    """The job's status from its tasks' (in task order).

    A pipeline (no roles) reads as its current task; once every task has
    ended, as its failing task if one failed (not the CANCELLED tail).

    A job group follows its primary tasks, as SkyPilot's does: the first of
    them not SUCCEEDED, and once all have ended the first failure among them;
    auxiliary tasks stopped for the primaries' end (CANCELLED) do not make
    the group fail. Until every task of the group has ended it stays in
    progress (the auxiliaries still being stopped), so a controller restart
    finds it and finishes the job: its machines are never forgotten."""
    finished = all(s in TERMINAL for s in statuses)
    if not any(roles):
        status = job_status(statuses)
        if finished:
            failures = [s for s in statuses if s.is_failure]
            status = failures[0] if failures else status
        return status
    primaries = [s for s, role in zip(statuses, roles) if role == PRIMARY] or statuses
    status = job_status(primaries)
    if finished:
        failures = [s for s in primaries if s.is_failure]
        return failures[0] if failures else status
    if status in TERMINAL:
        return next(s for s in statuses if s not in TERMINAL)
    return status
