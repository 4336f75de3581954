"""The job table's column layout: one cell fitted to its column's fixed width.

This module owns how a cell's text becomes exactly `width` cells: unsafe
characters replaced, cropped with an ellipsis, padded on the column's side.
Pure functions of the cell; it touches no widget.
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from skytui.widgets.job_table_rows import Align

__all__ = ["ELLIPSIS", "crop_prefix", "fit_plain", "fit_text", "sanitize"]

ELLIPSIS = "…"


def sanitize(text: str) -> str:
    """`text` with one safe character for each one that would break a terminal line.

    Tabs and newlines become spaces and other non-printables (ESC, NUL, ...)
    become U+FFFD, so a job name can never move the terminal's cursor.
    """
    safe = []
    for char in text:
        if char.isprintable():
            safe.append(char)
        elif char in "\t\n\r":
            safe.append(" ")
        else:
            safe.append("\ufffd")
    return "".join(safe)


def fit_plain(text: str, width: int, align: Align) -> str:
    """`text` cropped with an ellipsis or padded to exactly `width` cells."""
    if width <= 0:
        return ""
    if not text.isprintable():
        text = sanitize(text)
    length = cell_len(text)
    if length > width:
        text = crop_prefix(text, width - 1) + ELLIPSIS
        length = cell_len(text)
    if length == width:
        return text
    padding = " " * (width - length)
    return padding + text if align == "right" else text + padding


def crop_prefix(text: str, width: int) -> str:
    """The longest prefix of `text` that fits in `width` cells."""
    cropped = set_cell_size(text, width)
    # set_cell_size pads with a space rather than split a double-width
    # character; drop that space so the ellipsis follows the text directly.
    if not text.startswith(cropped):
        cropped = cropped[:-1]
    return cropped


def fit_text(text: Text, width: int, align: Align, style: Style, console: Console) -> list[Segment]:
    """Segments of a styled cell, cropped or padded to exactly `width` cells."""
    if width <= 0:
        return []
    plain = text.plain
    if not plain.isprintable():
        # One character for one, so the spans still line up.
        text = Text(sanitize(plain), style=text.style, spans=list(text.spans), end="")
    length = text.cell_len
    if length > width:
        text = text[: len(crop_prefix(text.plain, width - 1))]
        text.append(ELLIPSIS)
        length = text.cell_len
    # Text.render drops the Text's own base style when it has no spans.
    base = style + console.get_style(text.style, default=Style.null())
    segments = list(Segment.apply_style(text.render(console, end=""), base))
    if length < width:
        padding = Segment(" " * (width - length), style)
        if align == "right":
            segments.insert(0, padding)
        else:
            segments.append(padding)
    return segments

