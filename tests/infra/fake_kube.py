"""A loopback fake of the Kubernetes API server, and a tiny container runtime
behind it, for the official `kubernetes` client (v37) pointed here by a
kubeconfig.

It speaks what the real client sends: `GET /version/`, nodes list, pods
create/get/list (labelSelector, fieldSelector)/delete, pod logs (plain, and
`follow=true` as a chunked stream), and exec over a WebSocket with the
channel.k8s.io subprotocols (v5, v4): one byte of stream number before each
binary message (0 stdin, 1 stdout, 2 stderr, 3 the final Status, and for v5
255 = "close this stream"), the RFC 6455 handshake and framing written here
with the standard library. API calls need the kubeconfig's bearer token (401
otherwise, like a real server); `forbid()` turns every call into 403.

The runtime: each pod gets a directory under `root`, the working directory
of its processes (the container's "/", as in an image without WORKDIR), with
`home/` in it as HOME. A stand-in for the container's PID 1 (a `tail` that
only waits) has its stdout on the pod's log file, which the log API serves;
exec runs the argv as a local process with the pod's env, SKYTUI_LOG_SINK
rewritten to that log file (what `/proc/1/fd/1` is in a real pod), and a
marker variable that every descendant inherits (setsid'd phases too), so
deleting or evicting a pod finds every process it started in /proc and kills
it (TERM, then KILL after the grace period). The pod's own command is not
run (it may assume a PID namespace of its own), and there is no file-system
isolation: absolute paths are this machine's.

Deleting a pod sets its deletionTimestamp, kills its processes and removes
it; `evict(name)` makes it Failed/Evicted and kills its processes, and it
stays listed until deleted, as the kubelet leaves evicted pods.

Scheduling: a pod fits a node when its requests (cpu, memory, nvidia.com/gpu)
fit what is left of the node's allocatable and its nodeSelector matches;
otherwise it stays Pending with PodScheduled=False, reason Unschedulable, as
kube-scheduler says it. `set_unschedulable(True)` makes every node refuse.
Pods go Pending -> Running after `start_delay_s`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MARKER = "SKYTUI_FAKE_KUBE_POD"  # env var every process of a pod carries
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
_POD_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)(?:/(log|exec))?)?/?$")


def _now(later_s: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() + later_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_quantity(text: str | float) -> float:
    """Kubernetes quantities: "4", "3800m", "16Gi", "512Mi", "1.5G", "17179869184"."""
    units = {
        "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    }
    raw = str(text).strip()
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", raw)
    if not match or (match.group(2) and match.group(2) not in units):
        raise ValueError(f"bad quantity {raw!r}")
    return float(match.group(1)) * units.get(match.group(2), 1.0)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


@dataclass
class FakeNode:
    name: str
    cpu: str
    memory: str
    gpus: int
    labels: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        allocatable = {"cpu": self.cpu, "memory": self.memory, "pods": "110"}
        if self.gpus:
            allocatable["nvidia.com/gpu"] = str(self.gpus)
        return {
            "metadata": {"name": self.name, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.name)),
                         "labels": {"kubernetes.io/hostname": self.name, **self.labels},
                         "resourceVersion": "1", "creationTimestamp": _now()},
            "spec": {},
            "status": {"allocatable": allocatable, "capacity": dict(allocatable),
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }


@dataclass
class FakePod:
    obj: dict[str, Any]
    root: Path  # the container's "/" (exec's working directory, like an image without WORKDIR)
    created: float
    node: str | None = None
    main: subprocess.Popen[bytes] | None = None
    removed: bool = False
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"]["uid"])

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def log(self) -> Path:
        return self.root / "pid1.log"

    @property
    def phase(self) -> str:
        return str(self.obj["status"].get("phase", "Pending"))


class FakeKube:
    """The API server and its runtime. Test control: add_node, set_unschedulable,
    fail_image, forbid, evict, delete, pod_names, pod, pod_processes."""

    def __init__(self, root: Path, *, token: str = "fake-token-0123", start_delay_s: float = 0.2) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.start_delay_s = start_delay_s
        self.nodes: dict[str, FakeNode] = {}
        self.pods: dict[tuple[str, str], FakePod] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path with query) of every call
        self.unschedulable = False
        self.bad_images: set[str] = set()
        self.forbidden = False
        # The exec subprotocols it speaks, by preference: v5 since Kubernetes
        # 1.30; an older server speaks v4 (no way to close stdin alone).
        self.exec_protocols: tuple[str, ...] = PROTOCOLS
        self._lock = threading.RLock()
        self._versions = itertools.count(100)
        self._ips = itertools.count(10)
        self._stopping = threading.Event()
        fake = self

        class Handler(_Handler):
            kube = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._threads = [
            threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True),
            threading.Thread(target=self._kubelet, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def kubeconfig(self, path: Path, *, context: str = "fake", namespace: str = "default") -> Path:
        """A kubeconfig whose only context reaches this server with its token."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": f"{context}-cluster", "cluster": {"server": self.url}}],
            "users": [{"name": f"{context}-user", "user": {"token": self.token}}],
            "contexts": [{"name": context, "context": {"cluster": f"{context}-cluster",
                                                       "user": f"{context}-user", "namespace": namespace}}],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config))  # JSON is YAML
        return path

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            pods = list(self.pods.values())
        for pod in pods:
            self._destroy(pod, grace_s=0)
        self.server.shutdown()
        self.server.server_close()

    # ---------------------------------------------------------- test control

    def add_node(self, name: str, *, cpu: str = "8", memory: str = "32Gi", gpus: int = 0,
                 labels: dict[str, str] | None = None) -> None:
        with self._lock:
            self.nodes[name] = FakeNode(name, cpu, memory, gpus, dict(labels or {}))

    def set_unschedulable(self, on: bool) -> None:
        """Every node refuses new pods (full, cordoned, tainted: as the scheduler sees it)."""
        self.unschedulable = on

    def fail_image(self, image: str) -> None:
        self.bad_images.add(image)

    def forbid(self, on: bool) -> None:
        self.forbidden = on

    def pod_names(self) -> list[str]:
        with self._lock:
            return sorted(pod.name for pod in self.pods.values())

    def pod(self, name: str) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self._find(name).obj))

    def _find(self, name: str) -> FakePod:
        for pod in self.pods.values():
            if pod.name == name:
                return pod
        raise KeyError(name)

    def pod_processes(self, name: str) -> list[int]:
        with self._lock:
            pod = self._find(name)
        return _processes_with(f"{MARKER}={pod.uid}".encode())


    def evict(self, name: str) -> None:
        """The pod is evicted (node pressure, a reclaimed node): the API says
        Failed/Evicted and its processes die; it stays listed until deleted."""
        with self._lock:
            pod = self._find(name)
            status = pod.obj["status"]
            status.update(phase="Failed", reason="Evicted",
                          message="The node was low on resource: memory.")
            status["conditions"] = [{"type": "Ready", "status": "False"}]
            for container in status.get("containerStatuses", []):
                container["state"] = {"terminated": {"exitCode": 137, "reason": "Error"}}
                container["ready"] = False
            self._touch(pod)
        _kill_all(pod.uid, grace_s=0.5)

    def delete(self, name: str) -> None:
        with self._lock:
            pod = self._find(name)
        self._start_delete(pod, grace_s=0)

    # ------------------------------------------------------------- runtime

    def _touch(self, pod: FakePod) -> None:
        pod.obj["metadata"]["resourceVersion"] = str(next(self._versions))

    def _kubelet(self) -> None:
        """Schedule Pending pods and start them; notice PID 1 exiting."""
        while not self._stopping.wait(0.05):
            with self._lock:
                pods = [p for p in self.pods.values() if not p.removed]
            for pod in pods:
                with self._lock:
                    if pod.removed or pod.obj["metadata"].get("deletionTimestamp"):
                        continue
                    if pod.phase == "Pending" and time.monotonic() - pod.created >= self.start_delay_s:
                        self._schedule(pod)
                    elif pod.phase == "Running" and pod.main is not None and pod.main.poll() is not None:
                        code = pod.main.returncode
                        pod.obj["status"]["phase"] = "Succeeded" if code == 0 else "Failed"
                        self._touch(pod)

    def _requests(self, pod: FakePod) -> dict[str, float]:
        wanted = {"cpu": 0.0, "memory": 0.0, "nvidia.com/gpu": 0.0}
        for container in pod.obj["spec"].get("containers", []):
            resources = container.get("resources") or {}
            for source in (resources.get("limits") or {}, resources.get("requests") or {}):
                for key, amount in wanted.items():
                    if key in source:
                        wanted[key] = max(amount, parse_quantity(source[key]))
        return wanted

    def _fits(self, pod: FakePod, node: FakeNode) -> bool:
        selector = pod.obj["spec"].get("nodeSelector") or {}
        labels = {"kubernetes.io/hostname": node.name, **node.labels}
        if any(labels.get(key) != value for key, value in selector.items()):
            return False
        free = {"cpu": parse_quantity(node.cpu), "memory": parse_quantity(node.memory),
                "nvidia.com/gpu": float(node.gpus)}
        for other in self.pods.values():
            if other.node == node.name and not other.removed and other.phase in ("Pending", "Running"):
                for key, amount in self._requests(other).items():
                    free[key] -= amount
        return all(amount <= free[key] + 1e-9 for key, amount in self._requests(pod).items())

    def _schedule(self, pod: FakePod) -> None:
        status = pod.obj["status"]
        if pod.node is None:
            node = None if self.unschedulable else next(
                (n for n in self.nodes.values() if self._fits(pod, n)), None)
            if node is None:
                message = (f"0/{len(self.nodes)} nodes are available: "
                           f"{len(self.nodes)} Insufficient cpu, memory or nvidia.com/gpu.")
                if status.get("conditions") != [self._unschedulable(message)]:
                    status["conditions"] = [self._unschedulable(message)]
                    self._touch(pod)
                return
            pod.node = node.name
            pod.obj["spec"]["nodeName"] = node.name
            status["conditions"] = [{"type": "PodScheduled", "status": "True"}]
        container = pod.obj["spec"]["containers"][0]
        image = str(container.get("image", ""))
        if image in self.bad_images:
            waiting = {"reason": "ErrImagePull", "message": f'failed to pull image "{image}": not found'}
            status["containerStatuses"] = [self._container(container, {"waiting": waiting}, False)]
            self._touch(pod)
            return
        pod.main = self._start_main(pod)
        status.update(phase="Running", podIP=f"10.244.0.{next(self._ips)}", hostIP="10.0.0.1", startTime=_now())
        status["conditions"] = [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]
        status["containerStatuses"] = [self._container(container, {"running": {"startedAt": _now()}}, True)]
        self._touch(pod)

    @staticmethod
    def _unschedulable(message: str) -> dict[str, Any]:
        return {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}

    @staticmethod
    def _container(container: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {"name": container["name"], "image": container.get("image", ""), "imageID": "",
                "ready": ready, "restartCount": 0, "state": state}

    def _pod_env(self, pod: FakePod) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(pod.home),
               "HOSTNAME": pod.name, "LANG": "C.UTF-8", MARKER: pod.uid}
        for item in pod.obj["spec"]["containers"][0].get("env") or []:
            env[str(item["name"])] = str(item.get("value", ""))
        if "SKYTUI_LOG_SINK" in env:
            env["SKYTUI_LOG_SINK"] = str(pod.log)  # what /proc/1/fd/1 is here
        return env

    def _start_main(self, pod: FakePod) -> subprocess.Popen[bytes]:
        pod.env = self._pod_env(pod)
        with open(pod.log, "ab") as log:
            main = subprocess.Popen(
                # Like `sleep infinity`, but gone with this process should a test run die.
                ["tail", f"--pid={os.getpid()}", "-f", "/dev/null"], cwd=pod.root, env=pod.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True,
            )
        threading.Thread(target=main.wait, daemon=True).start()  # reap it
        return main

    def _start_delete(self, pod: FakePod, grace_s: float) -> None:
        with self._lock:
            if pod.removed:
                return
            # As the API server does: when the grace period given runs out.
            pod.obj["metadata"].setdefault("deletionTimestamp", _now(grace_s))
            pod.obj["metadata"]["deletionGracePeriodSeconds"] = int(grace_s)
            self._touch(pod)
        threading.Thread(target=self._destroy, args=(pod, grace_s), daemon=True).start()

    def _destroy(self, pod: FakePod, grace_s: float) -> None:
        # The whole grace period, as the kubelet gives it: a job using it to
        # checkpoint keeps the pod, listed with its deletionTimestamp, till then.
        _kill_all(pod.uid, grace_s=grace_s)
        with self._lock:
            pod.removed = True
            self.pods.pop((pod.namespace, pod.name), None)
        shutil.rmtree(pod.root, ignore_errors=True)

    # ------------------------------------------------------------- the API

    def create_pod(self, namespace: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        meta = body.get("metadata") or {}
        name = str(meta.get("name") or "")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) or len(name) > 253:
            return 422, _status(422, "Invalid", f'Pod "{name}" is invalid: metadata.name: Invalid value')
        containers = (body.get("spec") or {}).get("containers") or []
        if not containers or not containers[0].get("name") or not containers[0].get("image"):
            return 422, _status(422, "Invalid", f'Pod "{name}" is invalid: spec.containers: Required value')
        with self._lock:
            if (namespace, name) in self.pods:
                return 409, _status(409, "AlreadyExists", f'pods "{name}" already exists')
            uid = str(uuid.uuid4())
            obj = json.loads(json.dumps(body))
            obj.update(apiVersion="v1", kind="Pod")
            obj["metadata"] = {**meta, "name": name, "namespace": namespace, "uid": uid,
                               "creationTimestamp": _now(), "resourceVersion": "0"}
            obj["spec"].setdefault("restartPolicy", "Always")
            obj["status"] = {"phase": "Pending", "qosClass": "Guaranteed"}
            pod = FakePod(obj=obj, root=self.root / f"{name}-{uid[:8]}", created=time.monotonic())
            pod.home.mkdir(parents=True)
            pod.log.touch()
            self._touch(pod)
            self.pods[(namespace, name)] = pod
            return 201, json.loads(json.dumps(obj))

    def list_pods(self, namespace: str | None, query: dict[str, str]) -> dict[str, Any]:
        labels = _selector(query.get("labelSelector", ""))
        fields = _selector(query.get("fieldSelector", ""))
        with self._lock:
            items = []
            for pod in self.pods.values():
                if namespace is not None and pod.namespace != namespace:
                    continue
                flat = {"metadata.name": pod.name, "metadata.namespace": pod.namespace, "status.phase": pod.phase,
                        "spec.nodeName": pod.node or ""}
                if _matches(labels, pod.obj["metadata"].get("labels") or {}) and _matches(fields, flat):
                    items.append(json.loads(json.dumps(pod.obj)))
            version = str(next(self._versions))
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": version}, "items": items}


