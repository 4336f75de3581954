"""The controller's notifier: tells config.yaml's `jobs.notify` sinks of
the news in the events table (notify_events: which events, what is said;
notify_sinks: delivering one, with retries).

Event-sourced and restart-safe: each sink has its own cursor, the last event
id it is done with, kept in the DB's `meta` table (`notify.cursor.<key>`),
so a restarted controller carries on where the last one stopped, neither
repeating what was delivered nor skipping what happened while it was down.
Only the event in flight when a controller is killed can be sent twice; its
`id` lets a receiver drop the repeat. A sink seen for the first time starts
at the newest event: it is not sent the history.

Nothing here blocks the controller: each sink is its own asyncio task, with
a store lane of its own, reading events in pages (`PAGE`) into a bounded
queue that one deliverer empties in order, while a saver writes the cursor
behind it (one write at a time, however many events went by). A dead sink holds up only itself:
once a notification has given up on it, the next ones get one try each
until one gets through, so it does not fall ever further behind.

Touches: the events, jobs, tasks and attempts it reads; `meta` (its cursors);
the controller log (one line per notification that could not be delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from skytui.config import NotifySink
from skytui.engine.notify_events import Notification, notifications_for
from skytui.engine.notify_sinks import TRIES, Sink, deliver
from skytui.engine.store import AsyncStore

log = logging.getLogger("skytui.notify")

POLL_S = 0.5
PAGE = 200
QUEUE_SIZE = 64  # notifications read ahead of delivery, per sink
RETRY_S = 2.0  # after a DB error
CURSOR_KEY = "notify.cursor."


class Notifier:
    """Every configured sink, each on its own task."""

    def __init__(self, store: AsyncStore, sinks: list[NotifySink]) -> None:
        self.store = store
        self.sinks = [Sink(config) for config in sinks]

    async def run(self, stopping: asyncio.Event) -> None:
        """Until `stopping`; the engine's store stays open meanwhile."""
        if not self.sinks:
            return
        log.info("notifications go to %s", ", ".join(sink.label for sink in self.sinks))
        lane = self.store.lane()  # its reads never queue behind the jobs' calls, nor theirs behind its
        tasks = [asyncio.create_task(SinkRunner(lane, sink).run(stopping), name=f"notify-{sink.key}")
                 for sink in self.sinks]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=1.0)
            lane.close()


class SinkRunner:
    """One sink: a reader that turns new events into notifications, and a
    deliverer that sends them in order and moves the durable cursor."""

    def __init__(self, store: AsyncStore, sink: Sink) -> None:
        self.store = store
        self.sink = sink
        self.queue: asyncio.Queue[tuple[int, Notification | None]] = asyncio.Queue(QUEUE_SIZE)
        self.down = False  # the last notification gave up: the next get one try
        self.progress = asyncio.Event()  # `done` moved: a save is due
        self.done = self.saved = 0  # the last event delivered (or not news); the last saved

    @property
    def cursor_key(self) -> str:
        return CURSOR_KEY + self.sink.key

    async def run(self, stopping: asyncio.Event) -> None:
        cursor = await self._load_cursor(stopping)
        if cursor is None:
            return
        self.saved = self.done = cursor
        tasks = [
            asyncio.create_task(self._read(cursor, stopping), name=f"notify-read-{self.sink.key}"),
            asyncio.create_task(self._deliver(), name=f"notify-send-{self.sink.key}"),
            asyncio.create_task(self._save(), name=f"notify-save-{self.sink.key}"),
        ]
        try:
            await stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=1.0)
            if self.done != self.saved:  # a stop, unlike a kill, repeats nothing
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.store.set_meta(self.cursor_key, str(self.done)), 1.0)

    async def _load_cursor(self, stopping: asyncio.Event) -> int | None:
        while not stopping.is_set():
            try:
                stored = await self.store.meta_value(self.cursor_key)
                if stored is not None:
                    return int(stored)
                cursor = await self.store.last_event_id()
                await self.store.set_meta(self.cursor_key, str(cursor))
                return cursor
            except Exception:  # noqa: BLE001 - a DB hiccup at start-up: try again
                log.exception("notify: %s: could not read its cursor; retrying", self.sink.label)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stopping.wait(), RETRY_S)
        return None

    async def _read(self, cursor: int, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                events = await self.store.events(after_id=cursor, limit=PAGE)
                found = await notifications_for(self.store, events, time.time()) if events else {}
            except Exception:  # noqa: BLE001 - a DB hiccup must not end notifications
                log.exception("notify: reading events failed; retrying")
                events, found = [], {}
            for event in events:
                notification = found.get(event.id)
                wanted = notification if notification is not None and self.sink.wants(notification) else None
                await self.queue.put((event.id, wanted))  # a full queue holds up this sink alone
                cursor = event.id
            if len(events) < PAGE:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stopping.wait(), POLL_S)

    async def _deliver(self) -> None:
        while True:
            event_id, notification = await self.queue.get()
            if notification is not None:
                try:
                    await self._send(notification)
                except Exception:  # noqa: BLE001 - one notification's bug must not end the rest
                    log.exception("notify: %s: event %s", self.sink.label, event_id)
            self.done = event_id
            # Events with nothing to send only move the cursor: saved once the
            # queue runs dry, so a burst of events is not a burst of writes.
            if notification is not None or self.queue.empty():
                self.progress.set()

    async def _send(self, notification: Notification) -> None:
        error = await deliver(self.sink, notification, tries=1 if self.down else TRIES)
        self.down = error is not None
        if error is not None:
            log.warning("notify: %s: %s of job %s (event %s) not delivered: %s",
                        self.sink.label, notification.event, notification.job, notification.event_id, error)

    async def _save(self) -> None:
        """Writes the cursor whenever delivery moved it, one write at a time:
        while one commits, progress gathers for the next, so a busy DB costs
        the deliverer nothing and the engine's commits meet one small write
        at most. A `kill -9` between a delivery and its save repeats it."""
        while True:
            await self.progress.wait()
            self.progress.clear()
            done = self.done
            if done == self.saved:
                continue
            try:
                await self.store.set_meta(self.cursor_key, str(done))
                self.saved = done
            except Exception:  # noqa: BLE001 - the next save carries it
                log.exception("notify: %s: could not save its cursor; retrying", self.sink.label)
                await asyncio.sleep(RETRY_S)
                self.progress.set()
