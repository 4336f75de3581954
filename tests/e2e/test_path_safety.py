"""Bucket keys and mount destinations never reach outside their target.

The controller refuses a listed key (or a file_mounts destination) that would
land outside the directory it is copied into, before anything is fetched; the
node's fetch script checks again, where it can see symlinks, and writes
nothing when one path would leave. End to end against moto: test_buckets.py.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skytui.clouds.buckets import (
    FETCH_REFUSED_EXIT,
    BucketURL,
    SignedObject,
    UnsafeKeyError,
    fetch_command,
    fetch_input,
    place_of_key,
    places_in_target,
)
from skytui.engine.file_sync import (
    StagingArea,
    Transfer,
    UnsafePathError,
    confined_target,
)

# ------------------------------------------------------- the check itself


@pytest.mark.parametrize("name, place", [
    ("a.txt", "a.txt"),
    ("sub/dir/a.txt", "sub/dir/a.txt"),
    ("./a", "a"),
    ("a/./b", "a/b"),
    ("a//b", "a/b"),
    ("a/../b", "b"),  # climbs, but stays inside
    ("..a/b..", "..a/b.."),  # dots in a name are only dots
])
def test_keys_that_stay_inside_land_where_they_resolve(name: str, place: str) -> None:
    assert place_of_key(name) == place


@pytest.mark.parametrize("name", [
    "../x", "..", "a/../../b", "a/b/../../../c", "./../x",
    "/etc/passwd", "/x",  # absolute: os.path.join would drop the target
    ".", "a/..", "./",  # the target itself, not a file in it
    "a\\..\\..\\b", "a\\b",  # separators elsewhere
    "a\x00b", "a\nb", "a\tb", "a\rb", "a\x7fb",  # NUL, and what would break the fetch list
])
def test_keys_that_would_leave_the_target_are_refused(name: str) -> None:
    assert place_of_key(name) is None


def test_every_offending_key_is_named_in_full_and_nothing_is_kept() -> None:
    url = BucketURL.parse("s3://team-data/evil")
    with pytest.raises(UnsafeKeyError) as refused:
        places_in_target(url, ["ok.txt", "../../.bashrc", "../x"])
    assert refused.value.keys == ["evil/../../.bashrc", "evil/../x"]
    assert "'evil/../../.bashrc', 'evil/../x'" in str(refused.value)
    assert "s3://team-data/evil" in str(refused.value)
    # A whole bucket: the names are the keys.
    with pytest.raises(UnsafeKeyError, match="'/abs'"):
        places_in_target(BucketURL.parse("gs://team-data"), ["/abs"])


def test_a_key_that_is_the_prefix_itself_is_the_target_but_only_alone() -> None:
    url = BucketURL.parse("s3://team-data/vocab.txt")
    assert places_in_target(url, [""]) == [""]
    with pytest.raises(UnsafeKeyError):
        places_in_target(url, ["", "a.txt"])
    assert places_in_target(BucketURL.parse("s3://d/train"), ["./a", "b/../c"]) == ["a", "c"]


def _mount(target: str, kind: Any = "bucket-copy") -> Transfer:
    return Transfer(kind, "s3://d/x", target, f"file_mounts[{target!r}]")


@pytest.mark.parametrize("target", ["../x", "../../.ssh/authorized_keys", "a/../../x", "./../x", ".."])
def test_a_destination_that_climbs_out_of_the_home_is_refused_and_named(target: str) -> None:
    with pytest.raises(UnsafePathError) as refused:
        confined_target(_mount(target, "local"))
    assert f"file_mounts[{target!r}]" in str(refused.value)
    assert "outside the node's home" in str(refused.value)


def test_destinations_inside_the_home_are_normalised_and_absolute_ones_kept() -> None:
    assert confined_target(_mount("data/../copied/./x")).target == "copied/x"
    assert confined_target(_mount("")).target == ""  # `~/`: the home itself
    assert confined_target(_mount("/data/../etc")).target == "/data/../etc"  # a machine of its own


def test_a_tampered_staging_manifest_is_refused_before_signing(moto: Any) -> None:
    staging = StagingArea("s3://stage/runs", "inst", "job-1")
    work = Transfer("workdir", "/w", "sky_workdir", "workdir")
    fine = staging.signed("", work, {"workdir": [["a/b.txt", 0o644]]})
    assert [(o.relative, o.mode) for o in fine] == [("a/b.txt", 0o644)]
    with pytest.raises(UnsafePathError, match=r"workdir: .*'\.\./\.\./\.bashrc'"):
        staging.signed("", work, {"workdir": [["a/b.txt", 0o644], ["../../.bashrc", 0o644]]})


# ------------------------------------------------- the node's fetch script


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 standing in for signed URLs: /<name> serves `payload <name>`."""
    root = tmp_path_factory.mktemp("served")
    for name in ("a", "b", "evil"):
        (root / name).write_text(f"payload {name}\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _tools_without_python(directory: Path, *, realpath: bool) -> str:
    """A PATH with what the curl fallback needs and no python3 (nor, if asked, realpath)."""
    directory.mkdir()
    for tool in ("curl", "mkdir", "dirname", "chmod", "cat") + (("realpath",) if realpath else ()):
        found = shutil.which(tool)
        assert found, f"{tool} is needed for this test"
        (directory / tool).symlink_to(found)
    return str(directory)


FETCHERS = ["python3", "curl", "curl-without-realpath"]


def _fetch(fetcher: str, target: Path, objects: list[SignedObject], tmp: Path) -> subprocess.CompletedProcess[str]:
    tmp.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ["PATH"], "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    if fetcher != "python3":
        env["PATH"] = _tools_without_python(tmp / "bin", realpath=fetcher == "curl")
    return subprocess.run(["/bin/sh", "-c", fetch_command(str(target))], input=fetch_input(objects), text=True,
                          capture_output=True, timeout=60, check=False, env=env, cwd=tmp)


def _files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("fetcher", FETCHERS)
def test_the_node_fetches_safe_names(fetcher: str, served: str, tmp_path: Path) -> None:
    target = tmp_path / "home" / "copied"
    done = _fetch(fetcher, target, [SignedObject("a.txt", 0o640, f"{served}/a"),
                                    SignedObject("sub/b.txt", 0o644, f"{served}/b")], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (target / "a.txt").read_text() == "payload a\n"
    assert (target / "sub" / "b.txt").read_text() == "payload b\n"
    assert (target / "a.txt").stat().st_mode & 0o777 == 0o640
    single = tmp_path / "home" / "vocab.txt"
    done = _fetch(fetcher, single, [SignedObject("", 0o644, f"{served}/a")], tmp_path / "again")
    assert done.returncode == 0, done.stderr
    assert single.read_text() == "payload a\n"


@pytest.mark.parametrize("fetcher", FETCHERS)
@pytest.mark.parametrize("bad", ["../../.bashrc", "../x", "/abs", "a/../../b", "a\\b", "./a", "a//b", "a\x01b"])
def test_the_node_refuses_a_name_not_plainly_inside_and_fetches_nothing(
    fetcher: str, bad: str, served: str, tmp_path: Path
) -> None:
    # The controller sends only normalised names inside the target; the node does not trust that it did.
    target = tmp_path / "home" / "d1" / "copied"
    target.mkdir(parents=True)
    done = _fetch(fetcher, target, [SignedObject("ok.txt", 0o644, f"{served}/a"),
                                    SignedObject(bad, 0o644, f"{served}/evil")], tmp_path / "work")
    assert done.returncode == FETCH_REFUSED_EXIT, done.stderr
    assert "refusing" in done.stderr and "outside" in done.stderr
    assert _files_under(tmp_path / "home") == set()  # not even the safe one: nothing half-happens


@pytest.mark.parametrize("fetcher", ["python3", "curl"])
def test_the_node_refuses_to_write_through_a_symlink_out_of_the_target(
    fetcher: str, served: str, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / ".bashrc"
    victim.write_text("mine\n")
    target = tmp_path / "home" / "copied"
    target.mkdir(parents=True)
    (target / "link").symlink_to(outside)
    (target / "rc").symlink_to(victim)
    for name in ("link/.bashrc", "link/new/file", "rc"):
        done = _fetch(fetcher, target, [SignedObject(name, 0o644, f"{served}/evil")], tmp_path / name.replace("/", "_"))
        assert done.returncode == FETCH_REFUSED_EXIT, (name, done.stderr)
        assert repr(name) in done.stderr or f"'{name}'" in done.stderr
    assert victim.read_text() == "mine\n"
    assert _files_under(outside) == {".bashrc"}
