"""The `controller` commands: start, stop, status, logs.

May touch the client, `render`, `common` and `follow` (to print its log).
"""

from __future__ import annotations

import argparse

from skytui.cli.common import EXIT_FAILED, EXIT_OK
from skytui.cli.follow import print_file
from skytui.cli.render import err, out
from skytui.client import Client


def cmd_controller_start(client: Client, args: argparse.Namespace) -> int:
    info = client.ensure_controller()
    out.print(f"Controller running (pid {info.pid}).")
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
    info = client.controller_info()
    out.print(f"Controller running (pid {info.pid})." if info.running else "Controller is not running.")
    return EXIT_OK


def cmd_controller_logs(client: Client, args: argparse.Namespace) -> int:
    return print_file(client.controller_log_path(), follow=args.follow)


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
