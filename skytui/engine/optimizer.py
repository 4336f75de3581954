"""Pick where a task runs: every feasible offer over the enabled infra, cheapest first.

A task's resources expand into concrete candidates (spec.Resources.candidates:
accelerator sets, any_of, ordered); each enabled cloud answers with the offers
that fit a candidate. Unordered requests take the cheapest offer; `ordered`
requests take the first candidate that has any offer. The ranked list is what
the "Considered resources" table shows and what a launch fails over along.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from skytui.clouds.base import Cloud, InstanceOffer
from skytui.engine.file_sync import unsupported_transfer
from skytui.engine.named_buckets import unplaceable_storage
from skytui.spec import Resources, Task


class InfeasibleError(ValueError):
    """No enabled infra can run the task as asked."""


@dataclass(frozen=True)
class Plan:
    """Offers in the order a launch tries them; the first is the chosen one."""

    offers: tuple[InstanceOffer, ...]
    num_nodes: int

    @property
    def chosen(self) -> InstanceOffer:
        return self.offers[0]


def _describe(request: Resources) -> str:
    parts = []
    if request.infra:
        parts.append(f"infra={request.infra}")
    if request.cpus:
        parts.append(f"cpus={request.cpus}")
    if request.memory:
        parts.append(f"memory={request.memory}")
    for accelerator in request.accelerators:
        name = accelerator.name or f"{accelerator.min_memory_gb:g}GB+"
        parts.append(f"accelerators={name}:{accelerator.count:g}")
    if request.instance_type:
        parts.append(f"instance_type={request.instance_type}")
    if request.use_spot:
        parts.append("use_spot=true")
    return ", ".join(parts) or "any machine"


def requested_str(resources: Resources, num_nodes: int = 1) -> str:
    """The REQUESTED column, as SkyPilot writes it: `1x[H100:1, H200:1]`, `2x[CPU:4+]`."""
    candidates, _ = resources.candidates()
    shown = []
    for candidate in candidates:
        if candidate.accelerators:
            shown.append(str(candidate.accelerators[0]))
        elif candidate.instance_type:
            shown.append(candidate.instance_type)
        else:
            parts = [f"CPU:{candidate.cpus}"] if candidate.cpus else []
            parts += [f"Mem:{candidate.memory}"] if candidate.memory else []
            if parts:
                shown.append(", ".join(parts))
    unique = list(dict.fromkeys(shown))
    if not unique:
        return "-" if num_nodes == 1 else f"{num_nodes}x"
    return f"{num_nodes}x[{', '.join(unique)}]"


def plan_task(task: Task, clouds: Mapping[str, Cloud]) -> Plan:
    storage_problem = unsupported_transfer(task)
    if storage_problem is not None:
        raise InfeasibleError(f"task {task.name!r}: {storage_problem}")
    candidates, ordered = task.resources.candidates()
    per_candidate: list[list[InstanceOffer]] = []
    over_cap = 0
    for candidate in candidates:
        offers: list[InstanceOffer] = []
        for cloud in clouds.values():
            offers.extend(cloud.offers(candidate))
        cap = candidate.max_hourly_cost  # per machine, as SkyPilot's
        if cap is not None:
            over_cap += sum(offer.price_per_hour > cap for offer in offers)
            offers = [offer for offer in offers if offer.price_per_hour <= cap]
        per_candidate.append(sorted(offers, key=_rank))
    if ordered:
        ranked = [offer for offers in per_candidate for offer in offers]
    else:
        ranked = sorted((offer for offers in per_candidate for offer in offers), key=_rank)
    first_of_each: dict[tuple[str, str | None, str | None, str, bool], InstanceOffer] = {}
    for offer in ranked:
        first_of_each.setdefault(_offer_key(offer), offer)
    unique = tuple(first_of_each.values())
    if not unique:
        asked = "; or ".join(_describe(c) for c in candidates)
        offered = "; ".join(f"{name}: {cloud.describe()}" for name, cloud in clouds.items()) or "no infra is enabled"
        if over_cap:
            asked += f" at max_hourly_cost or less ({over_cap} offer(s) cost more)"
        raise InfeasibleError(
            f"task {task.name!r}: nothing fits {asked}. What the infra offers: {offered}. "
            "Lower the request, or name an infra that has it (e.g. --infra sim), or enable more (`skytui check`)."
        )
    storage_problem = unplaceable_storage(task, unique[0].cloud)  # buckets it names go on the chosen cloud's store
    if storage_problem is not None:
        raise InfeasibleError(f"task {task.name!r}: {storage_problem}")
    return Plan(offers=unique, num_nodes=task.num_nodes)


# Equal prices (the free ones, mostly) go to the hosts listed for skytui in its
# own config first, then this machine, then a Kubernetes cluster found through
# a kubeconfig that may be there for other reasons, then clouds.
_TIE_ORDER = {"ssh": 0, "local": 1, "kubernetes": 2}


def _rank(offer: InstanceOffer) -> tuple[float, int, str, str]:
    return (offer.price_per_hour, _TIE_ORDER.get(offer.cloud, 3), offer.infra, offer.instance_type)


def _offer_key(offer: InstanceOffer) -> tuple[str, str | None, str | None, str, bool]:
    return (offer.cloud, offer.region, offer.zone, offer.instance_type, offer.use_spot)


def considered_rows(plan: Plan, limit: int = 8) -> list[tuple[str, str, str, str, str, str, str]]:
    """Rows of SkyPilot's table: INFRA, INSTANCE, vCPUs, Mem(GB), GPUS, COST ($), CHOSEN."""
    rows = []
    for index, offer in enumerate(plan.offers[:limit]):
        cost = offer.price_per_hour * plan.num_nodes
        rows.append(
            (
                offer.infra,
                offer.instance_type + ("[Spot]" if offer.use_spot else ""),
                f"{offer.cpus:g}",
                f"{offer.memory_gb:g}",
                offer.accelerators_str,
                f"{cost:.2f}",
                "✔" if index == 0 else "",
            )
        )
    return rows
