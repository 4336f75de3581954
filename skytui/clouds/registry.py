"""Which infra is enabled, why (or why not), and the Cloud object for each.

Provider modules (ssh, aws, gcp, kubernetes) are imported only when asked
about, and import their SDKs lazily, so a missing SDK turns that infra off
with a fix instead of breaking skytui. Each of them has:

    detect(paths, config) -> InfraStatus   # fast, no provisioning
    make(paths, config) -> Cloud           # only called when detect said enabled
"""

from __future__ import annotations

import importlib
import logging

from skytui.clouds.base import Cloud, InfraStatus
from skytui.clouds.local import LocalCloud
from skytui.clouds.sim import SimCloud
from skytui.config import Config, Paths

log = logging.getLogger(__name__)

PROVIDERS = ("ssh", "aws", "gcp", "kubernetes")


def _provider(name: str) -> object:
    return importlib.import_module(f"skytui.clouds.{name}")


def detect_provider(name: str, paths: Paths, config: Config) -> InfraStatus:
    try:
        status: InfraStatus = _provider(name).detect(paths, config)  # type: ignore[attr-defined]
    except Exception as exc:
        log.exception("checking %s failed", name)
        return InfraStatus(name, False, f"checking {name} failed: {type(exc).__name__}: {exc}",
                           "see the controller log")
    return status


def infra_statuses(paths: Paths, config: Config) -> list[InfraStatus]:
    """Every infra, enabled or not, with the reason: `skytui check`."""
    local = config.infra.local
    statuses = [
        InfraStatus("local", local.enabled, "this machine" if local.enabled else "turned off in config.yaml",
                    "" if local.enabled else "set infra.local.enabled: true"),
        InfraStatus("sim", True, "enabled for every task" if config.infra.sim.enabled
                    else "opt-in: used only by tasks that ask for infra: sim"),
    ]
    statuses += [detect_provider(name, paths, config) for name in PROVIDERS]
    return statuses


def enabled_clouds(paths: Paths, config: Config, statuses: list[InfraStatus] | None = None) -> dict[str, Cloud]:
    """The Cloud of every enabled infra; `statuses` from infra_statuses() spare detecting again."""
    enabled = {status.name: status.enabled for status in statuses or []}
    clouds: dict[str, Cloud] = {}
    if config.infra.local.enabled:
        clouds["local"] = LocalCloud(paths, provision_delay_s=config.infra.local.provision_delay_s)
    # Always present, so `--infra sim` works and sim machines are swept; it
    # offers nothing to a task that does not name it unless enabled in config.
    clouds["sim"] = SimCloud(paths, config.infra.sim)
    for name in PROVIDERS:
        if name not in enabled:
            enabled[name] = detect_provider(name, paths, config).enabled
        if enabled[name]:
            try:
                clouds[name] = _provider(name).make(paths, config)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - one broken provider must not take the others down
                log.exception("%s is enabled but could not be set up", name)
    return clouds
