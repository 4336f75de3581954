"""`skytui` on the command line: argument parsing and the headless renderers.

Contracts scripts rely on (DESIGN.md): `--json` prints one JSON document on
stdout and nothing else there; exit codes are 0 SUCCEEDED, 1 any FAILED_*,
2 invalid input or usage (nothing submitted), 3 CANCELLED, 130 Ctrl-C
(detached: the job keeps running). Colour only on a terminal; NO_COLOR is
honoured. This package never imports Textual (the TUI loads only for
`skytui` with no command).

parser.py is the grammar; main.py dispatches by a table to the command
modules (jobs, pools, controller, infra, validate); render.py prints, and
owns the JSON contracts; follow.py prints a job as it goes. Everything a
command reads or does goes through `skytui.client`.
"""

from __future__ import annotations

from skytui.cli.common import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    MAX_NUM_JOBS,
    MAX_WORKERS,
    UsageError,
    exit_code_for,
)
from skytui.cli.main import main
from skytui.cli.parser import build_parser

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "MAX_NUM_JOBS",
    "MAX_WORKERS",
    "UsageError",
    "build_parser",
    "exit_code_for",
    "main",
]
