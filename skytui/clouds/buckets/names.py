"""Bucket names skytui may create: the providers' naming rules, as SkyPilot
checks them before creating a bucket. Pure functions.
"""

from __future__ import annotations

import re

# The providers' naming rules, as SkyPilot checks them before creating a bucket.
_S3_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
_GCS_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_S3_RESERVED_PREFIXES = ("xn--", "sthree-")
_S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3")
_GOOGLE_LOOKALIKES = ("google", "g00gle", "go0gle", "g0ogle")


def bucket_name_problem(name: str, store: str) -> str | None:
    """Why `name` cannot be a bucket of `store` ("s3" or "gcs"); None when it can."""
    shown = f"bucket name {name!r} is not valid for {store}"
    if store == "s3":
        if not 3 <= len(name) <= 63:
            return f"{shown}: it must be 3 to 63 characters long"
        if not _S3_NAME.match(name):
            return (f"{shown}: it can hold only lowercase letters, digits, dots (.) and hyphens (-), "
                    "and must begin and end with a letter or a digit")
        reserved = [affix for affix in _S3_RESERVED_PREFIXES if name.startswith(affix)]
        reserved += [affix for affix in _S3_RESERVED_SUFFIXES if name.endswith(affix)]
        if reserved:
            return f"{shown}: {reserved[0]!r} is reserved by AWS"
    else:
        longest = 222 if "." in name else 63
        if not 3 <= len(name) <= longest or any(len(part) > 63 for part in name.split(".")):
            return (f"{shown}: it must be 3 to 63 characters long (up to 222 with dots, "
                    "each dot-separated part at most 63)")
        if not _GCS_NAME.match(name):
            return (f"{shown}: it can hold only lowercase letters, digits, dots (.), hyphens (-) and "
                    "underscores (_), and must begin and end with a letter or a digit")
        if name.startswith("goog") or any(word in name for word in _GOOGLE_LOOKALIKES):
            return f"{shown}: it may not begin with 'goog' nor contain 'google' or a look-alike"
    if ".." in name:
        return f"{shown}: it may not hold two dots in a row"
    if _IP_ADDRESS.match(name):
        return f"{shown}: it may not look like an IP address"
    return None
