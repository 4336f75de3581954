"""Buckets: where files wait on their way to nodes (`jobs.bucket`), and the
buckets a task mounts (`file_mounts: {/data: s3://…}`, or `{name: …}`: a
bucket skytui creates when it is missing, and may delete when the job ends).

Nodes never get bucket credentials from skytui: this machine lists and signs,
and a node fetches each object from a time-limited signed URL (HTTPS GET, no
SDK, no keys on the node). Signed URLs grant access, so they travel only on a
command's stdin and never appear in a log, an event or an error.

Blocking SDK calls run in threads. Clouds know nothing of the engine.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from skytui.clouds.base import PrecheckError

SCHEMES = {"s3": "S3", "gs": "GCS"}
# SkyPilot's `store:` values skytui can serve, and their URL schemes; the
# others (azure, r2, ibm, ...) are valid in SkyPilot but have no client here.
STORE_SCHEMES = {"s3": "s3", "gcs": "gs"}
# `store:` left out: the store of the cloud the task runs on (SkyPilot's default).
CLOUD_STORES = {"aws": "s3", "gcp": "gcs"}
SIGNED_URL_TTL_S = 6 * 3600  # long enough for a slow download, short enough to be worthless later
MANIFEST = "manifest.json"
# The node's fetch script exits with this, having written nothing, when a
# path it was given would land outside its target.
FETCH_REFUSED_EXIT = 4
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


# ------------------------------------------------------------ bucket names

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


@dataclass(frozen=True)
class SignedObject:
    """One object to fetch: where it goes (relative to the target), its mode and its URL."""

    relative: str
    mode: int
    url: str


class Bucket(Protocol):
    async def upload(self, local: Path, dest: BucketURL) -> list[tuple[str, int]]:
        """Copy a file or a directory tree under `dest`; [(relative path, mode)]."""
        ...

    async def put_json(self, dest: BucketURL, data: Any) -> None: ...

    async def get_json(self, src: BucketURL) -> Any | None:
        """The object's JSON, or None when there is no such object."""
        ...

    async def list(self, src: BucketURL) -> list[str]:
        """Keys under `src` as a directory, relative to it; [""] when `src` is one object."""
        ...

    def sign(self, src: BucketURL) -> str:
        """A GET URL for one object, valid SIGNED_URL_TTL_S."""
        ...

    async def delete(self, src: BucketURL) -> int:
        """Delete every object under `src`; how many."""
        ...

    async def exists(self) -> bool:
        """Whether the bucket exists; PrecheckError when it does but is not ours to use."""
        ...

    async def create(self, region: str | None) -> bool:
        """Create the bucket (in `region`, else the SDK's default); False when
        it turned out to exist and be ours already. PrecheckError: the name is
        taken by someone else, or refused."""
        ...

    async def remove(self) -> int:
        """Delete the bucket with every object in it; how many objects (0 when it is gone already)."""
        ...


def local_files(root: Path) -> Iterator[tuple[Path, str, int]]:
    """(path, path relative to root, permission bits) of a file or of every file of a tree."""
    if root.is_file():
        yield root, "", stat.S_IMODE(root.stat().st_mode)
        return
    for directory, _, files in os.walk(root):
        for name in sorted(files):
            path = Path(directory) / name
            if path.is_file():
                yield path, path.relative_to(root).as_posix(), stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------- S3


