"""Launch and run limits: how many jobs may provision at once, and be alive at once.

`jobs.controller.max_running` bounds the job coroutines the daemon keeps
alive; the rest stay PENDING in the DB. `max_launching` bounds those
provisioning or in setup. A task waiting for a slot shows why in its status
reason, so nobody has to guess why a job is PENDING.

`EndsFirst` orders work within a wave of jobs ending together: their ends
are recorded before the machines of the first ones are torn down.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

# A wave: at least this many runs ended within the last WAVE_WINDOW_S.
WAVE_MIN_ENDS = 16
WAVE_WINDOW_S = 0.2
# The longest a teardown waits for a wave to pass.
WAVE_MAX_WAIT_S = 2.0


class Scheduler:
    def __init__(self, max_launching: int, max_running: int) -> None:
        self.max_launching = max_launching
        self.max_running = max_running
        self._launch_slots = asyncio.Semaphore(max_launching)

    def free_running_slots(self, alive: int) -> int:
        return max(0, self.max_running - alive)

    @asynccontextmanager
    async def launch_slot(
        self, on_wait: Callable[[str], Awaitable[None]] | None = None
    ) -> AsyncIterator[None]:
        if self._launch_slots.locked() and on_wait is not None:
            await on_wait(f"waiting for a launch slot ({self.max_launching} launching at once)")
        async with self._launch_slots:
            yield


class EndsFirst:
    """When a thousand jobs end together, each one's teardown (closing its
    SSH connection, destroying its machine) competed on the event loop with
    recording the others' ends: the last SUCCEEDED came a second after the
    exits. A teardown after a success now waits while runs are still ending
    in a wave (at most WAVE_MAX_WAIT_S; not at all for a lone end or a
    steady trickle, whose slots it would hold). The job's end is already
    durable; only its machine goes a little later. `release()` (the
    controller stopping) lets every waiter go at once."""

    def __init__(self) -> None:
        self._ends: deque[float] = deque()
        self._released = False

    def ended(self) -> None:
        now = time.monotonic()
        self._ends.append(now)
        self._in_wave(now)  # forgets the ends out of the window

    def _in_wave(self, now: float) -> bool:
        while self._ends and self._ends[0] < now - WAVE_WINDOW_S:
            self._ends.popleft()
        return len(self._ends) >= WAVE_MIN_ENDS

    async def wave_passed(self) -> None:
        deadline = time.monotonic() + WAVE_MAX_WAIT_S
        while not self._released and self._in_wave(now := time.monotonic()) and now < deadline:
            await asyncio.sleep(min(WAVE_WINDOW_S / 2, deadline - now))

    def release(self) -> None:
        self._released = True
