"""A one-line banner, shown while the controller is down or being restarted.

Every screen composes one; it watches the app's `controller` reactive and
hides itself (taking no room) while the controller runs. Durations on screen
stop ticking while it shows: the app's clock stands still at the moment the
controller was found down, so no RUNNING clock passes for live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from textual.widgets import Static

ControllerPhase = Literal["up", "idle", "restarting", "down"]


@dataclass(frozen=True)
class ControllerState:
    """What the TUI knows of the controller: `up` (running), `idle` (not
    running, with nothing to do), `restarting`, or `down` (a restart failed)."""

    phase: ControllerPhase
    since: float | None = None
    """When it was found not running (wall clock)."""
    detail: str = ""

    @property
    def is_out(self) -> bool:
        return self.phase in ("restarting", "down")


UP = ControllerState("up")


class ControllerBanner(Static):
    """Says the controller is down, and that what is shown is as of then."""

    def on_mount(self) -> None:
        self.watch(self.app, "controller", self._show, init=True)

    def _show(self, state: ControllerState) -> None:
        self.set_class(state.is_out, "-shown")
        if not state.is_out:
            return
        since = time.strftime("%H:%M:%S", time.localtime(state.since)) if state.since else "?"
        if state.phase == "restarting":
            text = f"Controller down since {since}: restarting it. Jobs keep running; what is shown is as of {since}."
        else:
            text = (f"Controller down since {since} and it would not restart ({state.detail}). "
                    f"Jobs keep running; what is shown is as of {since}. See `skytui controller logs`.")
        self.update(text)
