"""Following a job's stored logs: its log files turned into prefixed lines.

Owns `LogFollower`, what `skytui jobs logs` prints and the TUI's log views
show. It reads the local log store (`logs.store`) and, through `LogRows`,
the segment, task and attempt rows that say which bytes belong to which
phase and attempt; it may touch nothing else (no client, no engine code:
the row types are named for type checking only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from skytui.logs.store import file_size, task_log_path

if TYPE_CHECKING:
    from skytui.engine.store import AttemptRow, SegmentRow, TaskRow


class LogRows(Protocol):
    """The rows a follower reads (the store answers them)."""

    def segments(self, job_id: int, task_idx: int | None = None) -> list[SegmentRow]: ...

    def tasks(self, job_id: int) -> list[TaskRow]: ...

    def attempts(self, job_id: int) -> list[AttemptRow]: ...


@dataclass
class _Source:
    task_idx: int
    rank: int
    path: Path
    position: int = 0
    pending: bytes = b""
    segment: SegmentRow | None = None


class LogFollower:
    """Turns a job's log files into prefixed lines, following them as they grow.

    `(train, pid=123) step 1`; setup lines read `(setup pid=123)`, and other
    nodes `(worker1, rank=1, pid=124)`, as SkyPilot prints them. A line is
    shown once it is complete, or when its phase has ended without a newline.
    """

    # Bytes read per poll at most, so a huge log is consumed in steps and the
    # caller stays responsive.
    POLL_BUDGET = 4 << 20

    def __init__(
        self, rows: LogRows, job_logs: Path, job_id: int, task_idx: int | None, *, tail_bytes: int | None = None
    ) -> None:
        self.rows = rows
        self.job_logs = job_logs
        self.job_id = job_id
        self.task_idx = task_idx
        self.tail_bytes = tail_bytes
        self._sources: dict[tuple[int, int], _Source] = {}
        self._shown_attempt: dict[int, int] = {}
        # A secret the job printed is already masked in the stored log
        # (logs/sync.py): clients never read secrets.

    def _segments(self) -> list[SegmentRow]:
        return self.rows.segments(self.job_id, self.task_idx)

    def poll(self, *, final: bool = False, before_task: int | None = None) -> list[str]:
        """New complete lines since the last call (everything left with `final`).

        `before_task` limits the read to the tasks before it, so a caller can
        print a pipeline's output and its status news in order.
        """
        segments = self._segments()
        if not segments:
            return []
        tasks = {t.task_idx: t for t in self.rows.tasks(self.job_id)}
        attempts = {(a.task_idx, a.attempt_no): a for a in self.rows.attempts(self.job_id)}
        out: list[str] = []
        keys = sorted(
            {(s.task_idx, s.rank) for s in segments if before_task is None or s.task_idx < before_task}
        )
        for key in keys:
            source = self._sources.get(key)
            if source is None:
                path = task_log_path(self.job_logs, self.job_id, key[0], key[1])
                source = self._sources[key] = _Source(key[0], key[1], path, _tail_start(path, self.tail_bytes))
            mine = sorted(
                (s for s in segments if (s.task_idx, s.rank) == key), key=lambda s: s.start_offset
            )
            out.extend(self._read(source, mine, tasks, attempts, final))
        return out

    def _read(
        self,
        source: _Source,
        segments: list[SegmentRow],
        tasks: dict[int, TaskRow],
        attempts: dict[tuple[int, int], AttemptRow],
        final: bool,
    ) -> list[str]:
        size = file_size(source.path)
        out: list[str] = []
        if source.segment is not None:  # take the fresh row: `finished` may have changed
            source.segment = next((s for s in segments if s.id == source.segment.id), source.segment)
        budget = self.POLL_BUDGET
        while source.position < size and budget > 0:
            index = 0
            for i, candidate in enumerate(segments):
                if candidate.start_offset <= source.position:
                    index = i
            segment = segments[index]
            if source.segment is not None and source.segment.id != segment.id and source.pending:
                out.extend(self._lines(source, b"", source.segment, tasks, closed=True))
            if source.segment is None or source.segment.id != segment.id:
                out.extend(self._separator(segment, tasks, attempts))
            source.segment = segment
            end = segments[index + 1].start_offset if index + 1 < len(segments) else size
            with open(source.path, "rb") as f:
                f.seek(source.position)
                data = f.read(min(min(end, size) - source.position, budget))
            source.position += len(data)
            budget -= len(data)
            closed = index + 1 < len(segments) or segment.finished or final
            out.extend(self._lines(source, data, segment, tasks, closed and source.position >= min(end, size)))
        caught_up = source.position >= size
        if caught_up and source.pending and source.segment is not None and (final or source.segment.finished):
            out.extend(self._lines(source, b"", source.segment, tasks, closed=True))
        return out

    def _separator(
        self, segment: SegmentRow, tasks: dict[int, TaskRow], attempts: dict[tuple[int, int], AttemptRow]
    ) -> list[str]:
        shown = self._shown_attempt.get(segment.task_idx)
        self._shown_attempt[segment.task_idx] = segment.attempt_no
        if shown is None or shown == segment.attempt_no or segment.rank != 0:
            return []
        previous = attempts.get((segment.task_idx, shown))
        current = attempts.get((segment.task_idx, segment.attempt_no))
        ended = ""
        if previous is not None:
            was = f" on {previous.infra}" if previous.infra else ""
            ended = f"attempt {shown}{was} ended: {previous.end_reason or 'unknown'} · "
        where = f" on {current.infra}" if current and current.infra else ""
        task = tasks.get(segment.task_idx)
        name = task.name if task else str(segment.task_idx)
        return [f"──── {name}: {ended}attempt {segment.attempt_no}{where} ────"]

    def _lines(
        self, source: _Source, data: bytes, segment: SegmentRow, tasks: dict[int, TaskRow], closed: bool
    ) -> list[str]:
        buffer = source.pending + data
        parts = buffer.split(b"\n")
        source.pending = parts.pop()
        if closed and source.pending:
            parts.append(source.pending)
            source.pending = b""
        prefix = self._prefix(segment, tasks)
        return [f"{prefix} {part.decode('utf-8', errors='replace')}" for part in parts]

    @staticmethod
    def _prefix(segment: SegmentRow, tasks: dict[int, TaskRow]) -> str:
        pid = segment.pid if segment.pid is not None else "?"
        if segment.phase == "setup":
            return f"(setup pid={pid})"
        if segment.rank:
            return f"(worker{segment.rank}, rank={segment.rank}, pid={pid})"
        task = tasks.get(segment.task_idx)
        return f"({task.name if task else segment.task_idx}, pid={pid})"


def _tail_start(path: Path, tail_bytes: int | None) -> int:
    """Where to start reading so that only about the last `tail_bytes` are
    shown, at the start of a line: a 1 GB log opens at its end at once."""
    size = file_size(path)
    if tail_bytes is None or size <= tail_bytes:
        return 0
    start = size - tail_bytes
    with open(path, "rb") as f:
        f.seek(start)
        newline = f.read(64 * 1024).find(b"\n")
    return start + newline + 1 if newline >= 0 else start

