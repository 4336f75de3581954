"""`?`: every key of the screen below, with what it does and its binding id.

The id is the name `tui.keymap` in config.yaml remaps a key by (README: "The
terminal UI"). Laid out as k9s' help: one section per owner of keys (the
screen, the focused widget, then the app's "General"), sections side by side
in as many columns as the terminal has room for. Keys are read from the
screen's active bindings when `?` is pressed, so a remapped key shows as
remapped and a key another one shadows is not listed.

May touch Textual and the app's screens as Textual screens; nothing of the
client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

__all__ = ["HelpRow", "HelpScreen", "HelpSection", "help_sections"]

COLUMN_WIDTH = 58
"""The narrowest a column may be and still show key, description and id unclipped."""
NO_ID = "-"
"""Shown for a key Textual binds without an id: it cannot be remapped."""


@dataclass(frozen=True)
class HelpRow:
    keys: str
    """Every key bound to it, as the footer shows them: `↑ k`, `^d`."""
    description: str
    binding_id: str | None
    enabled: bool


@dataclass(frozen=True)
class HelpSection:
    title: str
    rows: list[HelpRow]


def help_sections(screen: Screen[Any]) -> list[HelpSection]:
    """The keys active on `screen`, by owner: the screen's own first, then
    its widgets', then the app's. Keys for one action share a row."""
    app = screen.app
    owners: dict[int, tuple[Any, dict[str, list[tuple[Binding, bool]]]]] = {}
    for active in screen.active_bindings.values():
        binding = active.binding
        if binding.system:
            continue
        _node, actions = owners.setdefault(id(active.node), (active.node, {}))
        actions.setdefault(binding.id or binding.action, []).append((binding, active.enabled))
    # The chain runs from the focused widget up to the app; k9s puts the view's own keys first.
    rank = {id(screen): 0, id(app): 2}
    ordered = sorted(owners.values(), key=lambda owner: rank.get(id(owner[0]), 1))
    sections = []
    for node, actions in ordered:
        rows = [_row(app, bound) for bound in actions.values()]
        # Textual's own keys (focus, copy, palette) have no id: after ours, which can be remapped.
        rows.sort(key=lambda row: row.binding_id is None)
        sections.append(HelpSection(_title(node, app), rows))
    return sections


def _row(app: App[Any], bound: list[tuple[Binding, bool]]) -> HelpRow:
    binding, enabled = bound[0]
    keys = " ".join(dict.fromkeys(app.get_key_display(b) for b, _ in bound))
    return HelpRow(keys, binding.description or binding.action, binding.id, enabled)


def _title(node: Any, app: App[Any]) -> str:
    if node is app:
        return "General"
    title = getattr(node, "BINDING_GROUP_TITLE", None)
    if title:
        return str(title)
    # A widget without a group title: its class name in words ("JobTable" -> "Job table").
    words = re.findall(r"[A-Z][a-z0-9]*|[a-z0-9]+", type(node).__name__)
    return " ".join(words).capitalize() if words else type(node).__name__


def section_table(section: HelpSection, key_style: str = "bold") -> Table:
    """One section as k9s prints it: its title, then key, what it does, id."""
    table = Table.grid(padding=(0, 2))
    table.add_column("key", no_wrap=True, style=key_style)
    table.add_column("description")
    table.add_column("id", no_wrap=True, style="dim", overflow="ellipsis")
    table.title = Text(section.title.upper(), style="bold underline")
    table.title_justify = "left"
    for row in section.rows:
        style = "" if row.enabled else "dim"
        table.add_row(row.keys, Text(row.description, style=style), row.binding_id or NO_ID)
    return table


def columns_of(sections: list[HelpSection], columns: int) -> list[list[HelpSection]]:
    """The sections, in order, cut into at most `columns` runs of about even height."""
    columns = max(1, min(columns, len(sections)))
    total = sum(len(section.rows) + 2 for section in sections)
    target = -(-total // columns)
    runs: list[list[HelpSection]] = [[]]
    height = 0
    for section in sections:
        size = len(section.rows) + 2
        if runs[-1] and height + size > target and len(runs) < columns:
            runs.append([])
            height = 0
        runs[-1].append(section)
        height += size
    return runs


class HelpScreen(ModalScreen[None]):
    """The keys of `below`, shown over it; `?` again, `escape` or `q` closes."""

    # A modal screen's keys stop at the screen: the app's `?` does not reach here.
    BINDINGS = [
        Binding("escape,q,question_mark", "app.pop_screen", "Close", id="help.close"),
    ]

    def __init__(self, below: Screen[Any]) -> None:
        super().__init__()
        self.sections = help_sections(below)
        self._below_title = getattr(below, "BINDING_GROUP_TITLE", None) or "skytui"

    def compose(self) -> ComposeResult:
        width = self.app.size.width - 4  # the dialog's border and padding
        accent = self.app.theme_variables.get("text-accent") or self.app.theme_variables.get("accent")
        key_style = f"bold {accent}" if accent else "bold"
        with Vertical(id="help-dialog"):
            # Scrolled as one, with the keys, when a short terminal cannot show every section.
            with VerticalScroll(id="help-scroll"), Horizontal(id="help-columns"):
                for run in columns_of(self.sections, width // COLUMN_WIDTH):
                    with Vertical(classes="help-column"):
                        for section in run:
                            yield Static(section_table(section, key_style), classes="help-section")
            yield Static(
                Text.assemble(
                    ("config.yaml remaps by id: ", "dim"),
                    "tui: {keymap: {jobs.cancel: ctrl+x}}",
                    (" · esc closes", "dim"),
                ),
                id="help-hint",
            )

    def on_mount(self) -> None:
        self.query_one("#help-dialog").border_title = f"Help · {self._below_title}"
        self.query_one("#help-scroll").focus()
