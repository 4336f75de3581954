"""Getting a task's files onto its nodes: the workdir, local file_mounts and
bucket file_mounts.

Local files go from this machine over SFTP ("two-hop": here, then the node),
or, when `jobs.bucket` is set, through the bucket: uploaded once per job, so
every recovery gets the same snapshot of the files as the first launch, and
deleted when the job ends (the bucket itself is kept). The layout, under the
bucket's prefix and this install's id (two installs may share a bucket):

    skytui-<install>/job-<id>/workdir/…               the workdir
    skytui-<install>/job-<id>/local-file-mounts/<i>/…  directory mounts
    skytui-<install>/job-<id>/tmp-files/<i>            single-file mounts
    skytui-<install>/job-<id>/tmp-files/manifest.json  modes; written last, so it marks a complete upload

(task k > 0 of a pipeline: `job-<id>/task-<k>/…`; a pool's workers:
`pool-<name>/v<version>/…`, deleted when the pool goes). Nodes fetch objects from
signed URLs (clouds/buckets.py). Bucket file_mounts are fetched (COPY) or
mounted (MOUNT, MOUNT_CACHED) where the node has a mount tool.

A storage mount that names a bucket (`{name: b}`, maybe with local `source:`
files) gets it from `named_buckets` (made where missing, deleted at the job's
end when skytui made it and `persistent: false`); from then on it is a bucket
file_mount like any other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from skytui.clouds.base import Node, PrecheckError
from skytui.clouds.buckets import (
    FETCH_REFUSED_EXIT,
    STORE_SCHEMES,
    Bucket,
    BucketURL,
    SignedObject,
    UnsafeKeyError,
    bucket_name_problem,
    fetch_command,
    fetch_input,
    open_bucket,
    place_of_key,
    places_in_target,
    resolve_below,
)
from skytui.spec import FileMount, Task

if TYPE_CHECKING:
    from skytui.engine.named_buckets import TaskBuckets

log = logging.getLogger(__name__)

WORKDIR = "sky_workdir"
# A MOUNT needs one of these on the node (they use the node's own cloud
# credentials, e.g. an instance profile); exit 3 from the script: none found.
_MOUNT_TOOLS = {
    "s3": ("mount-s3 (mountpoint-s3) or goofys",
           ('if command -v mount-s3 >/dev/null 2>&1; then mount-s3 {bucket} "$T" {prefix_flag}; '
            'elif command -v goofys >/dev/null 2>&1; then goofys {bucket_prefix} "$T"; else exit 3; fi')),
    "gs": ("gcsfuse",
           'if command -v gcsfuse >/dev/null 2>&1; then gcsfuse {only_dir} {bucket} "$T"; else exit 3; fi'),
}


class FileSyncError(Exception):
    """The files cannot be provided as the task asks (FAILED_PRECHECKS)."""


class UnsafePathError(FileSyncError):
    """A bucket key or a file_mounts destination would be written outside
    its target (FAILED_SETUP). Raised before anything is written."""


@dataclass(frozen=True)
class Transfer:
    kind: Literal["workdir", "local", "bucket-copy", "bucket-mount"]
    source: str  # a local path or a bucket URL
    target: str  # on the node: relative to the login's home, or absolute
    label: str  # how the user wrote it, for errors: "workdir", "file_mounts['/data']"
    index: int = 0  # among file_mounts, for the staging layout
    # A bucket skytui provides (a storage mount's `name:`): its URL is known
    # once the bucket is (source "" until then), and it may well be empty.
    named: bool = False


def node_target(target: str, *, absolute_mounts: bool) -> str:
    """Where a file_mounts destination lands. `~/x` and `x` are in the login's
    home; `/x` is /x on a machine of its own, and inside the home of a sandbox."""
    if target.startswith("~/"):
        return target[2:]
    if target.startswith("/"):
        return target if absolute_mounts else target.lstrip("/")
    return target


def confined_target(transfer: Transfer) -> Transfer:
    """`transfer` with its destination normalised; UnsafePathError when a
    relative one (in the login's home: every destination on this machine's
    sandboxes) climbs out of that home with `..`."""
    if transfer.kind == "workdir" or transfer.target.startswith("/"):
        return transfer  # the workdir's place is ours; an absolute path is on a machine of its own
    where = resolve_below(transfer.target)
    if where is None:
        raise UnsafePathError(
            f"{transfer.label}: the destination leads outside the node's home directory; refusing to write there"
        )
    return dataclasses.replace(transfer, target=where)


def plan_transfers(task: Task, *, workdir: str, absolute_mounts: bool) -> list[Transfer]:
    """What to put where. A bucket skytui provides has no URL yet (source ""):
    sync_task_files fills it in once the bucket is there."""
    transfers: list[Transfer] = []
    if isinstance(task.workdir, str):
        transfers.append(Transfer("workdir", task.workdir, workdir, "workdir"))
    for index, (target, source) in enumerate(task.file_mounts.items()):
        where = node_target(target, absolute_mounts=absolute_mounts)
        label = f"file_mounts[{target!r}]"
        if isinstance(source, str):
            kind: Literal["local", "bucket-copy"] = "bucket-copy" if "://" in source else "local"
            transfers.append(Transfer(kind, source, where, label, index))
            continue
        transfers.append(_storage_transfer(source, where, label, index))
    return transfers


def _storage_transfer(mount: FileMount, where: str, label: str, index: int) -> Transfer:
    kind: Literal["bucket-copy", "bucket-mount"] = "bucket-copy" if mount.mode == "COPY" else "bucket-mount"
    problem = _mount_problem(mount, label)
    if problem is not None:
        raise FileSyncError(problem)
    if bucket_source_of(mount) is not None:
        return Transfer(kind, str(mount.source), where, label, index)
    return Transfer(kind, "", where, label, index, named=True)


def bucket_source_of(mount: FileMount) -> str | None:
    """The URL of an existing bucket the mount names as its source, if it does."""
    return mount.source if isinstance(mount.source, str) and "://" in mount.source else None


def local_sources_of(mount: FileMount) -> list[str]:
    if mount.source is None:
        return []
    return [mount.source] if isinstance(mount.source, str) else list(mount.source)


def _mount_problem(mount: FileMount, label: str) -> str | None:
    """What makes a storage mount impossible to serve, whatever its placement."""
    if mount.store is not None and mount.store not in STORE_SCHEMES:
        return (f"{label}: store {mount.store!r} is valid in SkyPilot, but skytui cannot serve it "
                f"(it serves {', '.join(STORE_SCHEMES)}); use one of those, or an existing bucket as "
                "`source: s3://bucket/path` (or gs://)")
    if bucket_source_of(mount) is not None:
        return None
    sources = local_sources_of(mount)
    urls = [source for source in sources if "://" in source]
    if urls:
        return f"{label}: a list of sources may hold only local paths, not {urls[0]!r}"
    if mount.name is None:
        return (f"{label}: local files ({sources[0]}) need a bucket to go to: give its `name:` "
                "(skytui creates it if it does not exist)")
    if mount.store is not None:
        named = bucket_name_problem(mount.name, mount.store)
        if named is not None:
            return f"{label}: {named}"
    return None


def unsupported_transfer(task: Task) -> str | None:
    """What of the task's files can never be provided, for a refusal at launch."""
    if task.workdir is not None and not isinstance(task.workdir, str):
        return "workdir: a git workdir ({url, ref}) is not supported yet; use a local directory"
    try:
        transfers = plan_transfers(task, workdir=WORKDIR, absolute_mounts=True)
    except FileSyncError as exc:
        return str(exc)
    for transfer in transfers:
        if transfer.kind.startswith("bucket") and not transfer.named:
            try:
                BucketURL.parse(transfer.source)
            except ValueError as exc:
                return f"{transfer.label}: {exc}"
    return None


