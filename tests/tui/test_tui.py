"""The TUI under its pilot, against a real controller on `local`.

What a person would notice: jobs appear and walk through their statuses,
cancel from the keyboard reaches CANCELLED, logs stream in, the filter and
the pipeline tree behave, and quitting leaves jobs running.
"""

from __future__ import annotations

import asyncio

from fixtures.env import Env
from fixtures.pilot import until
from textual.widgets import Tree
from textual.widgets._footer import FooterKey

from skytui.app import SkyTUI
from skytui.client import Client
from skytui.config import paths
from skytui.screens.confirm import ConfirmCancel
from skytui.screens.job import JobScreen
from skytui.screens.launch import LaunchScreen
from skytui.screens.logs import LogsScreen
from skytui.spec import load_pipeline
from skytui.widgets.job_table import JobTable
from skytui.widgets.log_view import LogView

SIZE = (140, 40)


def visible_text(widget: JobTable | LogView) -> str:
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))


def submit(env: Env, yaml: str, name: str = "job.yaml") -> int:
    client = Client(paths())
    try:
        return client.submit(load_pipeline(env.write(name, yaml)))[0]
    finally:
        client.close()


def status_of(job_id: int) -> str:
    client = Client(paths())
    try:
        view = client.job(job_id)
        assert view is not None
        return view.job.status
    finally:
        client.close()


async def test_a_launched_job_appears_and_walks_through_its_statuses(env: Env) -> None:
    job_id = submit(env, "name: walker\nrun: |\n  echo hi\n  sleep 1.5\n")
    app = SkyTUI(poll_interval=0.1)
    seen: set[str] = set()
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(JobTable)

        def record() -> bool:
            text = visible_text(table)
            for status in ("PENDING", "STARTING", "RUNNING", "SUCCEEDED"):
                if f" {status}" in text and "walker" in text:
                    seen.add(status)
            return "SUCCEEDED" in seen

        await until(pilot, record, 60, "SUCCEEDED on screen")
        assert "RUNNING" in seen  # it was watched live, not only found finished
        assert str(job_id) in visible_text(table)
        assert "No in-progress managed jobs." in str(app.screen.query_one("#jobs-summary").render())


async def test_cancel_from_the_keyboard_reaches_cancelled(env: Env) -> None:
    job_id = submit(env, "name: victim\nrun: sleep 300\n")
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(JobTable)
        await until(pilot, lambda: "RUNNING" in visible_text(table), 60, "RUNNING")
        await pilot.press("ctrl+d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmCancel), 5, "the dialog")
        await pilot.press("enter")  # the safe default: keep running
        await pilot.pause(0.3)
        assert status_of(job_id) == "RUNNING"
        await pilot.press("ctrl+d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmCancel), 5, "the dialog")
        await pilot.press("y")
        await until(pilot, lambda: "CANCELLED" in visible_text(table), 60, "CANCELLED on screen")
    assert status_of(job_id) == "CANCELLED"


async def test_logs_stream_as_the_job_prints(env: Env) -> None:
    submit(env, "name: talker\nrun: |\n  for i in $(seq 1 30); do echo line $i; sleep 0.1; done\n")
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(JobTable)
        await until(pilot, lambda: "talker" in visible_text(table), 30, "the job")
        await pilot.press("l")
        await until(pilot, lambda: isinstance(app.screen, LogsScreen), 5, "the logs view")
        view = app.screen.query_one(LogView)
        await until(pilot, lambda: "(talker, pid=" in visible_text(view) and "line 3" in visible_text(view), 30)
        await until(pilot, lambda: "line 30" in visible_text(view), 30, "the last line")
        await pilot.press("escape")
        assert not isinstance(app.screen, LogsScreen)


async def test_filter_and_sort(env: Env) -> None:
    for name in ("alpha", "bravo", "charlie"):
        submit(env, f"name: {name}\nrun: echo {name}\n", f"{name}.yaml")
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(JobTable)
        await until(pilot, lambda: visible_text(table).count("SUCCEEDED") == 3, 60, "three jobs done")
        await pilot.press("slash", *"br", "enter")
        await pilot.pause(0.2)
        text = visible_text(table)
        assert "bravo" in text and "alpha" not in text and "charlie" not in text
        await pilot.press("slash", "ctrl+a", "ctrl+k", *"!br", "enter")
        await pilot.pause(0.2)
        text = visible_text(table)
        assert "bravo" not in text and "alpha" in text and "charlie" in text
        await pilot.press("escape")
        await pilot.press("N")  # by name, A→Z
        await pilot.pause(0.2)
        text = visible_text(table)
        assert text.index("alpha") < text.index("bravo") < text.index("charlie")
        await pilot.press("N")  # again: Z→A
        await pilot.pause(0.2)
        text = visible_text(table)
        assert text.index("charlie") < text.index("bravo") < text.index("alpha")


async def test_pipeline_rows_and_tree(env: Env) -> None:
    job_id = submit(env, "name: pipe\n---\nname: prep\nrun: echo a\n---\nname: train\nrun: exit 3\n---\nname: eval\nrun: echo c\n")
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(JobTable)
        await until(pilot, lambda: "FAILED" in visible_text(table), 60, "the pipeline to fail")
        text = visible_text(table)
        assert text.count("↳") == 3 and "prep" in text and "eval" in text
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen), 5, "the job view")
        tree = app.screen.query_one(Tree)
        await until(pilot, lambda: len(tree.root.children) == 3, 10, "three tasks in the tree")
        labels = [str(node.label) for node in tree.root.children]
        assert "SUCCEEDED" in labels[0] and "FAILED" in labels[1] and "CANCELLED" in labels[2]
        assert "exit code 3" in labels[1]
        assert [len(node.children) for node in tree.root.children] == [1, 1, 0]  # attempts
        assert str(job_id) in str(app.screen.query_one("#job-title").render())


