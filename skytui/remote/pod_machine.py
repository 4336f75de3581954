"""The controller as a Kubernetes pod (`jobs.controller.resources.infra:
kubernetes[/<context>]`, or `k8s`), as SkyPilot runs its controller in a pod.

The pod is found from config.yaml alone, so a client that lost its local
state finds it again: its name is `skytui-controller-<8 hex>` of (context,
namespace, local user), in `infra.kubernetes.namespace`, labelled as
skytui's jobs controller (never with a job pod's `skytui-owner`, so no
cluster sweep takes it for a leak). `ensure` makes it when missing (the
image of `infra.kubernetes`, the controller resources' cpus and memory as
requests, a main process that only stays alive) and waits until it runs, or
says why it will not; `remove` deletes it and waits until it is gone.

A pod that went away (deleted, evicted, its node lost) takes the
controller's state with it: a client that reached it before (it keeps the
pod's uid in `controller-pod.json` of its home) says so plainly once, rather
than quietly starting an empty controller in its place.

Owns `PodMachine` and `controller_pod_name`. May touch config, the
client's record file, the kubernetes infra's kubeconfig discovery and label
rules, pod_link.py and the SDK (lazily, in threads: it is blocking).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import json
import os
import re
import threading
import time
from typing import Any

from skytui.clouds.kubernetes.api import REQUEST_TIMEOUT, _api_message
from skytui.clouds.kubernetes.kubeconfig import IN_CLUSTER, _chosen_contexts, _read_kubeconfig
from skytui.clouds.kubernetes.names import label_value
from skytui.clouds.kubernetes.pods import CONFIG_ERRORS, IMAGE_ERRORS
from skytui.clouds.nodes.podnode import CONTAINER
from skytui.config import Config, ConfigError, ControllerResources, Paths
from skytui.remote.errors import LinkError, NoController
from skytui.remote.link import Link
from skytui.remote.pod_link import PodLink

COMPONENT = "jobs-controller"
LABELS = {"app.kubernetes.io/managed-by": "skytui", "app.kubernetes.io/component": COMPONENT}
# A controller's needs when config.yaml names none: small, so that it schedules anywhere.
DEFAULT_CPUS = 1.0
DEFAULT_MEMORY_GB = 2.0
POLL_S = 0.5
DELETE_GRACE_S = 5
GONE_TIMEOUT_S = 120.0
# This client's memory of the pod it last reached: (name, uid). Without it
# (a client that lost its state) the pod is found by name all the same;
# with it, a pod that went away is told as lost, not silently made anew.
RECORD_FILE = "controller-pod.json"
# PID 1 only stays alive (the supervisor, started through exec, does the work).
KEEPALIVE = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"
_AMOUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?B?)?\s*(\+|x)?\s*$", re.IGNORECASE)
_CONFLICT = object()  # a create that found the pod there already
_GB_PER = {"": 1.0, "K": 1 / 1024**2, "M": 1 / 1024, "G": 1.0, "T": 1024.0}


def controller_pod_name(context: str, namespace: str, user: str) -> str:
    digest = hashlib.sha256(f"{context}\0{namespace}\0{user}".encode()).hexdigest()[:8]
    return f"skytui-controller-{digest}"


def pod_requests(resources: ControllerResources) -> dict[str, str]:
    """SkyPilot's cpus/memory (`4`, `4+`, `16GB+`, `4x` GB per CPU) as the
    pod's requests: the least that is asked for."""
    cpus = DEFAULT_CPUS
    if resources.cpus is not None:
        match = _AMOUNT.match(str(resources.cpus))
        if match is None or match.group(2) or match.group(3) == "x":
            raise ConfigError(f"jobs.controller.resources.cpus: {resources.cpus!r} is not a CPU count (4, '4+')")
        cpus = float(match.group(1))
    memory = DEFAULT_MEMORY_GB
    if resources.memory is not None:
        match = _AMOUNT.match(str(resources.memory))
        if match is None:
            raise ConfigError(f"jobs.controller.resources.memory: {resources.memory!r} is not a memory size "
                              "('16', '16GB+', '4x')")
        amount = float(match.group(1))
        if match.group(3) == "x":
            memory = amount * cpus
        else:
            memory = amount * _GB_PER[(match.group(2) or "")[:1].upper()]
    return {"cpu": f"{cpus:g}", "memory": f"{memory * 1024:.0f}Mi"}


