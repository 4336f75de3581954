"""The Compute Engine calls skytui makes, blocking (callers run them in threads).

google-cloud-compute has no async client, and importing it takes seconds, so
the clients are built on first use, never at `skytui check` or planning time.
Every call has an explicit timeout. API errors become skytui's: capacity
(another zone, region or later may work), precheck (never works as
configured), or a plain CloudError; their messages are Google's short texts,
which name resources but never credentials.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from skytui.clouds.base import CapacityError, CloudError, PrecheckError

API_TIMEOUT_S = 30.0  # one HTTP request
OPERATION_TIMEOUT_S = 300.0  # an insert or delete to finish

# Operation error codes that mean "no room here now", whatever their HTTP
# status (GCE reports QUOTA_EXCEEDED as a 403).
CAPACITY_CODES = frozenset({
    "ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "RESOURCE_POOL_EXHAUSTED",
    "QUOTA_EXCEEDED", "QUOTAEXCEEDED", "RESOURCE_EXHAUSTED", "RATELIMITEXCEEDED", "USERRATELIMITEXCEEDED",
    "RESOURCE_NOT_READY", "RESOURCENOTREADY",
})
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class InstanceView:
    """What skytui reads of an instance."""

    zone: str
    name: str
    status: str
    labels: dict[str, str]
    nat_ip: str
    internal_ip: str


def error_codes(exc: BaseException) -> list[str]:
    """The codes or reasons Google attached to an API error, upper-cased."""
    codes = []
    for item in getattr(exc, "errors", None) or []:
        code = (item.get("code") or item.get("reason")) if isinstance(item, dict) else getattr(item, "code", "")
        if code:
            codes.append(str(code).upper())
    reason = getattr(exc, "reason", None)
    if reason:
        codes.append(str(reason).upper())
    return codes


def status_of(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def is_not_found(exc: BaseException) -> bool:
    return status_of(exc) == 404


def is_transient(exc: BaseException) -> bool:
    """Worth asking again: a server hiccup or the network, not a refusal."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(exc, (requests.ConnectionError, requests.Timeout, TimeoutError, auth.TransportError,
                        api.RetryError)):
        return True
    return status_of(exc) in TRANSIENT_STATUSES


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify(exc: BaseException, where: str) -> CloudError:
    """An exception of a provisioning call, as skytui's error; `where` is the zone."""
    from google.auth import exceptions as auth

    if isinstance(exc, CloudError):
        return exc
    if isinstance(exc, auth.RefreshError):
        # Its text can carry the token endpoint's answer: never shown.
        return PrecheckError("GCP refused the credentials (token refresh failed); "
                             "run `gcloud auth application-default login`")
    codes = error_codes(exc)
    status = status_of(exc)
    label = codes[0] if codes else f"HTTP {status}" if status else type(exc).__name__
    if any(code in CAPACITY_CODES for code in codes):
        return CapacityError(f"{where}: {label}")
    if status in (401, 403):
        return PrecheckError(f"GCP refused the request in {where} ({status}): {_short(getattr(exc, 'message', ''))}")
    if status in (400, 404):
        # A bad image, machine type or project: the same request never works.
        return PrecheckError(f"GCP rejected the instance in {where} ({label}): {_short(getattr(exc, 'message', ''))}")
    if status == 409 or is_transient(exc):
        return CapacityError(f"{where}: {label}")
    return CloudError(f"{where}: {label}: {_short(str(exc))}")


class ComputeAPI:
    """The InstancesClient of one project, with operations polled at the same endpoint."""

    def __init__(self, credentials: Any, project: str, api_endpoint: str | None) -> None:
        self.credentials = credentials
        self.project = project
        self.api_endpoint = api_endpoint
        self._lock = threading.Lock()
        self._instances: Any = None

    def _client(self) -> Any:
        with self._lock:
            if self._instances is None:
                self._instances = self._build()
            return self._instances

    def _build(self) -> Any:
        from google.api_core.client_options import ClientOptions
        from google.cloud import compute_v1

        options = ClientOptions(api_endpoint=self.api_endpoint) if self.api_endpoint else None
        instances = compute_v1.InstancesClient(credentials=self.credentials, transport="rest", client_options=options)
        operations = compute_v1.ZoneOperationsClient(
            credentials=self.credentials, transport="rest", client_options=options
        )
        # The transport would poll operations through a ZoneOperationsClient
        # of its own, built without client_options: at compute.googleapis.com
        # whatever endpoint was configured. Hand it ours.
        services = getattr(instances._transport, "_extended_operations_services", None)
        if not isinstance(services, dict):
            raise CloudError("this google-cloud-compute cannot poll operations at the configured endpoint")
        services["zone_operations"] = operations
        return instances

    # ------------------------------------------------------------------ calls

    def insert(self, zone: str, body: dict[str, Any]) -> None:
        """Create one instance and wait for its operation; raises Google's errors."""
        from google.cloud import compute_v1

        operation = self._client().insert(
            project=self.project, zone=zone, instance_resource=compute_v1.Instance(body), timeout=API_TIMEOUT_S
        )
        operation.result(timeout=OPERATION_TIMEOUT_S)

    def get(self, zone: str, name: str) -> InstanceView | None:
        """The instance, or None when GCE does not know it."""
        try:
            instance = self._client().get(project=self.project, zone=zone, instance=name, timeout=API_TIMEOUT_S)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        return _view(zone, instance)

    def delete(self, zone: str, name: str) -> None:
        """Delete and wait; an instance already gone is fine."""
        try:
            operation = self._client().delete(project=self.project, zone=zone, instance=name, timeout=API_TIMEOUT_S)
            operation.result(timeout=OPERATION_TIMEOUT_S)
        except Exception as exc:
            if not is_not_found(exc):
                raise

    def labelled(self, labels: dict[str, str]) -> list[InstanceView]:
        """Every instance of the project carrying all these labels, in any zone."""
        from google.cloud import compute_v1

        request = compute_v1.AggregatedListInstancesRequest(
            project=self.project, filter=label_filter(labels), max_results=500
        )
        found: list[InstanceView] = []
        for scope, scoped in self._client().aggregated_list(request=request, timeout=API_TIMEOUT_S):
            zone = scope.rsplit("/", 1)[-1]
            found.extend(_view(zone, instance) for instance in scoped.instances)
        return found


def label_filter(labels: dict[str, str]) -> str:
    """`(labels.k = "v") (labels.k2 = "v2")`: the API's AND of label equalities."""
    return " ".join(f'(labels.{key} = "{value}")' for key, value in sorted(labels.items()))


def _view(zone: str, instance: Any) -> InstanceView:
    nat_ip = internal_ip = ""
    for nic in instance.network_interfaces:
        internal_ip = internal_ip or nic.network_i_p
        for access in nic.access_configs:
            nat_ip = nat_ip or access.nat_i_p
    return InstanceView(zone=zone, name=instance.name, status=instance.status, labels=dict(instance.labels),
                        nat_ip=nat_ip, internal_ip=internal_ip)