async def test_a_job_group_is_marked_parallel_in_the_queue_and_the_tree(env: Env) -> None:
    job_id = submit(env, "name: duo\nexecution: parallel\nprimary_tasks: [main]\n---\nname: main\nrun: sleep 1\n"
                "---\nname: side\nrun: sleep 600\n")
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(JobTable)
        await until(pilot, lambda: "CANCELLED" in visible_text(table), 60, "the side task stopped with the primary")
        text = visible_text(table)
        assert "duo (parallel)" in text and "main [P]" in text, text
        assert status_of(job_id) == "SUCCEEDED"  # the group follows its primary
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen), 5, "the job view")
        tree = app.screen.query_one(Tree)
        await until(pilot, lambda: len(tree.root.children) == 2, 10, "two tasks in the tree")
        labels = [str(node.label) for node in tree.root.children]
        assert labels[0].startswith("∥ 0 main [P] SUCCEEDED") and labels[1].startswith("∥ 1 side CANCELLED")
        assert tree.border_title == "Tasks (parallel) and attempts"


async def test_quitting_leaves_jobs_running(env: Env) -> None:
    job_id = submit(env, "name: survivor\nrun: sleep 300\n")
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(JobTable)
        await until(pilot, lambda: "RUNNING" in visible_text(table), 60, "RUNNING")
        await pilot.press("ctrl+c")
        await asyncio.sleep(0.2)
    assert status_of(job_id) == "RUNNING"
    env.cli("jobs", "cancel", "-y", str(job_id), check=True)


async def test_launch_from_the_tui(env: Env) -> None:
    task = env.write("fromtui.yaml", "name: fromtui\nenvs:\n  WHO: yaml\nrun: echo \"hello $WHO\"\n")
    bad = env.write("bad.yaml", "name: bad\nresources:\n  acclerators: H100:1\nrun: echo\n")
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, LaunchScreen), 5, "the launch view")
        screen = app.screen
        await pilot.press(*str(bad))
        message = screen.query_one("#launch-message")
        await until(pilot, lambda: f"{bad}:3: resources.acclerators" in str(message.render()), 10, "the error")
        assert screen.query_one("#launch-go").disabled
        screen.query_one("#launch-path").value = str(task)
        await until(pilot, lambda: "Considered resources" in str(message.render()), 10, "the plan")
        table = screen.query_one("#launch-considered")
        assert table.row_count == 1 and "local" in str(table.get_row_at(0)[0])
        screen.query_one("#launch-env").value = "WHO=tui"
        await pilot.pause(0.5)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, LaunchScreen), 10, "back to the queue")
        table = app.screen.query_one(JobTable)
        await until(pilot, lambda: "fromtui" in visible_text(table) and "SUCCEEDED" in visible_text(table), 60)
    assert env.log(1) == b"hello tui\n"


async def test_command_prompt(env: Env) -> None:
    job_id = submit(env, "name: cmd\nrun: echo from-cmd\n")
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(JobTable)
        await until(pilot, lambda: "SUCCEEDED" in visible_text(table), 60, "the job")
        await pilot.press("colon", *f"logs {job_id}", "enter")
        await until(pilot, lambda: isinstance(app.screen, LogsScreen), 5, ":logs")
        await until(pilot, lambda: "from-cmd" in visible_text(app.screen.query_one(LogView)), 10)
        await pilot.press("escape", "colon", *"pools", "enter")
        await until(pilot, lambda: app.current_mode == "pools", 5, ":pools")
        await pilot.press("colon", *"frobnicate", "enter")
        await pilot.pause(0.2)
        assert any("unknown command 'frobnicate'" in str(n.message) for n in app._notifications)
        await pilot.press("colon", *"jobs", "enter")
        await until(pilot, lambda: app.current_mode == "jobs", 5, ":jobs")


async def test_palette_reaches_screen_actions(env: Env) -> None:
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert {"Open", "Logs", "Cancel job", "Filter", "Launch"} <= set(titles)


async def test_the_footer_shows_the_remapped_keys(env: Env) -> None:
    """On an empty queue too, where nothing else makes the footer look again."""
    env.config("tui:\n  keymap:\n    jobs.logs: o\n")
    app = SkyTUI(poll_interval=0.1, supervise=False)

    def footer() -> dict[str, str]:
        return {key.description: key.key_display for key in app.screen.query(FooterKey) if key.display}

    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: footer().get("Logs") == "o", 5, "the footer's `o Logs`")


async def test_bindings_are_remapped_from_config(env: Env) -> None:
    env.config("tui:\n  keymap:\n    jobs.logs: o\n")
    submit(env, "name: remapped\nrun: echo remapped-output\n")
    app = SkyTUI(poll_interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(JobTable)
        await until(pilot, lambda: "remapped" in visible_text(table), 30, "the job")
        await pilot.press("l")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, LogsScreen)  # `l` no longer opens logs
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, LogsScreen), 5, "logs on `o`")
