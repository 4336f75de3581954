"""Buckets skytui makes for a job: the storage mounts that name one.

A storage mount that names a bucket (`{name: b}`, maybe with local `source:`
files) gets it from skytui: on its `store:`, else on the store of the cloud the
task runs on, created when missing and filled with the local files once per
job (a recovery finds the same bucket and objects); `file_sync` then treats it
as a bucket file_mount like any other. What skytui did is recorded as the
job's events, in the same DB as its statuses, before it is done: when the job
ends, however and whenever (a controller restart in between included), the
buckets skytui created for mounts with `persistent: false` are deleted, and no
other.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from skytui.clouds.base import PrecheckError
from skytui.clouds.buckets import (
    CLOUD_STORES,
    STORE_SCHEMES,
    BucketURL,
    bucket_name_problem,
    open_bucket,
)
from skytui.engine.file_sync import FileSyncError, bucket_source_of, local_sources_of
from skytui.engine.status import TERMINAL_NAMES
from skytui.spec import Task

if TYPE_CHECKING:
    from skytui.engine.store import AsyncStore

log = logging.getLogger(__name__)


def unplaceable_storage(task: Task, cloud: str) -> str | None:
    """What stops the buckets the task's storage mounts name from being made
    for it on `cloud` (the cloud it is placed on), for a refusal at launch."""
    for mount in named_mounts(task):
        try:
            _store_of(mount, cloud)
        except FileSyncError as exc:
            return str(exc)
    return None


# ------------------------------------------------------ buckets skytui makes


@dataclass(frozen=True)
class NamedMount:
    """A storage mount whose bucket skytui provides: `name:`, maybe local `source:` files."""

    label: str
    name: str
    store: str | None  # None: the store of the cloud the task is placed on
    persistent: bool
    sources: tuple[str, ...]  # local files and directories to upload into it
    listed: bool = False  # `source:` was a list: each directory goes under its own name


def named_mounts(task: Task) -> list[NamedMount]:
    return [
        NamedMount(f"file_mounts[{target!r}]", source.name, source.store, source.persistent,
                   tuple(local_sources_of(source)), isinstance(source.source, list))
        for target, source in task.file_mounts.items()
        if not isinstance(source, str) and source.name is not None and bucket_source_of(source) is None
    ]


def _store_of(mount: NamedMount, cloud: str) -> str:
    """The store the mount's bucket lives on, placed on `cloud`; FileSyncError when none serves it."""
    store = mount.store or CLOUD_STORES.get(cloud)
    if store is None:
        raise FileSyncError(
            f"{mount.label}: bucket {mount.name!r} would be created on the store of the cloud the task runs on, "
            f"and {cloud} has none; name one in the mount: {' or '.join(f'`store: {s}`' for s in STORE_SCHEMES)}"
        )
    if store not in STORE_SCHEMES:
        raise FileSyncError(f"{mount.label}: store {store!r} is valid in SkyPilot, but skytui cannot serve it")
    named = bucket_name_problem(mount.name, store)
    if named is not None:
        raise FileSyncError(f"{mount.label}: {named}")
    return store


# The job's record of its buckets, as events (kind, then a message that starts
# with the bucket's URL). "bucket-create" is written before the create call:
# a controller killed right after creating still finds the bucket its own.
_USED = "bucket-use"  # an existing bucket: never deleted by skytui
BUCKET_CREATING = "bucket-create"  # written before the create call
_NOT_CREATED = "bucket-not-created"  # the create call said no: not ours after all
_UPLOADED = "bucket-upload"  # a task's local sources are in it (once per job and task)
_DELETED = "bucket-delete"
_KEPT = "bucket-kept"  # it was to be deleted, and could not be


@dataclass
class BucketHistory:
    """What the job's events say of its buckets."""

    known: list[BucketURL] = field(default_factory=list)  # every bucket resolved for a mount, first first
    ours: dict[str, BucketURL] = field(default_factory=dict)  # created by skytui, not deleted yet, by URL
    uploaded: set[tuple[int | None, str]] = field(default_factory=set)  # (task index, URL)

    def add(self, kind: str, task_idx: int | None, message: str) -> None:
        try:
            url = BucketURL.parse(message.split(" ", 1)[0])
        except ValueError:
            return
        if kind in (_USED, BUCKET_CREATING) and url not in self.known:
            self.known.append(url)
        if kind == BUCKET_CREATING:
            self.ours[str(url)] = url
        elif kind in (_NOT_CREATED, _DELETED):
            self.ours.pop(str(url), None)
        elif kind == _UPLOADED:
            self.uploaded.add((task_idx, str(url)))

    def bucket_for(self, mount: NamedMount) -> BucketURL | None:
        """The bucket an earlier attempt (or task) resolved for this name, on the mount's store if it names one."""
        scheme = STORE_SCHEMES.get(mount.store) if mount.store else None
        return next((url for url in self.known if url.bucket == mount.name and scheme in (None, url.scheme)), None)


