"""The state DB: its tables (`schema`), versions (`migrations`), records
(`rows`), one repository per aggregate (`jobs`, `runs`, `clusters`, `pools`,
`intents`; `ledger`: the costs, read-only), the `Store` that composes them
and the `AsyncStore` over it.

Nothing else in skytui writes SQL, save `queue_json`, the one read the DB
itself renders. Callers import from here: `from skytui.engine.store import
Store, JobRow`.
"""

from skytui.engine.store.async_store import AsyncStore
from skytui.engine.store.database import CONTROLLER_LOCK_KEY
from skytui.engine.store.errors import CancelRequested, StoreError
from skytui.engine.store.ledger import AttemptSpend, MachineSpend, SpendSums, TaskSpend, utc_day
from skytui.engine.store.migrations import MIGRATIONS, SCHEMA_VERSION
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
from skytui.engine.store.sync_store import Store

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
