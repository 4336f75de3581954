"""The Textual app: `skytui` with no arguments.

The app owns one live copy of the queue. A thread reads the newest jobs
through the client while Textual starts, so that they are in its first
frame; a thread worker then reads every job, follows the event table by id
and hands the app the jobs that changed, a few times a second; screens
watch `jobs_revision` and redraw from `app.jobs`. The app never writes SQL
and never imports the engine's internals, and quitting it never stops a job: the controller daemon
keeps running on its own.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

from textual import events, work
from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import get_current_worker

from skytui.client import Client, JobView, QueueUpdate
from skytui.config import ConfigError, configured_keymap
from skytui.engine.status import TERMINAL_NAMES
from skytui.screens.base import SkyAppBase
from skytui.screens.jobs import JobsScreen
from skytui.widgets.controller_banner import UP, ControllerState

if TYPE_CHECKING:
    from skytui.screens.job import JobScreen

Clock = Callable[[], float]
FIRST_PAINT_JOBS = 200
FIRST_ROWS_WAIT_S = 0.1
"""At mount, the app waits this long at most for the newest jobs, read since
it was made: then they are in its first frame; later, the feed shows them."""
FIRST_FRAME_WAIT_S = 0.5
"""At most this long, the feed (reading every job) and the controller's
supervisor (its first look) wait for the first rows' frame."""
JOB_SCREEN = "job"
GC_SPACING = 1.0
"""Seconds between the app's own full garbage collections (`collect_garbage`)."""
GC_QUIET_S = 0.3
"""No key for this long: a pause between bursts of keys, when a collection is due."""
GC_AT_THE_LATEST = 5.0
"""A collection is done after this many seconds even if keys keep coming."""
NO_AUTOMATIC_FULL_GC = 1 << 30
"""A third GC threshold Python never reaches: it leaves full collections to the app."""
SUPERVISE_EVERY_S = 2.0
"""How often the app checks that the controller lives (a lock probe: cheap)."""

def _pools_screen() -> Screen[Any]:
    """The pools screen, imported when first shown: the first frame is the queue's."""
    from skytui.screens.pools import PoolsScreen

    return PoolsScreen()


