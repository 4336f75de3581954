"""The state DB: its tables (`schema`), versions (`migrations`), records
(`rows`), one repository per aggregate (`jobs`, `runs`, `clusters`, `pools`,
`intents`; `ledger`: the costs, read-only), the `Store` that composes them
and the `AsyncStore` over it.

Nothing else in skytui writes SQL, save `queue_json`, the one read the DB
itself renders, and `first_page`, the one read before SQLAlchemy is loaded.
Callers import from here: `from skytui.engine.store import Store, JobRow`.

The records load with the package; what needs SQLAlchemy (the stores, the
migrations) loads when first named, so that a process that only shows
records (the TUI's first frame) never waits for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from skytui.engine.store.errors import CancelRequested, StoreError
from skytui.engine.store.rows import (
    UNSET,
    AttemptRow,
    BudgetState,
    ClusterRow,
    ClusterStatus,
    EventRow,
    IntentOutcome,
    IntentRequest,
    IntentRow,
    JobRow,
    NewTask,
    PoolApplied,
    PoolRow,
    RunEnd,
    RunEndRequest,
    RunningTask,
    SegmentRow,
    SimPreempt,
    SimStockout,
    TaskRow,
    Unset,
    WorkerRow,
    WorkerStatus,
)
from skytui.engine.store.spend import AttemptSpend, MachineSpend, SpendSums, TaskSpend, utc_day
from skytui.engine.store.version import SCHEMA_VERSION

if TYPE_CHECKING:
    from skytui.engine.store.async_store import AsyncStore
    from skytui.engine.store.database import CONTROLLER_LOCK_KEY
    from skytui.engine.store.migrations import MIGRATIONS
    from skytui.engine.store.sync_store import Store

# Name -> the module that defines it, imported on first use (PEP 562).
_WITH_SQLALCHEMY = {
    "AsyncStore": "skytui.engine.store.async_store",
    "CONTROLLER_LOCK_KEY": "skytui.engine.store.database",
    "MIGRATIONS": "skytui.engine.store.migrations",
    "Store": "skytui.engine.store.sync_store",
}


def __getattr__(name: str) -> Any:
    module = _WITH_SQLALCHEMY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CONTROLLER_LOCK_KEY",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "UNSET",
    "AsyncStore",
    "AttemptRow",
    "AttemptSpend",
    "BudgetState",
    "CancelRequested",
    "ClusterRow",
    "ClusterStatus",
    "EventRow",
    "IntentOutcome",
    "IntentRequest",
    "IntentRow",
    "JobRow",
    "MachineSpend",
    "NewTask",
    "PoolApplied",
    "PoolRow",
    "RunEnd",
    "RunEndRequest",
    "RunningTask",
    "SegmentRow",
    "SimPreempt",
    "SimStockout",
    "SpendSums",
    "Store",
    "StoreError",
    "TaskRow",
    "TaskSpend",
    "Unset",
    "WorkerRow",
    "WorkerStatus",
    "utc_day",
]
