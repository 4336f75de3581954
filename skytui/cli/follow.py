"""Printing a job as it goes (`jobs logs`, `jobs launch`, `--run`) and
printing a log file as it grows (`--controller`, `controller logs`).

The job is followed through `Client.follow_job`, the loop the TUI uses too;
this module only renders each step. May touch the client, `render` and
`common`.
"""

from __future__ import annotations

import sys
import time

from rich.text import Text

from skytui.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    exit_code_for,
    fail_usage,
    revive_controller,
)
from skytui.cli.render import err, event_lines, out, print_outcome, waiting_message
from skytui.client import Client
from skytui.engine.status import TERMINAL


def follow_job(client: Client, job_id: int, *, task_idx: int | None, follow: bool) -> int:
    """Stream a job's logs until it finishes; its exit code. Ctrl-C detaches."""
    last_controller_check = 0.0
    spinner = err.status("") if err.is_terminal else None
    spinner_on = False
    try:
        for step in client.follow_job(job_id, task_idx):
            view = step.view
            if view is None:
                fail_usage(f"no managed job {job_id}")
            lines: list[str | Text] = []  # job output as printed; our own news dimmed
            for item in step.output:
                lines += [item] if isinstance(item, str) else event_lines(item, view)
            status = view.status
            finished = status in TERMINAL
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
                    print_outcome(view)
                return exit_code_for(status) if finished else EXIT_OK
            if follow and time.monotonic() - last_controller_check > 5:
                last_controller_check = time.monotonic()
                revive_controller(client)
            message = waiting_message(view)
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
            # The follow rests between steps (0.2 s).
    except KeyboardInterrupt:
        if spinner is not None and spinner_on:
            spinner.stop()
        err.print(
            f"\nDetached from managed job {job_id}; it keeps running. "
            f"Follow: skytui jobs logs {job_id} · Cancel: skytui jobs cancel {job_id}"
        )
        return EXIT_INTERRUPTED
    raise AssertionError("a followed job's steps end only after a finished one, which returns above")


def print_file(client: Client, job_id: int | None, *, follow: bool, until_job: bool = False) -> int:
    """The controller's log (a job's account of it, with `job_id`), followed
    with `follow` (until the job has ended, with `until_job`)."""
    position = 0
    try:
        while True:
            while data := client.read_controller_log(job_id, position):
                position += len(data)
                sys.stdout.write(data.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            if not follow:
                return EXIT_OK
            if until_job and job_id is not None:
                view = client.job(job_id)
                if view is not None and view.status in TERMINAL:
                    return EXIT_OK
            time.sleep(0.3)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
