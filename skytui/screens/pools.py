"""The pools view (`:pools`): pools and their workers.

Pools arrive with their own engine support; until then this view says so
plainly instead of showing an empty table that looks broken.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static


class PoolsScreen(Screen[None]):
    BINDING_GROUP_TITLE = "Pools"
    BINDINGS = [
        Binding("escape", "app.switch_mode('jobs')", "Jobs", id="pools.back"),
        Binding("q", "app.switch_mode('jobs')", "Back", show=False, id="pools.quit"),
    ]

    def compose(self) -> ComposeResult:
        yield Static("Pools", id="pools-title")
        yield Static(
            "No pools. Pools keep warm workers for many small jobs; "
            "`skytui jobs pool apply` will create them.",
            id="pools-empty",
        )
        yield Footer()
