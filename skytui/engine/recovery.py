"""How a managed job comes back: SkyPilot's recovery rules, as pure decisions.

The controller asks three questions here and acts on the answers:

* after a phase fails on a machine that is still up (user code), restart or
  give up? (`restart_decision`: `recover_on_exit_codes` always restarts and is
  not counted; otherwise restarts while the budget of
  `max_restarts_on_errors` lasts; preemptions never count);
* after a machine is lost, in which order to try the places the optimizer
  ranked? (`launch_order`: EAGER_NEXT_REGION, the default, tries other
  regions before the one just lost; FAILOVER tries the same region first);
* when no place has capacity, how long to wait before the next round?
  (`CapacityBackoff`: growing, capped, jittered, forever).

Nothing here touches the store or a cloud.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from skytui.clouds.base import InstanceOffer
from skytui.spec import Task

EAGER_NEXT_REGION = "EAGER_NEXT_REGION"
FAILOVER = "FAILOVER"


@dataclass(frozen=True)
class RecoveryPolicy:
    strategy: str
    max_restarts_on_errors: int
    recover_on_exit_codes: frozenset[int]

    @classmethod
    def of(cls, task: Task) -> RecoveryPolicy:
        # any_of/ordered entries must agree on job_recovery (spec.py checks),
        # so the first candidate speaks for all.
        recovery = task.resources.job_recovery
        if recovery is None:
            candidates, _ = task.resources.candidates()
            recovery = next((c.job_recovery for c in candidates if c.job_recovery is not None), None)
        if recovery is None:
            return cls(EAGER_NEXT_REGION, 0, frozenset())
        return cls(
            strategy=recovery.strategy or EAGER_NEXT_REGION,
            max_restarts_on_errors=recovery.max_restarts_on_errors,
            recover_on_exit_codes=frozenset(recovery.recover_on_exit_codes),
        )


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    counted: bool  # uses one of max_restarts_on_errors
    why: str


def restart_decision(policy: RecoveryPolicy, exit_codes: Sequence[int], restarts_used: int) -> RestartDecision:
    """Whether a task whose code failed on a live machine runs again."""
    listed = sorted({code for code in exit_codes if code in policy.recover_on_exit_codes})
    if listed:
        return RestartDecision(True, False, f"exit code {listed[0]} is in recover_on_exit_codes")
    if restarts_used < policy.max_restarts_on_errors:
        return RestartDecision(
            True, True, f"restart {restarts_used + 1} of max_restarts_on_errors={policy.max_restarts_on_errors}"
        )
    if policy.max_restarts_on_errors:
        return RestartDecision(False, False, f"all {policy.max_restarts_on_errors} restarts on errors used")
    return RestartDecision(False, False, "max_restarts_on_errors is 0")


@dataclass(frozen=True)
class Place:
    """Where an attempt ran: enough to steer the next one."""

    cloud: str
    region: str | None

    @classmethod
    def of(cls, offer: InstanceOffer) -> Place:
        return cls(offer.cloud, offer.region)


def launch_order(
    offers: Sequence[InstanceOffer], strategy: str, lost: Place | None
) -> list[InstanceOffer]:
    """The optimizer's ranking (cheapest first), re-ordered by the strategy
    around the place just lost. Nothing is dropped: after the preferred places,
    the others, then (for EAGER_NEXT_REGION) the lost region again, since a
    spot region often has capacity back a minute later."""
    if lost is None:
        return list(offers)
    same = [o for o in offers if Place.of(o) == lost]
    others = [o for o in offers if Place.of(o) != lost]
    if strategy == FAILOVER:
        return same + others
    return others + same


class CapacityBackoff:
    """Waits between rounds of "no capacity anywhere": initial × 1.6ⁿ up to a
    cap, ±20% jitter so many jobs that ran dry together do not retry together."""

    FACTOR = 1.6
    JITTER = 0.2

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max(max_s, initial_s)
        self.rounds = 0
        self._rng = rng or random.Random()

    def next_wait(self) -> float:
        base = min(self.max_s, self.initial_s * self.FACTOR ** self.rounds)
        self.rounds += 1
        return base * self._rng.uniform(1 - self.JITTER, 1 + self.JITTER)
