"""The `sim` infra: the shipped catalogs' clouds, regions and prices, simulated.

Rehearse recovery, failover and pools on a laptop: sim offers every instance
type of the AWS and GCP catalogs at their real prices, in their real regions
(written `sim:aws/us-east-1`), and provisions nodes that are sandboxes of the
local node host, so jobs really run. What the clouds would do to you is
configurable (config.yaml `infra.sim`) and on demand:

* capacity per region and market (nodes alive at once), and stock-outs
  (config, or `skytui sim stockout REGION on|off` at run time): provisioning
  past it raises CapacityError, as a cloud answers "insufficient capacity";
* spot preemptions at a rate per node-hour: the reclaim time is drawn at
  provisioning and written in the node's marker, and the node host destroys
  the node when it comes, whether or not anyone is watching;
* `skytui sim preempt JOB_ID` reclaims a job's machine at once; with
  `--notice S`, its running phases get the notice signal first and the
  machine goes S seconds later, as a spot interruption notice gives.

Sim is opt-in: unless enabled in config, it offers nothing to a task that
does not ask for it (`--infra sim`). Like every cloud, it knows nothing of
the engine.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skytui.clouds.base import (
    Accepted,
    CapacityError,
    CloudError,
    ClusterHandle,
    InstanceOffer,
)
from skytui.clouds.catalog import load_catalog, matching_entries, price_of
from skytui.clouds.sandbox_cloud import SandboxCloud
from skytui.config import Paths, SimInfraConfig

if TYPE_CHECKING:
    from skytui.spec import Resources

# A spot reclaim gives the job a moment to see SIGTERM (AWS gives two minutes;
# a rehearsal need not wait that long).
PREEMPT_GRACE_S = 1.0


# ------------------------------------------------------------ run-time state


def read_stockouts(state_file: Path) -> set[str]:
    """Regions made to run dry with `skytui sim stockout`."""
    try:
        data = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return set()
    return {str(region) for region in data.get("stockouts", [])}


def set_stockout(state_file: Path, region: str, on: bool) -> set[str]:
    """Turn a stock-out on or off; `region` may be "all". Returns the new set."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    lock_path = state_file.with_suffix(".lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two `skytui sim` calls never lose an update
        stockouts = read_stockouts(state_file)
        if on:
            stockouts.add(region)
        elif region == "all":
            stockouts.clear()
        else:
            stockouts.discard(region)
        tmp = state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stockouts": sorted(stockouts)}))
        os.replace(tmp, state_file)
    return stockouts


def sim_regions(clouds: Sequence[str]) -> list[str]:
    """Every simulated region, as `aws/us-east-1`."""
    found = {f"{cloud}/{entry.region}" for cloud in clouds for entry in load_catalog(cloud)}
    return sorted(found)


# --------------------------------------------------------------------- cloud


