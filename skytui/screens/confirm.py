"""The cancel confirmation: Cancel is focused, so a stray Enter cancels nothing.

Cancelling a cloud job throws away paid compute; like k9s' delete dialog, the
safe answer is the default.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from skytui.format import jobs_phrase


class ConfirmCancel(ModalScreen[bool]):
    BINDINGS = [
        Binding("escape", "dismiss(False)", "Keep running", id="confirm.no"),
        Binding("n", "dismiss(False)", "No", show=False, id="confirm.n"),
        Binding("y", "dismiss(True)", "Yes, cancel", show=False, id="confirm.y"),
    ]

    def __init__(self, job_ids: list[int]) -> None:
        super().__init__()
        self.job_ids = job_ids

    def compose(self) -> ComposeResult:
        noun = "jobs" if len(self.job_ids) > 1 else "job"
        with Vertical(id="confirm-dialog"):
            yield Static(f"Cancel managed {jobs_phrase(self.job_ids)}?", id="confirm-question")
            yield Static(
                "Running processes are stopped and their machines torn down. Logs are kept.",
                id="confirm-detail",
            )
            with Horizontal(id="confirm-buttons"):
                yield Button("Keep running", id="confirm-keep", variant="primary")
                yield Button(f"Cancel {noun}", id="confirm-cancel", variant="error")

    def on_mount(self) -> None:
        self.query_one("#confirm-keep", Button).focus()

    @on(Button.Pressed, "#confirm-keep")
    def _keep(self) -> None:
        self.dismiss(False)

    @on(Button.Pressed, "#confirm-cancel")
    def _cancel(self) -> None:
        self.dismiss(True)
