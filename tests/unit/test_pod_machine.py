"""What a controller pod asks of its cluster, and how it is found, from
config.yaml alone (tests/e2e/test_remote_controller_pod.py runs one)."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from skytui.config import Config, ConfigError, ControllerResources, Paths
from skytui.remote.machines import machine_for
from skytui.remote.pod_machine import PodMachine, controller_pod_name, pod_requests


def requests(**fields: object) -> dict[str, str]:
    return pod_requests(ControllerResources(infra="kubernetes", **fields))  # type: ignore[arg-type]


def test_skypilot_cpus_and_memory_become_the_pods_requests() -> None:
    assert requests() == {"cpu": "1", "memory": "2048Mi"}  # small, to schedule anywhere
    assert requests(cpus="4+", memory="16GB+") == {"cpu": "4", "memory": "16384Mi"}
    assert requests(cpus=2, memory="4x") == {"cpu": "2", "memory": "8192Mi"}  # GB per CPU
    assert requests(cpus=0.5, memory="512MB") == {"cpu": "0.5", "memory": "512Mi"}
    with pytest.raises(ConfigError, match="not a CPU count"):
        requests(cpus="lots")
    with pytest.raises(ConfigError, match="not a memory size"):
        requests(memory="big")


def test_the_pod_name_is_the_same_for_every_client_of_one_user_context_and_namespace() -> None:
    name = controller_pod_name("gke", "default", "alice")
    assert name == controller_pod_name("gke", "default", "alice")
    assert len({name, controller_pod_name("gke", "jobs", "alice"), controller_pod_name("eks", "default", "alice"),
                controller_pod_name("gke", "default", "bob")}) == 4
    assert len(name) <= 63 and name.startswith("skytui-controller-")


def test_without_a_kubeconfig_the_error_says_how_to_name_a_context(home: Path) -> None:
    config = Config.model_validate({"jobs": {"controller": {"resources": {"infra": "kubernetes"}}}})
    with pytest.raises(ConfigError, match="no Kubernetes context") as raised:
        PodMachine(Paths(home), config, None)
    assert "KUBECONFIG" in str(raised.value) and "kubernetes/<context>" in str(raised.value)
    # A named context needs no kubeconfig lookup to be placed (the API is reached only when used).
    for infra in ("kubernetes/gke", "k8s/gke"):
        named = Config.model_validate({"jobs": {"controller": {"resources": {"infra": infra}}}})
        machine = machine_for(Paths(home), named)
        assert isinstance(machine, PodMachine) and machine.label == "kubernetes/gke"
        assert machine.name == controller_pod_name("gke", "default", getpass.getuser())
