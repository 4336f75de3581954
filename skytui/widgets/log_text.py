"""Log lines as a terminal shows them: escapes, controls and tabs, widths, styles.

This module owns the cleaning of one raw log line: which escape sequences a
scrollback keeps (only SGR colours), what a carriage return leaves, how tabs
expand, how many cells the line takes and the styled Text it paints as. Pure
functions of a string; it touches no widget state.
"""

from __future__ import annotations

import re

from rich.ansi import AnsiDecoder
from rich.cells import cell_len
from rich.text import Text

__all__ = ["TAB_SIZE", "display_width", "is_plain", "plain_text", "styled_text", "terminal_line"]

TAB_SIZE = 8

# Escape sequences after the ESC: CSI (cursor moves, erase line, SGR...), OSC
# (titles, hyperlinks; ended by BEL or ST, or cut off by the end of the line),
# DCS/SOS/PM/APC strings, two- and three-byte escapes (charsets, keypad
# modes), and nothing at all for a lone ESC. On a terminal these move the
# cursor or set a mode, none of which a scrollback can honour; only SGR
# (colours, bold...) is kept for the styled text.
_ESCAPE_BODY = r"\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|[ -/]*[0-~]|"
_ESCAPE_RE = re.compile(r"\x1b(?:" + _ESCAPE_BODY + ")")
_NON_SGR_ESCAPE_RE = re.compile(r"\x1b(?!\[[0-9;:]*m)(?:" + _ESCAPE_BODY + ")")
_SGR_RE = re.compile(r"\x1b\[[0-9;:]*m")
_SGR_SPLIT_RE = re.compile(r"(\x1b\[[0-9;:]*m)")
# Control characters left after the escapes are gone (ESC itself survives only
# inside SGR; tab is expanded later). Rich's decoder would split a line on
# \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and \u2029, so those go as well.
_CONTROL_RE = re.compile("[\x00-\x08\x0a-\x1a\x1c-\x1f\x7f-\x9f\u2028\u2029]")


def _expand_tabs(line: str) -> str:
    """Tabs to spaces by display column, SGR sequences taking no columns."""
    out: list[str] = []
    column = 0
    for index, part in enumerate(_SGR_SPLIT_RE.split(line)):
        if index % 2 or "\t" not in part:
            out.append(part)
            if not index % 2:
                column += cell_len(part)
            continue
        for chunk_index, chunk in enumerate(part.split("\t")):
            if chunk_index:
                spaces = TAB_SIZE - column % TAB_SIZE
                out.append(" " * spaces)
                column += spaces
            out.append(chunk)
            column += cell_len(chunk)
    return "".join(out)


def terminal_line(raw: str) -> str:
    """`raw` as a terminal would leave it: only SGR escapes, no controls, no tabs.

    A carriage return redraws the line, so only the text after the last one
    stays (a finished progress bar), keeping the colours set before it; a
    trailing one (CRLF files) is ignored.
    """
    line = raw
    if "\r" in line:
        line = line.rstrip("\r\n")
        head, separator, tail = line.rpartition("\r")
        if separator:
            line = "".join(_SGR_RE.findall(head)) + tail
    if "\x1b" in line:
        line = _NON_SGR_ESCAPE_RE.sub("", line)
    line = _CONTROL_RE.sub("", line)
    if "\t" in line:
        line = _expand_tabs(line)
    return line


def is_plain(raw: str) -> bool:
    # Printable ASCII needs no cleaning and its width is its length: the
    # common case, checked in C.
    return raw.isascii() and raw.isprintable()


def plain_text(raw: str) -> str:
    """The characters of `raw` that show on screen, without any styling.

    The same as `terminal_line` without its SGR escapes, in one pass, because
    every line with an escape goes through here when it arrives.
    """
    if is_plain(raw):
        return raw
    line = raw
    if "\r" in line:
        line = line.rstrip("\r\n").rpartition("\r")[2]
    if "\x1b" in line:
        line = _ESCAPE_RE.sub("", line)
    line = _CONTROL_RE.sub("", line)
    if "\t" in line:
        line = _expand_tabs(line)
    return line


def display_width(raw: str) -> int:
    """Cells `raw` takes on screen once cleaned."""
    if is_plain(raw):
        return len(raw)
    plain = plain_text(raw)
    return len(plain) if plain.isascii() else cell_len(plain)


def styled_text(raw: str) -> Text:
    """A Text for `raw`: SGR colours become styles, nothing is read as markup."""
    if is_plain(raw):
        return Text(raw, end="", no_wrap=True)
    line = terminal_line(raw)
    if "\x1b" not in line:
        return Text(line, end="", no_wrap=True)
    text = AnsiDecoder().decode_line(line)
    text.end = ""
    text.no_wrap = True
    return text
