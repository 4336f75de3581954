"""The `aws` infra (being built: issue 6)."""

from __future__ import annotations

from skytui.clouds.base import Cloud, InfraStatus
from skytui.config import Config, Paths


def detect(paths: Paths, config: Config) -> InfraStatus:
    return InfraStatus("aws", False, "not available yet in this build", "")


def make(paths: Paths, config: Config) -> Cloud:
    raise NotImplementedError
