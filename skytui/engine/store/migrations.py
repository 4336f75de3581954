"""The schema's versions: SCHEMA_VERSION, and the steps that bring an older
DB up to it at start-up.

Touches the `meta` table and, through each step, the tables a step changes;
called only by `Database` inside its start-up write.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, insert, inspect, select, text, update

from skytui.engine.store.errors import StoreError
from skytui.engine.store.schema import intents_table, meta_table, metadata
from skytui.engine.store.version import SCHEMA_VERSION

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate", "stored_version"]


def migrate(conn: Connection) -> None:
    """Create what is missing and run every step from the DB's version up."""
    metadata.create_all(conn)
    current = conn.execute(
        select(meta_table.c.value).where(meta_table.c.key == "schema_version")
    ).scalar()
    if current is None:
        conn.execute(insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION)))
        return
    version = int(current)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the state DB has schema version {version}, newer than this skytui "
            f"({SCHEMA_VERSION}); upgrade skytui"
        )
    for step in range(version + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[step](conn)
    if version != SCHEMA_VERSION:
        conn.execute(
            update(meta_table)
            .where(meta_table.c.key == "schema_version")
            .values(value=str(SCHEMA_VERSION))
        )


def stored_version(conn: Connection) -> str | None:
    """The DB's schema version as stored (None: no schema yet)."""
    if not inspect(conn).has_table(meta_table.name):
        return None
    version: str | None = conn.execute(
        select(meta_table.c.value).where(meta_table.c.key == "schema_version")
    ).scalar()
    return version


# Step N upgrades a DB at schema version N-1 to N, inside the start-up transaction.
def _v2_attempt_prices(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE attempts ADD COLUMN price_per_hour FLOAT"))


def _v3_pools(conn: Connection) -> None:
    for statement in (
        "ALTER TABLE jobs ADD COLUMN worker_id INTEGER",
        "ALTER TABLE pools ADD COLUMN secrets_json TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE pools ADD COLUMN target_workers INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE pools ADD COLUMN updated_at FLOAT",
        "ALTER TABLE pool_workers ADD COLUMN status_reason TEXT",
        "ALTER TABLE pool_workers ADD COLUMN ready_at FLOAT",
        "ALTER TABLE pool_workers ADD COLUMN jobs_done INTEGER NOT NULL DEFAULT 0",
    ):
        conn.execute(text(statement))


def _v4_job_groups(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE tasks ADD COLUMN group_role VARCHAR(16)"))


def _v5_intents(conn: Connection) -> None:
    # `create_all` in `migrate` has made it already; the step says so for the
    # record, and stays right if that call ever goes.
    intents_table.create(conn, checkfirst=True)


def _v6_intent_targets(conn: Connection) -> None:
    # A DB older than v5 got the table from `create_all`, column and all.
    _add_missing_columns(conn, intents_table.name, {"target": "TEXT"})


def _add_missing_columns(conn: Connection, table: str, columns: dict[str, str]) -> None:
    present = {column["name"] for column in inspect(conn).get_columns(table)}
    for name, sql_type in columns.items():
        if name not in present:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))


def _v7_budgets_and_machine_prices(conn: Connection) -> None:
    _add_missing_columns(conn, "jobs", {"max_cost_usd": "FLOAT", "stall_timeout_s": "FLOAT", "cancel_reason": "TEXT"})
    _add_missing_columns(conn, "clusters", {"price_per_hour": "FLOAT"})


MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _v2_attempt_prices, 3: _v3_pools, 4: _v4_job_groups, 5: _v5_intents, 6: _v6_intent_targets,
    7: _v7_budgets_and_machine_prices,
}