class SkyTUI(SkyAppBase):
    """Managed jobs at the keyboard."""

    CSS_PATH = "app.tcss"
    TITLE = "skytui"
    MODES = {"jobs": JobsScreen, "pools": _pools_screen}
    DEFAULT_MODE = "jobs"
    BINDINGS = [
        Binding("ctrl+c", "quit", "Quit", priority=True, show=False, id="app.quit"),
        Binding("question_mark", "toggle_help", "Help", id="app.help"),
        Binding("colon", "command_prompt", ":command", id="app.command"),
    ]

    # `jobs_revision` and `controller`, the reactives the screens watch, are
    # declared on SkyAppBase, as the screens know the app.

    def __init__(
        self, client: Client | None = None, *, clock: Clock = time.time, poll_interval: float = 0.25,
        follow: bool = True, supervise: bool | None = None,
    ) -> None:
        super().__init__()
        self.client = client or Client()
        self._wall_clock = clock
        self.poll_interval = poll_interval
        self._follow = follow
        self._supervise = follow if supervise is None else supervise
        """Restart a dead controller that has work (off for a frozen, fixed-clock app)."""
        self.jobs: dict[int, JobView] = {}
        """Every job the app knows, by id: the queue's source of truth on screen."""
        self.last_changed: frozenset[int] | None = None
        """The jobs the last update touched; None after a full snapshot."""
        self.active_job_ids: set[int] = set()
        """Jobs not finished yet: what ticks, and what the header counts."""
        self.loaded = False
        self._queue_updates: Iterator[QueueUpdate] = self.client.follow_queue(
            first_paint=FIRST_PAINT_JOBS, poll_s=self.poll_interval, follow=self._follow
        )
        self._first_update: list[QueueUpdate] = []
        self._first_error: Exception | None = None
        # Started now, it reads while Textual parses its CSS and composes.
        self._first_read = threading.Thread(target=self._read_first_update, name="skytui first rows", daemon=True)
        self._first_read.start()
        self._first_rows_shown = threading.Event()
        """Set once the first rows' frame is out: until then, the app's threads
        leave the GIL to it (the first full read, SQLAlchemy's import)."""
        self._job_screen: JobScreen | None = None
        """The job view, kept installed and reused (`open_job`)."""
        self._input_at = 0.0
        """When the last key arrived (monotonic clock)."""
        self._collected_at = time.monotonic()
        """When `collect_garbage` last collected (monotonic clock). A new
        process has little garbage: none is collected in its first second,
        the one its first rows are drawn in."""
        self._gc_waiting = False
        """A collection waits for a pause in the keys (`collect_garbage`)."""
        self._gc_thresholds = gc.get_threshold()
        """Python's GC thresholds before the app changed them, restored at exit."""

    def on_mount(self) -> None:
        try:
            self.set_keymap(configured_keymap(self.client.paths))
            # Said to the footer once the app is mounted: before, Textual tells nobody.
            self.call_later(self.refresh_bindings)
        except ConfigError as exc:
            self.notify(f"config.yaml: {exc}; using the default keys", severity="error")
        self._first_read.join(FIRST_ROWS_WAIT_S)
        if self._first_update:
            self._show_first(self._first_update.pop())
        self.follow_queue()
        if self._supervise:
            self.supervise_controller()
        # Full collections are the app's to schedule (`collect_garbage`);
        # Python keeps collecting the young generations on its own.
        self._gc_thresholds = gc.get_threshold()
        young, middle, _old = self._gc_thresholds
        gc.set_threshold(young, middle, NO_AUTOMATIC_FULL_GC)
        self.set_interval(GC_SPACING, self._collect_garbage_when_idle)

    def on_unmount(self) -> None:
        gc.set_threshold(*self._gc_thresholds)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self._input_at = time.monotonic()
        await super().on_event(event)

    def collect_garbage_after_frame(self, screen: Screen[Any]) -> None:
        """For a screen that just handled a key: a collection, once there is a pause."""
        self.collect_garbage()

    def collect_garbage(self) -> None:
        """A full garbage collection (if one is due), at a moment no key is
        waiting for a frame: now if no key came for `GC_QUIET_S`, else once
        none has for that long.

        Textual's rendered Strips keep themselves in their own caches, so every
        repaint leaves reference cycles that only the cyclic GC frees. Left to
        Python, a full collection comes every few seconds, 10-50 ms of work at
        once, at whichever allocation crosses the threshold: most likely while
        a key is being answered, since that is when the app allocates. Python's
        automatic ones are off (`on_mount`). Right after the frame that answers
        a key is still too soon: typing or holding a key sends the next one
        30-130 ms later, and `enter` has the job's details to show; so the
        screens ask after a key and the collection waits for a pause, and a
        timer covers quiet times.
        """
        if time.monotonic() - self._input_at >= GC_QUIET_S:
            self._collect()
        elif not self._gc_waiting:
            self._gc_waiting = True
            self.set_timer(GC_QUIET_S, self._collect_if_quiet)

    def _collect_if_quiet(self) -> None:
        self._gc_waiting = False
        if time.monotonic() - self._input_at >= GC_QUIET_S:
            self._collect()
        # Otherwise keys keep coming: the next one asks again, and the timer
        # below collects at the latest GC_AT_THE_LATEST after the last one.

    def _collect(self) -> None:
        now = time.monotonic()
        if now - self._collected_at < GC_SPACING:
            return
        self._collected_at = now
        gc.collect()

    def _collect_garbage_when_idle(self) -> None:
        now = time.monotonic()
        if now - self._input_at > GC_SPACING or now - self._collected_at > GC_AT_THE_LATEST:
            self._collect()

    def clock(self) -> float:
        """Now, for everything shown: while the controller is out, the moment
        it was found so, so that no RUNNING clock ticks on as if it were live."""
        now = self._wall_clock()
        state = self.controller
        return min(now, state.since) if state.is_out and state.since is not None else now

    @work(thread=True, exclusive=True, group="controller", name="controller supervisor")
    def supervise_controller(self) -> None:
        """At start and every few seconds: a controller that died while it has
        work is started again, and the screens say so meanwhile."""
        worker = get_current_worker()
        # A restart can wait for the first rows: the look may load SQLAlchemy.
        self._first_rows_shown.wait(FIRST_FRAME_WAIT_S)
        while not worker.is_cancelled and self.is_running:
            state = self._check_controller(self.controller)
            if state != self.controller and not worker.is_cancelled:
                self.call_from_thread(self._controller_changed, state)
            # In short naps: quitting waits for this thread to notice.
            deadline = time.monotonic() + SUPERVISE_EVERY_S
            while not worker.is_cancelled and time.monotonic() < deadline:
                time.sleep(0.05)

    def _check_controller(self, last: ControllerState) -> ControllerState:
        """One look (in the supervisor's thread): the state to show now."""
        client = self.client
        if client.controller_info().running:
            return UP
        if not client.has_unfinished_work():
            return ControllerState("idle")
        if not self.is_running:
            return last  # quitting: never start a controller on the way out
        since = last.since if last.is_out else self._wall_clock()
        if last.phase != "down":  # a restart that failed stays shown, with its reason, while it is retried
            self.call_from_thread(self._controller_changed, ControllerState("restarting", since))
        try:
            info = client.revive_controller()
        except RuntimeError as exc:
            return ControllerState("down", since, str(exc))
        if info is not None:
            self.call_from_thread(
                self.notify, f"The controller had stopped; restarted it (pid {info.pid}).", title="Controller",
            )
        return UP

    def _controller_changed(self, state: ControllerState) -> None:
        # The screens' one-second ticks read `clock()`: durations freeze and thaw with it.
        self.controller = state

    def _read_first_update(self) -> None:
        try:
            self._first_update.extend(islice(self._queue_updates, 1))
        except Exception as exc:  # the feed's worker raises it, where Textual reports a worker's failure
            self._first_error = exc

    def _show_first(self, update: QueueUpdate) -> None:
        self._apply(update.views, update.full)
        self.call_after_refresh(self._first_rows_shown.set)

    @work(thread=True, exclusive=True, group="queue-feed", name="queue feed")
    def follow_queue(self) -> None:
        """The newest jobs (if mounting did not wait for them), then every
        job once they are on screen, then changes by event id; runs until the
        app exits."""
        worker = get_current_worker()
        self._first_read.join()
        if self._first_error is not None:
            raise self._first_error
        if self._first_update:  # slower than FIRST_ROWS_WAIT_S: a remote controller
            self.call_from_thread(self._show_first, self._first_update.pop())
        # Read every job only once those first rows are on screen: the read
        # holds the GIL for a while, and would delay their frame.
        self._first_rows_shown.wait(FIRST_FRAME_WAIT_S)
        for update in self._queue_updates:
            if worker.is_cancelled:
                return
            if update.views or update.full:
                self.call_from_thread(self._apply, update.views, update.full)

    def _apply(self, views: Iterable[JobView], full: bool) -> None:
        if full:
            self.jobs = {view.job.id: view for view in views}
            self.active_job_ids = {i for i, v in self.jobs.items() if v.job.status not in TERMINAL_NAMES}
            self.last_changed = None
            self.loaded = True
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
        if full and self._job_screen is None:
            self.call_after_refresh(self._prepare_job_screen)
        if full:
            # Ten thousand jobs, and the screens' rows and caches just built
            # from them (the watchers above ran synchronously), are a big,
            # long-lived heap: without this, every full collection walks it
            # and stalls a frame for 50-150 ms. They hold no reference cycles;
            # refcounting still frees them.
            gc.freeze()

    def _prepare_job_screen(self) -> None:
        """Compose the job view before the first `enter` needs it, after the
        queue's first frame: pushed and popped in one go, so it is mounted
        and styled but never shown. The first job opened is then as quick to
        appear as the next ones."""
        if self._job_screen is not None or not self.jobs or len(self.screen_stack) != 1 or not self.is_running:
            return
        from skytui.screens.job import JobScreen

        screen = self._job_screen = JobScreen(next(iter(self.jobs)))
        self.install_screen(screen, name=JOB_SCREEN)
        self.push_screen(screen)
        self.pop_screen()

    def open_job(self, job_id: int, task_idx: int | None = None) -> None:
        """Push the job view for `job_id`, reusing the one JobScreen.

        Composing and mounting a fresh screen (a dozen widgets, their styles,
        the footer's keys) costs more than a key press's whole frame budget;
        re-pointing a kept one costs a repaint.
        """
        from skytui.screens.job import JobScreen

        screen = self._job_screen
        if screen is None:
            screen = self._job_screen = JobScreen(job_id, task_idx)
            self.install_screen(screen, name=JOB_SCREEN)
        elif self.is_on_a_stack(screen):
            screen = JobScreen(job_id, task_idx)  # `:job N` from the job view: a second one
        else:
            screen.show_job(job_id, task_idx)
        self.push_screen(screen)

    def is_on_a_stack(self, screen: Screen[Any]) -> bool:
        """True while `screen` is pushed, in any mode (not only the current one)."""
        # Textual has no public view of the other modes' stacks.
        return any(screen in stack for stack in self._screen_stacks.values())

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
            self.open_job(int(command.argument))
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
        """`?`: the keys of the screen shown, with their ids (`screens/help.py`); again: closed."""
        from skytui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        else:
            self.push_screen(HelpScreen(self.screen))


def run_tui(client: Client | None = None) -> int:
    SkyTUI(client).run()
    return 0
