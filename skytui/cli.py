"""`skytui` on the command line: argument parsing and the headless renderers.

Contracts scripts rely on (DESIGN.md): `--json` prints one JSON document on
stdout and nothing else there; exit codes are 0 SUCCEEDED, 1 any FAILED_*,
2 invalid input or usage (nothing submitted), 3 CANCELLED, 130 Ctrl-C
(detached: the job keeps running). Colour only on a terminal; NO_COLOR is
honoured. This module never imports Textual.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console
from rich.table import Table
from rich.text import Text

from skytui.client import Client, JobView
from skytui.config import ConfigError, restrict_umask
from skytui.engine.status import TERMINAL, TaskStatus
from skytui.engine.store import EventRow, StoreError
from skytui.format import (
    QUEUE_COLUMNS,
    id_ranges,
    in_progress_summary,
    jobs_phrase,
    queue_lines,
    readable_ago,
    readable_duration,
    status_text,
)

if TYPE_CHECKING:
    from skytui.engine.optimizer import Plan
    from skytui.spec import Overrides, Pipeline

# The spec models and the optimizer load only for the commands that read a
# YAML or plan a launch: `jobs queue` must not pay for them.

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_INTERRUPTED = 130

# Job IDs are SQLite integers: anything larger cannot name a job.
MAX_ID = 2**63 - 1
# Copies of a job per launch, and workers per pool (the pool spec's own bound).
MAX_NUM_JOBS = 10_000
MAX_WORKERS = 10_000

out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 4096)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class UsageError(Exception):
    """Bad flags or names: exit 2, nothing written."""


# ------------------------------------------------------------------ helpers


def exit_code_for(status: TaskStatus) -> int:
    if status is TaskStatus.SUCCEEDED:
        return EXIT_OK
    if status is TaskStatus.CANCELLED:
        return EXIT_CANCELLED
    return EXIT_FAILED


def _fail_usage(message: str) -> NoReturn:
    raise UsageError(message)


def _confirm(question: str) -> bool:
    """Ask on stdout, read the answer from stdin, terminal or not (as
    SkyPilot's click.confirm does): empty or y/yes is yes; anything else, or
    end of input (a script that pipes nothing, `< /dev/null`), is no."""
    sys.stdout.write(f"{question} [Y/n]: ")
    sys.stdout.flush()
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line or not sys.stdin.isatty():
        sys.stdout.write("\n")  # no terminal echoed the answer: finish the prompt's line
    return bool(line) and line.strip().lower() in ("", "y", "yes")


def _aborted(what: str) -> int:
    err.print(f"Aborted: {what}.")
    return EXIT_FAILED


def _job_id(text: str) -> int:
    """argparse type of a job ID: a whole number that can be a stored ID."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job ID (a whole number)") from None
    if not 1 <= value <= MAX_ID:
        raise argparse.ArgumentTypeError(f"{text!r} is not a job ID (job IDs start at 1)")
    return value


# ------------------------------------------------------------------ parsers


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
    controller.add_parser("status", help="is the controller running")
    controller_logs = controller.add_parser("logs", help="print the controller's log")
    controller_logs.add_argument("--follow", action="store_true")

    check = commands.add_parser("check", help="which infra is enabled, and why not")
    check.add_argument("--json", action="store_true", help="one JSON document on stdout")
    sim = commands.add_parser("sim", help="chaos on the simulated infra").add_subparsers(
        dest="sim_command", required=True
    )
    preempt = sim.add_parser("preempt", help="reclaim a job's sim machine now, as a spot preemption")
    preempt.add_argument("job_id", type=_job_id)
    preempt.add_argument("--task", type=int, default=None, help="pipeline task index (default: the current one)")
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


# ------------------------------------------------------------------- launch


def _overrides(args: argparse.Namespace) -> Overrides:
    from skytui.spec import Overrides, parse_env_flag

    envs = dict(parse_env_flag(item) for item in args.env)
    secrets = dict(_parse_secret(item) for item in args.secret)
    return Overrides(
        name=args.name, envs=envs, secrets=secrets, env_file=args.env_file, infra=args.infra,
        use_spot=args.use_spot, gpus=args.gpus, cpus=args.cpus, memory=args.memory,
        num_nodes=args.num_nodes,
    )


def _parse_secret(item: str) -> tuple[str, str]:
    from skytui.spec import SpecError, parse_env_flag

    try:
        return parse_env_flag(item)
    except SpecError as exc:
        raise SpecError("", None, "--secret", exc.message.replace("--env", "--secret")) from None