class JobBuckets:
    """The buckets a job's storage mounts name: made where missing, filled
    once, deleted at the job's end when skytui made them and no mount wants
    them kept. State lives in the job's events (see BucketHistory)."""

    def __init__(self, store: AsyncStore, job_id: int, tasks: Sequence[Task]) -> None:
        self.store = store
        self.job_id = job_id
        self.tasks = tasks

    def for_task(self, task_idx: int, cloud: str, region: str | None) -> TaskBuckets:
        """For a task placed on `cloud` (in `region`)."""
        return TaskBuckets(self, task_idx, cloud, region)

    async def history(self) -> BucketHistory:
        history = BucketHistory()
        after = 0
        while True:
            page = await self.store.events(after_id=after, job_id=self.job_id, limit=1000)
            for event in page:
                if event.kind.startswith("bucket-") and event.message:
                    history.add(event.kind, event.task_idx, event.message)
            if len(page) < 1000:
                return history
            after = page[-1].id

    async def note(self, task_idx: int | None, kind: str, message: str) -> None:
        await self.store.note(self.job_id, task_idx, kind, message)

    def _doomed(self) -> set[str]:
        """Names whose bucket goes at the job's end if skytui made it: every mount naming it says persistent: false."""
        mounts = [mount for task in self.tasks for mount in named_mounts(task)]
        kept = {mount.name for mount in mounts if mount.persistent}
        return {mount.name for mount in mounts if not mount.persistent} - kept

    async def release(self) -> None:
        """The job has ended: delete what skytui created for it and may not
        keep. Never raises (a failure is logged and noted on the job)."""
        doomed = self._doomed()
        if not doomed:
            return  # no DB read for the jobs (nearly all) that have nothing to delete
        try:
            job = await self.store.job(self.job_id)
            if job is None or job.status not in TERMINAL_NAMES:
                return  # not ended (a controller stopping mid-job): its buckets stay for the next attempt
            history = await self.history()
            for url in list(history.ours.values()):
                if url.bucket in doomed:
                    await self._delete(url)
        except Exception:  # noqa: BLE001 - cleanup must not fail the job's ending
            log.exception("job %s: could not delete the buckets it created", self.job_id)

    async def _delete(self, url: BucketURL) -> None:
        try:
            count = await open_bucket(url).remove()
        except PrecheckError as exc:
            log.warning("job %s: could not delete %s: %s", self.job_id, url, exc)
            await self.note(None, _KEPT, f"{url} could not be deleted at the job's end: {exc}")
            return
        log.info("job %s: deleted %s and its %d object(s)", self.job_id, url, count)
        await self.note(None, _DELETED, f"{url} deleted at the job's end, with its {count} object(s) "
                                        "(skytui created it; persistent: false)")


@dataclass(frozen=True)
class TaskBuckets:
    """JobBuckets for one task of the job, placed on `cloud`."""

    job: JobBuckets
    task_idx: int
    cloud: str
    region: str | None

    async def provide(self, task: Task) -> dict[str, BucketURL]:
        """Make sure every bucket the task names exists and holds its local
        sources; {mount label: bucket URL}. PrecheckError / FileSyncError: cannot."""
        mounts = named_mounts(task)
        if not mounts:
            return {}
        history = await self.job.history()
        urls = {mount.label: history.bucket_for(mount) or self._url_of(mount) for mount in mounts}
        for url in dict.fromkeys(urls.values()):
            group = [mount for mount in mounts if urls[mount.label] == url]
            if url not in history.known:
                await self._ensure(url, group[0])
            elif str(url) in history.ours:
                await self._create_if_missing(url)
            sources = [source for mount in group for source in mount.sources]
            if sources and (self.task_idx, str(url)) not in history.uploaded:
                await self._upload(url, group)
        return urls

    def _url_of(self, mount: NamedMount) -> BucketURL:
        return BucketURL(STORE_SCHEMES[_store_of(mount, self.cloud)], mount.name)

    async def _ensure(self, url: BucketURL, mount: NamedMount) -> None:
        bucket = open_bucket(url)
        if await bucket.exists():
            await self.job.note(self.task_idx, _USED, f"{url} for {mount.label}: the bucket exists; using it "
                                                      "(skytui never deletes a bucket it did not create)")
            return
        fate = "kept after the job" if mount.persistent else "deleted when the job ends (persistent: false)"
        await self.job.note(self.task_idx, BUCKET_CREATING, f"{url} for {mount.label}: creating the bucket; {fate}")
        try:
            created = await bucket.create(self._region_for(url))
        except PrecheckError:
            await self.job.note(self.task_idx, _NOT_CREATED, f"{url} was not created")
            raise
        if not created:
            await self.job.note(self.task_idx, _NOT_CREATED, f"{url} appeared before skytui created it; using it "
                                                             "(skytui never deletes a bucket it did not create)")

    async def _create_if_missing(self, url: BucketURL) -> None:
        """A bucket recorded as skytui's that is not there: the create call
        before failed half-way, or the controller died right after recording
        it. It is skytui's to create (and delete) still."""
        bucket = open_bucket(url)
        if not await bucket.exists():
            await bucket.create(self._region_for(url))

    def _region_for(self, url: BucketURL) -> str | None:
        """The task's region when the bucket is on its cloud's store (data next to the machines), else the default."""
        on_own_store = STORE_SCHEMES.get(CLOUD_STORES.get(self.cloud, "")) == url.scheme
        return self.region if on_own_store else None

    async def _upload(self, url: BucketURL, mounts: Sequence[NamedMount]) -> None:
        bucket = open_bucket(url)
        count = 0
        for mount in mounts:
            for source in mount.sources:
                local = Path(source).expanduser()
                if not local.exists():
                    raise FileSyncError(f"{mount.label}: {source} no longer exists on this machine")
                # SkyPilot's layout: a lone directory's contents at the bucket's
                # root; in a list, each directory under its own name; a file by its name.
                dest = url if not mount.listed and local.is_dir() else url.child(local.name)
                count += len(await bucket.upload(local, dest))
        labels = ", ".join(mount.label for mount in mounts)
        await self.job.note(self.task_idx, _UPLOADED, f"{url} for {labels}: uploaded {count} local file(s)")
