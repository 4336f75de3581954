"""A wave of jobs ending together has every end recorded before the first
ones' machines are torn down; a lone end is torn down at once."""

from __future__ import annotations

import asyncio

from skytui.engine.scheduler import WAVE_MAX_WAIT_S, WAVE_MIN_ENDS, EndsFirst


async def test_a_lone_end_is_torn_down_at_once() -> None:
    gate = EndsFirst()
    gate.ended()
    await asyncio.wait_for(gate.wave_passed(), timeout=0.5)


async def test_a_teardown_waits_while_a_wave_of_ends_goes_on() -> None:
    gate = EndsFirst()
    for _ in range(WAVE_MIN_ENDS):
        gate.ended()
    teardown = asyncio.create_task(gate.wave_passed())
    for _ in range(6):  # the wave goes on for 0.3 s
        await asyncio.sleep(0.05)
        assert not teardown.done()
        for _ in range(WAVE_MIN_ENDS):
            gate.ended()
    # Once the ends stop coming, the teardowns go (long before the cap).
    await asyncio.wait_for(teardown, timeout=WAVE_MAX_WAIT_S / 2)


async def test_a_stopping_controller_lets_every_teardown_go() -> None:
    gate = EndsFirst()
    for _ in range(WAVE_MIN_ENDS * 4):
        gate.ended()
    teardown = asyncio.create_task(gate.wave_passed())
    await asyncio.sleep(0.02)
    assert not teardown.done()
    gate.release()
    await asyncio.wait_for(teardown, timeout=0.5)
