"""The `controller` commands: start, stop, status, logs, and down (a remote controller's machine).

May touch the client, `render`, `common` and `follow` (to print its log).
"""

from __future__ import annotations

import argparse

from rich.text import Text

from skytui.cli.common import EXIT_FAILED, EXIT_OK, UsageError
from skytui.cli.follow import print_file
from skytui.cli.render import err, out
from skytui.client import Client


def cmd_controller_start(client: Client, args: argparse.Namespace) -> int:
    info = client.ensure_controller()
    where = client.controller_where()
    out.print(Text(f"Controller running (pid {info.pid})." if where is None
                   else f"Controller running on {where} (pid {info.pid})."))
    return EXIT_OK


def cmd_controller_stop(client: Client, args: argparse.Namespace) -> int:
    try:
        stopped = client.stop_controller()
    except RuntimeError as exc:  # it ignored SIGTERM until the deadline
        return _controller_did_not_stop(client, exc)
    out.print("Controller stopped; jobs keep running on their nodes." if stopped else "Controller is not running.")
    if client.stop_idle_node_host():
        out.print("The local node host served no node: stopped it too.")
    return EXIT_OK


def cmd_controller_status(client: Client, args: argparse.Namespace) -> int:
    for line in client.controller_report():
        out.print(Text(line))
    return EXIT_OK


def cmd_controller_down(client: Client, args: argparse.Namespace) -> int:
    """Take a remote controller's machine down, with its state and logs:
    refused while a job is in progress or a pool is up; the user types
    `delete` first (`-y` skips the question)."""
    where = client.controller_where()
    if where is None:
        client.down_controller()  # says why there is nothing to take down
        return EXIT_OK
    in_progress = client.in_progress_ids()
    if in_progress:
        shown = ", ".join(map(str, in_progress[:10])) + (" …" if len(in_progress) > 10 else "")
        raise UsageError(f"{len(in_progress)} managed job(s) are in progress ({shown}); cancel them first "
                         "(`skytui jobs cancel -a -y`): taking the controller down would leave them unwatched")
    pools = client.pools()
    if pools:
        raise UsageError(f"pool(s) {', '.join(p.pool.name for p in pools)} are up; take them down first "
                         "(`skytui jobs pool down NAME`)")
    if not args.yes:
        err.print(Text(f"This deletes the controller on {where} with its state and every job's logs."))
        try:
            answer = input("Type `delete` to go on: ")
        except EOFError:
            answer = ""
        if answer.strip() != "delete":
            err.print("Aborted: nothing was deleted.")
            return EXIT_FAILED
    client.down_controller()
    out.print(Text(f"Controller on {where} is down: nothing of skytui is left there."))
    return EXIT_OK


def cmd_controller_logs(client: Client, args: argparse.Namespace) -> int:
    return print_file(client, None, follow=args.follow)


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
