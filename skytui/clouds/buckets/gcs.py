"""gs:// buckets through google-cloud-storage, with Application Default
Credentials. Blocking SDK calls run in threads; the library is imported only
when a bucket is opened.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from skytui.clouds.base import PrecheckError
from skytui.clouds.buckets.store import (
    SIGNED_URL_TTL_S,
    BucketClient,
    local_files,
    name_taken,
    not_ours,
)
from skytui.clouds.buckets.urls import BucketURL


class GCSBucket(BucketClient):
    """gs:// through google-cloud-storage, with Application Default Credentials.

    The endpoint is the library's own choice: storage.googleapis.com, or
    STORAGE_EMULATOR_HOST (scheme included) for a private endpoint or an
    emulator; signed URLs name that same endpoint, so nodes fetch from where
    this machine uploads. Signing needs credentials that can sign: a service
    account key, or an impersonated service account (signing through IAM
    signBlob). Credentials are read on first use, in a thread: on a VM that
    may ask the metadata server."""

    scheme = "gs"
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

        where = BucketURL(self.scheme, self.bucket)

        def probe(bucket: Any) -> bool:
            try:
                found: bool = bucket.exists(timeout=60)
            except Forbidden:
                raise not_ours(where) from None
            return found

        found: bool = await self._call(where, probe)
        return found

    async def create(self, region: str | None) -> bool:
        from google.api_core.exceptions import BadRequest, Conflict

        where = BucketURL(self.scheme, self.bucket)

        def make(bucket: Any) -> None:
            if bucket.client.project is None:
                raise PrecheckError(f"{where}: no GCP project to create the bucket in; set GOOGLE_CLOUD_PROJECT")
            try:
                bucket.client.create_bucket(bucket, location=region, timeout=60)
            except Conflict:
                # GCS answers 409 for a name anyone holds; one of ours would have been found by exists().
                raise name_taken(where) from None
            except BadRequest:
                raise PrecheckError(f"{where}: GCS refused the bucket name {self.bucket!r} as invalid") from None

        await self._call(where, make)
        return True

    async def _drop_bucket(self, where: BucketURL) -> None:
        from google.api_core.exceptions import NotFound

        def drop(bucket: Any) -> None:
            try:
                bucket.delete(timeout=60)
            except NotFound:
                pass  # gone meanwhile: what was asked

        await self._call(where, drop)
