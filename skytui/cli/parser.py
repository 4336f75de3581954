"""The command line's grammar: every command, flag and argument type.

Owns `build_parser`; touches only argparse (no command runs here, nothing
of skytui is imported).
"""

from __future__ import annotations

import argparse

# Job IDs are SQLite integers: anything larger cannot name a job.
MAX_ID = 2**63 - 1


def _notice_s(text: str) -> float:
    """argparse type of `sim preempt --notice`: seconds, 0 to 120 (AWS gives two minutes)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 120:
        raise argparse.ArgumentTypeError(f"{text!r}: a notice is 0 to 120 seconds")
    return value


def _job_id(text: str) -> int:
    """argparse type of a job ID: a whole number that can be a stored ID."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job ID (a whole number)") from None
    if not 1 <= value <= MAX_ID:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job ID (job IDs start at 1)")
    return value


def _add_launch_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--name", help="job name (overrides the YAML)")
    parser.add_argument("-p", "--pool", help="run on a pool's workers")
    parser.add_argument("--num-jobs", type=int, default=1, help="submit N copies (SKYPILOT_JOB_RANK 0..N-1)")
    parser.add_argument("--infra", help="cloud[/region[/zone]], e.g. local")
    # Both at once is a contradiction, not "the last one wins": argparse refuses it (exit 2).
    spot = parser.add_mutually_exclusive_group()
    spot.add_argument("--use-spot", action="store_true", default=None, help="use spot instances")
    spot.add_argument("--no-use-spot", dest="use_spot", action="store_false", help="use on-demand instances")
    parser.add_argument("--gpus", help="accelerators, e.g. H100:8")
    parser.add_argument("--cpus", help="vCPUs, e.g. 4 or 4+")
    parser.add_argument("--memory", help="memory in GB, e.g. 16+")
    parser.add_argument("--num-nodes", type=int, help="number of nodes")
    parser.add_argument("--priority", type=int, help="scheduling priority (-1000..1000)")
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="environment variable (repeatable)")
    parser.add_argument("--env-file", help="a dotenv file of environment variables")
    parser.add_argument("--secret", action="append", default=[], metavar="K=V", help="secret variable (repeatable)")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument("-d", "--detach-run", action="store_true", help="submit and return; do not stream logs")
    parser.add_argument("--dryrun", action="store_true", help="show where the job would go; submit nothing")
    parser.add_argument("--max-cost", type=float, metavar="USD",
                        help="stop the job (CANCELLED) once it has cost this much; default jobs.max_cost_usd")
    parser.add_argument("--stall-timeout", metavar="DURATION",
                        help="RUNNING this long (e.g. 30m) without a log line is a stall; default jobs.stall_timeout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skytui",
        description="Managed jobs for long cloud runs. Without arguments, opens the terminal UI.",
    )
    parser.add_argument("--run", metavar="FILE", help="launch FILE, stream its logs, exit with its outcome")
    _add_launch_flags(parser)
    commands = parser.add_subparsers(dest="command")

    jobs = commands.add_parser("jobs", help="managed jobs").add_subparsers(dest="jobs_command", required=True)
    launch = jobs.add_parser("launch", help="launch a task or pipeline YAML as a managed job")
    launch.add_argument("file")
    _add_launch_flags(launch)

    queue = jobs.add_parser("queue", help="show managed jobs")
    queue.add_argument("-a", "--all", action="store_true", help="every job, not only the latest 50")
    queue.add_argument("--skip-finished", action="store_true", help="only jobs still in progress")
    queue.add_argument("--json", action="store_true", help="one JSON document on stdout")

    logs = jobs.add_parser("logs", help="print and follow a job's logs (Ctrl-C detaches)")
    logs.add_argument("job_id", nargs="?", type=_job_id)
    logs.add_argument("-n", "--name")
    logs.add_argument("--task", type=int, help="only this task of a pipeline (0-based)")
    logs.add_argument("--no-follow", dest="follow", action="store_false")
    logs.add_argument("--controller", action="store_true", help="the controller's log of the job")

    cancel = jobs.add_parser("cancel", help="cancel managed jobs")
    cancel.add_argument("job_ids", nargs="*", type=_job_id)
    cancel.add_argument("-n", "--name")
    cancel.add_argument("-p", "--pool")
    cancel.add_argument("-a", "--all", action="store_true", help="every job in progress")
    cancel.add_argument("-y", "--yes", action="store_true")

    pool = jobs.add_parser("pool", help="pools of warm workers").add_subparsers(dest="pool_command", required=True)
    apply = pool.add_parser("apply", help="create a pool, or update it to a new spec or worker count")
    apply.add_argument("file", nargs="?", help="the pool YAML (a task with a pool: section and no run)")
    apply.add_argument("-p", "--pool", required=True, dest="pool_name", help="the pool's name")
    apply.add_argument("--workers", type=int, help="number of workers (overrides the YAML)")
    apply.add_argument("-y", "--yes", action="store_true")
    status = pool.add_parser("status", help="pools and their workers")
    status.add_argument("name", nargs="?")
    status.add_argument("--json", action="store_true", help="one JSON document on stdout")
    down = pool.add_parser("down", help="tear a pool down (its jobs must have finished)")
    down.add_argument("name")
    down.add_argument("-y", "--yes", action="store_true")

    controller = commands.add_parser("controller", help="the controller daemon").add_subparsers(
        dest="controller_command", required=True
    )
    controller.add_parser("start", help="start the controller (clients also start it on demand)")
    controller.add_parser("stop", help="stop the controller; running jobs keep running")
    controller.add_parser("status", help="is the controller running (and where)")
    down = controller.add_parser("down", help="delete a remote controller with its state and logs (no job may be in progress)")
    down.add_argument("-y", "--yes", action="store_true", help="do not ask to type `delete`")
    controller_logs = controller.add_parser("logs", help="print the controller's log")
    controller_logs.add_argument("--follow", action="store_true")

    cost = commands.add_parser("cost", help="dollars spent and lost: per job, day, infra and pool")
    cost.add_argument("--days", type=int, default=30, help="only spend of the last N days (default 30)")
    cost.add_argument("--job", type=_job_id, metavar="ID", help="one job and its attempts (all its days)")
    cost.add_argument("-a", "--all", action="store_true", help="every job, not only the latest 50")
    cost.add_argument("--json", action="store_true", help="one JSON document on stdout")

    check = commands.add_parser("check", help="which infra is enabled, and why not")
    check.add_argument("--json", action="store_true", help="one JSON document on stdout")
    sim = commands.add_parser("sim", help="chaos on the simulated infra").add_subparsers(
        dest="sim_command", required=True
    )
    preempt = sim.add_parser("preempt", help="reclaim a job's sim machine now, as a spot preemption")
    preempt.add_argument("job_id", type=_job_id)
    preempt.add_argument("--task", type=int, default=None, help="pipeline task index (default: the current one)")
    preempt.add_argument(
        "--notice", type=_notice_s, default=0.0, metavar="SECONDS",
        help="give the job's processes notice first (jobs.preemption_notice_signal, SIGTERM by default) "
             "and take the machine this many seconds later, as a spot interruption notice (at most 120)",
    )
    stockout = sim.add_parser("stockout", help="make a sim region run out of capacity, or recover")
    stockout.add_argument("region", help="e.g. aws/us-east-1, us-east-1, aws (every aws region) or all")
    stockout.add_argument("state", choices=["on", "off"])
    validate = commands.add_parser(
        "validate", help="SkyPilot's verdict on task, pipeline, job group and pool YAMLs; launch nothing",
        description="Checks each file as SkyPilot would: schema, types, values, names, and instance types "
                    "known to the catalogs. Needs no credentials and no enabled infra; whether the spec fits "
                    "the infra enabled here is `--here` (or `jobs launch --dryrun`). Exit 0 if every file is "
                    "valid, 2 otherwise.",
    )
    validate.add_argument("files", nargs="+")
    validate.add_argument("--here", action="store_true",
                          help="also require that the infra enabled on this machine can run it")
    return parser
