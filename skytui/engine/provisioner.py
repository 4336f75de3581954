"""Getting a machine: each place in turn, cheapest first, until one says yes.

Used for a job's attempt and for a pool's worker alike. The caller names the
cluster and records it (a job's cluster row or a worker's); a place that says
no leaves nothing standing and no record behind, so it costs nothing and its
name is free again. The caller decides what a refusal means: wait and try
again (NoCapacity), or give up (any other CloudError).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from skytui.clouds.base import (
    Accepted,
    CapacityError,
    Cloud,
    CloudError,
    ClusterHandle,
    InstanceOffer,
)
from skytui.engine.store import AsyncStore, ClusterStatus


class NoCapacity(Exception):
    """Every place the task may run refused it for lack of capacity, this round."""

    def __init__(self, reasons: list[str]) -> None:
        shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
        super().__init__(f"no capacity in any of {len(reasons)} place(s): {shown}")
        self.places = len(reasons)
        self.reasons = reasons


@dataclass(frozen=True)
class Placed:
    """The place that said yes, its machines (UP in the store), and the
    refusals before it ("sim:aws/us-east-1: stocked out")."""

    cluster_id: int
    name: str
    handle: ClusterHandle
    offer: InstanceOffer
    refusals: list[str]


class Provisioner:
    def __init__(self, store: AsyncStore, clouds: Mapping[str, Cloud]) -> None:
        self.store = store
        self.clouds = clouds

    async def provision_with_failover(
        self, offers: Sequence[InstanceOffer], *, num_nodes: int, labels: Mapping[str, str],
        name_for: Callable[[int], Awaitable[str]],
        record: Callable[[InstanceOffer, str], Awaitable[int]],
        trying: Callable[[int, InstanceOffer], Awaitable[None]] | None = None,
        accepted: Accepted | None = None,
    ) -> Placed:
        """`name_for(tried)` names the cluster for the tried-th place;
        `record(offer, name)` writes its row and returns the id; `trying`
        is told before each place; `accepted` as in Cloud.provision.
        NoCapacity when every place said no for lack of capacity; any other
        CloudError (PrecheckError: never works as given) is raised as is."""
        refusals: list[str] = []
        for tried, offer in enumerate(offers):
            cloud = self.clouds[offer.cloud]
            name = await name_for(tried)
            if trying is not None:
                await trying(tried, offer)
            cluster_id = await record(offer, name)
            try:
                handle = await cloud.provision(name, offer, num_nodes, labels=labels, accepted=accepted)
            except CapacityError as exc:
                refusals.append(f"{offer.infra}: {exc}")
                await self.give_back(cluster_id, cloud, name)
                continue
            except CloudError:
                await self.give_back(cluster_id, cloud, name)
                raise
            await self.store.update_cluster(cluster_id, status=ClusterStatus.UP, handle=handle.to_json())
            return Placed(cluster_id, name, handle, offer, refusals)
        raise NoCapacity(refusals)

    async def give_back(self, cluster_id: int, cloud: Cloud, name: str) -> None:
        """A place said no: make sure nothing of it stands, then forget the
        try. If terminating fails the record stays, live, for the sweep."""
        await cloud.terminate(name, None)
        await self.store.forget_cluster(cluster_id)
