"""The engine tests' fixture: `engine`, the Reconciler serving in the test's
event loop on a private SKYTUI_HOME with sim tuned fast (FAST_CONFIG).

It stands on `env` (tests/fixtures/env.py) for the home and its teardown: the
node host and every job process are stopped, and a finished test must have
left no machine behind. The harness itself is tests/fixtures/engine.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fixtures.engine import InProcessEngine
from fixtures.env import FAST_CONFIG, Env

# Well under the suite's default: each test here takes a few seconds.
ENGINE_TEST_TIMEOUT_S = 30


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/engine/" in str(item.path) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(ENGINE_TEST_TIMEOUT_S))


@pytest.fixture
async def engine(env: Env) -> AsyncIterator[InProcessEngine]:
    """A started engine; stopped (jobs left running on their nodes) at the end."""
    env.config(FAST_CONFIG)
    world = InProcessEngine(env.home, env.tmp)
    world.hold_lock()
    await world.start()
    try:
        yield world
    finally:
        await world.close()
