"""What every command shares: exit codes, bounds, usage errors, the
confirmation prompt, and reviving a dead controller.

May touch the client, the consoles of `render` and `engine.status`.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from rich.text import Text

from skytui.cli.render import err
from skytui.client import Client, ControllerLinkError
from skytui.engine.status import TaskStatus

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_INTERRUPTED = 130

# Copies of a job per launch, and workers per pool (the pool spec's own bound).
MAX_NUM_JOBS = 10_000
MAX_WORKERS = 10_000


class UsageError(Exception):
    """Bad flags or names: exit 2, nothing written."""


def exit_code_for(status: TaskStatus) -> int:
    if status is TaskStatus.SUCCEEDED:
        return EXIT_OK
    if status is TaskStatus.CANCELLED:
        return EXIT_CANCELLED
    return EXIT_FAILED


def fail_usage(message: str) -> NoReturn:
    raise UsageError(message)


def confirm(question: str) -> bool:
    """Ask on stdout, read the answer from stdin, terminal or not (as
    SkyPilot's click.confirm does): empty or y/yes is yes; anything else, or
    end of input (a script that pipes nothing, `< /dev/null`), is no."""
    sys.stdout.write(f"{question} [Y/n]: ")
    sys.stdout.flush()
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line or not sys.stdin.isatty():
        sys.stdout.write("\n")  # no terminal echoed the answer: finish the prompt's line
    return bool(line) and line.strip().lower() in ("", "y", "yes")


def aborted(what: str) -> int:
    err.print(f"Aborted: {what}.")
    return EXIT_FAILED


def revive_controller(client: Client) -> None:
    """Jobs go on only with a controller: one that died while it has work is
    started again, and the user is told (on stderr: --json stays clean)."""
    try:
        info = client.revive_controller()
    except ControllerLinkError:
        raise  # an unreachable machine is said once, as the command's error
    except RuntimeError as exc:
        err.print(Text(f"Warning: the controller is not running and would not start: {exc}", style="yellow"))
        return
    if info is not None:
        err.print(f"The controller was not running; restarted it (pid {info.pid}) to carry on with the work in progress.")
