"""The pools view under its pilot, against a real controller and a real pool on `local`."""

from __future__ import annotations


from fixtures.env import Env
from fixtures.pilot import until
from textual.widgets import DataTable

from skytui.app import SkyTUI
from skytui.screens.job import JobScreen

SIZE = (140, 40)


def rows(table: DataTable[str]) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]


async def test_pools_view_shows_workers_and_what_they_run_and_opens_the_job(env: Env) -> None:
    env.cli("jobs", "pool", "apply", "-y", "-p", "cpu",
            str(env.write("pool.yaml", "resources: {infra: local}\nsetup: echo up\npool: {workers: 2}\n")), check=True)
    out = env.cli("jobs", "launch", "-y", "-d", "-p", "cpu",
                  str(env.write("job.yaml", "name: busy\nrun: sleep 300\n")), check=True).stdout
    job_id = int(out.split("Managed job ")[1].split()[0])
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon", *"pools", "enter")
        await until(pilot, lambda: app.current_mode == "pools", 5, ":pools")
        pools = app.screen.query_one("#pools-table", DataTable)
        workers = app.screen.query_one("#workers-table", DataTable)
        await until(pilot, lambda: rows(pools) and rows(pools)[0][3] == "READY" and rows(pools)[0][4] == "2/2",
                    60, "pool cpu READY with 2/2 workers")
        assert rows(pools)[0][0] == "cpu"
        await until(pilot, lambda: any(f"job {job_id} (busy)" in row[6] for row in rows(workers)), 60,
                    "the busy worker to show its job")
        assert [row[5] for row in rows(workers)] == ["READY", "READY"]
        assert rows(pools)[0][6] == "1"  # one job running in the pool
        busy = next(i for i, row in enumerate(rows(workers)) if f"job {job_id}" in row[6])
        await pilot.press("tab")
        workers.move_cursor(row=busy)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen), 10, "the job view")
        assert app.screen.job_id == job_id
    env.cli("jobs", "cancel", "-y", "-p", "cpu", check=True)
    env.wait_status(job_id, "CANCELLED")
    env.cli("jobs", "pool", "down", "cpu", "-y", check=True)


async def test_launch_screen_launches_into_a_pool(env: Env) -> None:
    from textual.widgets import Button, Input

    from skytui.screens.launch import LaunchScreen

    env.cli("jobs", "pool", "apply", "-y", "-p", "cpu",
            str(env.write("pool.yaml", "resources: {infra: local}\nsetup: echo up\npool: {workers: 1}\n")), check=True)
    task = env.write("shard.yaml", "name: shard\nrun: echo \"rank $SKYPILOT_JOB_RANK\"\n")
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen), 5, "the launch view")
        screen = app.screen
        screen.query_one("#launch-path", Input).value = str(task)
        screen.query_one("#launch-pool", Input).value = "nope"
        await until(pilot, lambda: "No pool 'nope'" in str(screen.query_one("#launch-message").render()), 10,
                    "the unknown pool refused")
        assert screen.query_one("#launch-go", Button).disabled
        screen.query_one("#launch-pool", Input).value = "cpu"
        screen.query_one("#launch-num-jobs", Input).value = "2"
        await until(pilot, lambda: "into pool 'cpu'" in str(screen.query_one("#launch-message").render()), 10,
                    "the pool accepted")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, LaunchScreen), 10, "back to the queue")
    ids = sorted(job["id"] for job in env.queue())
    assert len(ids) == 2
    for job in ids:
        assert env.wait_status(job, "SUCCEEDED", timeout=60)["pool"] == "cpu"
    assert sorted(env.log(job).decode().strip() for job in ids) == ["rank 0", "rank 1"]
    env.cli("jobs", "pool", "down", "cpu", "-y", check=True)