def _check_num_jobs(args: argparse.Namespace) -> None:
    if not 1 <= args.num_jobs <= MAX_NUM_JOBS:
        _fail_usage(f"--num-jobs: must be from 1 to {MAX_NUM_JOBS}")


def _load_and_plan(client: Client, file: str, args: argparse.Namespace) -> tuple[Pipeline, list[Plan]]:
    from skytui.spec import load_pipeline

    _check_num_jobs(args)
    if args.priority is not None and not -1000 <= args.priority <= 1000:
        _fail_usage("--priority: must be between -1000 and 1000")
    pipeline = load_pipeline(file, _overrides(args), instance_types=client.instance_type_problem)
    _print_warnings(pipeline.warnings)
    return pipeline, client.plan(pipeline)


def _load_for_pool(client: Client, file: str, args: argparse.Namespace) -> Pipeline:
    """A job for a pool runs its `run` on the pool's workers: no placement to plan."""
    from skytui.spec import load_pipeline

    _check_num_jobs(args)
    pipeline = load_pipeline(file, _overrides(args))
    _print_warnings(pipeline.warnings)
    if len(pipeline.tasks) != 1:
        _fail_usage("--pool: a pool runs single-task jobs, not pipelines")
    views = client.pools(args.pool)
    if not views:
        _fail_usage(f"no pool {args.pool!r}; create it with `skytui jobs pool apply -p {args.pool} POOL.yaml`")
    view = views[0]
    task = pipeline.tasks[0]
    ignored = [what for what, present in (("setup", task.setup), ("file_mounts", task.file_mounts)) if present]
    note = f"; its {' and '.join(ignored)} are ignored (the pool's ran on each worker)" if ignored else ""
    copies = f"{args.num_jobs} jobs" if args.num_jobs > 1 else "the job"
    out.print(f"Launching {copies} into pool {args.pool!r} ({view.ready} of {view.pool.target_workers} "
              f"worker(s) ready){note}.")
    return pipeline


def print_plans(pipeline: Pipeline, plans: list[Plan]) -> None:
    from skytui.engine.optimizer import considered_rows

    for task, plan in zip(pipeline.tasks, plans):
        label = f" for task {task.name!r}" if pipeline.is_pipeline else ""
        out.print(f"Considered resources{label} ({plan.num_nodes} node{'s' if plan.num_nodes > 1 else ''}):")
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("INFRA", "INSTANCE", "vCPUs", "Mem(GB)", "GPUS", "COST ($)", "CHOSEN"):
            table.add_column(column)
        for row in considered_rows(plan):
            table.add_row(*(Text(cell) for cell in row))
        out.print(table)


def cmd_launch(client: Client, file: str, args: argparse.Namespace, *, follow: bool) -> int:
    if args.pool:
        pipeline = _load_for_pool(client, file, args)
    else:
        pipeline, plans = _load_and_plan(client, file, args)
        print_plans(pipeline, plans)
    if args.dryrun:
        out.print("Dry run: nothing submitted.")
        return EXIT_OK
    # `skytui --run` is for scripts and quick runs: it never asks.
    if not args.yes and not getattr(args, "run", None):
        what = f"{args.num_jobs} managed jobs" if args.num_jobs > 1 else "managed job"
        if not _confirm(f"Launching {what} {pipeline.name!r}. Proceed?"):
            return _aborted("nothing submitted")
    try:
        job_ids = client.submit(pipeline, pool=args.pool, num_jobs=args.num_jobs, priority=args.priority)
    except ValueError as exc:
        _fail_usage(str(exc))
    out.print(f"Managed {jobs_phrase(job_ids)} submitted ({pipeline.name}).")
    if not follow or args.detach_run or len(job_ids) > 1:
        out.print(f"Follow its logs with: skytui jobs logs {job_ids[0]}")
        return EXIT_OK
    return follow_job(client, job_ids[0], task_idx=None, follow=True)


# --------------------------------------------------------------- following


_WAITING = {
    TaskStatus.PENDING: "Waiting for the controller to schedule the job.",
    TaskStatus.STARTING: "Waiting for task resources on {nodes} node{s}.",
    TaskStatus.RECOVERING: "Recovering the task: waiting for resources on {nodes} node{s}.",
    TaskStatus.CANCELLING: "Cancelling the job.",
}


