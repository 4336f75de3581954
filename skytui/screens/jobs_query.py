"""What the jobs screen shows and in which order: its columns, sorts and the `/` filter.

This module owns the queue's columns at a given width, the sort keys and scopes
the screen offers, the value each sort orders a job by, and `JobFilter` with
the text it searches in a job. Pure functions of a `JobView`; it touches no
screen or widget (`screens/jobs.py` applies them, with its caches).
"""

from __future__ import annotations

import re
from typing import Literal

from skytui.client import JobView
from skytui.format import QUEUE_COLUMNS, QUEUE_RIGHT_ALIGNED, fit_queue_columns
from skytui.widgets.job_table import Column

SortKey = Literal["id", "name", "age", "status", "duration", "recoveries"]
Scope = Literal["all", "active", "faults"]

# Fixed widths (measuring ten thousand cells is what makes big tables slow),
# chosen by `fit_queue_columns` for the table's width.
# The mark gutter and the vertical scrollbar take these cells of the width.
TABLE_CHROME = 3
# Sorts whose order a status change cannot alter (ids and ages never change):
# the feed's changes are patched into place instead of re-sorting the queue.
ORDER_FIXED_SORTS = ("id", "age")
REGEX_SYNTAX = frozenset(".^$*+?{}[]\\|()")


def queue_columns(width: int) -> list[Column]:
    """The queue table's columns that fit a table `width` cells wide, by
    `format.QUEUE_PRIORITY`: `sky jobs queue`'s, then INFRA and COST."""
    return [
        Column(name.lower(), name, cells, "right" if name in QUEUE_RIGHT_ALIGNED else "left",
               QUEUE_COLUMNS.index(name))
        for name, cells in fit_queue_columns(width - TABLE_CHROME).items()
    ]


class JobFilter:
    """The `/` filter: a regex over a job's visible text; a leading `!` inverts it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.invert = text.startswith("!")
        pattern = text[1:] if self.invert else text
        try:
            self.regex: re.Pattern[str] | None = re.compile(pattern, re.IGNORECASE) if pattern else None
            self.error: str | None = None
        except re.error as exc:
            # A half-typed regex matches literally rather than hiding everything.
            self.regex = re.compile(re.escape(pattern), re.IGNORECASE)
            self.error = str(exc)
        self.plain = not self.invert and self.error is None and not REGEX_SYNTAX.intersection(pattern)
        """Plain text: a job matches when its text contains this one (ignoring case)."""
        self._needle = pattern.lower() if self.plain and pattern.isascii() else None

    def matches(self, haystack: str, folded: str | None = None) -> bool:
        """`folded` is `haystack.lower()` if `haystack` is ASCII, else None.

        Plain ASCII text is then looked for with `in`, five times faster than
        an IGNORECASE regex over ten thousand jobs, and the same answer (ASCII
        against ASCII has no case folding subtleties).
        """
        if self.regex is None:
            return True
        if self._needle is not None and folded is not None:
            return self._needle in folded
        found = self.regex.search(haystack) is not None
        return found != self.invert

    def narrows(self, other: JobFilter) -> bool:
        """True when every job this filter keeps, `other` keeps too.

        So the jobs matching `other` are the only ones worth searching: as a
        filter is typed one letter at a time, each keystroke searches the
        previous keystroke's matches, not the whole queue. Sure only for plain
        text containing `other`'s plain text (or when `other` keeps everything).
        """
        if other.regex is None:
            return True
        return self.plain and other.plain and other.text in self.text


def haystack(view: JobView) -> str:
    job = view.job
    parts = [str(job.id), job.name, job.status, job.pool or ""]
    for task in view.tasks:
        parts += [task.name, task.status, task.infra or "", task.requested]
    return " ".join(parts)


def sort_value(view: JobView, key: SortKey, now: float) -> object:
    if key == "name":
        return view.job.name.lower()
    if key == "age":
        return view.job.submitted_at
    if key == "status":
        return view.job.status
    if key == "duration":
        return sum(t.duration_s(now) for t in view.tasks)
    if key == "recoveries":
        return sum(t.recoveries for t in view.tasks)
    return view.job.id
