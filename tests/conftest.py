"""Shared fixtures: a private SKYTUI_HOME per test, the real CLI, and waiting.

Every test that touches state gets its own temporary SKYTUI_HOME, so nothing
reads or writes the real ~/.skytui, and each test's controller daemon and node
host are stopped (and their job processes killed) when it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

os.environ.pop("NO_COLOR", None)  # NO_COLOR=1 would make every TUI snapshot differ

# No test may find the real credentials of whoever runs it, nor probe a cloud
# metadata server: every cloud SDK is pointed at nothing (tests that want a
# cloud point it at a loopback server of their own).
for _name in [name for name in os.environ if name.startswith(("AWS_", "GOOGLE_", "CLOUDSDK_", "KUBE"))]:
    del os.environ[_name]
os.environ.update(
    AWS_SHARED_CREDENTIALS_FILE="/nonexistent/skytui-tests/aws-credentials",
    AWS_CONFIG_FILE="/nonexistent/skytui-tests/aws-config",
    AWS_EC2_METADATA_DISABLED="true",
    CLOUDSDK_CONFIG="/nonexistent/skytui-tests/gcloud",
    NO_GCE_CHECK="true",  # google-auth honours exactly "true"
    KUBECONFIG="/nonexistent/skytui-tests/kubeconfig",
)
os.environ.pop("KUBERNETES_SERVICE_HOST", None)

# pytest-textual-snapshot keeps its SVGs in the top-level snapshots/ folder.
try:
    import pytest_textual_snapshot as _pts

    SNAPSHOT_ROOT = Path(__file__).resolve().parent.parent / "snapshots"

    def _snapshot_dirname(cls: Any, *, test_location: Any) -> str:
        return str(SNAPSHOT_ROOT / test_location.basename)

    _pts.SVGImageExtension.dirname = classmethod(_snapshot_dirname)  # type: ignore[method-assign, assignment]
except ImportError:  # pragma: no cover - the snapshot plugin is a test dependency
    pass

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> T:
    """Poll until `predicate()` is truthy; its value. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclass
