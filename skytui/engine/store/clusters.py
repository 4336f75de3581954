"""The machines: one row per cluster asked of a cloud, recorded before it is
asked for (so a crash never leaks one), and its life until TERMINATED.

Touches `clusters`, and locks the owning job's row (`lock_startable_job`)
when a job's machine is recorded.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete, insert, select, update

from skytui.engine.store.database import Database
from skytui.engine.store.intents import lock_startable_job
from skytui.engine.store.rows import ClusterRow, ClusterStatus
from skytui.engine.store.schema import clusters_table
from skytui.engine.store.sql import record


class ClusterRepository:
    """Machines (see the module's docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def insert_cluster(
        self, *, name: str, cloud: str, region: str | None, zone: str | None,
        instance_type: str | None, use_spot: bool, num_nodes: int,
        job_id: int | None = None, task_idx: int | None = None,
        attempt_no: int | None = None, pool: str | None = None,
        worker_id: int | None = None, price_per_hour: float | None = None,
    ) -> int:
        """Record a machine before it is asked for, so a crash can never leak it.

        A job's machine is refused (CancelRequested) once its cancel was
        requested: nothing starts for a job being cancelled."""
        with self._db._write() as conn:
            if job_id is not None:
                lock_startable_job(conn, job_id)
            return int(
                conn.execute(
                    insert(clusters_table).values(
                        name=name, cloud=cloud, region=region, zone=zone,
                        instance_type=instance_type, use_spot=use_spot, num_nodes=num_nodes,
                        job_id=job_id, task_idx=task_idx, attempt_no=attempt_no, pool=pool,
                        worker_id=worker_id, status=ClusterStatus.PROVISIONING,
                        created_at=time.time(), price_per_hour=price_per_hour,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )

    def update_cluster(
        self, cluster_id: int, *, status: str, handle: dict[str, Any] | None = None,
        end_reason: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status}
        if handle is not None:
            values["handle_json"] = json.dumps(handle)
        if status == ClusterStatus.TERMINATED:
            values["ended_at"] = time.time()
            values["end_reason"] = end_reason
        with self._db._write() as conn:
            conn.execute(update(clusters_table).where(clusters_table.c.id == cluster_id).values(**values))

    def cluster_name_taken(self, name: str) -> bool:
        """Whether a machine was ever recorded under this name (names are unique)."""
        with self._db._read() as conn:
            return conn.execute(select(clusters_table.c.id).where(clusters_table.c.name == name)).first() is not None

    def forget_cluster(self, cluster_id: int) -> None:
        """Drop the record of a machine that was asked for and never came
        (the cloud said no, and terminating the name confirmed nothing is
        left): a job waiting out a stock-out tries places every round, forever."""
        with self._db._write() as conn:
            conn.execute(delete(clusters_table).where(clusters_table.c.id == cluster_id))

    def cluster(self, cluster_id: int) -> ClusterRow | None:
        with self._db._read() as conn:
            row = conn.execute(select(clusters_table).where(clusters_table.c.id == cluster_id)).first()
        return record(ClusterRow, row) if row else None

    def live_clusters(self, job_id: int | None = None) -> list[ClusterRow]:
        query = select(clusters_table).where(clusters_table.c.status.in_(ClusterStatus.LIVE))
        if job_id is not None:
            query = query.where(clusters_table.c.job_id == job_id)
        with self._db._read() as conn:
            return [record(ClusterRow, r) for r in conn.execute(query.order_by(clusters_table.c.id)).all()]

    def clusters(self) -> list[ClusterRow]:
        with self._db._read() as conn:
            return [record(ClusterRow, r) for r in conn.execute(select(clusters_table)).all()]
