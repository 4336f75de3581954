"""What every bucket client offers (the Bucket protocol), the signed object a
node fetches, the local files an upload sends, and the errors both clients
give alike. No SDK here.
"""

from __future__ import annotations

import abc
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from skytui.clouds.base import PrecheckError
from skytui.clouds.buckets.urls import BucketURL

SIGNED_URL_TTL_S = 6 * 3600  # long enough for a slow download, short enough to be worthless later


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


def not_ours(where: BucketURL) -> PrecheckError:
    return PrecheckError(f"{where}: a bucket of that name exists, but these credentials may not use it "
                         "(bucket names are global: it may belong to someone else); choose another `name:`")


def name_taken(where: BucketURL) -> PrecheckError:
    return PrecheckError(f"{where}: the bucket name {where.bucket!r} is taken by someone else "
                         "(bucket names are global); choose another `name:`")


class BucketClient(abc.ABC):
    """What the S3 and GCS clients share: a bucket goes only once emptied."""

    scheme: str
    bucket: str

    @abc.abstractmethod
    async def exists(self) -> bool: ...

    @abc.abstractmethod
    async def delete(self, src: BucketURL) -> int: ...

    @abc.abstractmethod
    async def _drop_bucket(self, where: BucketURL) -> None:
        """Delete the (now empty) bucket itself; gone already is fine."""

    async def remove(self) -> int:
        """Delete the bucket with every object in it; how many objects (0 when it is gone already)."""
        where = BucketURL(self.scheme, self.bucket)
        if not await self.exists():
            return 0
        count = await self.delete(where)
        await self._drop_bucket(where)
        return count