class Env:
    """One test's skytui world."""

    home: Path
    tmp: Path
    db_url: str | None = None  # None: the default SQLite file in home

    @property
    def environ(self) -> dict[str, str]:
        env = {**os.environ, "SKYTUI_HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "200"}
        env.pop("SKYTUI_DB_URL", None)
        if self.db_url:
            env["SKYTUI_DB_URL"] = self.db_url
        return env

    def cli(self, *args: str, timeout: float = 120.0, check: bool = False) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "skytui.cli", *args],
            capture_output=True, text=True, env=self.environ, timeout=timeout, cwd=self.tmp,
            stdin=subprocess.DEVNULL,
        )
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            pytest.fail(f"skytui {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        # The CLI as a user at a terminal runs it: Ctrl-C (SIGINT) reaches it.
        # A suite started in the background by a non-interactive shell
        # inherits SIGINT ignored, and so would every CLI it starts, which
        # then rightly ignores Ctrl-C, as a backgrounded `skytui --run` must.
        return subprocess.Popen(
            [sys.executable, "-m", "skytui.cli", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.environ,
            cwd=self.tmp, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def config(self, text: str) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.yaml").write_text(text)

    def queue(self) -> list[dict[str, Any]]:
        result = self.cli("jobs", "queue", "-a", "--json", check=True)
        return list(json.loads(result.stdout)["jobs"])

    def job(self, job_id: int) -> dict[str, Any]:
        return next(j for j in self.queue() if j["id"] == job_id)

    def wait_status(self, job_id: int, *statuses: str, timeout: float = 60.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in statuses else None

        return wait_for(reached, timeout, 0.2, f"job {job_id} to reach {statuses}")

    def launch(self, path: Path | str, *flags: str) -> int:
        result = self.cli("jobs", "launch", "-y", "-d", str(path), *flags, check=True)
        match = re.search(r"Managed job (\d+) submitted", result.stdout)
        if match is None:
            pytest.fail(f"no job id in: {result.stdout}")
        return int(match.group(1))

    def log(self, job_id: int, task_idx: int = 0, rank: int = 0) -> bytes:
        name = f"{task_idx}.log" if rank == 0 else f"{task_idx}.rank{rank}.log"
        path = self.home / "logs" / "jobs" / str(job_id) / name
        return path.read_bytes() if path.exists() else b""

    def controller_pid(self) -> int | None:
        try:
            return int((self.home / "controller.pid").read_text())
        except (OSError, ValueError):
            return None

    def node_dirs(self) -> list[Path]:
        nodes = self.home / "nodes"
        return [p for p in nodes.iterdir() if p.is_dir()] if nodes.exists() else []


def processes_in(home: Path) -> list[int]:
    """Processes whose command line or working directory is inside `home`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if cwd.startswith(str(home)) or str(home) in cmdline:
                found.append(int(proc.name))
    return found


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, created SKYTUI_HOME for tests that drive modules directly."""
    from skytui.config import paths

    home = tmp_path / "home"
    monkeypatch.setenv("SKYTUI_HOME", str(home))
    monkeypatch.delenv("SKYTUI_DB_URL", raising=False)
    paths().ensure()
    return home


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("SKYTUI_HOME", str(home))
    monkeypatch.delenv("SKYTUI_DB_URL", raising=False)
    world = Env(home=home, tmp=work)
    yield world
    if not home.exists():
        return  # nothing was started
    _assert_finished_jobs_left_no_machine(home)
    # Stop the daemon and the node host, then anything a job left behind.
    from skytui.config import Paths
    from skytui.engine.daemon import stop_controller

    with contextlib.suppress(Exception):
        stop_controller(Paths(home))
    state = home / "nodes" / "nodehost.json"
    with contextlib.suppress(OSError, ValueError, ProcessLookupError):
        os.kill(int(json.loads(state.read_text())["pid"]), signal.SIGTERM)
    for pid in processes_in(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def events(env: Env, job_id: int) -> list[str]:
    """A job's events as `kind:to_status:message` lines, read from the DB."""
    from skytui.config import Paths
    from skytui.engine.store import Store

    store = Store(Paths(env.home).db_url)
    try:
        return [f"{e.kind}:{e.to_status or ''}:{e.message or ''}" for e in store.events(job_id=job_id)]
    finally:
        store.close()


async def state_becomes(cloud: Any, handle: Any, state: Any) -> None:
    """Until a cloud says `state` of a cluster: clouds answer from one listing
    shared per poll period, so a change shows within about `state_poll_s`."""
    import asyncio

    deadline = time.monotonic() + 3 * cloud.state_poll_s
    while (now := await cloud.cluster_state(handle)) is not state:
        assert time.monotonic() < deadline, f"{handle.name} still {now}, expected {state}"
        await asyncio.sleep(0.2)


async def until(pilot: Any, predicate: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    """For pilot tests: let the app run until `predicate()` holds (its frames,
    workers and timers go on meanwhile); fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.1)


# Recovery and sim tuned for tests: capacity waits of a second, not minutes,
# and sim machines that provision at once.
FAST_CONFIG = """\
jobs:
  recovery: {backoff_initial_s: 0.5, backoff_max_s: 1.5}
infra:
  sim: {provision_delay_s: 0.05}
"""


@pytest.fixture
def fast_env(env: Env) -> Env:
    """`env` with FAST_CONFIG: for recovery, sim and pool tests."""
    env.config(FAST_CONFIG)
    return env


def _assert_finished_jobs_left_no_machine(home: Path) -> None:
    """No leaks, ever: once every job has finished and no pool is left, no
    machine of local or sim may remain. (Tests that leave jobs running or a
    pool up on purpose are not judged.)"""
    from skytui.config import Paths
    from skytui.engine.status import TERMINAL_NAMES
    from skytui.engine.store import Store

    if os.environ.get("SKYTUI_DB_URL") or not (home / "state.db").exists():
        return
    store = Store(Paths(home).db_url)
    try:
        if store.pools() or any(job.status not in TERMINAL_NAMES for job in store.jobs()):
            return
    finally:
        store.close()

    def machines() -> list[str]:
        return sorted(str(p.parent.name) for p in (home / "nodes").glob("*/.skytui-node.json"))

    deadline = time.monotonic() + 20
    while machines() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not machines(), f"machines left after every job finished: {machines()}"


# --------------------------------------------------------------- real OpenSSH


@pytest.fixture(scope="session")
def real_sshd() -> Iterator[Any]:
    """Debian's OpenSSH server on 127.0.0.1 for this session (tests/infra/sshd.py)."""
    import tempfile

    from infra.sshd import RealSSHD, skip_reason

    reason = skip_reason()
    if reason:
        pytest.fail(reason)
    # Not under pytest's tmp_path: its parents are 0700 root, closed to the login users.
    server = RealSSHD(Path(tempfile.mkdtemp(prefix="skytui-sshd-")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ssh_user(real_sshd: Any) -> Iterator[Any]:
    """A fresh throwaway login on the real sshd, its home in a temporary folder."""
    user = real_sshd.new_user()
    yield user
    real_sshd.remove_user(user)
    real_sshd.users.remove(user)


# ----------------------------------------------------------------------- moto


@pytest.fixture(scope="session")
def moto_session() -> Iterator[Any]:
    """moto's server on 127.0.0.1 for this session (tests/infra/moto_server.py)."""
    from infra.moto_server import start_moto

    server = start_moto()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto(moto_session: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An empty moto, with this test's boto3 (and its CLI and controller) pointed at it."""
    moto_session.reset()
    for key, value in moto_session.env().items():
        monkeypatch.setenv(key, value)
    return moto_session


# ------------------------------------------------------------------ PostgreSQL


def _pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not candidates:
        pytest.fail("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    return candidates[-1].parent


def _as_postgres(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A private PostgreSQL server on 127.0.0.1 for this test session; its base URL."""
    import shutil
    import socket
    import tempfile

    pg_bin = _pg_bin()
    # Not under pytest's tmp_path: its parents are 0700 root, closed to the postgres user.
    root = Path(tempfile.mkdtemp(prefix="skytui-pg-"))
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run(
        _as_postgres([str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--no-sync"]),
        check=True, capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c max_connections=200"
    subprocess.run(
        _as_postgres([str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "30",
                      "-o", options, "start"]),
        check=True, capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(
            _as_postgres([str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database for one test."""
    import psycopg

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + f"_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    dsn = postgres_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"
