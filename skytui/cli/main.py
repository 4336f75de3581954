"""`skytui`'s entry point: parse, pick the command from a table, run it,
and turn what it raised into the exit code.

Owns `main` and `COMMANDS`; may touch the client, every command module,
`common`, `render`, and (for `skytui` alone) the TUI, loaded lazily.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.text import Text

from skytui.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    fail_usage,
    revive_controller,
)
from skytui.cli.controller import (
    cmd_controller_down,
    cmd_controller_logs,
    cmd_controller_start,
    cmd_controller_status,
    cmd_controller_stop,
)
from skytui.cli.cost import cmd_cost
from skytui.cli.infra import cmd_check, cmd_sim_preempt, cmd_sim_stockout
from skytui.cli.jobs import cmd_cancel, cmd_launch, cmd_logs, cmd_queue
from skytui.cli.parser import build_parser
from skytui.cli.pools import cmd_pool_apply, cmd_pool_down, cmd_pool_status
from skytui.cli.render import err
from skytui.cli.validate import cmd_validate
from skytui.client import Client, ControllerLinkError, StoreError, open_client
from skytui.config import ConfigError, restrict_umask

Handler = Callable[[Client, argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    run: Handler
    revive_first: bool = False
    """Start a controller that died with work first. Not for a launch, which
    starts it when it submits, nor a cancel, which starts it when something is
    left for it to stop: reviving it first would only let it start the very
    jobs about to be cancelled."""


def _launch(client: Client, args: argparse.Namespace) -> int:
    return cmd_launch(client, args.file, args, follow=True)


# Keyed by the command's words, as `command_path` reads them from the parsed arguments.
COMMANDS: dict[tuple[str, ...], Command] = {
    ("jobs", "launch"): Command(_launch),
    ("jobs", "queue"): Command(cmd_queue, revive_first=True),
    ("jobs", "logs"): Command(cmd_logs, revive_first=True),
    ("jobs", "cancel"): Command(cmd_cancel),
    ("jobs", "pool", "apply"): Command(cmd_pool_apply, revive_first=True),
    ("jobs", "pool", "down"): Command(cmd_pool_down, revive_first=True),
    ("jobs", "pool", "status"): Command(cmd_pool_status, revive_first=True),
    ("controller", "start"): Command(cmd_controller_start),
    ("controller", "stop"): Command(cmd_controller_stop),
    ("controller", "status"): Command(cmd_controller_status),
    ("controller", "logs"): Command(cmd_controller_logs),
    ("controller", "down"): Command(cmd_controller_down),
    ("check",): Command(cmd_check),
    ("cost",): Command(cmd_cost),
    ("sim", "preempt"): Command(cmd_sim_preempt),
    ("sim", "stockout"): Command(cmd_sim_stockout),
    ("validate",): Command(cmd_validate),
}


def command_path(args: argparse.Namespace) -> tuple[str, ...]:
    """The command's words: `jobs pool apply` is ("jobs", "pool", "apply").
    Each subparser stores its choice as `<parent word>_command`."""
    path = [args.command]
    while (word := getattr(args, f"{path[-1]}_command", None)) is not None:
        path.append(word)
    return tuple(path)


def _input_error_message(exc: ValueError) -> str | None:
    """What to print for an invalid YAML or flag (SpecError) or a request no
    infra can run (InfeasibleError); None for any other ValueError. Their
    modules load only in the commands that read a spec, so only such a
    command can have raised one: a module not loaded means not one of them."""
    spec = sys.modules.get("skytui.spec")
    if spec is not None and isinstance(exc, spec.SpecError):
        return f"Error: {exc}"
    planning = sys.modules.get("skytui.client.planning")  # the client's one door to the optimizer
    if planning is not None and isinstance(exc, planning.InfeasibleError):
        return f"Error: infeasible: {exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # a process of its own (not a caller's in-process use): files it makes are owner-only
        restrict_umask()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        client = open_client()
    except ConfigError as exc:
        err.print(Text(f"Error: {exc}"))
        return EXIT_USAGE
    try:
        if args.run:
            if args.command:
                fail_usage("--run takes a file and launch flags, not a subcommand")
            return cmd_launch(client, args.run, args, follow=True)
        if args.command is None:
            from skytui.app import run_tui  # Textual loads only for the TUI

            return run_tui(client)
        command = COMMANDS.get(command_path(args))
        if command is None:
            parser.error("unknown command")
        if command.revive_first:
            revive_controller(client)
        code = command.run(client, args)
        for notice in client.notices():
            err.print(Text(f"Note: {notice}.", style="yellow"))
        return code
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
    except ControllerLinkError as exc:  # a remote controller's machine: unreachable, or not set up
        err.print(Text(f"Error: {exc}"))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        client.close()
    return EXIT_OK
