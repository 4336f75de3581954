"""The state DB's tables: what each row holds.

The schema's single definition; `migrations` owns the changes between versions
(SCHEMA_VERSION) and the repositories beside it every query. Nothing outside
`engine/store/` imports these.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

meta_table = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

jobs_table = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False),
    Column("pool", String(256)),
    Column("status", String(32), nullable=False),
    Column("priority", Integer, nullable=False, default=0),
    Column("submitted_at", Float, nullable=False),
    Column("ended_at", Float),
    # An intent written by clients; the controller turns it into CANCELLING/CANCELLED.
    Column("cancel_requested_at", Float),
    Column("job_rank", Integer, nullable=False, default=0),
    Column("num_jobs", Integer, nullable=False, default=1),
    Column("source", Text),
    # The pool worker running the job now (pool jobs only).
    Column("worker_id", Integer),
    Column("spec_json", Text, nullable=False),
    # Secrets live apart from the spec so that no query that renders a job reads them.
    Column("secrets_json", Text, nullable=False, default="{}"),
    # v7: what the user set at launch (flags or config defaults, never the YAML):
    # the job's budget in dollars, and how long RUNNING without a log byte is a stall.
    Column("max_cost_usd", Float),
    Column("stall_timeout_s", Float),
    # Why the controller was asked to cancel it, when not by the user (its budget).
    Column("cancel_reason", Text),
    Index("ix_jobs_status", "status"),
)

tasks_table = Table(
    "tasks",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
    Column("task_idx", Integer, primary_key=True),
    Column("name", String(256), nullable=False),
    Column("status", String(32), nullable=False),
    Column("status_reason", Text),
    Column("skypilot_task_id", String(512), nullable=False),
    Column("requested", Text, nullable=False, default="-"),
    Column("num_nodes", Integer, nullable=False, default=1),
    Column("submitted_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    # JOB DURATION counts running time only: closed stretches are banked in
    # job_duration_s, the open one starts at run_started_at.
    Column("run_started_at", Float),
    Column("job_duration_s", Float, nullable=False, default=0.0),
    Column("recoveries", Integer, nullable=False, default=0),
    Column("restarts_on_errors", Integer, nullable=False, default=0),
    Column("attempt", Integer, nullable=False, default=0),
    Column("exit_code", Integer),
    Column("failure_reason", Text),
    Column("infra", String(256)),
    Column("instance_type", String(128)),
    Column("use_spot", Boolean),
    # A job group's task: "primary" or "auxiliary" (status.PRIMARY/AUXILIARY);
    # NULL for a single task or a pipeline's.
    Column("group_role", String(16)),
)

attempts_table = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, nullable=False),
    Column("task_idx", Integer, nullable=False),
    Column("attempt_no", Integer, nullable=False),
    Column("cluster_id", Integer),
    Column("infra", String(256)),
    Column("instance_type", String(128)),
    Column("use_spot", Boolean),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("end_reason", Text),
    Column("exit_code", Integer),
    # v2: what the machine cost per hour (all nodes), so COST can be shown.
    Column("price_per_hour", Float),
    UniqueConstraint("job_id", "task_idx", "attempt_no"),
)

# Where each phase of each node's output starts in the task's local log file:
# the separators, the `(task, pid=N)` prefixes and the resume offset all come
# from here, so the log file itself stays byte-identical to what the job printed.
log_segments_table = Table(
    "log_segments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, nullable=False),
    Column("task_idx", Integer, nullable=False),
    Column("attempt_no", Integer, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("phase", String(16), nullable=False),
    Column("pid", Integer),
    Column("start_offset", BigInteger, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished", Boolean, nullable=False, default=False),
    UniqueConstraint("job_id", "task_idx", "attempt_no", "rank", "phase"),
)

clusters_table = Table(
    "clusters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("cloud", String(64), nullable=False),
    Column("region", String(128)),
    Column("zone", String(128)),
    Column("instance_type", String(128)),
    Column("use_spot", Boolean, nullable=False, default=False),
    Column("num_nodes", Integer, nullable=False, default=1),
    # Owner: a job's task attempt, or a pool worker.
    Column("job_id", Integer),
    Column("task_idx", Integer),
    Column("attempt_no", Integer),
    Column("pool", String(256)),
    Column("worker_id", Integer),
    Column("status", String(32), nullable=False),
    Column("handle_json", Text),
    Column("created_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("end_reason", Text),
    # v7: what the machine costs per hour (all nodes): a pool worker's cost is its pool's.
    Column("price_per_hour", Float),
    Index("ix_clusters_status", "status"),
)

events_table = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer),
    Column("task_idx", Integer),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("from_status", String(32)),
    Column("to_status", String(32)),
    Column("message", Text),
    Index("ix_events_job", "job_id", "id"),
)

pools_table = Table(
    "pools",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("version", Integer, nullable=False, default=1),
    Column("status", String(32), nullable=False),
    Column("spec_json", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("down_requested_at", Float),
    Column("secrets_json", Text, nullable=False, default="{}"),
    # Workers to keep: the spec's count, or the autoscaler's current choice.
    Column("target_workers", Integer, nullable=False, default=0),
    Column("updated_at", Float),
)

pool_workers_table = Table(
    "pool_workers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pool", String(256), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("cluster_id", Integer),
    Column("job_id", Integer),
    Column("created_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("status_reason", Text),
    Column("ready_at", Float),
    Column("jobs_done", Integer, nullable=False, default=0),
)

# v5: what clients ask the controller to do to the infra, beyond a cancel
# (which is a column of its job): the sim chaos verbs. The controller writes
# the outcome and `done_at` in one UPDATE, so an intent is carried out once.
# v6: `target`, the machine a preemption chose, recorded before it is taken:
# a controller killed in between finds it, and does not take a second one.
intents_table = Table(
    "intents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("request_json", Text, nullable=False),
    Column("requested_at", Float, nullable=False),
    Column("done_at", Float),
    Column("outcome_json", Text),
    Column("target", Text),
    Index("ix_intents_done", "done_at"),
)