# ------------------------------------------------------------------ staging


class StagingArea:
    """One job's (or one pool's) files in `jobs.bucket`."""

    def __init__(self, bucket_url: str, install_id: str, owner: str) -> None:
        """`owner`: `job-<id>` or `pool-<name>`."""
        self.url = BucketURL.parse(bucket_url)
        self.root = self.url.child(f"skytui-{install_id}", owner)
        self._bucket: Bucket | None = None

    @property
    def bucket(self) -> Bucket:
        if self._bucket is None:
            self._bucket = open_bucket(self.url)
        return self._bucket

    def part_root(self, part: str) -> BucketURL:
        """`part`: "" for a job's first task, `task-<k>` for a later one, `v<version>` for a pool."""
        return self.root.child(part) if part else self.root

    @staticmethod
    def key_of(transfer: Transfer) -> str:
        if transfer.kind == "workdir":
            return "workdir"
        if Path(transfer.source).expanduser().is_dir():
            return f"local-file-mounts/{transfer.index}"
        return f"tmp-files/{transfer.index}"

    async def ensure_uploaded(self, part: str, transfers: Sequence[Transfer]) -> dict[str, list[list[object]]]:
        """Upload the task's local files unless a complete upload is there; {key: [[relative, mode]]}."""
        root = self.part_root(part)
        manifest_url = root.child("tmp-files", "manifest.json")
        manifest = await self.bucket.get_json(manifest_url)
        if isinstance(manifest, dict):
            return manifest
        manifest = {}
        for transfer in transfers:
            local = Path(transfer.source).expanduser()
            if not local.exists():
                raise FileSyncError(f"{transfer.label}: {transfer.source} no longer exists on this machine")
            key = self.key_of(transfer)
            files = await self.bucket.upload(local, root.child(key))
            manifest[key] = [[relative, mode] for relative, mode in files]
        await self.bucket.put_json(manifest_url, manifest)
        return manifest

    def signed(self, part: str, transfer: Transfer, manifest: dict[str, list[list[object]]]) -> list[SignedObject]:
        key = self.key_of(transfer)
        base = self.part_root(part).child(key)
        entries = [(str(relative), int(str(mode))) for relative, mode in manifest.get(key, [])]
        # The manifest is read back from the bucket, where anyone who can write
        # there could have edited it: its paths get the same check as any key.
        unsafe = [relative for relative, _ in entries if relative and place_of_key(relative) != relative]
        if unsafe:
            raise UnsafePathError(
                f"{transfer.label}: the staged manifest in {base} lists path(s) that are not plain paths "
                f"inside the target: {', '.join(map(repr, unsafe[:5]))}"
            )
        return [
            SignedObject(relative, mode, self.bucket.sign(base.child(relative) if relative else base))
            for relative, mode in entries
        ]

    async def discard(self) -> int:
        return await self.bucket.delete(self.root)