def _selector(text: str) -> list[tuple[str, str, str | None]]:
    """"a=b,c!=d,e,!f" -> [(key, op, value)]; op one of = != exists !exists."""
    terms: list[tuple[str, str, str | None]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "!=" in part:
            key, value = part.split("!=", 1)
            terms.append((key.strip(), "!=", value.strip()))
        elif "=" in part:
            key, value = part.replace("==", "=").split("=", 1)
            terms.append((key.strip(), "=", value.strip()))
        elif part.startswith("!"):
            terms.append((part[1:].strip(), "!exists", None))
        else:
            terms.append((part, "exists", None))
    return terms


def _matches(terms: list[tuple[str, str, str | None]], values: dict[str, Any]) -> bool:
    for key, op, value in terms:
        present = key in values
        if op == "=" and (not present or str(values[key]) != value):
            return False
        if op == "!=" and present and str(values[key]) == value:
            return False
        if op == "exists" and not present:
            return False
        if op == "!exists" and present:
            return False
    return True


def _processes_with(marker: bytes) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/environ", "rb") as f:
            if marker in f.read().split(b"\0"):
                found.append(int(entry))
    return found


def _kill_all(uid: str, grace_s: float) -> None:
    """TERM every process of the pod, KILL what is left after the grace period."""
    marker = f"{MARKER}={uid}".encode()
    for pid in _processes_with(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(100):  # a process may fork while we kill: repeat until none is left
        pids = _processes_with(marker)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _bool(text: str | None) -> bool:
    return (text or "").lower() == "true"  # the real server accepts true/True/TRUE


# ------------------------------------------------------------------ HTTP


class _Handler(BaseHTTPRequestHandler):
    kube: FakeKube
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # ---- plumbing

    def _send_json(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.kube.token}":
            self._send_json(401, _status(401, "Unauthorized", "Unauthorized"))
            return False
        if self.kube.forbidden:
            self._send_json(403, _status(403, "Forbidden", "pods is forbidden: the user cannot do that"))
            return False
        return True

    def _route(self, method: str) -> None:
        self.kube.requests.append((method, self.path))
        if not self._authorized():
            return
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        path = parts.path
        if method == "GET" and path in ("/version", "/version/"):
            self._send_json(200, {
                "major": "1", "minor": "31", "gitVersion": "v1.31.0-fake", "gitCommit": "0" * 40,
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22",
                "compiler": "gc", "platform": "linux/amd64",
            })
            return
        if method == "GET" and path.rstrip("/") == "/api/v1/nodes":
            with self.kube._lock:
                items = [node.to_json() for node in self.kube.nodes.values()]
            self._send_json(200, {"kind": "NodeList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": "1"}, "items": items})
            return
        if method == "GET" and path.rstrip("/") == "/api/v1/pods":
            self._send_json(200, self.kube.list_pods(None, query))
            return
        match = _POD_PATH.match(path)
        if match is None:
            self._send_json(404, _status(404, "NotFound", f"the server could not find the requested resource ({path})"))
            return
        namespace, name, sub = match.groups()
        if name is None:
            if method == "POST":
                code, body = self.kube.create_pod(namespace, self._body() or {})
                self._send_json(code, body)
            elif method == "GET":
                self._send_json(200, self.kube.list_pods(namespace, query))
            else:
                self._send_json(405, _status(405, "MethodNotAllowed", "method not allowed"))
            return
        with self.kube._lock:
            pod = self.kube.pods.get((namespace, name))
            snapshot = json.loads(json.dumps(pod.obj)) if pod is not None else None
        if pod is None or snapshot is None:
            if method == "DELETE":
                self._body()
            self._send_json(404, _status(404, "NotFound", f'pods "{name}" not found'))
            return
        if sub is None and method == "GET":
            self._send_json(200, snapshot)
        elif sub is None and method == "DELETE":
            body = self._body() or {}
            grace = query.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
            self.kube._start_delete(pod, float(grace) if grace is not None else 30.0)
            with self.kube._lock:
                self._send_json(200, json.loads(json.dumps(pod.obj)))
        elif sub == "log" and method == "GET":
            self._log(pod, query)
        elif sub == "exec" and method in ("GET", "POST"):
            self._exec(pod, parts.query)
        else:
            self._send_json(405, _status(405, "MethodNotAllowed", "method not allowed"))

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    # ---- logs

    def _log(self, pod: FakePod, query: dict[str, str]) -> None:
        if pod.phase == "Pending":
            self._send_json(400, _status(400, "BadRequest",
                                         f'container "main" in pod "{pod.name}" is waiting to start'))
            return
        data = pod.log.read_bytes() if pod.log.exists() else b""
        if "tailLines" in query:
            lines = data.splitlines(keepends=True)
            keep = int(query["tailLines"])
            data = b"".join(lines[len(lines) - keep:]) if keep else b""
        if not _bool(query.get("follow")):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        offset = pod.log.stat().st_size if pod.log.exists() else 0
        pending = data
        try:
            while True:
                while b"\n" in pending:  # a chunk per line, as the kubelet flushes
                    line, pending = pending.split(b"\n", 1)
                    self._chunk(line + b"\n")
                with self.kube._lock:
                    ended = pod.removed or pod.phase != "Running" or bool(
                        pod.obj["metadata"].get("deletionTimestamp"))
                try:
                    with open(pod.log, "rb") as f:
                        f.seek(offset)
                        new = f.read()
                except OSError:
                    new = b""
                offset += len(new)
                pending += new
                if ended and not new:
                    if pending:
                        self._chunk(pending)
                    break
                if self.kube._stopping.wait(0.05):
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass  # the client went away
        self.close_connection = True

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    # ---- exec over WebSocket

    def _exec(self, pod: FakePod, raw_query: str) -> None:
        query = parse_qs(raw_query)
        argv = query.get("command", [])
        if self.headers.get("Upgrade", "").lower() != "websocket":
            self._send_json(400, _status(400, "BadRequest", "exec needs a WebSocket upgrade"))
            return
        if pod.phase != "Running" or pod.obj["metadata"].get("deletionTimestamp"):
            self._send_json(400, _status(400, "BadRequest",
                                         f"cannot exec in a container that is not running: pod {pod.name}"))
            return
        if not argv:
            self._send_json(400, _status(400, "BadRequest", "you must specify at least 1 command"))
            return
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        chosen = next((p for p in offered if p in self.kube.exec_protocols), None)
        if chosen is None:
            self._send_json(400, _status(400, "BadRequest", f"no supported subprotocol in {offered}"))
            return
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", chosen)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        _ExecSession(self, pod, argv, chosen, want_stdin=_bool(query.get("stdin", ["false"])[-1])).run()


class _ExecSession:
    """One exec: a local process wired to the WebSocket's channels."""

    def __init__(self, handler: _Handler, pod: FakePod, argv: list[str], protocol: str, *, want_stdin: bool) -> None:
        self.rfile = handler.rfile
        self.wfile = handler.wfile
        self.connection: socket.socket = handler.connection
        self.pod = pod
        self.argv = argv
        self.v5 = protocol == "v5.channel.k8s.io"
        self.want_stdin = want_stdin
        self.send_lock = threading.Lock()
        self.closed_by_client = threading.Event()
        self.close_sent = False
        self.proc: subprocess.Popen[bytes] | None = None

    def send(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        length = len(payload)
        if length < 126:
            header += bytes([length])
        elif length < 1 << 16:
            header += bytes([126]) + struct.pack("!H", length)
        else:
            header += bytes([127]) + struct.pack("!Q", length)
        with self.send_lock:
            if self.close_sent:
                return
            if opcode == 0x8:
                self.close_sent = True
            with contextlib.suppress(OSError):
                self.wfile.write(header + payload)
                self.wfile.flush()

    def _read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.rfile.read(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _read_frame(self) -> tuple[int, bool, bytes]:
        first, second = self._read_exact(2)
        opcode, fin = first & 0x0F, bool(first & 0x80)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read_exact(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read_exact(8))[0]
        mask = self._read_exact(4) if second & 0x80 else b""
        payload = self._read_exact(length)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return opcode, fin, payload

    def _reader(self) -> None:
        """Client -> process: stdin frames, v5 close-stream, close, ping."""
        message = b""
        message_opcode = 0
        try:
            while True:
                opcode, fin, payload = self._read_frame()
                if opcode == 0x8:  # close: answer it (RFC 6455 5.5.1)
                    self.send(0x8, payload[:2])
                    break
                if opcode == 0x9:
                    self.send(0xA, payload)
                    continue
                if opcode == 0xA:
                    continue
                if opcode in (0x1, 0x2):
                    message, message_opcode = payload, opcode
                elif opcode == 0x0:
                    message += payload
                if not fin:
                    continue
                self._deliver(message, message_opcode)
                message = b""
        except (EOFError, OSError, ValueError):
            pass
        finally:
            self.closed_by_client.set()
            self._close_stdin()

    def _deliver(self, message: bytes, opcode: int) -> None:
        if not message:
            return
        channel, data = message[0], message[1:]
        if channel == 255 and self.v5:  # v5: the client closed one of its streams
            if data[:1] == b"\x00":
                self._close_stdin()
            return
        if channel == 0 and self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (OSError, ValueError):
                pass  # the process stopped reading

    def _close_stdin(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self.proc.stdin.close()

    def _pump(self, fd: int, channel: int) -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            self.send(0x2, bytes([channel]) + data)
        os.close(fd)

    def run(self) -> None:
        try:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.pod.root, env=dict(self.pod.env),
                stdin=subprocess.PIPE if self.want_stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        except OSError as exc:
            status = {"metadata": {}, "status": "Failure", "reason": "InternalError",
                      "message": f"failed to exec in container: {exc}"}
            self.send(0x2, b"\x03" + json.dumps(status).encode())
            self.send(0x8, struct.pack("!H", 1000))
            return
        assert self.proc.stdout is not None and self.proc.stderr is not None
        reader = threading.Thread(target=self._reader, daemon=True)
        reader.start()
        pumps = [
            threading.Thread(target=self._pump, args=(os.dup(self.proc.stdout.fileno()), 1), daemon=True),
            threading.Thread(target=self._pump, args=(os.dup(self.proc.stderr.fileno()), 2), daemon=True),
        ]
        self.proc.stdout.close()
        self.proc.stderr.close()
        for pump in pumps:
            pump.start()
        code = self.proc.wait()
        for pump in pumps:
            pump.join()
        if code == 0:
            status: dict[str, Any] = {"metadata": {}, "status": "Success"}
        else:
            shown = code if code > 0 else 128 - code  # killed by a signal: 128+N, as a shell says
            status = {
                "metadata": {}, "status": "Failure",
                "message": f"command terminated with non-zero exit code: error executing command "
                           f"{self.argv}, exit code {shown}",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": str(shown)}]},
            }
        self.send(0x2, b"\x03" + json.dumps(status).encode())
        self.send(0x8, struct.pack("!H", 1000))
        # Wait for the client's close answer, then drop the connection.
        self.closed_by_client.wait(5)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
