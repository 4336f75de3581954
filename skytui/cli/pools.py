"""The `jobs pool` commands: apply, down, status.

May touch the client, `render`, `common`, and the spec models (loaded only
by `apply` with a YAML).
"""

from __future__ import annotations

import argparse
import sys
import time

from skytui.cli.common import EXIT_OK, MAX_WORKERS, aborted, confirm, fail_usage
from skytui.cli.render import out, pools_json, print_pools, print_warnings
from skytui.client import Client


def cmd_pool_apply(client: Client, args: argparse.Namespace) -> int:
    try:
        if args.workers is not None and not 0 <= args.workers <= MAX_WORKERS:
            fail_usage(f"--workers: must be from 0 to {MAX_WORKERS}")
        if args.file is None and args.workers is None:
            fail_usage("give a pool YAML, or --workers N to resize an existing pool")
        from skytui.spec import load_pool

        definition = load_pool(args.file, instance_types=client.instance_type_problem) if args.file else None
        if definition is not None:
            print_warnings(definition.warnings)
        if not args.yes and not confirm(_apply_question(args)):
            return aborted("the pool is unchanged")
        version, outcome = client.apply_pool(args.pool_name, definition, args.workers)
    except ValueError as exc:
        fail_usage(str(exc))
    what = {
        "created": "created", "resized": "resized in place", "updated": "updated: new workers "
        "start with the new spec, old ones finish their current job and go", "unchanged": "unchanged",
    }[outcome]
    out.print(f"Pool {args.pool_name!r} {what} (version {version}). "
              f"See `skytui jobs pool status {args.pool_name}`.")
    return EXIT_OK


def cmd_pool_down(client: Client, args: argparse.Namespace) -> int:
    try:
        if not client.pools(args.name):
            fail_usage(f"no pool {args.name!r}")
        if not args.yes and not confirm(f"Terminating pool {args.name!r} and its workers. Proceed?"):
            return aborted("the pool is unchanged")
        client.pool_down(args.name)
    except ValueError as exc:
        fail_usage(str(exc))
    out.print(f"Pool {args.name!r} is shutting down; its workers are being terminated.")
    return EXIT_OK


def cmd_pool_status(client: Client, args: argparse.Namespace) -> int:
    views = client.pools(args.name)
    if args.json:
        sys.stdout.write(pools_json(views) + "\n")
        return EXIT_OK
    if args.name and not views:
        fail_usage(f"no pool {args.name!r}")
    if not views:
        out.print("No pools. Create one with `skytui jobs pool apply -p NAME POOL.yaml`.")
        return EXIT_OK
    print_pools(views, time.time())
    return EXIT_OK


def _apply_question(args: argparse.Namespace) -> str:
    if args.file is None:
        return f"Resizing pool {args.pool_name!r} to {args.workers} worker(s). Proceed?"
    return f"Applying {args.file} to pool {args.pool_name!r}. Proceed?"
