"""s3:// buckets through boto3, with the credentials of this machine. Blocking
SDK calls run in threads; boto3 is imported only when a bucket is opened.
"""

from __future__ import annotations

import asyncio
import json
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


class S3Bucket(BucketClient):
    scheme = "s3"

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

        where = BucketURL(self.scheme, self.bucket)
        try:
            await asyncio.to_thread(self._s3.head_bucket, Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                return False
            if code in ("403", "AccessDenied"):
                raise not_ours(where) from None
            problem = _s3_problem(exc, where)
            if problem is not None:
                raise problem from None
            raise
        return True

    async def create(self, region: str | None) -> bool:
        from botocore.exceptions import ClientError

        where = BucketURL(self.scheme, self.bucket)
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
                raise name_taken(where) from None
            if code == "InvalidBucketName":
                raise PrecheckError(f"{where}: S3 refused the bucket name {self.bucket!r} as invalid") from None
            problem = _s3_problem(exc, where)
            if problem is not None:
                raise problem from None
            raise
        return True

    async def _drop_bucket(self, where: BucketURL) -> None:
        await self._call(where, self._s3.delete_bucket, Bucket=self.bucket)
