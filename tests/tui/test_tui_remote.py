"""The TUI against a remote controller (issue 14): the same app, its client
a `RemoteClient` whose controller lives on a throwaway login of the real
sshd. The queue, the job view and the logs stay live, and a cancel from the
keyboard reaches the machine."""

from __future__ import annotations

from typing import Any

from fixtures.env import Env
from fixtures.pilot import until

from skytui.app import SkyTUI
from skytui.client import open_client
from skytui.client.remote import RemoteClient
from skytui.screens.confirm import ConfirmCancel
from skytui.screens.job import JobScreen
from skytui.screens.logs import LogsScreen
from skytui.widgets.job_table import JobTable
from skytui.widgets.log_view import LogView

SIZE = (140, 40)
TALKER = """\
name: talker
resources: {infra: sim/aws, accelerators: H100:8, use_spot: true}
run: |
  for i in $(seq 1 40); do echo line $i; sleep 0.1; done
  sleep 600
"""


def visible_text(widget: JobTable | LogView) -> str:
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


async def test_queue_job_view_logs_and_cancel_stay_live_against_a_remote_controller(
    remote_env: Env, ssh_user: Any,
) -> None:
    job_id = remote_env.launch(remote_env.write("talker.yaml", TALKER))
    client = open_client()
    assert isinstance(client, RemoteClient)
    app = SkyTUI(client, poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(JobTable)
        await until(pilot, lambda: "talker" in visible_text(table) and "RUNNING" in visible_text(table), 90,
                    "the remote job RUNNING in the queue")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen), 10, "the job view")
        await pilot.press("escape")
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogsScreen), 10, "the logs view")
        view = app.screen.query_one(LogView)
        await until(pilot, lambda: "(talker, pid=" in visible_text(view) and "line 40" in visible_text(view), 60,
                    "the job's lines, streamed from the controller machine")
        await pilot.press("escape")
        await pilot.press("ctrl+d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmCancel), 10, "the cancel dialog")
        await pilot.press("y")
        await until(pilot, lambda: "CANCELLED" in visible_text(table), 90, "CANCELLED on screen")
    assert remote_env.job(job_id)["status"] == "CANCELLED"
