"""The job view's money: each attempt's spend with what of it was lost, and
the job's total, from a DB written at frozen times (no controller needed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.pilot import until
from textual.widgets import Tree

from skytui.app import SkyTUI
from skytui.config import paths
from skytui.engine.status import TaskStatus as S
from skytui.engine.store import ClusterStatus, NewTask, Store
from skytui.screens.job import JobScreen

T0 = 1_800_000_000.0
NOW = T0 + 4000
SIZE = (160, 40)


@pytest.fixture
def spot_job(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A job preempted once ($1.00, all lost), then succeeded ($2.20, its
    200 s of provisioning lost): $3.60/h is a thousandth of a dollar a second."""
    clock = {"now": T0}
    monkeypatch.setattr(time, "time", lambda: clock["now"])
    store = Store(paths().db_url)
    try:
        job_id = store.submit_jobs(name="spot", spec={"name": "spot", "tasks": [{}]}, secrets={}, tasks=[
            NewTask("spot", "sky-managed-2027-01-15-08-00-00-000000_spot_{job_id}-0", "1x[CPU:1+]", 1)])[0]
        store.transition_task(job_id, 0, S.STARTING)
        for machine_at, up_at, end_at, reason in ((0, 100, 1000, "preempted in sim"),
                                                  (1100, 1300, 3300, "succeeded")):
            clock["now"] = T0 + machine_at
            cluster = store.insert_cluster(
                name=f"spot-{machine_at}", cloud="sim", region="aws/us-east-1", zone=None, instance_type="sim-4",
                use_spot=True, num_nodes=1, job_id=job_id, task_idx=0, attempt_no=1, price_per_hour=3.6)
            clock["now"] = T0 + up_at
            attempt = store.start_attempt(job_id, 0, infra="sim:aws/us-east-1", instance_type="sim-4",
                                          use_spot=True, price_per_hour=3.6)
            store.set_attempt_cluster(job_id, 0, attempt, cluster)
            clock["now"] = T0 + end_at
            store.end_attempt(job_id, 0, attempt, reason=reason)
            store.update_cluster(cluster, status=ClusterStatus.TERMINATED)
    finally:
        store.close()
    monkeypatch.undo()
    monkeypatch.setenv("SKYTUI_HOME", str(home))
    yield job_id


async def test_the_job_view_shows_each_attempts_spend_and_its_lost_share(spot_job: int) -> None:
    app = SkyTUI(clock=lambda: NOW, follow=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.loaded, 10, "the queue")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen), 5, "the job view")
        title = app.screen.query_one("#job-title")

        def title_text() -> str:
            return str(title.render())

        await until(pilot, lambda: "spent" in title_text(), 10, "the job's spend in its title")
        assert "spent $3.20, lost $1.20 (38 %)" in title_text()
        tree = app.screen.query_one(Tree)
        attempts: list[Any] = list(tree.root.children[0].children)
        labels = [str(node.label) for node in attempts]
        assert "$1.00 (lost)" in labels[0] and "preempted in sim" in labels[0], labels
        assert "$2.20 ($0.20 lost)" in labels[1] and "succeeded" in labels[1], labels
