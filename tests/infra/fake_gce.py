"""A loopback fake of the Compute Engine REST API (and Google's OAuth2 token
endpoint), for google-cloud-compute with `api_endpoint` pointed here.

It speaks exactly what the real client sends (paths, camelCase JSON, Google's
error bodies): instances insert/get/list/aggregatedList/delete, zone
operations get and wait, and `POST /token` for a user ADC file
whose `token_uri` points here, so google.auth.default() and the token refresh
run through the real google-auth code. API calls without a token this server
issued get 401, like Google.

What the tests control, as plain methods (the fake runs in the test process,
the controller daemon reaches it over HTTP): `run_dry(zone)` makes inserts
there end with ZONE_RESOURCE_POOL_EXHAUSTED, `preempt(name)` turns an
instance TERMINATED as GCE does to a reclaimed spot VM, `seed(...)` plants an
instance of someone else. Instances go PROVISIONING -> RUNNING on the get
after the first; deletes take effect when their operation is polled;
`fail_next(n)` answers the next n API calls with a 503.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PREFIX = "/compute/v1/projects/"
# Image projects this fake knows; an image anywhere else is "not found".
IMAGE_PROJECTS = ("ubuntu-os-cloud", "debian-cloud", "deeplearning-platform-release", "cos-cloud")
_FILTER_TERM = re.compile(r'\(?\s*labels\.([a-z][a-z0-9_-]*)\s*=\s*"([^"]*)"\s*\)?')


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str | None


@dataclass
class _Op:
    name: str
    project: str
    zone: str
    kind: str  # insert | delete
    target: str  # instance name
    error: tuple[int, str, str, str] | None = None  # http status, http message, code, message
    done: bool = False


@dataclass
class FakeGCE:
    project: str = "skytui-test"
    refresh_token: str = field(default_factory=lambda: "fake-refresh-" + secrets.token_hex(8))
    # Called with each instance created (its JSON), like GCE's guest agent
    # reading ssh-keys from metadata: tests use it to authorize the key.
    on_insert: Callable[[dict[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}  # (zone, name) -> Instance JSON
        self.requests: list[Recorded] = []
        self.tokens: set[str] = set()
        self.dry_zones: set[str] = set()
        self.failing = 0  # the next N API calls answer 503 backendError
        self._ops: dict[tuple[str, str], _Op] = {}
        self._ids = itertools.count(1001)
        self._lock = threading.Lock()
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-gce", daemon=True)
        self._thread.start()

    # -------------------------------------------------------------- plumbing

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def token_uri(self) -> str:
        return f"{self.endpoint}/token"

    def write_adc(self, path: Path) -> Path:
        """A user's ADC file whose token refreshes come to this fake.

        Of the user-credential kinds, `external_account_authorized_user` (what
        `gcloud auth application-default login` writes for a workforce pool)
        is the one whose token endpoint the file sets: google-auth always sends
        a plain `authorized_user` refresh to oauth2.googleapis.com, whatever
        its `token_uri` says."""
        path.write_text(json.dumps({
            "type": "external_account_authorized_user",
            "audience": "//iam.googleapis.com/locations/global/workforcePools/fake-pool/providers/fake",
            "client_id": "fake-client-id", "client_secret": "fake-client-secret",
            "refresh_token": self.refresh_token, "token_url": self.token_uri,
        }))
        return path

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------- test controls

    def run_dry(self, zone: str, dry: bool = True) -> None:
        with self._lock:
            (self.dry_zones.add if dry else self.dry_zones.discard)(zone)

    def fail_next(self, count: int) -> None:
        """The next `count` API calls fail as a GCE backend hiccup does (503)."""
        with self._lock:
            self.failing = count

    def preempt(self, name: str) -> None:
        """A spot reclaim: the instance stays, TERMINATED."""
        with self._lock:
            for (_, instance_name), instance in self.instances.items():
                if instance_name == name:
                    instance["status"] = "TERMINATED"
                    return
        raise KeyError(name)

    def seed(self, zone: str, name: str, labels: dict[str, str], status: str = "RUNNING") -> None:
        """An instance created by someone else (another install, a person)."""
        with self._lock:
            self.instances[(zone, name)] = self._instance_json(self.project, zone, {
                "name": name, "machineType": f"zones/{zone}/machineTypes/e2-small", "labels": labels,
                "networkInterfaces": [{"network": "global/networks/default"}],
            }, status)

    def inventory(self) -> list[str]:
        """Every instance name in the project, whatever its status."""
        with self._lock:
            return sorted(name for _, name in self.instances)

    def status_of(self, name: str) -> str | None:
        with self._lock:
            return next((i["status"] for (_, n), i in self.instances.items() if n == name), None)

    def insert_bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.method == "POST" and r.path.endswith("/instances")]

    # ------------------------------------------------------------ handling

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any,
               authorization: str | None) -> tuple[int, Any]:
        self.requests.append(Recorded(method, path, query, body, authorization))
        if path == "/token" and method == "POST":
            return self._token(body)
        if not path.startswith(PREFIX):
            return _error(404, f"no route for {method} {path}", "notFound")
        token = (authorization or "").removeprefix("Bearer ")
        if token not in self.tokens:
            return _error(401, "Request is missing required authentication credential.", "required")
        parts = path[len(PREFIX):].split("/")
        project = parts[0]
        if project != self.project:
            return _error(403, f"The caller does not have permission on 'projects/{project}'",
                          "forbidden")
        rest = parts[1:]
        with self._lock:
            if self.failing > 0:
                self.failing -= 1
                return _error(503, "Internal error. Please try again or contact Google Support.", "backendError")
            if rest == ["aggregated", "instances"] and method == "GET":
                return self._aggregated(project, query)
            if len(rest) >= 3 and rest[0] == "zones":
                zone = rest[1]
                if rest[2:] == ["instances"] and method == "POST":
                    return self._insert(project, zone, body)
                if rest[2:] == ["instances"] and method == "GET":
                    return self._list(project, zone, query)
                if rest[2] == "instances" and len(rest) == 4 and method == "GET":
                    return self._get(project, zone, rest[3])
                if rest[2] == "instances" and len(rest) == 4 and method == "DELETE":
                    return self._delete(project, zone, rest[3])
                if rest[2] == "operations" and len(rest) == 4 and method == "GET":
                    return self._operation(project, zone, rest[3])
                if rest[2] == "operations" and rest[4:] == ["wait"] and method == "POST":
                    return self._operation(project, zone, rest[3])
        return _error(404, f"no route for {method} {path}", "notFound")

    def _token(self, form: Any) -> tuple[int, Any]:
        fields = form if isinstance(form, dict) else {}
        if fields.get("grant_type") != "refresh_token" or fields.get("refresh_token") != self.refresh_token:
            return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
        token = "fake-access-" + secrets.token_hex(8)
        with self._lock:
            self.tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _base(self, project: str, zone: str) -> str:
        return f"{self.endpoint}{PREFIX}{project}/zones/{zone}"

    def _instance_json(self, project: str, zone: str, body: dict[str, Any], status: str) -> dict[str, Any]:
        n = next(self._ids)
        instance = json.loads(json.dumps(body))
        for nic in instance.get("networkInterfaces", []):
            nic["networkIP"] = f"10.128.{n // 250 % 250}.{n % 250 + 2}"
            for access in nic.get("accessConfigs", []):
                access["natIP"] = f"203.0.113.{n % 250 + 2}"  # TEST-NET-3: made up
        instance.update(
            kind="compute#instance", id=str(n), status=status, zone=self._base(project, zone),
            selfLink=f"{self._base(project, zone)}/instances/{body['name']}",
            creationTimestamp=time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime()),
        )
        return instance

    def _new_op(self, project: str, zone: str, kind: str, target: str,
                error: tuple[int, str, str, str] | None = None) -> tuple[int, Any]:
        op = _Op(f"operation-{next(self._ids)}-{secrets.token_hex(4)}", project, zone, kind, target, error)
        self._ops[(zone, op.name)] = op
        return 200, self._op_json(op)

    def _op_json(self, op: _Op) -> dict[str, Any]:
        base = self._base(op.project, op.zone)
        data: dict[str, Any] = {
            "kind": "compute#operation", "id": str(abs(hash(op.name)) % 10**12), "name": op.name,
            "zone": base, "operationType": op.kind, "targetLink": f"{base}/instances/{op.target}",
            "status": "DONE" if op.done else "RUNNING", "progress": 100 if op.done else 0,
            "insertTime": "2026-11-28T00:00:00.000-00:00", "selfLink": f"{base}/operations/{op.name}",
        }
        if op.done and op.error is not None:
            status, http_message, code, message = op.error
            data.update(httpErrorStatusCode=status, httpErrorMessage=http_message,
                        error={"errors": [{"code": code, "message": message}]})
        return data

    def _operation(self, project: str, zone: str, name: str) -> tuple[int, Any]:
        op = self._ops.get((zone, name))
        if op is None or op.project != project:
            return _error(404, f"The resource 'projects/{project}/zones/{zone}/operations/{name}' was not found",
                          "notFound")
        if not op.done:
            op.done = True  # every operation finishes on its first poll
            if op.kind == "delete":
                self.instances.pop((zone, op.target), None)
        return 200, self._op_json(op)

    def _insert(self, project: str, zone: str, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", body.get("name", "")):
            return _error(400, "Invalid value for field 'resource.name'", "invalid")
        name = body["name"]
        machine_type = body.get("machineType", "")
        if not machine_type.startswith(f"zones/{zone}/machineTypes/"):
            return _error(400, f"Invalid value for field 'resource.machineType': '{machine_type}'", "invalid")
        image = body.get("disks", [{}])[0].get("initializeParams", {}).get("sourceImage", "")
        image_project = image.split("/")[1] if image.startswith("projects/") else ""
        if image_project not in IMAGE_PROJECTS:
            return _error(404, f"The resource '{image}' was not found", "notFound")
        for key, value in body.get("labels", {}).items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) or not re.fullmatch(r"[a-z0-9_-]{0,63}", value):
                return _error(400, f"Invalid value for field 'resource.labels': '{key}'", "invalid")
        if (zone, name) in self.instances:
            return _error(409, f"The resource 'projects/{project}/zones/{zone}/instances/{name}' already exists",
                          "alreadyExists")
        if zone in self.dry_zones:
            message = (f"The zone 'projects/{project}/zones/{zone}' does not have enough resources available to "
                       "fulfill the request.  Try a different zone, or try again later.")
            return self._new_op(project, zone, "insert", name,
                                (503, "SERVICE UNAVAILABLE", "ZONE_RESOURCE_POOL_EXHAUSTED", message))
        instance = self._instance_json(project, zone, body, "PROVISIONING")
        self.instances[(zone, name)] = instance
        if self.on_insert is not None:
            self.on_insert(instance)
        return self._new_op(project, zone, "insert", name)

    def _get(self, project: str, zone: str, name: str) -> tuple[int, Any]:
        instance = self.instances.get((zone, name))
        if instance is None:
            return _error(404, f"The resource 'projects/{project}/zones/{zone}/instances/{name}' was not found",
                          "notFound")
        shown = json.loads(json.dumps(instance))
        if instance["status"] == "PROVISIONING":
            instance["status"] = "RUNNING"  # the next get sees it booted
        return 200, shown

    def _delete(self, project: str, zone: str, name: str) -> tuple[int, Any]:
        instance = self.instances.get((zone, name))
        if instance is None:
            return _error(404, f"The resource 'projects/{project}/zones/{zone}/instances/{name}' was not found",
                          "notFound")
        instance["status"] = "STOPPING"
        return self._new_op(project, zone, "delete", name)

    def _matching(self, zone: str | None, query: dict[str, list[str]]) -> list[dict[str, Any]] | None:
        wanted = _parse_filter(query.get("filter", [""])[0])
        if wanted is None:
            return None
        return [
            json.loads(json.dumps(instance)) for (z, _), instance in sorted(self.instances.items())
            if (zone is None or z == zone)
            and all(instance.get("labels", {}).get(k) == v for k, v in wanted.items())
        ]

    def _list(self, project: str, zone: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        found = self._matching(zone, query)
        if found is None:
            return _error(400, "Invalid value for field 'filter'", "invalid")
        return 200, {"kind": "compute#instanceList", "id": f"projects/{project}/zones/{zone}/instances",
                     "items": found, "selfLink": f"{self._base(project, zone)}/instances"}

    def _aggregated(self, project: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        found = self._matching(None, query)
        if found is None:
            return _error(400, "Invalid value for field 'filter'", "invalid")
        items: dict[str, Any] = {
            # A zone with nothing in it answers with a warning, as GCE does.
            "zones/asia-east1-a": {"warning": {"code": "NO_RESULTS_ON_PAGE",
                                               "message": "There are no results for scope 'zones/asia-east1-a'"}},
        }
        for instance in found:
            scope = "zones/" + instance["zone"].rsplit("/", 1)[1]
            items.setdefault(scope, {"instances": []})["instances"].append(instance)
        return 200, {"kind": "compute#instanceAggregatedList", "id": f"projects/{project}/aggregated/instances",
                     "items": items, "selfLink": f"{self.endpoint}{PREFIX}{project}/aggregated/instances"}


def _parse_filter(text: str) -> dict[str, str] | None:
    """`labels.k = "v"` terms, bare or parenthesised, joined by spaces or AND;
    None for anything else (the real API would read more, this fake no more)."""
    wanted: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _FILTER_TERM.match(text, position)
        if match is None:
            return None
        wanted[match.group(1)] = match.group(2)
        position = match.end()
        joiner = re.compile(r"\s*(AND\s+)?").match(text, position)
        position = joiner.end() if joiner else position
    return wanted


def _error(code: int, message: str, reason: str) -> tuple[int, Any]:
    return code, {"error": {"code": code, "message": message,
                            "errors": [{"message": message, "domain": "global", "reason": reason}]}}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGCE
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _serve(self) -> None:
        parsed = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            else:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
        status, payload = self.fake.handle(
            self.command, parsed.path, parse_qs(parsed.query), body, self.headers.get("Authorization")
        )
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve
