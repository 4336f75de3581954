"""The end-to-end tests' own fixture: `fast_env`, an Env whose config makes
recovery waits and sim provisioning quick. Everything else they use (env,
home, the sshd, moto and PostgreSQL servers) comes from tests/fixtures/."""

from __future__ import annotations

import pytest
from fixtures.env import FAST_CONFIG, Env


@pytest.fixture
def fast_env(env: Env) -> Env:
    """`env` with FAST_CONFIG: for recovery, sim and pool tests."""
    env.config(FAST_CONFIG)
    return env
