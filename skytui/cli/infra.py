"""`check` (which infra is enabled, and why not) and the `sim` chaos verbs
(the client has the controller carry them out and waits for the outcome).

May touch the client, `render` and `common`.
"""

from __future__ import annotations

import argparse

from rich.text import Text

from skytui.cli.common import EXIT_FAILED, EXIT_OK, fail_usage
from skytui.cli.render import check_json, err, out, print_check
from skytui.client import Client


def cmd_check(client: Client, args: argparse.Namespace) -> int:
    report = client.infra_report()
    where = client.controller_where()
    sent = client.controller_credentials() if where is not None else []
    if args.json:
        print(check_json(report, where, sent))
        return EXIT_OK
    print_check(report)
    if where is not None:
        out.print(Text(f"\nThe controller runs on {where}; it is sent (0600, never logged):", style="bold"))
        for what, source in sent:
            out.print(Text(f"  {what}: {source}"))
        if not sent:
            out.print(Text("  no credentials (none found here, or jobs.controller.use_machine_identity)"))
    return EXIT_OK


def cmd_sim_preempt(client: Client, args: argparse.Namespace) -> int:
    try:
        name = client.sim_preempt(args.job_id, args.task, notice_s=args.notice)
    except ValueError as exc:
        fail_usage(str(exc))
    except RuntimeError as exc:
        return _no_answer(exc)
    after = f" after {args.notice:g}s of notice" if args.notice else ""
    out.print(f"Preempted {name} (job {args.job_id}){after}; the controller will recover the job.")
    return EXIT_OK


def cmd_sim_stockout(client: Client, args: argparse.Namespace) -> int:
    try:
        region, stockouts = client.sim_stockout(args.region, args.state == "on")
    except ValueError as exc:
        fail_usage(str(exc))
    except RuntimeError as exc:
        return _no_answer(exc)
    out.print(f"sim {region}: {'stocked out' if args.state == 'on' else 'capacity back'}; "
              f"stock-outs now: {', '.join(sorted(stockouts)) or 'none'}")
    return EXIT_OK


def _no_answer(exc: RuntimeError) -> int:
    """The controller would not start, or did not carry the verb out in time."""
    err.print(Text(f"Error: {exc}"))
    return EXIT_FAILED