def _waiting_message(view: JobView) -> str | None:
    task = view.current_task
    if task is None:
        return None
    template = _WAITING.get(task.status_enum)
    if template is None:
        return None
    message = template.format(nodes=task.num_nodes, s="s" if task.num_nodes > 1 else "")
    if task.status_reason:
        message += f" ({task.status_reason})"
    if view.is_pipeline:
        message = f"Task {task.task_idx} ({task.name}): {message}"
    return message


def follow_job(client: Client, job_id: int, *, task_idx: int | None, follow: bool) -> int:
    """Stream a job's logs until it finishes; its exit code. Ctrl-C detaches."""
    follower = client.log_follower(job_id, task_idx)
    last_event = 0
    last_controller_check = 0.0
    spinner = err.status("") if err.is_terminal else None
    spinner_on = False
    try:
        while True:
            view = client.job(job_id)
            if view is None:
                _fail_usage(f"no managed job {job_id}")
            lines: list[str | Text] = []  # job output as printed; our own news dimmed
            for event in client.events(after_id=last_event, job_id=job_id):
                last_event = event.id
                if event.task_idx is not None:
                    # Earlier tasks' output comes before a later task's news.
                    lines += follower.poll(before_task=event.task_idx)
                lines += _event_lines(event, view)
            status = view.status
            finished = status in TERMINAL
            lines += follower.poll(final=finished)
            if lines and spinner_on and spinner is not None:
                spinner.stop()
                spinner_on = False
            for line in lines:
                if isinstance(line, Text):
                    out.print(line)
                else:
                    out.out(line, highlight=False)
            if finished or not follow:
                if spinner is not None and spinner_on:
                    spinner.stop()
                if finished:
                    _print_outcome(view)
                return exit_code_for(status) if finished else EXIT_OK
            if follow and time.monotonic() - last_controller_check > 5:
                last_controller_check = time.monotonic()
                revive_controller(client)
            message = _waiting_message(view)
            if spinner is not None:
                if message and not spinner_on:
                    spinner.update(message)
                    spinner.start()
                    spinner_on = True
                elif message:
                    spinner.update(message)
                elif spinner_on:
                    spinner.stop()
                    spinner_on = False
            time.sleep(0.2)
    except KeyboardInterrupt:
        if spinner is not None and spinner_on:
            spinner.stop()
        err.print(
            f"\nDetached from managed job {job_id}; it keeps running. "
            f"Follow: skytui jobs logs {job_id} · Cancel: skytui jobs cancel {job_id}"
        )
        return EXIT_INTERRUPTED


def revive_controller(client: Client) -> None:
    """Jobs go on only with a controller: one that died while it has work is
    started again, and the user is told (on stderr: --json stays clean)."""
    try:
        info = client.revive_controller()
    except RuntimeError as exc:
        err.print(Text(f"Warning: the controller is not running and would not start: {exc}", style="yellow"))
        return
    if info is not None:
        err.print(f"The controller was not running; restarted it (pid {info.pid}) to carry on with the work in progress.")


def _event_lines(event: EventRow, view: JobView) -> list[str | Text]:
    if event.kind == "placement":
        return [Text(f"⚙︎ {event.message}", style="dim")]
    if event.kind == "capacity" or (event.kind == "status" and event.to_status == "PENDING" and event.message):
        return [Text(f"⚙︎ {event.message}", style="dim")]  # a round of capacity search found none
    if event.kind == "status" and event.to_status in ("STARTING", "RUNNING", "RECOVERING"):
        task = next((t for t in view.tasks if t.task_idx == event.task_idx), None)
        name = f" task {task.task_idx} ({task.name})" if task and view.is_pipeline else ""
        reason = f" ({event.message})" if event.message else ""
        return [Text(f"⚙︎ Job {view.job.id}{name}: {event.to_status}{reason}", style="dim")]
    return []


def _print_outcome(view: JobView) -> None:
    status = view.status
    text = Text(f"✓ Managed job {view.job.id} finished: ")
    text.append_text(status_text(status.value))
    failed = next((t for t in view.tasks if t.failure_reason), None)
    if failed is not None and status is not TaskStatus.SUCCEEDED:
        text.append(f" ({failed.name}: {failed.failure_reason})")
    out.print(text)


# ------------------------------------------------------------------- queue