def _s3_problem(exc: Exception, where: BucketURL) -> PrecheckError | None:
    """The user-facing error for a failure that retrying cannot fix."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return PrecheckError(f"{where}: no AWS credentials on this machine; run `aws configure` or set AWS_PROFILE")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404", "NotFound"):
            return PrecheckError(f"{where}: bucket {where.bucket!r} does not exist")
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"):
            return PrecheckError(f"{where}: access denied ({code}); check the credentials' permissions on the bucket")
    return None


def _not_ours(where: BucketURL) -> PrecheckError:
    return PrecheckError(f"{where}: a bucket of that name exists, but these credentials may not use it "
                         "(bucket names are global: it may belong to someone else); choose another `name:`")


def _name_taken(where: BucketURL) -> PrecheckError:
    return PrecheckError(f"{where}: the bucket name {where.bucket!r} is taken by someone else "
                         "(bucket names are global); choose another `name:`")


class S3Bucket:
    def __init__(self, bucket: str) -> None:
        try:
            import boto3
            from botocore.config import Config as BotoConfig
        except ImportError as exc:
            raise PrecheckError("s3:// buckets need boto3: pip install 'skytui[aws]'") from exc
        self.bucket = bucket
        config = BotoConfig(connect_timeout=10, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"},
                            signature_version="s3v4")
        # AWS_ENDPOINT_URL and AWS_DEFAULT_REGION are honoured by boto3 itself.
        self._s3: Any = boto3.session.Session().client("s3", config=config)

    async def _call(self, where: BucketURL, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as exc:
            problem = _s3_problem(exc, where)
            if problem is not None:
                raise problem from None  # the SDK's message may quote request details
            raise

    async def upload(self, local: Path, dest: BucketURL) -> list[tuple[str, int]]:
        files = await asyncio.to_thread(lambda: list(local_files(local)))
        gate = asyncio.Semaphore(8)  # one request per object: a workdir of small files wants several at once

        async def put(path: Path, relative: str) -> None:
            async with gate:
                key = dest.child(relative).prefix if relative else dest.prefix
                await self._call(dest, self._s3.upload_file, str(path), self.bucket, key)

        await asyncio.gather(*(put(path, relative) for path, relative, _ in files))
        return [(relative, mode) for _, relative, mode in files]

    async def put_json(self, dest: BucketURL, data: Any) -> None:
        await self._call(dest, self._s3.put_object, Bucket=self.bucket, Key=dest.prefix,
                         Body=json.dumps(data).encode(), ContentType="application/json")

    async def get_json(self, src: BucketURL) -> Any | None:
        from botocore.exceptions import ClientError

        try:
            response = await asyncio.to_thread(self._s3.get_object, Bucket=self.bucket, Key=src.prefix)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            problem = _s3_problem(exc, src)
            if problem is not None:
                raise problem from None
            raise
        body = await asyncio.to_thread(response["Body"].read)
        return json.loads(body)

    def _keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys

    async def list(self, src: BucketURL) -> list[str]:
        directory = f"{src.prefix}/" if src.prefix else ""
        keys = await self._call(src, self._keys, directory)
        relative = [key[len(directory):] for key in keys if not key.endswith("/")]
        if relative or not src.prefix:
            return relative
        exact = await self._call(src, self._keys, src.prefix)
        return [""] if src.prefix in exact else []

    def sign(self, src: BucketURL) -> str:
        url: str = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": src.prefix}, ExpiresIn=SIGNED_URL_TTL_S
        )
        return url

    async def delete(self, src: BucketURL) -> int:
        keys = await self._call(src, self._keys, f"{src.prefix}/" if src.prefix else "")
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start:start + 1000]]
            await self._call(src, self._s3.delete_objects, Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    async def exists(self) -> bool:
        from botocore.exceptions import ClientError

        where = BucketURL("s3", self.bucket)
        try:
            await asyncio.to_thread(self._s3.head_bucket, Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                return False
            if code in ("403", "AccessDenied"):
                raise _not_ours(where) from None
            problem = _s3_problem(exc, where)
            if problem is not None:
                raise problem from None
            raise
        return True

    async def create(self, region: str | None) -> bool:
        from botocore.exceptions import ClientError

        where = BucketURL("s3", self.bucket)
        region = region or self._s3.meta.region_name
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1":  # us-east-1 is S3's default and refuses to be named
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            await asyncio.to_thread(self._s3.create_bucket, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "BucketAlreadyOwnedByYou":
                return False
            if code == "BucketAlreadyExists":
                raise _name_taken(where) from None
            if code == "InvalidBucketName":
                raise PrecheckError(f"{where}: S3 refused the bucket name {self.bucket!r} as invalid") from None
            problem = _s3_problem(exc, where)
            if problem is not None:
                raise problem from None
            raise
        return True

    async def remove(self) -> int:
        where = BucketURL("s3", self.bucket)
        if not await self.exists():
            return 0
        count = await self.delete(where)
        await self._call(where, self._s3.delete_bucket, Bucket=self.bucket)
        return count


# --------------------------------------------------------------------- GCS


class GCSBucket:
    """gs:// through google-cloud-storage, with Application Default Credentials.

    The endpoint is the library's own choice: storage.googleapis.com, or
    STORAGE_EMULATOR_HOST (scheme included) for a private endpoint or an
    emulator; signed URLs name that same endpoint, so nodes fetch from where
    this machine uploads. Signing needs credentials that can sign: a service
    account key, or an impersonated service account (signing through IAM
    signBlob). Credentials are read on first use, in a thread: on a VM that
    may ask the metadata server."""

    _SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
    _PARALLEL = 8  # objects uploaded or deleted at once: GCS takes one HTTP call per object

    def __init__(self, bucket: str) -> None:
        try:
            import google.cloud.storage  # noqa: F401
        except ImportError as exc:
            raise PrecheckError("gs:// buckets need google-cloud-storage: pip install 'skytui[gcp]'") from exc
        import threading

        self.bucket = bucket
        self._handle: Any = None  # the SDK's Bucket, once credentials are found
        self._opening = threading.Lock()

    # ------------------------------------------------------------ plumbing

    def _open(self) -> Any:
        """The SDK's bucket handle. Blocking (reads credentials): call it in a thread."""
        with self._opening:
            if self._handle is None:
                self._handle = self._connect()
            return self._handle

    def _connect(self) -> Any:
        import google.auth
        from google.auth.credentials import Signing
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage

        where = f"gs://{self.bucket}"
        try:
            credentials, project = google.auth.default(scopes=[self._SCOPE])
        except DefaultCredentialsError:
            # Its message can quote a key file's parse error: say only what to do.
            key_file = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            found = (f"GOOGLE_APPLICATION_CREDENTIALS ({key_file}) is not a usable credentials file" if key_file
                     else "no GCP credentials found on this machine")
            raise PrecheckError(
                f"{where}: {found}; set GOOGLE_APPLICATION_CREDENTIALS to a service account key file "
                "(nodes fetch through signed URLs, which need credentials that can sign)"
            ) from None
        if not isinstance(credentials, Signing):
            cannot_sign = {  # what google.auth finds that holds no key to sign with
                "google.oauth2.credentials": "user credentials (gcloud auth application-default login)",
                "google.auth.compute_engine.credentials": "the VM's metadata-server credentials",
                "google.auth.external_account": "workload identity federation credentials",
            }
            kind = cannot_sign.get(type(credentials).__module__, type(credentials).__name__)
            raise PrecheckError(
                f"{where}: the GCP credentials found are {kind}, which cannot sign the URLs nodes fetch from; "
                "signing needs a service account key (GOOGLE_APPLICATION_CREDENTIALS=key.json) or an impersonated "
                "service account, which signs through IAM signBlob (`gcloud auth application-default login "
                "--impersonate-service-account SA`, with roles/iam.serviceAccountTokenCreator on SA)"
            )
        # Credentials passed explicitly: with STORAGE_EMULATOR_HOST set the library
        # would otherwise go anonymous, and anonymous credentials cannot sign.
        return storage.Client(project=project, credentials=credentials).bucket(self.bucket)

    @staticmethod
    def _problem(exc: Exception, where: BucketURL) -> PrecheckError | None:
        """The user-facing error for a failure that retrying cannot fix."""
        from google.api_core import exceptions as api
        from google.auth.exceptions import RefreshError

        if isinstance(exc, PrecheckError):
            return exc
        if isinstance(exc, api.NotFound):  # an object's 404 is handled where it can happen
            return PrecheckError(f"{where}: bucket {where.bucket!r} does not exist")
        if isinstance(exc, (api.Forbidden, api.Unauthorized)):
            return PrecheckError(f"{where}: access denied ({exc.code}); check the credentials' permissions on the bucket")
        if isinstance(exc, RefreshError) and not exc.retryable:
            return PrecheckError(f"{where}: the GCP credentials were refused when asking for an access token; "
                                 "check that the service account key is still valid")
        return None

    async def _call(self, where: BucketURL, fn: Callable[[Any], Any]) -> Any:
        """`fn(bucket handle)` in a thread, its permanent failures as PrecheckError."""
        try:
            return await asyncio.to_thread(lambda: fn(self._open()))
        except Exception as exc:
            problem = self._problem(exc, where)
            if problem is not None:
                raise problem from None  # the SDK's message may quote request details
            raise

    async def _each(self, calls: list[Callable[[], Awaitable[None]]]) -> None:
        """Run the calls, _PARALLEL at a time; the first failure cancels the rest."""
        gate = asyncio.Semaphore(self._PARALLEL)

        async def gated(call: Callable[[], Awaitable[None]]) -> None:
            async with gate:
                await call()

        tasks = [asyncio.ensure_future(gated(call)) for call in calls]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    @staticmethod
    def _names(bucket: Any, prefix: str, limit: int | None = None) -> list[str]:
        # The client follows nextPageToken itself; only names are asked for.
        blobs = bucket.list_blobs(prefix=prefix, max_results=limit, fields="items(name),nextPageToken", timeout=60)
        return [blob.name for blob in blobs]

    # ------------------------------------------------------------ protocol

    async def upload(self, local: Path, dest: BucketURL) -> list[tuple[str, int]]:
        files = await asyncio.to_thread(lambda: list(local_files(local)))

        def sender(path: Path, relative: str) -> Callable[[], Awaitable[None]]:
            key = dest.child(relative).prefix if relative else dest.prefix
            # The library picks a multipart upload up to 8 MiB and a resumable one above.
            return lambda: self._call(dest, lambda b: b.blob(key).upload_from_filename(str(path), timeout=300))

        await self._each([sender(path, relative) for path, relative, _ in files])
        return [(relative, mode) for _, relative, mode in files]

    async def put_json(self, dest: BucketURL, data: Any) -> None:
        await self._call(dest, lambda b: b.blob(dest.prefix).upload_from_string(
            json.dumps(data), content_type="application/json", timeout=60))

    async def get_json(self, src: BucketURL) -> Any | None:
        from google.api_core.exceptions import NotFound

        def read(bucket: Any) -> bytes | None:
            try:
                data: bytes = bucket.blob(src.prefix).download_as_bytes(timeout=60)
                return data
            except NotFound:
                # No such object, or no such bucket? A listing 404s only for the latter.
                self._names(bucket, src.prefix, limit=1)
                return None

        data = await self._call(src, read)
        return None if data is None else json.loads(data)

    async def list(self, src: BucketURL) -> list[str]:
        directory = f"{src.prefix}/" if src.prefix else ""
        names = await self._call(src, lambda b: self._names(b, directory))
        relative = [name[len(directory):] for name in names if not name.endswith("/")]
        if relative or not src.prefix:
            return relative
        exists = await self._call(src, lambda b: b.blob(src.prefix).exists(timeout=60))
        return [""] if exists else []

    def sign(self, src: BucketURL) -> str:
        from datetime import timedelta

        bucket = self._open()  # already open: every caller lists or uploads first
        url: str = bucket.blob(src.prefix).generate_signed_url(
            version="v4", expiration=timedelta(seconds=SIGNED_URL_TTL_S), method="GET",
            api_access_endpoint=bucket.client.api_endpoint,  # the endpoint the client uses, emulator included
        )
        return url

    async def delete(self, src: BucketURL) -> int:
        from google.api_core.exceptions import NotFound

        directory = f"{src.prefix}/" if src.prefix else ""
        names = await self._call(src, lambda b: self._names(b, directory))

        def remover(name: str) -> Callable[[], Awaitable[None]]:
            def remove(bucket: Any) -> None:
                try:
                    bucket.blob(name).delete(timeout=60)
                except NotFound:
                    pass  # already gone: deleting twice is fine

            return lambda: self._call(src, remove)

        await self._each([remover(name) for name in names])
        return len(names)

    async def exists(self) -> bool:
        from google.api_core.exceptions import Forbidden

        where = BucketURL("gs", self.bucket)

        def probe(bucket: Any) -> bool:
            try:
                found: bool = bucket.exists(timeout=60)
            except Forbidden:
                raise _not_ours(where) from None
            return found

        found: bool = await self._call(where, probe)
        return found

    async def create(self, region: str | None) -> bool:
        from google.api_core.exceptions import BadRequest, Conflict

        where = BucketURL("gs", self.bucket)

        def make(bucket: Any) -> None:
            if bucket.client.project is None:
                raise PrecheckError(f"{where}: no GCP project to create the bucket in; set GOOGLE_CLOUD_PROJECT")
            try:
                bucket.client.create_bucket(bucket, location=region, timeout=60)
            except Conflict:
                # GCS answers 409 for a name anyone holds; one of ours would have been found by exists().
                raise _name_taken(where) from None
            except BadRequest:
                raise PrecheckError(f"{where}: GCS refused the bucket name {self.bucket!r} as invalid") from None

        await self._call(where, make)
        return True

    async def remove(self) -> int:
        from google.api_core.exceptions import NotFound

        where = BucketURL("gs", self.bucket)
        if not await self.exists():
            return 0
        count = await self.delete(where)

        def drop(bucket: Any) -> None:
            try:
                bucket.delete(timeout=60)
            except NotFound:
                pass  # gone meanwhile: what was asked

        await self._call(where, drop)
        return count


