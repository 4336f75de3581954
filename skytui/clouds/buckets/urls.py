"""Bucket URLs (`s3://bucket/prefix`, `gs://...`) and the object keys that may
become file paths on a node: the ones that would land outside their target
are refused before anything is fetched. Pure functions; no SDK, no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skytui.clouds.base import PrecheckError

SCHEMES = {"s3": "S3", "gs": "GCS"}
# SkyPilot's `store:` values skytui can serve, and their URL schemes; the
# others (azure, r2, ibm, ...) are valid in SkyPilot but have no client here.
STORE_SCHEMES = {"s3": "s3", "gcs": "gs"}
# `store:` left out: the store of the cloud the task runs on (SkyPilot's default).
CLOUD_STORES = {"aws": "s3", "gcp": "gcs"}
# Backslashes are separators to some tools; control characters would break
# the fetch script's one-line-per-object input (tab, newline) or cannot be in
# a file name at all (NUL).
_UNSAFE_KEY_CHARS = re.compile(r"[\\\x00-\x1f\x7f]")


class UnsafeKeyError(PrecheckError):
    """Object keys that would be written outside the directory they are copied into."""

    def __init__(self, where: BucketURL, keys: list[str]) -> None:
        self.keys = keys
        shown = ", ".join(repr(key) for key in keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        super().__init__(
            f"{where}: refusing to copy object key(s) that are not plain paths inside the target "
            f"(climbing out with '..', absolute, or holding a backslash or a control character): {shown}"
        )


def resolve_below(path: str) -> str | None:
    """`path`, taken relative to a base directory, with `.`, empty parts and
    `..` folded away: "" for the base itself, None when it leads out of the
    base (absolute, or more `..` than parts above them) or holds a NUL."""
    if path.startswith("/") or "\x00" in path:
        return None
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            parts.append(part)
        elif parts:
            parts.pop()
        else:
            return None
    return "/".join(parts)


def place_of_key(name: str) -> str | None:
    """Where an object listed as `name` (its key relative to the listed
    prefix) lands, relative to the target; None when not strictly inside it.
    "" (the object *is* the prefix) is the caller's case, not a place."""
    if _UNSAFE_KEY_CHARS.search(name):
        return None
    return resolve_below(name) or None  # "." or "a/.." would be the target itself


def places_in_target(src: BucketURL, names: list[str]) -> list[str]:
    """Where each of `src.list()`'s names lands, relative to the target (""
    for the one object that is the target). UnsafeKeyError names every key
    that would land outside: nothing is fetched then, so nothing half-happens."""
    if names == [""]:
        return [""]
    places = [place_of_key(name) for name in names]
    unsafe = [name for name, place in zip(names, places) if place is None]
    if unsafe:
        raise UnsafeKeyError(src, [f"{src.prefix}/{name}" if src.prefix else name for name in unsafe])
    return [place for place in places if place is not None]


@dataclass(frozen=True)
class BucketURL:
    """`s3://bucket/some/prefix` split; `prefix` has no leading or trailing slash."""

    scheme: str
    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> BucketURL:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in SCHEMES:
            raise ValueError(f"{url!r}: only {', '.join(f'{s}://' for s in SCHEMES)} buckets are supported")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValueError(f"{url!r}: no bucket name")
        return cls(scheme, bucket, prefix.strip("/"))

    def child(self, *parts: str) -> BucketURL:
        joined = "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))
        return BucketURL(self.scheme, self.bucket, joined)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
