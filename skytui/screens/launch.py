"""The launch view (`n`, `:launch PATH`): pick a task YAML, see where it would
run ("Considered resources", the chosen row marked), set the name, number of
copies, a pool to run on and env overrides, and launch. Checking happens as you type, through
the same loader and planner as `skytui jobs launch`, so the TUI refuses
exactly what the CLI refuses, with the same file:line messages."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from skytui.client.planning import InfeasibleError, Plan, considered_rows
from skytui.format import jobs_phrase
from skytui.screens.base import SkyScreen
from skytui.spec import Overrides, Pipeline, SpecError, load_pipeline, parse_env_flag

CONSIDERED_COLUMNS = ("INFRA", "INSTANCE", "vCPUs", "Mem(GB)", "GPUS", "COST ($)", "CHOSEN")


class LaunchScreen(SkyScreen):
    BINDING_GROUP_TITLE = "Launch"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="launch.back"),
        Binding("ctrl+s", "launch", "Launch", id="launch.launch"),
    ]

    def __init__(self, path: str = "") -> None:
        super().__init__()
        self.initial_path = path
        self._checked: tuple[Pipeline, list[Plan], int, str | None] | None = None

    def compose(self) -> ComposeResult:
        yield Static("Launch a managed job", id="launch-title")
        with Vertical(id="launch-form"):
            with Horizontal(classes="launch-row"):
                yield Label("Task YAML", classes="launch-label")
                yield Input(self.initial_path, placeholder="path/to/task.yaml", id="launch-path")
            with Horizontal(classes="launch-row"):
                yield Label("Name", classes="launch-label")
                yield Input(placeholder="(from the YAML)", id="launch-name")
            with Horizontal(classes="launch-row"):
                yield Label("Copies", classes="launch-label")
                yield Input("1", placeholder="--num-jobs", id="launch-num-jobs", type="integer")
            with Horizontal(classes="launch-row"):
                yield Label("Pool", classes="launch-label")
                yield Input(placeholder="(none: provision its own machine)", id="launch-pool")
            with Horizontal(classes="launch-row"):
                yield Label("Env", classes="launch-label")
                yield Input(placeholder="K=V K2=V2 (overrides the YAML's envs)", id="launch-env")
        yield Static("", id="launch-message")
        yield DataTable(id="launch-considered", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="launch-buttons"):
            yield Button("Cancel", id="launch-cancel")
            yield Button("Launch", id="launch-go", variant="success", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*CONSIDERED_COLUMNS)
        self.query_one("#launch-path", Input).focus()
        if self.initial_path:
            self.check()

    @on(Input.Changed)
    def _changed(self) -> None:
        self.check()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        if self._checked is not None:
            self.action_launch()

    def check(self) -> None:
        """Read the form here, on the app's loop; load and plan in a worker."""
        values = {
            name: self.query_one(f"#launch-{name}", Input).value.strip()
            for name in ("path", "name", "num-jobs", "pool", "env")
        }
        self._check(values)

    @work(thread=True, exclusive=True, group="launch-check", name="check the task")
    def _check(self, values: dict[str, str]) -> None:
        if not values["path"]:
            self.app.call_from_thread(self._show_problem, "Type the path of a task YAML.")
            return
        try:
            copies = int(values["num-jobs"]) if values["num-jobs"].lstrip("-").isdigit() else 0
            if copies < 1:
                raise SpecError("", None, "copies", "must be 1 or more")
            envs = dict(parse_env_flag(item) for item in values["env"].split())
            overrides = Overrides(name=values["name"] or None, envs=envs)
            pipeline = load_pipeline(values["path"], overrides)
            pool = values["pool"] or None
            if pool is not None:
                self._check_pool(pipeline, pool, copies)
                return
            plans = self.tui.client.plan(pipeline)
        except (SpecError, InfeasibleError) as exc:
            self.app.call_from_thread(self._show_problem, str(exc))
            return
        self.app.call_from_thread(self._show_plan, pipeline, plans, copies)

    def _check_pool(self, pipeline: Pipeline, pool: str, copies: int) -> None:
        """A pool job runs on the pool's warm workers: nothing to place, but
        the pool must exist (in the worker thread, as the rest of the check)."""
        views = self.tui.client.pools(pool)
        if not views:
            self.app.call_from_thread(
                self._show_problem, f"No pool {pool!r}: create it with `skytui jobs pool apply -p {pool} POOL.yaml`."
            )
            return
        if len(pipeline.tasks) != 1:
            self.app.call_from_thread(self._show_problem, "A pool runs single-task jobs, not pipelines.")
            return
        view = views[0]
        self.app.call_from_thread(self._show_pool, pipeline, pool, copies, view.ready, view.pool.target_workers)

    def _show_problem(self, message: str) -> None:
        self._checked = None
        self.query_one("#launch-message", Static).update(Text(message, style="bold red"))
        self.query_one(DataTable).clear()
        self.query_one("#launch-go", Button).disabled = True

    def _show_pool(self, pipeline: Pipeline, pool: str, copies: int, ready: int, target: int) -> None:
        self._checked = (pipeline, [], copies, pool)
        copies_note = f" × {copies} copies" if copies > 1 else ""
        ignored = " Its setup and file_mounts are ignored: the pool's ran on each worker." if (
            pipeline.tasks[0].setup or pipeline.tasks[0].file_mounts) else ""
        self.query_one("#launch-message", Static).update(
            Text(f"{pipeline.name!r}{copies_note} into pool {pool!r}: {ready} of {target} worker(s) ready.{ignored}")
        )
        self.query_one(DataTable).clear()
        self.query_one("#launch-go", Button).disabled = False

    def _show_plan(self, pipeline: Pipeline, plans: list[Plan], copies: int) -> None:
        self._checked = (pipeline, plans, copies, None)
        kind = f"pipeline of {len(pipeline.tasks)} tasks" if pipeline.is_pipeline else "task"
        copies_note = f" × {copies} copies" if copies > 1 else ""
        message = Text(f"{pipeline.name!r}: a {kind}{copies_note}. Considered resources:")
        for warning in pipeline.warnings:
            message.append(f"\n{warning}", style="yellow")
        self.query_one("#launch-message", Static).update(message)
        table = self.query_one(DataTable)
        table.clear()
        for plan in plans:
            for row in considered_rows(plan):
                table.add_row(*(Text(cell, style="bold green" if row[-1] else "") for cell in row))
        self.query_one("#launch-go", Button).disabled = False

    @on(Button.Pressed, "#launch-cancel")
    def _cancel(self) -> None:
        self.app.pop_screen()

    @on(Button.Pressed, "#launch-go")
    def _go(self) -> None:
        self.action_launch()

    def action_launch(self) -> None:
        if self._checked is None:
            self.notify("Nothing to launch yet: fix the problem shown first.", severity="warning")
            return
        pipeline, _plans, copies, pool = self._checked
        self.query_one("#launch-go", Button).disabled = True
        self.submit(pipeline, copies, pool)

    @work(thread=True, exclusive=True, group="launch-submit", name="submit the job")
    def submit(self, pipeline: Pipeline, copies: int, pool: str | None = None) -> None:
        try:
            job_ids = self.tui.client.submit(pipeline, num_jobs=copies, pool=pool)
        except ValueError as exc:  # the pool went down since the check
            self.app.call_from_thread(self._show_problem, str(exc))
            return
        self.app.call_from_thread(self._submitted_jobs, job_ids)

    def _submitted_jobs(self, job_ids: list[int]) -> None:
        self.notify(f"Managed {jobs_phrase(job_ids)} submitted.")
        self.app.pop_screen()