def cmd_queue(client: Client, args: argparse.Namespace) -> int:
    limit = None if args.all else 50
    if args.json:
        sys.stdout.write(client.queue_json(skip_finished=args.skip_finished, limit=limit) + "\n")
        return EXIT_OK
    views = client.queue(skip_finished=args.skip_finished, limit=limit)
    now = time.time()
    out.print(in_progress_summary(views))
    if not views:
        return EXIT_OK
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in QUEUE_COLUMNS:
        table.add_column(column, no_wrap=True)
    for view in views:
        for line in queue_lines(view, now):
            table.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in line.cells))
        if view.is_pipeline:
            table.add_row()
    out.print(table)
    return EXIT_OK


# -------------------------------------------------------------------- logs


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    job_id = client.resolve_job(args.job_id, args.name)
    if job_id is None:
        what = f"job {args.job_id}" if args.job_id is not None else f"job named {args.name!r}" if args.name else "job"
        _fail_usage(f"no managed {what}")
    if args.controller:
        return _print_file(client.controller_log_path(job_id), follow=args.follow, until_job=(client, job_id))
    view = client.job(job_id)
    assert view is not None
    if args.task is not None and not 0 <= args.task < len(view.tasks):
        _fail_usage(f"--task: job {job_id} has tasks 0..{len(view.tasks) - 1}")
    code = follow_job(client, job_id, task_idx=args.task, follow=args.follow)
    return code if args.follow else EXIT_OK


def _print_file(path: Path, *, follow: bool, until_job: tuple[Client, int] | None = None) -> int:
    position = 0
    try:
        while True:
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(position)
                    data = f.read()
                position += len(data)
                if data:
                    sys.stdout.write(data.decode("utf-8", errors="replace"))
                    sys.stdout.flush()
            if not follow:
                return EXIT_OK
            if until_job is not None:
                view = until_job[0].job(until_job[1])
                if view is not None and view.status in TERMINAL:
                    return EXIT_OK
            time.sleep(0.3)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


# ------------------------------------------------------------------ cancel


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    chosen = [bool(args.job_ids), bool(args.name), bool(args.pool), args.all]
    if sum(chosen) != 1:
        _fail_usage("give job IDs, or exactly one of -n NAME, -p POOL, -a")
    if args.job_ids:
        missing = [i for i in args.job_ids if client.job(i) is None]
        if missing:
            _fail_usage(f"no managed job {id_ranges(missing)}")
        ids = list(args.job_ids)
    else:
        ids = client.in_progress_ids(name=args.name, pool=args.pool)
    if not ids:
        out.print("No in-progress managed jobs to cancel.")
        return EXIT_OK
    if not args.yes and not _confirm(f"Cancelling managed {jobs_phrase(ids)}. Proceed?"):
        return _aborted("nothing cancelled")
    accepted = client.cancel(ids)
    skipped = sorted(set(ids) - set(accepted))
    if accepted:
        out.print(f"Cancelling managed {jobs_phrase(accepted)}.")
    if skipped:
        out.print(f"Already finished or being cancelled: {id_ranges(skipped)}.")
    return EXIT_OK


# -------------------------------------------------------------- controller


def cmd_controller(client: Client, args: argparse.Namespace) -> int:
    command = args.controller_command
    if command == "start":
        info = client.ensure_controller()
        out.print(f"Controller running (pid {info.pid}).")
    elif command == "stop":
        try:
            stopped = client.stop_controller()
        except RuntimeError as exc:  # it ignored SIGTERM until the deadline
            return _controller_did_not_stop(client, exc)
        out.print("Controller stopped; jobs keep running on their nodes." if stopped else "Controller is not running.")
        if client.stop_idle_node_host():
            out.print("The local node host served no node: stopped it too.")
    elif command == "status":
        info = client.controller_info()
        out.print(f"Controller running (pid {info.pid})." if info.running else "Controller is not running.")
        return EXIT_OK
    elif command == "logs":
        return _print_file(client.controller_log_path(), follow=args.follow)
    return EXIT_OK


def _controller_did_not_stop(client: Client, exc: RuntimeError) -> int:
    info = client.controller_info()
    if not info.running:  # it went just after the deadline
        out.print("Controller stopped; jobs keep running on their nodes.")
        return EXIT_OK
    err.print(
        f"Error: {exc}; jobs keep running on their nodes. Run `skytui controller stop` again, "
        f"or end it with `kill -9 {info.pid}` (a restarted controller picks every job up)."
    )
    return EXIT_FAILED


