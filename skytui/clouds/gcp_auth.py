"""Finding GCP credentials (Application Default Credentials) without the network.

google.auth.default() ends by probing the GCE metadata server, which off GCE
costs a connection attempt to 169.254.169.254 on every `skytui check` (and its
opt-out, NO_GCE_CHECK, only counts when spelled exactly "true"). So it is
called only when a source is known to be there: GOOGLE_APPLICATION_CREDENTIALS,
gcloud's ADC file, or a machine whose firmware says it is a Google VM.
Nothing here ever puts a credential's content in a message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
ENV_CREDENTIALS = "GOOGLE_APPLICATION_CREDENTIALS"
FIX = "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
_DMI_PRODUCT = Path("/sys/class/dmi/id/product_name")


class CredentialsError(Exception):
    """Credentials were found but cannot be used; the message is safe to show."""


@dataclass(frozen=True)
class Found:
    credentials: Any  # google.auth.credentials.Credentials
    project: str | None  # the credentials' project, else GOOGLE_CLOUD_PROJECT / gcloud's
    kind: str  # "service account", "user", ...
    source: str  # where they came from

    @property
    def description(self) -> str:
        return f"{self.kind} credentials from {self.source}"


def gcloud_adc_file() -> Path:
    """Where `gcloud auth application-default login` writes its file."""
    config = os.environ.get("CLOUDSDK_CONFIG")
    root = Path(config) if config else Path.home() / ".config" / "gcloud"
    return root / "application_default_credentials.json"


def on_gce() -> bool:
    """This machine is a Google VM (read from its firmware, no network)."""
    if os.environ.get("NO_GCE_CHECK", "").lower() in ("true", "1", "yes"):
        return False
    try:
        return _DMI_PRODUCT.read_text().strip().startswith("Google")
    except OSError:
        return False


def _source() -> str | None:
    if os.environ.get(ENV_CREDENTIALS):
        return ENV_CREDENTIALS
    if gcloud_adc_file().is_file():
        return "gcloud application-default login"
    if on_gce():
        return "the GCE metadata server"
    return None


def credential_kind(credentials: Any) -> str:
    """What sort of identity these are, from their class (never their content)."""
    module = type(credentials).__module__
    kinds = {
        "google.oauth2.service_account": "service account",
        "google.oauth2.credentials": "user",
        "google.auth.external_account_authorized_user": "workforce identity user",
        "google.auth.impersonated_credentials": "impersonated service account",
        "google.auth.compute_engine.credentials": "VM service account",
        "google.auth.identity_pool": "workload identity federation",
        "google.auth.aws": "workload identity federation",
        "google.auth.pluggable": "workload identity federation",
    }
    return kinds.get(module, type(credentials).__name__)


def find_credentials() -> Found | None:
    """Application Default Credentials, or None when there are none to find.

    Raises CredentialsError when a source exists but cannot be loaded."""
    source = _source()
    if source is None:
        return None
    import google.auth
    from google.auth import exceptions

    try:
        credentials, default_project = google.auth.default(scopes=list(SCOPES))
    except exceptions.DefaultCredentialsError:
        # Its message may quote the file; say only where to look.
        raise CredentialsError(f"the GCP credentials from {source} could not be loaded") from None
    # A service account file names its project; otherwise GOOGLE_CLOUD_PROJECT
    # or gcloud's configured project, as google.auth found them.
    project = getattr(credentials, "project_id", None) or default_project
    return Found(credentials, project or None, credential_kind(credentials), source)
