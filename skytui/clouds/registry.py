"""Which infra is enabled, and the Cloud object for each."""

from __future__ import annotations

from skytui.clouds.base import Cloud
from skytui.clouds.local import LocalCloud
from skytui.config import Config, Paths


def enabled_clouds(paths: Paths, config: Config) -> dict[str, Cloud]:
    clouds: dict[str, Cloud] = {}
    if config.infra.local.enabled:
        clouds["local"] = LocalCloud(paths, provision_delay_s=config.infra.local.provision_delay_s)
    return clouds