def cmd_check(client: Client, as_json: bool) -> int:
    report = client.infra_report()
    if as_json:
        print(json.dumps({"infra": [
            {"name": status.name, "enabled": status.enabled, "reason": status.reason, "fix": status.fix or None,
             "offers": offers}
            for status, offers in report
        ]}))
        return EXIT_OK
    for status, offers in report:
        line = Text(f"{status.name:<11}", style="bold")
        if status.enabled:
            line.append("enabled  ", style="green")
            line.append(offers or status.reason)
            if offers and status.reason and status.name not in ("local", "sim"):
                line.append(f" ({status.reason})", style="dim")
        else:
            line.append("disabled ", style="red")
            line.append(status.reason)
            if status.fix:
                line.append(f"\n{'':<20}fix: {status.fix}", style="yellow")
        out.print(line)
    return EXIT_OK


def cmd_pool(client: Client, args: argparse.Namespace) -> int:
    try:
        if args.pool_command == "apply":
            if args.workers is not None and not 0 <= args.workers <= MAX_WORKERS:
                _fail_usage(f"--workers: must be from 0 to {MAX_WORKERS}")
            if args.file is None and args.workers is None:
                _fail_usage("give a pool YAML, or --workers N to resize an existing pool")
            from skytui.spec import load_pool

            definition = load_pool(args.file, instance_types=client.instance_type_problem) if args.file else None
            if definition is not None:
                _print_warnings(definition.warnings)
            if not args.yes and not _confirm(_apply_question(args)):
                return _aborted("the pool is unchanged")
            version, outcome = client.apply_pool(args.pool_name, definition, args.workers)
            what = {
                "created": "created", "resized": "resized in place", "updated": "updated: new workers "
                "start with the new spec, old ones finish their current job and go", "unchanged": "unchanged",
            }[outcome]
            out.print(f"Pool {args.pool_name!r} {what} (version {version}). "
                      f"See `skytui jobs pool status {args.pool_name}`.")
            return EXIT_OK
        if args.pool_command == "down":
            if not client.pools(args.name):
                _fail_usage(f"no pool {args.name!r}")
            if not args.yes and not _confirm(f"Terminating pool {args.name!r} and its workers. Proceed?"):
                return _aborted("the pool is unchanged")
            client.pool_down(args.name)
            out.print(f"Pool {args.name!r} is shutting down; its workers are being terminated.")
            return EXIT_OK
    except ValueError as exc:
        _fail_usage(str(exc))
    views = client.pools(args.name)
    if args.json:
        sys.stdout.write(json.dumps({"pools": [view.to_json() for view in views]}) + "\n")
        return EXIT_OK
    if args.name and not views:
        _fail_usage(f"no pool {args.name!r}")
    if not views:
        out.print("No pools. Create one with `skytui jobs pool apply -p NAME POOL.yaml`.")
        return EXIT_OK
    now = time.time()
    pools = Table(box=None, pad_edge=False, header_style="bold", title="Pools", title_justify="left")
    for column in ("NAME", "VERSION", "UPTIME", "STATUS", "WORKERS"):
        pools.add_column(column, no_wrap=True)
    workers = Table(box=None, pad_edge=False, header_style="bold", title="Pool Workers", title_justify="left")
    for column in ("POOL_NAME", "ID", "VERSION", "LAUNCHED", "INFRA", "RESOURCES", "STATUS", "USED_BY"):
        workers.add_column(column, no_wrap=True)
    for view in views:
        pools.add_row(view.pool.name, str(view.pool.version), readable_duration(now - view.pool.created_at),
                      view.status, f"{view.ready}/{view.pool.target_workers}")
        for worker in view.workers:
            infra, instance = view.infra_of(worker)
            status = worker.status
            if worker.status_reason and worker.status != "READY":
                status += f" ({worker.status_reason})"
            workers.add_row(view.pool.name, str(worker.id), str(worker.version),
                            readable_ago(worker.created_at, now), infra or "-", instance or "-", status,
                            f"job {worker.job_id}" if worker.job_id else "-")
    out.print(pools)
    out.print()
    out.print(workers)
    return EXIT_OK


def _apply_question(args: argparse.Namespace) -> str:
    if args.file is None:
        return f"Resizing pool {args.pool_name!r} to {args.workers} worker(s). Proceed?"
    return f"Applying {args.file} to pool {args.pool_name!r}. Proceed?"