def open_bucket(url: BucketURL) -> Bucket:
    return S3Bucket(url.bucket) if url.scheme == "s3" else GCSBucket(url.bucket)


# ----------------------------------------------------------- the node's side

# Reads `mode<TAB>relative<TAB>url` lines on stdin and fetches each object
# into the target directory, 8 at a time; python3 where the image has it,
# curl otherwise. Errors name the file and the HTTP status, never the URL.
# The controller already refused names that leave the target; the node checks
# again before fetching anything, where its symlinks can be seen, and exits
# FETCH_REFUSED_EXIT having written nothing if one would.
_FETCH_PY = r"""
import concurrent.futures, os, sys, urllib.request, urllib.error
target = sys.argv[1]
jobs = [line.rstrip("\n").split("\t", 2) for line in sys.stdin if line.strip()]
root = os.path.realpath(target)
def place(rel):
    if not rel:
        return target if len(jobs) == 1 else None
    parts = rel.split("/")
    if (rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts)
            or any(ord(c) < 32 or c == "\x7f" for c in rel)):
        return None
    path = os.path.realpath(os.path.join(root, rel))
    return path if path != root and os.path.commonpath([root, path]) == root else None
places = [place(rel) for _, rel, _ in jobs]
refused = [rel for (_, rel, _), path in zip(jobs, places) if path is None]
for rel in refused[:10]:
    print(f"refusing {rel!r}: it would be written outside {target}", file=sys.stderr)
if refused:
    sys.exit(%(refused)d)
def fetch(job, path):
    mode, rel, url = job
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    for attempt in range(4):
        try:
            part = os.open(path + ".part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(part, "wb") as out, urllib.request.urlopen(url, timeout=120) as response:
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
            os.replace(path + ".part", path)
            os.chmod(path, int(mode, 8))
            return None
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
            if exc.code < 500:
                break
        except OSError as exc:
            error = type(exc).__name__
    return f"{rel or os.path.basename(path)}: {error}"
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    failures = [f for f in pool.map(fetch, jobs, places) if f]
for failure in failures[:10]:
    print("cannot fetch " + failure, file=sys.stderr)
sys.exit(1 if failures else 0)
""" % {"refused": FETCH_REFUSED_EXIT}

