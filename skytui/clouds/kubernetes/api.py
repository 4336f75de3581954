"""What every call to the Kubernetes API shares: its timeout, and its failures
as the engine understands them (CapacityError, PrecheckError, CloudError).

Imports the SDK only inside the functions that need it.
"""

from __future__ import annotations

import json
from typing import Any

from skytui.clouds.base import CapacityError, CloudError, PrecheckError

REQUEST_TIMEOUT = (5.0, 30.0)  # (connect, read) of every other call


def _api_message(exc: Any) -> str:
    """What an ApiException says, from its body (never its headers)."""
    try:
        body = json.loads(exc.body) if getattr(exc, "body", None) else {}
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or getattr(exc, "reason", "") or "error")[:300]


def _cloud_error(exc: BaseException, context: str, what: str) -> CloudError:
    """An SDK failure as the engine understands it."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        status = exc.status or 0
        text = f"kubernetes context {context}: {what} failed: {status} {_api_message(exc)}"
        if status in (401, 403):
            return PrecheckError(f"{text} (check the credentials and RBAC of this context)")
        if status in (400, 404, 422):
            return PrecheckError(text)
        return CapacityError(text)
    if isinstance(exc, (HTTPError, OSError)):
        return CapacityError(f"kubernetes context {context}: cannot reach the API server to {what}: "
                             f"{type(exc).__name__}")
    return CloudError(f"kubernetes context {context}: {what} failed: {type(exc).__name__}: {exc}")
