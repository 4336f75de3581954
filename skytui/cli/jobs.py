"""The `jobs` commands: launch (and `--run`), queue, logs, cancel.

May touch the client, `render`, `follow`, `common`, `format`, and the spec
models (loaded only by the commands that read a YAML: `jobs queue` must not
pay for them).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from skytui.cli.common import EXIT_OK, MAX_NUM_JOBS, aborted, confirm, fail_usage
from skytui.cli.follow import follow_job, print_file
from skytui.cli.render import out, print_plans, print_queue, print_warnings
from skytui.client import Client
from skytui.format import id_ranges, jobs_phrase

if TYPE_CHECKING:
    from skytui.client.planning import Plan
    from skytui.spec import Overrides, Pipeline


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
        fail_usage(f"--num-jobs: must be from 1 to {MAX_NUM_JOBS}")


def _load_and_plan(client: Client, file: str, args: argparse.Namespace) -> tuple[Pipeline, list[Plan]]:
    from skytui.spec import load_pipeline

    _check_num_jobs(args)
    if args.priority is not None and not -1000 <= args.priority <= 1000:
        fail_usage("--priority: must be between -1000 and 1000")
    pipeline = load_pipeline(file, _overrides(args), instance_types=client.instance_type_problem)
    print_warnings(pipeline.warnings)
    return pipeline, client.plan(pipeline)


def _load_for_pool(client: Client, file: str, args: argparse.Namespace) -> Pipeline:
    """A job for a pool runs its `run` on the pool's workers: no placement to plan."""
    from skytui.spec import load_pipeline

    _check_num_jobs(args)
    pipeline = load_pipeline(file, _overrides(args))
    print_warnings(pipeline.warnings)
    if len(pipeline.tasks) != 1:
        fail_usage("--pool: a pool runs single-task jobs, not pipelines")
    views = client.pools(args.pool)
    if not views:
        fail_usage(f"no pool {args.pool!r}; create it with `skytui jobs pool apply -p {args.pool} POOL.yaml`")
    view = views[0]
    task = pipeline.tasks[0]
    ignored = [what for what, present in (("setup", task.setup), ("file_mounts", task.file_mounts)) if present]
    note = f"; its {' and '.join(ignored)} are ignored (the pool's ran on each worker)" if ignored else ""
    copies = f"{args.num_jobs} jobs" if args.num_jobs > 1 else "the job"
    out.print(f"Launching {copies} into pool {args.pool!r} ({view.ready} of {view.pool.target_workers} "
              f"worker(s) ready){note}.")
    return pipeline


def _watch_settings(client: Client, args: argparse.Namespace) -> tuple[float | None, float | None]:
    """(--max-cost, --stall-timeout in seconds), each else its config.yaml default."""
    from skytui.config import load_config, parse_duration_s

    config = load_config(client.paths).jobs
    max_cost = args.max_cost if args.max_cost is not None else config.max_cost_usd
    if max_cost is not None and not max_cost > 0:
        fail_usage(f"--max-cost: must be a positive number of dollars, got {args.max_cost:g}")
    if args.stall_timeout is None:
        return max_cost, config.stall_timeout_s
    try:
        return max_cost, parse_duration_s(args.stall_timeout)
    except ValueError as exc:
        fail_usage(f"--stall-timeout: {exc}")


def _budget_line(pipeline: Pipeline, plans: list[Plan], budget: float) -> str:
    """What the budget buys at the chosen places' price: a pipeline pays one
    task at a time (its dearest), a job group all of them at once."""
    prices = [plan.chosen.price_per_hour * plan.num_nodes for plan in plans]
    hourly = sum(prices) if pipeline.is_group else max(prices, default=0.0)
    if hourly <= 0:
        return f"Budget ${budget:,.2f}: the chosen place is free, so the budget is never reached."
    hours = budget / hourly
    lasts = f"{int(hours)}h {int(hours * 60) % 60}m" if hours >= 1 else f"{hours * 60:.0f}m"
    return f"Budget ${budget:,.2f} at ${hourly:,.2f}/h: it lasts about {lasts}, then the job is stopped."


