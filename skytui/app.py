"""The Textual app: `skytui` with no arguments.

The app owns one live copy of the queue. A thread worker reads a snapshot
through the client, then follows the event table by id and hands the app the
jobs that changed, a few times a second; screens watch `jobs_revision` and
redraw from `app.jobs`. The app never writes SQL and never imports the
engine's internals, and quitting it never stops a job: the controller daemon
keeps running on its own.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import get_current_worker

from skytui.client import Client, JobView
from skytui.config import ConfigError, load_config
from skytui.engine.status import TERMINAL_NAMES
from skytui.screens.jobs import JobsScreen
from skytui.screens.pools import PoolsScreen

Clock = Callable[[], float]
FIRST_PAINT_JOBS = 200


class SkyTUI(App[None]):
    """Managed jobs at the keyboard."""

    CSS_PATH = "app.tcss"
    TITLE = "skytui"
    MODES = {"jobs": JobsScreen, "pools": PoolsScreen}
    DEFAULT_MODE = "jobs"
    BINDINGS = [
        Binding("ctrl+c", "quit", "Quit", priority=True, show=False, id="app.quit"),
        Binding("question_mark", "toggle_help", "Help", id="app.help"),
        Binding("colon", "command_prompt", ":command", id="app.command"),
    ]

    jobs_revision: reactive[int] = reactive(0, init=False)
    """Bumped whenever `jobs` changed; screens watch it."""

    def __init__(
        self, client: Client | None = None, *, clock: Clock = time.time, poll_interval: float = 0.25,
        follow: bool = True,
    ) -> None:
        super().__init__()
        self.client = client or Client()
        self.clock = clock
        self.poll_interval = poll_interval
        self._follow = follow
        self.jobs: dict[int, JobView] = {}
        """Every job the app knows, by id: the queue's source of truth on screen."""
        self.last_changed: frozenset[int] | None = None
        """The jobs the last update touched; None after a full snapshot."""
        self.active_job_ids: set[int] = set()
        """Jobs not finished yet: what ticks, and what the header counts."""
        self.loaded = False

    def on_mount(self) -> None:
        try:
            self.set_keymap(load_config(self.client.paths).tui.keymap)
        except ConfigError as exc:
            self.notify(f"config.yaml: {exc}; using the default keys", severity="error")
        self.follow_queue()

    @work(thread=True, exclusive=True, group="queue-feed", name="queue feed")
    def follow_queue(self) -> None:
        """Snapshot, then changes by event id; runs until the app exits."""
        worker = get_current_worker()
        # The newest jobs first, so the queue paints at once; then all of them.
        # Changes are followed from the first read's event id: nothing is missed.
        views, last_event = self.client.snapshot(limit=FIRST_PAINT_JOBS)
        self.call_from_thread(self._apply, views, True)
        if len(views) == FIRST_PAINT_JOBS and not worker.is_cancelled:
            everything, _ = self.client.snapshot()
            self.call_from_thread(self._apply, everything, True)
        while self._follow and not worker.is_cancelled:
            time.sleep(self.poll_interval)
            changed, last_event = self.client.changes(last_event)
            if changed and not worker.is_cancelled:
                self.call_from_thread(self._apply, changed, False)

    def _apply(self, views: Iterable[JobView], full: bool) -> None:
        if full:
            self.jobs = {view.job.id: view for view in views}
            self.active_job_ids = {i for i, v in self.jobs.items() if v.job.status not in TERMINAL_NAMES}
            self.last_changed = None
            self.loaded = True
            # Ten thousand jobs are a big, long-lived heap: without this, every
            # full collection walks it and stalls a frame for 50-100 ms. The
            # rows hold no reference cycles; refcounting still frees them.
            gc.freeze()
        else:
            changed = set()
            for view in views:
                self.jobs[view.job.id] = view
                changed.add(view.job.id)
                if view.job.status in TERMINAL_NAMES:
                    self.active_job_ids.discard(view.job.id)
                else:
                    self.active_job_ids.add(view.job.id)
            self.last_changed = frozenset(changed)
        self.jobs_revision += 1

    def action_command_prompt(self) -> None:
        from skytui.screens.command import CommandPrompt

        self.push_screen(CommandPrompt(), self.run_command)

    def run_command(self, text: str | None) -> None:
        from skytui.screens.command import CommandError, parse_command

        if not text:
            return
        try:
            command = parse_command(text)
        except CommandError as exc:
            self.notify(str(exc), severity="error")
            return
        if command.verb in ("jobs", "pools"):
            self.switch_mode(command.verb)
        elif command.verb == "quit":
            self.exit()
        elif command.verb == "job":
            from skytui.screens.job import JobScreen

            self.push_screen(JobScreen(int(command.argument)))
        elif command.verb == "logs":
            from skytui.screens.logs import LogsScreen

            self.push_screen(LogsScreen(int(command.argument)))
        elif command.verb == "launch":
            from skytui.screens.launch import LaunchScreen

            self.push_screen(LaunchScreen(command.argument))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette (ctrl+p) reaches every action of the screen, not only the app's."""
        yield from super().get_system_commands(screen)
        seen: set[str] = set()
        for _key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.action in seen:
                continue
            seen.add(binding.action)
            node = active.node
            yield SystemCommand(
                binding.description, f"{binding.key_display or binding.key}",
                lambda node=node, action=binding.action: self.run_action(action, node),
            )

    def action_toggle_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()


def run_tui() -> int:
    SkyTUI().run()
    return 0