# Lines are split by hand: with IFS=<tab>, `read` would merge the two tabs
# around an empty relative path. `realpath -m` (GNU) sees symlinks; where it
# is missing, only the names are checked.
_FETCH_SH = r"""
T={target}
if command -v python3 >/dev/null 2>&1; then exec python3 -c {py} "$T"; fi
tab="$(printf '\t')"
list="$(cat)"
if base="$(realpath -m -- "$T" 2>/dev/null)"; then resolve=1; base="${{base%/}}"; else resolve=0; fi
inside() {{
  case "$1" in /*|*\\*|*//*|./*|*/./*|*/.|.|../*|*/../*|*/..|..|*[[:cntrl:]]*) return 1 ;; esac
  [ "$resolve" = 1 ] || return 0
  r="$(realpath -m -- "$T/$1" 2>/dev/null)" || return 1
  case "$r" in "$base"/?*) return 0 ;; esac
  return 1
}}
n=0; single=0; refused=0
while IFS= read -r line; do
  case "$line" in *"$tab"*"$tab"*) ;; *) continue ;; esac
  rest="${{line#*"$tab"}}"; rel="${{rest%%"$tab"*}}"; n=$((n + 1))
  if [ -z "$rel" ]; then single=1
  elif ! inside "$rel"; then echo "refusing '$rel': it would be written outside $T" >&2; refused=1; fi
done <<LIST
$list
LIST
if [ "$single" = 1 ] && [ "$n" -gt 1 ]; then echo "refusing '': it would be written outside $T" >&2; refused=1; fi
[ "$refused" = 0 ] || exit {refused}
status=0
while IFS= read -r line; do
  case "$line" in *"$tab"*"$tab"*) ;; *) continue ;; esac
  mode="${{line%%"$tab"*}}"; rest="${{line#*"$tab"}}"; rel="${{rest%%"$tab"*}}"; url="${{rest#*"$tab"}}"
  [ -n "$url" ] || continue
  if [ -n "$rel" ]; then p="$T/$rel"; else p="$T"; fi
  mkdir -p "$(dirname "$p")"
  if curl -fsSL --path-as-is --retry 3 -o "$p" "$url" 2>/dev/null; then chmod "$mode" "$p"; else echo "cannot fetch ${{rel:-$p}}" >&2; status=1; fi
done <<LIST
$list
LIST
exit $status
"""


def fetch_command(target: str) -> str:
    """The node command that fetches `fetch_input(...)` objects into `target`
    (a directory; or the file itself for one object with relative path "")."""
    import shlex

    # "" is the login's home itself: "$T/$rel" must not become "/$rel".
    return _FETCH_SH.format(target=shlex.quote(target or "."), py=shlex.quote(_FETCH_PY),
                            refused=FETCH_REFUSED_EXIT)


def fetch_input(objects: list[SignedObject]) -> str:
    return "".join(f"{obj.mode:o}\t{obj.relative}\t{obj.url}\n" for obj in objects)