class SimCloud(SandboxCloud):
    name = "sim"

    def __init__(self, paths: Paths, config: SimInfraConfig, *, seed: int | None = None) -> None:
        super().__init__(paths)
        self.config = config
        self._random = random.Random(seed)
        self._provision_lock = asyncio.Lock()

    # ----------------------------------------------------------------- offers

    def describe(self) -> str:
        entries = [entry for cloud in self.config.clouds for entry in load_catalog(cloud)]
        gpus = sorted({e.accelerator_name for e in entries if e.accelerator_name})
        counts = sorted({e.accelerator_count for e in entries if e.accelerator_name})
        regions = len(sim_regions(self.config.clouds))
        how = "enabled" if self.config.enabled else "opt-in, only with --infra sim"
        return (
            f"simulated {', '.join(self.config.clouds)} ({how}): {regions} regions, CPU types and GPUs "
            f"{', '.join(gpus)} in counts {', '.join(f'{c:g}' for c in counts)}"
        )

    def offers(self, request: Resources) -> list[InstanceOffer]:
        if request.cloud is None and not self.config.enabled:
            return []  # opt-in: never chosen unless asked for
        if request.cloud not in (None, self.name):
            return []
        provider, region = _split_region(request.region)
        offers = []
        for cloud in self.config.clouds:
            if provider is not None and provider != cloud:
                continue
            for entry, zone in matching_entries(load_catalog(cloud), request, region=region, zone=request.zone):
                offers.append(
                    InstanceOffer(
                        cloud=self.name,
                        instance_type=entry.instance_type,
                        cpus=entry.vcpus,
                        memory_gb=entry.memory_gb,
                        region=f"{cloud}/{entry.region}",
                        zone=zone,
                        accelerators=(
                            {entry.accelerator_name: entry.accelerator_count} if entry.accelerator_name else {}
                        ),
                        use_spot=bool(request.use_spot),
                        price_per_hour=price_of(entry, bool(request.use_spot)),
                    )
                )
        return offers

    # ---------------------------------------------------------------- capacity

    def _region_setting(self, region: str, field: str) -> Any:
        override = self.config.regions.get(region)
        value = getattr(override, field, None) if override is not None else None
        return value if value is not None else getattr(self.config, field, None)

    def capacity(self, region: str, use_spot: bool) -> int:
        return int(self._region_setting(region, "spot_capacity" if use_spot else "ondemand_capacity"))

    def stocked_out(self, region: str) -> bool:
        override = self.config.regions.get(region)
        if override is not None and override.stockout:
            return True
        stockouts = read_stockouts(self.paths.sim_state)
        return region in stockouts or "all" in stockouts or region.split("/")[0] in stockouts

    def _reclaim_at(self, region: str, use_spot: bool) -> float | None:
        rate = float(self._region_setting(region, "preemption_rate_per_hour") or 0.0)
        if not use_spot or rate <= 0:
            return None
        return time.time() + self._random.expovariate(rate) * 3600

    # --------------------------------------------------------------- clusters

    async def provision(
        self, cluster_name: str, offer: InstanceOffer, num_nodes: int, *, labels: Mapping[str, str] | None = None,
        accepted: Accepted | None = None,
    ) -> ClusterHandle:
        region = offer.region or ""
        # One provisioning at a time decides capacity, so two launches never
        # both take the last node of a region. A cloud says "no capacity" at
        # once and takes its time only to boot what it said yes to: so does sim.
        async with self._provision_lock:
            market = "spot" if offer.use_spot else "on-demand"
            if self.stocked_out(region):
                raise CapacityError(f"{market} capacity for {offer.instance_type} is stocked out in {region}")
            capacity = self.capacity(region, offer.use_spot)
            in_use = await asyncio.to_thread(self.sandboxes.nodes_in_use, region, offer.use_spot)
            if in_use + num_nodes > capacity:
                raise CapacityError(
                    f"insufficient {market} capacity in {region}: {in_use} of {capacity} nodes in use"
                )
            meta = {
                "region": region, "zone": offer.zone, "use_spot": offer.use_spot,
                "instance_type": offer.instance_type, "reclaim_at": self._reclaim_at(region, offer.use_spot),
            }
            nodes = await self.sandboxes.create(cluster_name, num_nodes, meta)
        if accepted is not None:
            await accepted()
        if self.config.provision_delay_s:
            await asyncio.sleep(self.config.provision_delay_s)
        return ClusterHandle(
            cloud=self.name, name=cluster_name, region=region, zone=offer.zone, nodes=nodes,
            accelerators=dict(offer.accelerators), extra={"use_spot": offer.use_spot},
        )

    async def has_machines(self, cluster_name: str) -> bool:
        """Some machine of the cluster is up (a launch's record may name one
        that was refused, or is still being asked for)."""
        return cluster_name in await self.sandboxes.cluster_names()

    async def preempt(self, cluster_name: str) -> bool:
        """Reclaim a cluster's machines now, as a spot reclaim would. False if
        nothing of it was up."""
        if cluster_name not in await self.sandboxes.cluster_names():
            return False
        await self.sandboxes.destroy(cluster_name, grace_s=PREEMPT_GRACE_S)
        return True

    async def give_notice(self, cluster_name: str, deadline: float, signum: int | None) -> int:
        """A preemption notice to a cluster's machines, to be taken at
        `deadline` (epoch seconds): each running phase hears of it, and its
        process group gets `signum` (None: no signal). The phases noticed."""
        return await self.sandboxes.give_notice(cluster_name, deadline, signum)

    def stock_out(self, region: str, on: bool) -> tuple[str, set[str]]:
        """Make a region as the user typed it (see `resolve_region`) run dry,
        or give it capacity back; returns it as resolved and every stock-out
        now in force. CloudError for an unknown region."""
        resolved = resolve_region(region, self.config.clouds)
        return resolved, set_stockout(self.paths.sim_state, resolved, on)



def _split_region(region: str | None) -> tuple[str | None, str | None]:
    """"aws/us-east-1" -> ("aws", "us-east-1"); "aws" -> ("aws", None)."""
    if region is None:
        return None, None
    provider, _, name = region.partition("/")
    return provider, name or None


def resolve_region(name: str, clouds: Sequence[str]) -> str:
    """A region as the user typed it (`sim:aws/us-east-1`, `aws/us-east-1`,
    `us-east-1`, `aws`, `all`) -> the sim's own name; CloudError if unknown."""
    text = name.strip().removeprefix("sim:").removeprefix("sim/")
    if text == "all" or text in clouds:
        return text
    known = sim_regions(clouds)
    if text in known:
        return text
    matches = [region for region in known if region.split("/", 1)[1] == text]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise CloudError(f"{name!r} is ambiguous: {', '.join(matches)}")
    raise CloudError(f"unknown sim region {name!r}; sim regions: {', '.join(known)}")
