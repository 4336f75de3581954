"""What every part of the engine shares: the store, the infras, the paths,
the launch scheduler, the recovery settings, the pools and the machine
watcher. Built once by the Reconciler; job controllers and the pool manager
read it, none owns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skytui.clouds.base import Cloud
from skytui.config import Paths, RecoveryConfig
from skytui.engine.machine_watch import MachineWatcher
from skytui.engine.scheduler import EndsFirst, Scheduler
from skytui.engine.store import AsyncStore

if TYPE_CHECKING:
    from skytui.engine.pools import PoolManager


@dataclass
class EngineContext:
    store: AsyncStore
    clouds: dict[str, Cloud]
    paths: Paths
    scheduler: Scheduler
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    pools: PoolManager | None = None
    bucket: str | None = None  # jobs.bucket: files go to nodes through it
    notice_signal: str = "TERM"  # jobs.preemption_notice_signal
    machines: MachineWatcher = field(default_factory=MachineWatcher)
    ends_first: EndsFirst = field(default_factory=EndsFirst)
