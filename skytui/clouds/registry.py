"""Which infra is enabled, and the Cloud object for each."""

from __future__ import annotations

from skytui.clouds.base import Cloud
from skytui.clouds.local import LocalCloud
from skytui.clouds.sim import SimCloud
from skytui.config import Config, Paths


def enabled_clouds(paths: Paths, config: Config) -> dict[str, Cloud]:
    clouds: dict[str, Cloud] = {}
    if config.infra.local.enabled:
        clouds["local"] = LocalCloud(paths, provision_delay_s=config.infra.local.provision_delay_s)
    # Always present, so `--infra sim` works and sim machines are swept; it
    # offers nothing to a task that does not name it unless enabled in config.
    clouds["sim"] = SimCloud(paths, config.infra.sim)
    return clouds