# --------------------------------------------------------------------- sync


def _prepare_command(target: str, *, is_dir: bool) -> str:
    """Make the target's directory, with passwordless sudo when it is outside
    the login's reach (/data on a VM), then hand it to the login user."""
    directory = target if is_dir else str(Path(target).parent)
    if directory in ("", "."):
        return "true"
    d = shlex.quote(directory)
    return (f"mkdir -p {d} 2>/dev/null || {{ sudo -n mkdir -p {d} && sudo -n chown \"$(id -u):$(id -g)\" {d}; }} "
            f"|| {{ echo 'cannot create {directory} (no write access and no passwordless sudo)' >&2; exit 1; }}")


async def _run(node: Node, command: str, what: str, *, input: str | None = None, timeout: float = 3600.0) -> None:
    status, _, err = await node.run(command, timeout=timeout, input=input)
    if status == 3 and what.startswith("mount"):
        raise FileSyncError(err.strip() or what)
    if status != 0:
        # The stderr of fetch/mount never holds a URL (see buckets._FETCH_PY).
        raise FileSyncError(f"{what} failed on {node.info.host}: {err.strip()[-500:] or f'exit {status}'}")


async def _fetch(node: Node, target: str, objects: list[SignedObject], label: str) -> None:
    is_dir = not (len(objects) == 1 and objects[0].relative == "")
    await _run(node, _prepare_command(target, is_dir=is_dir), f"{label}: preparing {target}")
    if not objects:
        return  # an empty bucket: its directory is all there is to make
    status, _, err = await node.run(fetch_command(target), timeout=3600.0, input=fetch_input(objects))
    if status == FETCH_REFUSED_EXIT:
        # The node saw a path leave the target (a symlink there, say) and fetched nothing.
        raise UnsafePathError(f"{label}: refused on {node.info.host}: {err.strip()[-500:]}")
    if status != 0:
        # The stderr of the fetch never holds a URL (see buckets._FETCH_PY).
        raise FileSyncError(f"{label}: fetching into {target} failed on {node.info.host}: "
                            f"{err.strip()[-500:] or f'exit {status}'}")


async def _bucket_objects(transfer: Transfer) -> list[SignedObject]:
    url = BucketURL.parse(transfer.source)
    bucket = open_bucket(url)
    names = await bucket.list(url)
    if not names and transfer.named:
        return []  # a bucket made for the task, with nothing in it yet: an empty directory
    if not names:
        raise FileSyncError(f"{transfer.label}: {url} is empty or does not exist")
    try:
        places = places_in_target(url, names)
    except UnsafeKeyError as exc:
        raise UnsafePathError(f"{transfer.label}: {exc}") from exc
    # Signing is CPU (an RSA signature per GCS object) or even a call to IAM: not on the event loop.
    return await asyncio.to_thread(lambda: [
        SignedObject(place, 0o644, bucket.sign(url.child(name) if name else url))
        for name, place in zip(names, places)
    ])


def _mount_command(transfer: Transfer) -> str:
    url = BucketURL.parse(transfer.source)
    tools, template = _MOUNT_TOOLS[url.scheme]
    mount = template.format(
        bucket=shlex.quote(url.bucket),
        prefix_flag=f"--prefix {shlex.quote(url.prefix + '/')}" if url.prefix else "",
        bucket_prefix=shlex.quote(f"{url.bucket}:{url.prefix}" if url.prefix else url.bucket),
        only_dir=f"--only-dir {shlex.quote(url.prefix)}" if url.prefix else "",
    )
    missing = (f"{transfer.label}: mode MOUNT of {url} needs {tools} on the node, and none is installed there; "
               "use an image that has one, or `mode: COPY`")
    return (f"T={shlex.quote(transfer.target)}; {_prepare_command(transfer.target, is_dir=True)}; "
            f"( {mount} ); rc=$?; [ $rc -eq 3 ] && echo {shlex.quote(missing)} >&2; exit $rc")


