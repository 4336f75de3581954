"""The optimizer on a table of requests, over the shipped catalogs (sim enabled)
and this machine: where each request lands, and what an infeasible one says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skytui.clouds.base import Cloud
from skytui.clouds.catalog import load_catalog
from skytui.clouds.local import LocalCloud
from skytui.clouds.sim import SimCloud
from skytui.config import SimInfraConfig, paths
from skytui.engine.optimizer import InfeasibleError, considered_rows, plan_task
from skytui.spec import Task


@pytest.fixture
def clouds(home: Path) -> dict[str, Cloud]:
    return {"local": LocalCloud(paths()), "sim": SimCloud(paths(), SimInfraConfig(enabled=True))}


def task(resources: dict[str, Any]) -> Task:
    return Task.model_validate({"name": "t", "resources": resources, "run": "true"})


def cheapest(accelerator: str, count: int, spot: bool) -> float:
    prices = [
        (e.spot_price if spot else e.price)
        for cloud in ("aws", "gcp") for e in load_catalog(cloud)
        if e.accelerator_name == accelerator and e.accelerator_count == count and (not spot or e.spot_price)
    ]
    return min(p for p in prices if p is not None)


# request -> (expected chosen instance type, infra prefix, spot) ; None: any
TABLE: list[tuple[str, dict[str, Any], str | None, str, bool]] = [
    ("one H100 on-demand: the only 1-GPU H100 type", {"accelerators": "H100:1"}, "p5.4xlarge", "sim:aws/", False),
    ("pinned to a region and cloud", {"infra": "sim/gcp/us-central1", "accelerators": "L4:1"},
     "g2-standard-4", "sim:gcp/us-central1", False),
    ("an instance type pins everything", {"instance_type": "g5.xlarge"}, "g5.xlarge", "sim:aws/", False),
    ("ordered: the first feasible candidate, even if dearer",
     {"ordered": [{"accelerators": "H100:8"}, {"accelerators": "A100:8"}]}, "p5.48xlarge", "sim:aws/", False),
    ("ordered skips an infeasible first entry",
     {"ordered": [{"accelerators": "H200:3"}, {"accelerators": "A100:8"}]}, "p4d.24xlarge", "sim:aws/", False),
    ("any_of: cheapest across spot and on-demand",
     {"any_of": [{"accelerators": "A100:8", "use_spot": True}, {"accelerators": "H100:8"}]},
     "p4d.24xlarge", "sim:aws/", True),
    ("CPU minimums land on the cheapest big-enough CPU type", {"cpus": "8+", "memory": "32+"}, None, "sim:", False),
    ("no request at all: this machine, not a simulated cloud", {}, "local", "local", False),
]


@pytest.mark.parametrize(("why", "resources", "instance", "infra", "spot"), TABLE, ids=[row[0] for row in TABLE])
def test_choice(clouds: dict[str, Cloud], why: str, resources: dict[str, Any], instance: str | None,
                infra: str, spot: bool) -> None:
    if resources == {}:
        clouds["sim"] = SimCloud(paths(), SimInfraConfig(enabled=False))  # sim is opt-in
    plan = plan_task(task(resources), clouds)
    chosen = plan.chosen
    if instance is not None:
        assert chosen.instance_type == instance, why
    assert chosen.infra.startswith(infra), why
    assert chosen.use_spot is spot, why
    if "ordered" not in resources:
        assert chosen.price_per_hour == min(o.price_per_hour for o in plan.offers), why


def test_accelerator_set_takes_the_cheapest_of_its_members(clouds: dict[str, Cloud]) -> None:
    plan = plan_task(task({"accelerators": {"H100:8": None, "H200:8": None}, "use_spot": True}), clouds)
    assert plan.chosen.price_per_hour == pytest.approx(min(cheapest("H100", 8, True), cheapest("H200", 8, True)))
    assert {next(iter(o.accelerators)) for o in plan.offers} == {"H100", "H200"}
    assert all(o.use_spot for o in plan.offers)


def test_spot_is_cheaper_and_ranked_by_price(clouds: dict[str, Cloud]) -> None:
    spot = plan_task(task({"accelerators": "T4:1", "use_spot": True}), clouds)
    on_demand = plan_task(task({"accelerators": "T4:1"}), clouds)
    assert spot.chosen.price_per_hour < on_demand.chosen.price_per_hour
    prices = [o.price_per_hour for o in spot.offers]
    assert prices == sorted(prices)


def test_considered_table_marks_the_chosen_row(clouds: dict[str, Cloud]) -> None:
    plan = plan_task(task({"accelerators": "H100:8", "use_spot": True}), clouds)
    rows = considered_rows(plan)
    assert rows[0][-1] == "✔" and all(row[-1] == "" for row in rows[1:])
    assert rows[0][0] == plan.chosen.infra and rows[0][1].endswith("[Spot]")
    assert rows[0][4] == "H100:8"


@pytest.mark.parametrize(
    ("resources", "said"),
    [
        ({"accelerators": "H100:3"}, "accelerators=H100:3"),
        ({"infra": "local", "accelerators": "T4:1"}, "infra=local"),
        ({"cpus": "100000+"}, "cpus=100000+"),
        ({"infra": "sim/aws", "accelerators": "H100:1", "use_spot": True}, "use_spot=true"),
    ],
)
def test_infeasible_says_what_was_asked_and_what_exists(
    clouds: dict[str, Cloud], resources: dict[str, Any], said: str
) -> None:
    with pytest.raises(InfeasibleError) as caught:
        plan_task(task(resources), clouds)
    message = str(caught.value)
    assert said in message
    assert "this machine" in message and "H100" in message  # what the infra does offer
    assert "--infra" in message  # what to change


def test_free_places_tie_to_listed_hosts_then_this_machine_then_kubernetes(home: Path) -> None:
    """A task that names no infra goes to ssh hosts listed for skytui, else
    this machine, before a Kubernetes cluster merely found in a kubeconfig."""
    from skytui.clouds.base import InstanceOffer

    class Free:
        def __init__(self, name: str) -> None:
            self.name = name

        def offers(self, request: Any) -> list[InstanceOffer]:
            return [InstanceOffer(cloud=self.name, instance_type="x", cpus=4, memory_gb=8, region="r")]

        def describe(self) -> str:
            return self.name

    def chosen(*names: str) -> str:
        clouds: dict[str, Any] = {name: Free(name) for name in names}
        return plan_task(task({}), clouds).offers[0].cloud

    assert chosen("kubernetes", "local", "ssh") == "ssh"
    assert chosen("kubernetes", "local") == "local"
    assert chosen("kubernetes", "aws") == "kubernetes"
