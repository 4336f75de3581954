"""Launch and run limits: how many jobs may provision at once, and be alive at once.

`jobs.controller.max_running` bounds the job coroutines the daemon keeps
alive; the rest stay PENDING in the DB. `max_launching` bounds those
provisioning or in setup. A task waiting for a slot shows why in its status
reason, so nobody has to guess why a job is PENDING.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager


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