class PodMachine:
    """The controller pod of one config.yaml in one context."""

    def __init__(self, paths: Paths, config: Config, context: str | None) -> None:
        resources = config.jobs.controller.resources
        assert resources is not None  # machine_for picks this machine only for a remote controller
        self.settings = config.infra.kubernetes
        self.identity = config.jobs.controller.use_machine_identity
        self.requests = pod_requests(resources)
        found, problem = _read_kubeconfig()
        self._kubeconfig = found
        if not context:
            chosen = _chosen_contexts(found, self.settings)[0] if found is not None else []
            if not chosen:
                where = os.environ.get("KUBECONFIG") or "~/.kube/config"
                raise ConfigError(
                    f"{paths.config_file}: jobs.controller.resources.infra: {resources.infra!r}: no Kubernetes "
                    f"context to run the controller pod in (no kubeconfig at {where}"
                    + (f"; {problem})" if problem else ")") + "; set KUBECONFIG, or name one: kubernetes/<context>"
                )
            context = chosen[0]
        self.context = context
        self.record = paths.home / RECORD_FILE
        self.namespace = self.settings.namespace
        self.user = getpass.getuser()
        self.name = controller_pod_name(context, self.namespace, self.user)
        self.label = f"kubernetes/{context}"
        self.stop_command: str | None = None  # a pod cannot stop; it stays (and costs little)
        self._api: Any = None
        self._api_lock = threading.Lock()
        self._gone: LinkError | None = None

    @property
    def where(self) -> str:
        return f"{self.label} (pod {self.namespace}/{self.name})"

    # ------------------------------------------------------------ the API

    def _api_client(self) -> Any:
        """The context's ApiClient (blocking: reads the kubeconfig)."""
        with self._api_lock:
            if self._api is not None:
                return self._api
            from kubernetes import client
            from kubernetes import config as kube_config_module

            kube_config: Any = kube_config_module  # its loaders carry no types
            configuration = client.Configuration()
            found = self._kubeconfig
            try:
                if self.context == IN_CLUSTER and (found is None or IN_CLUSTER not in found.contexts):
                    kube_config.load_incluster_config(client_configuration=configuration)
                else:
                    files = os.pathsep.join(map(str, found.files)) if found else ""
                    kube_config.load_kube_config(config_file=files or None, context=self.context,
                                                 client_configuration=configuration, persist_config=False)
            except Exception as exc:  # noqa: BLE001 - a context that cannot be loaded, whatever the cause
                raise LinkError(f"kubernetes context {self.context}: cannot load its configuration: "
                                f"{type(exc).__name__}: {str(exc)[:200]}") from exc
            self._api = client.ApiClient(configuration)
            return self._api

    async def _resolve(self) -> tuple[str, Any]:
        return self.context, await asyncio.to_thread(self._api_client)

    async def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """One CoreV1Api call in a thread; None for a 404, _CONFLICT for a 409; LinkError for the rest."""
        def call() -> Any:
            from kubernetes import client

            return getattr(client.CoreV1Api(self._api_client()), method)(
                *args, _request_timeout=REQUEST_TIMEOUT, **kwargs)

        try:
            return await asyncio.to_thread(call)
        except LinkError:
            raise
        except Exception as exc:  # noqa: BLE001 - sorted below
            status = getattr(exc, "status", None)
            if status == 404:
                return None
            if status == 409:
                return _CONFLICT
            if status is not None:
                detail = f"{status} {_api_message(exc)}"
                if status in (401, 403):
                    detail += " (check the credentials and RBAC of this context)"
            else:
                detail = f"cannot reach the API server: {type(exc).__name__}"
            raise LinkError(f"the controller pod {self.where}: {what} failed: {detail}") from exc

    async def _read(self) -> Any:
        return await self._call("read", "read_namespaced_pod", self.name, self.namespace)

    # ------------------------------------------------------------ the pod

    def manifest(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": self.name, "namespace": self.namespace,
                "labels": {**LABELS, "skytui-user": label_value(self.user)},
            },
            "spec": {
                # Its state lives in the container: a restarted container would be an empty
                # controller. The pod ends instead, and the client says it was lost.
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 30,
                # The pod's own service account is its identity only when asked for.
                "automountServiceAccountToken": self.identity,
                "enableServiceLinks": False,
                "containers": [{
                    "name": CONTAINER,
                    "image": self.settings.image,
                    "command": ["/bin/sh", "-c", KEEPALIVE],
                    "resources": {"requests": dict(self.requests)},
                }],
            },
        }

    # ------------------------------------------------------- lost or not

    def _remembered(self) -> str | None:
        """The uid of the pod this client last reached, if it is this one's."""
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads(self.record.read_text())
            if data["name"] == self.name and data["context"] == self.context:
                return str(data["uid"])
        return None

    def _remember(self, uid: str | None) -> None:
        if uid is None:
            with contextlib.suppress(FileNotFoundError):
                self.record.unlink()
            return
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_text(json.dumps({"name": self.name, "context": self.context, "uid": uid}))

    def _lost(self, what: str) -> LinkError:
        """Said by every call of this command; the record is forgotten, so
        the next command starts a new controller."""
        self._remember(None)
        self._gone = LinkError(
            f"the controller pod {self.where} {what}: the controller's state and logs went with it, and "
            "nothing watches the managed jobs it ran, which may still run (and cost) on their machines: "
            "check them in your clouds. The next skytui command starts a new, empty controller"
        )
        return self._gone

    # ---------------------------------------------------------- lifecycle

    async def ensure(self, *, create: bool = True) -> None:
        if self._gone is not None:
            raise self._gone
        pod = await self._read()
        if pod is not None and pod.metadata.deletion_timestamp is not None:
            await self._wait_gone()  # `down` of another client: a new controller follows it
            pod = None
        remembered = await asyncio.to_thread(self._remembered)
        if pod is None and remembered is not None:
            raise self._lost("is gone (deleted, or its node went away)")
        if pod is not None and pod.status is not None and pod.status.phase in ("Failed", "Succeeded"):
            why = ": ".join(filter(None, [pod.status.reason, pod.status.message])) or pod.status.phase
            await self._delete()  # nothing can run in it again; the new controller takes its name
            await self._wait_gone()
            raise self._lost(f"has ended ({why})")
        created = False
        if pod is None and not create:
            raise NoController(f"no controller pod on {self.label} yet: the first `skytui jobs launch` makes it")
        if pod is None:
            made = await self._call("create", "create_namespaced_pod", self.namespace, self.manifest())
            if made is None:
                raise LinkError(f"namespace {self.namespace!r} does not exist in kubernetes/{self.context}")
            created = made is not _CONFLICT  # else another client made it a moment ago
        try:
            uid = await self._wait_running()
        except BaseException:
            if created:  # nothing half-made is left behind
                await asyncio.shield(self._delete())
            raise
        if uid != remembered:
            await asyncio.to_thread(self._remember, uid)

    async def _wait_running(self) -> str:
        """The running pod's uid."""
        deadline = time.monotonic() + self.settings.provision_timeout_s
        unschedulable_since: float | None = None
        last = "Pending"
        while True:
            pod = await self._read()
            if pod is None or pod.metadata.deletion_timestamp is not None:
                raise LinkError(f"the controller pod {self.where} was deleted while starting")
            verdict = self._starting(pod)
            if verdict is None:
                return str(pod.metadata.uid)
            if verdict.startswith("unschedulable: "):
                unschedulable_since = unschedulable_since or time.monotonic()
                if time.monotonic() - unschedulable_since > self.settings.unschedulable_timeout_s:
                    raise LinkError(f"the controller pod {self.where} cannot be scheduled: no node fits "
                                    f"{self._wanted()}: {verdict.removeprefix('unschedulable: ')}")
            else:
                unschedulable_since = None
            last = verdict
            if time.monotonic() > deadline:
                raise LinkError(f"the controller pod {self.where} is not running after "
                                f"{self.settings.provision_timeout_s:g}s ({last})")
            await asyncio.sleep(POLL_S)

    def _wanted(self) -> str:
        return f"{self.requests['cpu']} CPU, {self.requests['memory']} memory"

    def _starting(self, pod: Any) -> str | None:
        """None once it runs; else what it waits for. Raises when it never will run."""
        status = pod.status
        phase = status.phase if status is not None else None
        if phase == "Running":
            return None
        if phase in ("Failed", "Succeeded"):
            raise LinkError(f"the controller pod {self.where} ended as it started: "
                            f"{status.reason or phase} {status.message or ''}".strip())
        for container in (status.container_statuses or []) if status is not None else []:
            waiting = container.state.waiting if container.state is not None else None
            if waiting is None:
                continue
            if waiting.reason in IMAGE_ERRORS + CONFIG_ERRORS:
                raise LinkError(f"the controller pod {self.where} cannot start: image {self.settings.image!r}: "
                                f"{waiting.reason}: {(waiting.message or '')[:200]}")
            return str(waiting.reason or "waiting")
        for condition in (status.conditions or []) if status is not None else []:
            if condition.type == "PodScheduled" and condition.status == "False" and condition.reason == "Unschedulable":
                return f"unschedulable: {condition.message or 'Unschedulable'}"
        return str(phase or "Pending")

    def link(self) -> Link:
        return PodLink(self.context, self.namespace, self.name, self._resolve)

    async def _delete(self) -> None:
        await self._call("delete", "delete_namespaced_pod", self.name, self.namespace,
                         grace_period_seconds=DELETE_GRACE_S)

    async def _wait_gone(self) -> None:
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while await self._read() is not None:
            if time.monotonic() > deadline:
                raise LinkError(f"the controller pod {self.where} is still there {GONE_TIMEOUT_S:g}s after "
                                "its deletion")
            await asyncio.sleep(POLL_S)

    async def remove(self) -> None:
        await self._delete()
        await self._wait_gone()
        await asyncio.to_thread(self._remember, None)