def cmd_launch(client: Client, file: str, args: argparse.Namespace, *, follow: bool) -> int:
    max_cost, stall_timeout_s = _watch_settings(client, args)
    if args.pool:
        pipeline = _load_for_pool(client, file, args)
    else:
        pipeline, plans = _load_and_plan(client, file, args)
        print_plans(pipeline, plans)
        if max_cost is not None:
            out.print(_budget_line(pipeline, plans, max_cost))
    if args.dryrun:
        out.print("Dry run: nothing submitted.")
        return EXIT_OK
    # `skytui --run` is for scripts and quick runs: it never asks.
    if not args.yes and not getattr(args, "run", None):
        what = f"{args.num_jobs} managed jobs" if args.num_jobs > 1 else "managed job"
        if not confirm(f"Launching {what} {pipeline.name!r}. Proceed?"):
            return aborted("nothing submitted")
    try:
        job_ids = client.submit(pipeline, pool=args.pool, num_jobs=args.num_jobs, priority=args.priority,
                                max_cost_usd=max_cost, stall_timeout_s=stall_timeout_s)
    except ValueError as exc:
        fail_usage(str(exc))
    out.print(f"Managed {jobs_phrase(job_ids)} submitted ({pipeline.name}).")
    if not follow or args.detach_run or len(job_ids) > 1:
        out.print(f"Follow its logs with: skytui jobs logs {job_ids[0]}")
        return EXIT_OK
    return follow_job(client, job_ids[0], task_idx=None, follow=True)


def cmd_queue(client: Client, args: argparse.Namespace) -> int:
    limit = None if args.all else 50
    if args.json:
        sys.stdout.write(client.queue_json(skip_finished=args.skip_finished, limit=limit) + "\n")
        return EXIT_OK
    views = client.queue(skip_finished=args.skip_finished, limit=limit)
    # Only a full page can be short of the whole queue: one COUNT then, none otherwise.
    total = client.job_count(skip_finished=args.skip_finished) if limit is not None and len(views) == limit else None
    print_queue(views, time.time(), total=total)
    return EXIT_OK


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    job_id = client.resolve_job(args.job_id, args.name)
    if job_id is None:
        what = f"job {args.job_id}" if args.job_id is not None else f"job named {args.name!r}" if args.name else "job"
        fail_usage(f"no managed {what}")
    if args.controller:
        return print_file(client, job_id, follow=args.follow, until_job=True)
    view = client.job(job_id)
    assert view is not None
    if args.task is not None and not 0 <= args.task < len(view.tasks):
        fail_usage(f"--task: job {job_id} has tasks 0..{len(view.tasks) - 1}")
    code = follow_job(client, job_id, task_idx=args.task, follow=args.follow)
    return code if args.follow else EXIT_OK


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    chosen = [bool(args.job_ids), bool(args.name), bool(args.pool), args.all]
    if sum(chosen) != 1:
        fail_usage("give job IDs, or exactly one of -n NAME, -p POOL, -a")
    if args.job_ids:
        missing = [i for i in args.job_ids if client.job(i) is None]
        if missing:
            fail_usage(f"no managed job {id_ranges(missing)}")
        ids = list(args.job_ids)
    else:
        ids = client.in_progress_ids(name=args.name, pool=args.pool)
    if not ids:
        out.print("No in-progress managed jobs to cancel.")
        return EXIT_OK
    if not args.yes and not confirm(f"Cancelling managed {jobs_phrase(ids)}. Proceed?"):
        return aborted("nothing cancelled")
    accepted = client.cancel(ids)
    skipped = sorted(set(ids) - set(accepted))
    if accepted:
        out.print(f"Cancelling managed {jobs_phrase(accepted)}.")
    if skipped:
        out.print(f"Already finished or being cancelled: {id_ranges(skipped)}.")
    return EXIT_OK
