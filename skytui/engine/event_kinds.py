"""The kinds of events the controller writes beside status changes: the
names a job's timeline, the notifications (engine/notify.py) and the faces
share. A status change is `STATUS`, with its from/to statuses."""

from __future__ import annotations

STATUS = "status"
SUBMITTED = "submitted"
CAPACITY = "capacity"  # a round of capacity search that found none
CANCEL_REQUESTED = "cancel_requested"
SIM_PREEMPT = "sim-preempt"  # `skytui sim preempt`: the machine is taken now
BUDGET_WARNING = "budget-80"  # 80 % of --max-cost spent
BUDGET_REACHED = "budget-reached"  # all of it: the job is stopped
STALL = "stall"  # RUNNING with no log byte for --stall-timeout
STALL_CLEARED = "stall-cleared"  # output came again
PREEMPTION_NOTICE = "preemption-notice"  # the infra will take the machine at a deadline
