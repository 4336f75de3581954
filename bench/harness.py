"""What the engine benchmarks share: machine facts, process CPU and memory
from /proc, percentiles and ratios, and taking a benchmark's temporary skytui
world down (controller, node host, the job processes left in its home)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from skytui.clouds.local import LocalCloud
from skytui.clouds.local_layout import NODE_MARKER, STATE_FILE
from skytui.config import Paths
from skytui.engine import daemon

MIB = 1024 * 1024


class GlobalTimeout(Exception):
    pass


class Terminated(Exception):
    pass


def arm_deadline(seconds: float, *, message: str = "global timeout", on_term: bool = True) -> None:
    """Raise GlobalTimeout in the main thread after `seconds` (a hung bench
    still prints its partial figures), and Terminated on SIGTERM."""
    def on_alarm(_sig: int, _frame: object) -> None:
        raise GlobalTimeout(message)

    def on_terminate(_sig: int, _frame: object) -> None:
        raise Terminated()

    signal.signal(signal.SIGALRM, on_alarm)
    if on_term:
        signal.signal(signal.SIGTERM, on_terminate)
    signal.alarm(int(seconds))


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / MIB:.1f} GiB"
                break
    load = "?"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (
        f"nproc={os.cpu_count()} cpu={model!r} mem={mem} loadavg={load} "
        f"python={platform.python_version()} kernel={platform.release()}"
    )


def file_create_us(directory: Path, files: int = 200) -> float:
    """CPU spent creating one file (and its directory) under `directory`, in
    microseconds. The skytui state and the sim's sandboxes live there, and a
    job creates about a dozen files: on this VM's disk the cost has been seen
    anywhere from 15 to 850 us (ext4 hunting for a free inode), which moves
    every per-job figure with it. Printed so a run can be read for what it is."""
    probe = directory / f"fs-probe-{os.getpid()}"
    probe.mkdir()
    began = time.process_time()
    try:
        for i in range(files // 2):
            sub = probe / str(i)
            sub.mkdir()
            (sub / "f").write_bytes(b"x")
        return (time.process_time() - began) / files * 1e6
    finally:
        for i in range(files // 2):
            with contextlib.suppress(OSError):
                (probe / str(i) / "f").unlink()
                (probe / str(i)).rmdir()
        with contextlib.suppress(OSError):
            probe.rmdir()


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int | None, *, children: bool = False) -> float | None:
    """utime + stime of a process (its threads), or of its reaped children."""
    if pid is None:
        return None
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[1].split()
    first = 13 if children else 11
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


def system_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, from /proc/stat."""
    try:
        parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    values = [int(v) for v in parts[:8]]
    idle = values[3] + values[4]  # idle + iowait
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / ticks, sum(values) / ticks


def own_cpu(*, children: bool = False) -> float:
    """CPU seconds of this process (and, with children, of the processes it ran and reaped)."""
    t = os.times()
    return t.user + t.system + (t.children_user + t.children_system if children else 0.0)


def read_pid(path: Path, key: str | None = None) -> int | None:
    try:
        text = path.read_text()
        return int(json.loads(text)[key]) if key else int(text.strip())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def fmt_ratio(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    if x >= 10:
        return f"{x:,.0f}x"
    if x >= 1:
        return f"{x:.1f}x"
    return f"{x:.3g}x"


def sandboxes_left(p: Paths) -> list[str]:
    """Every sandbox with a node marker (any infra): a machine still standing."""
    if not p.nodes.is_dir():
        return []
    return sorted(e.name for e in p.nodes.iterdir() if (e / NODE_MARKER).is_file())


def processes_in(root: Path, *, exclude: int) -> list[int]:
    """Processes whose cwd is under `root`, or started with HOME under it."""
    found = []
    prefix = str(root)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == exclude:
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(proc / "cwd")
            if cwd.startswith(prefix):
                found.append(int(proc.name))
                continue
            env = (proc / "environ").read_bytes().split(b"\0")
            if any(e.startswith(b"HOME=" + prefix.encode()) for e in env):
                found.append(int(proc.name))
    return found


def kill_leftovers(home: Path) -> None:
    """Job processes (detached by design) that we started inside our temp home."""
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            if cwd.startswith(str(home)) or str(home) in cmdline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(proc.name), signal.SIGKILL)


def stop_everything(p: Paths) -> None:
    with contextlib.suppress(Exception):
        daemon.stop_controller(p, timeout=30)
    host_pid = read_pid(p.nodes / STATE_FILE, "pid")
    with contextlib.suppress(Exception):
        LocalCloud(p).stop_node_host()
    if host_pid is not None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and rss_bytes(host_pid) is not None:
            time.sleep(0.05)
    kill_leftovers(p.home)


# ------------------------------------------------------------- chaos helpers


def _proc_bytes(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def is_our_process(pid: int, home: Path, needle: str) -> bool:
    """Whether `pid` is a live skytui process of this home whose command line
    contains `needle`: never signal a stranger that reused a pid. A zombie has
    an empty command line, so it never matches."""
    cmdline = _proc_bytes(pid, "cmdline")
    if needle.encode() not in cmdline:
        return False
    marker = f"SKYTUI_HOME={home}".encode()
    return str(home).encode() in cmdline or marker in _proc_bytes(pid, "environ").split(b"\0")


def kill_home_processes(home: Path) -> list[int]:
    """SIGKILL every process of this skytui home: its controller daemons and
    node host (SKYTUI_HOME in their environment or the home on their command
    line) and the jobs (cwd or HOME under it). Returns the pids signalled."""
    me = os.getpid()
    marker = f"SKYTUI_HOME={home}".encode()
    killed = []
    for pid in [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]:
        if pid == me:
            continue
        env = _proc_bytes(pid, "environ").split(b"\0")
        if marker in env or str(home).encode() in _proc_bytes(pid, "cmdline"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    kill_leftovers(home)
    return killed


def skytui_argv() -> list[str]:
    """The `skytui` command a user would type, from this venv."""
    script = Path(sys.executable).parent / "skytui"
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "import sys; from skytui.cli import main; sys.exit(main())"]


def run_cli(home: Path, *argv: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`skytui ARGV` against this home (never a shared DB); with `check`, a
    non-zero exit raises with what it printed."""
    env = {**os.environ, "SKYTUI_HOME": str(home)}
    env.pop("SKYTUI_DB_URL", None)
    result = subprocess.run(
        [*skytui_argv(), *argv], check=False, env=env, capture_output=True, text=True,
        timeout=max(1.0, timeout), stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"`skytui {' '.join(argv)}` exited {result.returncode}: {(result.stderr or result.stdout).strip()[-800:]}"
        )
    return result
