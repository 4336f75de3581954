"""The chaos soak, small: 100 jobs on sim under every fault, within 3 minutes.

bench/chaos.py runs in its own process (it installs signal handlers and an
alarm, and kills its controller every 15 s), in a temporary directory under
this test's tmp_path, and writes its checks to a JSON summary read here. The
faults are asserted to have happened, so a soak that injected nothing cannot
pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
BENCH = REPO / "bench" / "chaos.py"
JOBS = 100
BENCH_TIMEOUT_S = 180  # the bench's own budget for submitting and running every job


def run_soak(tmp_path: Path) -> tuple[dict[str, Any], str]:
    summary_path = tmp_path / "summary.json"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    for name in ("SKYTUI_HOME", "SKYTUI_DB_URL"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--jobs", str(JOBS), "--timeout", str(BENCH_TIMEOUT_S), "--quiet",
         "--summary-json", str(summary_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S + 120,
        stdin=subprocess.DEVNULL,
    )
    output = f"exit {proc.returncode}\n{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}"
    assert summary_path.exists(), output
    return json.loads(summary_path.read_text()), output


@pytest.mark.timeout(BENCH_TIMEOUT_S + 150)
def test_100_jobs_under_faults_lose_nothing(tmp_path: Path) -> None:
    summary, output = run_soak(tmp_path)

    assert not summary["timed_out"], output
    assert summary["error"] is None, output
    assert summary["fault_errors"] == [], output
    # The faults really happened.
    assert summary["kinds"] == {"spot": 70, "pipeline": 10, "restart": 10, "pool": 10}, output
    assert summary["kills"] >= 2, output
    assert summary["drops"] >= 1, output
    assert summary["stockout_on"], output
    assert summary["preemptions_landed"] >= summary["preemptions_planned"] // 2 > 0, output

    checks = summary["checks"]
    assert checks["jobs_lost"] == 0, output
    assert checks["wrong_final_states"] == 0, output
    assert checks["failed_controller"] == 0, output
    assert checks["leaked"] == 0, output
    assert checks["log_lines_lost"] == 0, output
    assert checks["log_lines_duplicated"] == 0, output
    assert checks["foreign_lines"] == 0, output
    assert checks["unseparated_restarts"] == 0, output
    assert checks["needless_relaunches"] == 0, output
    assert checks["needless_run_starts"] == 0, output
    assert summary["passed"], output