async def sync_task_files(
    nodes: Sequence[Node], task: Task, *, absolute_mounts: bool,
    staging: StagingArea | None, staging_part: str = "", buckets: TaskBuckets | None = None,
) -> None:
    """Put the task's files on every node (through `staging`, under
    `staging_part`, when set; the buckets its storage mounts name made by
    `buckets`). FileSyncError: cannot be done as asked (UnsafePathError: a
    key or a destination would land outside its target, and nothing was
    written); NodeError: a node could not be reached (the caller decides)."""
    if not nodes:
        return
    workdir = nodes[0].info.path(WORKDIR)
    transfers = [confined_target(t) for t in plan_transfers(task, workdir=workdir, absolute_mounts=absolute_mounts)]
    transfers = await _with_buckets(transfers, task, buckets)
    local = [t for t in transfers if t.kind in ("workdir", "local")]
    for transfer in local:
        if not Path(transfer.source).expanduser().exists() and staging is None:
            raise FileSyncError(f"{transfer.label}: {transfer.source} no longer exists on this machine")
    # What nodes fetch, signed once for all of them.
    fetches: dict[int, list[SignedObject]] = {}
    try:
        if staging is not None and local:
            manifest = await staging.ensure_uploaded(staging_part, local)
            for transfer in local:
                fetches[id(transfer)] = await asyncio.to_thread(staging.signed, staging_part, transfer, manifest)
        for transfer in transfers:
            if transfer.kind == "bucket-copy":
                fetches[id(transfer)] = await _bucket_objects(transfer)
    except PrecheckError as exc:
        raise FileSyncError(str(exc)) from exc

    async def sync_node(node: Node) -> None:
        for transfer in transfers:
            target = node.info.path(WORKDIR) if transfer.kind == "workdir" else transfer.target
            if transfer.kind in ("workdir", "local"):
                if staging is not None:
                    await _fetch(node, target, fetches[id(transfer)], transfer.label)
                else:
                    source = Path(transfer.source).expanduser()
                    if not target.startswith("/"):
                        await node.upload(str(source), target)
                        continue
                    # Outside the login's home the target is made first (sudo if need be);
                    # SFTP would put a directory *into* an existing one, so its entries go one by one.
                    await _run(node, _prepare_command(target, is_dir=source.is_dir()), f"{transfer.label}: preparing")
                    if source.is_dir():
                        for child in sorted(source.iterdir()):
                            await node.upload(str(child), f"{target.rstrip('/')}/{child.name}")
                    else:
                        await node.upload(str(source), target)
            elif transfer.kind == "bucket-copy":
                await _fetch(node, target, fetches[id(transfer)], transfer.label)
            else:
                await _run(node, _mount_command(transfer), f"mount {transfer.label}", timeout=120)

    await asyncio.gather(*(sync_node(node) for node in nodes))


async def _with_buckets(transfers: list[Transfer], task: Task, buckets: TaskBuckets | None) -> list[Transfer]:
    """The transfers, each bucket skytui provides made (destinations are
    checked first: a refused task creates nothing) and its URL filled in."""
    named = [t for t in transfers if t.named]
    if not named:
        return transfers
    if buckets is None:
        raise FileSyncError(f"{named[0].label}: a bucket skytui creates (a storage mount with `name:` and no "
                            "bucket source) is not supported here (a pool's workers); give an existing bucket "
                            "as `source: s3://bucket/path` (or gs://)")
    try:
        urls = await buckets.provide(task)
    except PrecheckError as exc:
        raise FileSyncError(str(exc)) from exc
    return [dataclasses.replace(t, source=str(urls[t.label])) if t.named else t for t in transfers]


def has_local_files(task: Task) -> bool:
    return isinstance(task.workdir, str) or any(
        isinstance(source, str) and "://" not in source for source in task.file_mounts.values()
    )


async def discard_staging(staging: StagingArea) -> None:
    """Delete an ended job's (or a pool's) files from the bucket; a failure is logged, not raised."""
    try:
        count = await staging.discard()
    except PrecheckError as exc:  # the bucket is gone or refused: nothing of ours to delete there
        log.warning("could not delete the staged files in %s: %s", staging.root, exc)
        return
    except Exception:  # noqa: BLE001 - cleanup must not fail the job's ending
        log.exception("could not delete the staged files in %s", staging.root)
        return
    if count:
        log.info("deleted %d staged file(s) from %s", count, staging.root)