def cmd_sim(client: Client, args: argparse.Namespace) -> int:
    try:
        if args.sim_command == "preempt":
            name = client.sim_preempt(args.job_id, args.task)
            out.print(f"Preempted {name} (job {args.job_id}); the controller will recover the job.")
            return EXIT_OK
        region, stockouts = client.sim_stockout(args.region, args.state == "on")
    except ValueError as exc:
        _fail_usage(str(exc))
    out.print(f"sim {region}: {'stocked out' if args.state == 'on' else 'capacity back'}; "
              f"stock-outs now: {', '.join(sorted(stockouts)) or 'none'}")
    return EXIT_OK


def cmd_validate(client: Client, files: Sequence[str], *, here: bool) -> int:
    from skytui.engine.optimizer import InfeasibleError
    from skytui.spec import Pipeline, SpecError, load_pipeline, load_pool

    judge = client.instance_type_problem
    invalid = 0
    for file in files:
        try:
            try:
                pipeline = load_pipeline(file, spec_only=not here, instance_types=judge)
            except SpecError as exc:
                if exc.field != "pool":
                    raise
                definition = load_pool(file, spec_only=not here, instance_types=judge)  # a pool YAML
                if here:
                    client.plan(Pipeline(name=definition.task.name or "pool", tasks=[definition.task], source=file))
                _print_warnings(definition.warnings)
                out.print(f"{file}: valid pool spec {definition.task.name!r}")
                continue
            if here:
                client.plan(pipeline)
        except (SpecError, InfeasibleError) as exc:
            err.print(Text(f"{exc}" if isinstance(exc, SpecError) else f"{file}: infeasible here: {exc}"))
            invalid += 1
            continue
        _print_warnings(pipeline.warnings)
        out.print(f"{file}: valid {_spec_kind(pipeline)} {pipeline.name!r}")
    return EXIT_USAGE if invalid else EXIT_OK


def _spec_kind(pipeline: Pipeline) -> str:
    if pipeline.is_group:
        return f"job group of {len(pipeline.tasks)} tasks"
    return f"pipeline of {len(pipeline.tasks)} tasks" if pipeline.is_pipeline else "task"


def _print_warnings(warnings: Sequence[str]) -> None:
    for warning in warnings:
        err.print(Text(f"Warning: {warning}", style="yellow"))


# -------------------------------------------------------------------- main


def _input_error_message(exc: ValueError) -> str | None:
    """What to print for an invalid YAML or flag (SpecError) or a request no
    infra can run (InfeasibleError); None for any other ValueError. Their
    modules load only in the commands that read a spec, so only such a
    command can have raised one: a module not loaded means not one of them."""
    spec = sys.modules.get("skytui.spec")
    if spec is not None and isinstance(exc, spec.SpecError):
        return f"Error: {exc}"
    optimizer = sys.modules.get("skytui.engine.optimizer")
    if optimizer is not None and isinstance(exc, optimizer.InfeasibleError):
        return f"Error: infeasible: {exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # a process of its own (not a caller's in-process use): files it makes are owner-only
        restrict_umask()
    parser = build_parser()
    args = parser.parse_args(argv)
    client = Client()
    try:
        if args.run:
            if args.command:
                _fail_usage("--run takes a file and launch flags, not a subcommand")
            return cmd_launch(client, args.run, args, follow=True)
        if args.command is None:
            from skytui.app import run_tui  # Textual loads only for the TUI

            return run_tui()
        if args.command == "jobs":
            # A launch starts the controller when it submits, and a cancel when
            # something is left for it to stop: reviving it first would only let
            # it start the very jobs about to be cancelled.
            if args.jobs_command not in ("launch", "cancel"):
                revive_controller(client)
            if args.jobs_command == "launch":
                return cmd_launch(client, args.file, args, follow=True)
            if args.jobs_command == "queue":
                return cmd_queue(client, args)
            if args.jobs_command == "logs":
                return cmd_logs(client, args)
            if args.jobs_command == "cancel":
                return cmd_cancel(client, args)
            if args.jobs_command == "pool":
                return cmd_pool(client, args)
        if args.command == "controller":
            return cmd_controller(client, args)
        if args.command == "check":
            return cmd_check(client, args.json)
        if args.command == "sim":
            return cmd_sim(client, args)
        if args.command == "validate":
            return cmd_validate(client, args.files, here=args.here)
        parser.error("unknown command")
    except UsageError as exc:
        err.print(Text(f"Error: {exc}"))
        return EXIT_USAGE
    except (ConfigError, StoreError) as exc:
        err.print(Text(f"Error: {exc}"))
        return EXIT_USAGE
    except ValueError as exc:
        message = _input_error_message(exc)
        if message is None:
            raise
        err.print(Text(message))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        client.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
