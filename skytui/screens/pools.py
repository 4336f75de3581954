"""The pools view (`:pools`): every pool, and the workers of the selected one.

Pools are few, so this screen reads them whole through the client once a
second in a thread worker (never on the app's loop) and diffs them into two
small DataTables keyed by pool name and worker id, so the cursor stays on its
row while statuses change. What each worker runs comes from the app's live
queue. `enter` or `l` on a busy worker opens its job or its logs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Static
from textual.worker import get_current_worker

from skytui.client import PoolView
from skytui.format import readable_ago, readable_duration
from skytui.screens.base import SkyScreen
from skytui.widgets.controller_banner import ControllerBanner

REFRESH_S = 1.0
POOL_COLUMNS = ("NAME", "VERSION", "UPTIME", "STATUS", "WORKERS", "JOBS WAITING", "JOBS RUNNING")
WORKER_COLUMNS = ("ID", "VERSION", "LAUNCHED", "INFRA", "RESOURCES", "STATUS", "USED_BY")


class PoolsScreen(SkyScreen):
    BINDING_GROUP_TITLE = "Pools"
    CSS_PATH = "pools.tcss"
    BINDINGS = [
        Binding("escape", "app.switch_mode('jobs')", "Jobs", id="pools.back"),
        Binding("q", "app.switch_mode('jobs')", "Back", show=False, id="pools.quit"),
        Binding("enter", "open_job", "Open job", id="pools.open_job"),
        Binding("l", "job_logs", "Job logs", id="pools.logs"),
        Binding("tab", "switch_table", "Pools/workers", show=False, id="pools.switch"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.views: list[PoolView] = []
        self.selected_pool: str | None = None

    def compose(self) -> ComposeResult:
        yield ControllerBanner()
        yield Static("Pools", id="pools-title")
        yield DataTable(id="pools-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="workers-title")
        yield DataTable(id="workers-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="pools-empty")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#pools-table", DataTable).add_columns(*POOL_COLUMNS)
        self.query_one("#workers-table", DataTable).add_columns(*WORKER_COLUMNS)
        self.query_one("#pools-table", DataTable).focus()
        self._follow_pools()

    @work(thread=True, exclusive=True, group="pools", name="follow pools")
    def _follow_pools(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            views = self.tui.client.pools()
            if worker.is_cancelled:
                return
            self.app.call_from_thread(self._show, views)
            time.sleep(REFRESH_S)

    # ------------------------------------------------------------ rendering

    def _show(self, views: list[PoolView]) -> None:
        self.views = views
        names = [view.pool.name for view in views]
        if self.selected_pool not in names:
            self.selected_pool = names[0] if names else None
        waiting = self._waiting_counts(views)
        now = self.tui.clock()
        rows = {
            view.pool.name: (
                view.pool.name, str(view.pool.version), readable_duration(now - view.pool.created_at),
                view.status, f"{view.ready}/{view.pool.target_workers}",
                str(waiting.get(view.pool.name, 0)),
                str(sum(1 for worker in view.workers if worker.job_id is not None)),
            )
            for view in views
        }
        _sync_rows(self.query_one("#pools-table", DataTable), rows)
        self._show_workers()
        empty = self.query_one("#pools-empty", Static)
        empty.display = not views
        empty.update(
            "No pools. A pool keeps warm workers for many small jobs: "
            "`skytui jobs pool apply -p NAME POOL.yaml`, then `skytui jobs launch -p NAME JOB.yaml`."
        )

    def _show_workers(self) -> None:
        view = next((v for v in self.views if v.pool.name == self.selected_pool), None)
        title = self.query_one("#workers-title", Static)
        table = self.query_one("#workers-table", DataTable)
        if view is None:
            title.update("")
            _sync_rows(table, {})
            return
        title.update(f"Workers of {view.pool.name} (version {view.pool.version})")
        now = self.tui.clock()
        rows = {}
        for worker in view.workers:
            infra, instance = view.infra_of(worker)
            status = worker.status
            if worker.status_reason and worker.status != "READY":
                status += f" · {worker.status_reason}"
            used_by = "-"
            if worker.job_id is not None:
                job = self.tui.jobs.get(worker.job_id)
                used_by = f"job {worker.job_id}" + (f" ({job.job.name})" if job else "")
            rows[str(worker.id)] = (
                str(worker.id), str(worker.version), readable_ago(worker.created_at, now),
                infra or "-", instance or "-", status, used_by,
            )
        _sync_rows(table, rows)

    def _waiting_counts(self, views: list[PoolView]) -> dict[str, int]:
        """Jobs queued for each pool. Running counts come from the workers of the same read, so the two
        tables never disagree; the job feed only lags behind for jobs no worker holds yet."""
        assigned = {worker.job_id for view in views for worker in view.workers if worker.job_id is not None}
        waiting: dict[str, int] = {}
        for job_id in self.tui.active_job_ids:
            view = self.tui.jobs.get(job_id)
            if view is None or view.job.pool is None or job_id in assigned or view.job.status != "PENDING":
                continue
            waiting[view.job.pool] = waiting.get(view.job.pool, 0) + 1
        return waiting

    @on(DataTable.RowHighlighted, "#pools-table")
    def _pool_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None and event.row_key.value != self.selected_pool:
            self.selected_pool = event.row_key.value
            self._show_workers()

    @on(DataTable.RowSelected, "#workers-table")
    def _worker_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open_job()  # DataTable takes `enter` itself

    @on(DataTable.RowSelected, "#pools-table")
    def _pool_selected(self, _event: DataTable.RowSelected) -> None:
        self.query_one("#workers-table", DataTable).focus()

    # -------------------------------------------------------------- actions

    def _selected_job(self) -> int | None:
        table = self.query_one("#workers-table", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        view = next((v for v in self.views if v.pool.name == self.selected_pool), None)
        worker = next((w for w in view.workers if str(w.id) == key), None) if view else None
        return worker.job_id if worker is not None else None

    def action_open_job(self) -> None:
        job_id = self._selected_job()
        if job_id is None:
            self.notify("Select a busy worker (tab to the workers) to open its job.", severity="warning")
            return
        self.tui.open_job(job_id)

    def action_job_logs(self) -> None:
        job_id = self._selected_job()
        if job_id is None:
            self.notify("Select a busy worker (tab to the workers) to read its job's logs.", severity="warning")
            return
        from skytui.screens.logs import LogsScreen

        self.app.push_screen(LogsScreen(job_id, None))

    def action_switch_table(self) -> None:
        pools, workers = self.query_one("#pools-table", DataTable), self.query_one("#workers-table", DataTable)
        (workers if pools.has_focus else pools).focus()


def _sync_rows(table: DataTable[str], rows: Mapping[str, tuple[str, ...]]) -> None:
    """Make the table show `rows` (key -> cells) in order, keeping the cursor
    on its key: cells are updated in place, rows added and removed by key."""
    current = [key.value for key in table.rows]
    if current != list(rows):
        cursor_key = None
        if table.row_count:
            cursor_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear()
        for key, cells in rows.items():
            table.add_row(*cells, key=key)
        if cursor_key is not None and cursor_key in rows:
            table.move_cursor(row=list(rows).index(cursor_key))
        return
    columns = list(table.columns)
    for key, cells in rows.items():
        for column, value in zip(columns, cells):
            if table.get_cell(key, column) != value:
                table.update_cell(key, column, value, update_width=True)
