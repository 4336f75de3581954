"""LogView throughput: ingestion in lines/s and time to first paint, headless.

    .venv/bin/python bench/tui_logs.py [--lines 1000000] [--batch 10000] [--held 200000] [--quick]

Feeds `skytui.widgets.log_view.LogView` the way the log screen does (the
screen polls a follower about every 100 ms and hands over what is new), in a
headless `App.run_test(size=(100, 30))`, and prints:

* ingestion: N lines of about 100 characters appended in batches, with a
  paint after every batch (the script counts `render_line` calls to show each
  paint really happened), in lines/s, for plain text, for text where every
  line carries SGR colours, for smaller batches, and with soft wrap on;
* time to first paint of a view holding 200,000 lines: appended to an empty
  view on screen in one call, and mounted already full;
* beside them the anchors of reference/env.md §3.2 (Log.write_line per line:
  100k lines in 43-83 s; Log.write_lines batched: 100k lines in 0.8-1.5 s) as
  ratios, and the target (>= 50,000 lines/s) with PASS/FAIL.

Exit status 0 when every ingestion figure meets the target, 1 otherwise. It
touches no state directory: the widget has no I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from textual.app import App, ComposeResult
from textual.strip import Strip

from skytui.widgets.log_view import LogView

SIZE = (100, 30)
TARGET_LINES_PER_S = 50_000
# reference/env.md §3.2: 100,000 lines into Textual's Log.
ANCHOR_WRITE_LINE = (100_000 / 83.0, 100_000 / 43.0)  # lines/s, slowest..fastest
ANCHOR_WRITE_LINES = (100_000 / 1.5, 100_000 / 0.8)


class CountingLogView(LogView):
    """Counts rendered rows so the script can tell a paint happened."""

    rows_rendered = 0

    def render_line(self, y: int) -> Strip:
        CountingLogView.rows_rendered += 1
        return super().render_line(y)


class BenchApp(App[None]):
    def __init__(self, view: LogView | None) -> None:
        super().__init__()
        self.view = view

    def compose(self) -> ComposeResult:
        if self.view is not None:
            yield self.view


def plain_line(i: int) -> str:
    # ~100 characters, like a training log line.
    return f"2026-11-28 12:00:{i % 60:02d} step={i:08d} loss={1 / (i + 1):.6f} lr=3.0e-4 tokens/s=81234 gpu_mem=71.2GiB ok"


def ansi_line(i: int) -> str:
    return (
        f"\x1b[2m2026-11-28 12:00:{i % 60:02d}\x1b[0m \x1b[32mINFO\x1b[0m step=\x1b[1m{i:08d}\x1b[0m "
        f"loss=\x1b[33m{1 / (i + 1):.6f}\x1b[0m lr=3.0e-4 tokens/s=81234 gpu_mem=71.2GiB"
    )


@dataclass
class Ingestion:
    name: str
    counts: bool  # toward PASS/FAIL; small batches are paint-bound, shown for scale
    lines: int
    batch: int
    seconds: float
    cpu_seconds: float
    paints: int
    last_line_shown: bool

    @property
    def rate(self) -> float:
        return self.lines / self.seconds


async def ingest(
    name: str, make: Callable[[int], str], lines: int, batch: int, *, wrap: bool = False, counts: bool = True
) -> Ingestion:
    # The lines exist before timing starts, as they do when the follower hands them over.
    batches = [[make(i) for i in range(start, min(lines, start + batch))] for start in range(0, lines, batch)]
    view = CountingLogView()
    app = BenchApp(view)
    async with app.run_test(size=SIZE) as pilot:
        view.wrap = wrap
        await pilot.pause()
        gc.collect()
        paints = 0
        start = time.perf_counter()
        cpu_start = time.process_time()
        for chunk in batches:
            before = CountingLogView.rows_rendered
            view.append_lines(chunk)
            await pilot.pause()  # lets the app paint, as the ~100 ms poll interval would
            paints += CountingLogView.rows_rendered > before
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        bottom = view.render_line(view.scrollable_content_region.height - 1).text
        shown = make(lines - 1)[-20:] in bottom or wrap
    return Ingestion(name, counts, lines, batch, seconds, cpu_seconds, paints, shown)


async def first_paint_after_append(held: int) -> float:
    """An empty view on screen; one call hands it `held` lines; until the rows are painted."""
    lines = [plain_line(i) for i in range(held)]
    view = CountingLogView()
    app = BenchApp(view)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        gc.collect()
        before = CountingLogView.rows_rendered
        start = time.perf_counter()
        view.append_lines(lines)
        while CountingLogView.rows_rendered - before < view.scrollable_content_region.height:
            await pilot.pause()
        return time.perf_counter() - start


async def first_paint_when_mounted(held: int) -> float:
    """A view that already holds `held` lines is mounted; until its rows are painted."""
    lines = [plain_line(i) for i in range(held)]
    app = BenchApp(None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        view = CountingLogView()
        view.append_lines(lines)
        gc.collect()
        before = CountingLogView.rows_rendered
        start = time.perf_counter()
        await app.screen.mount(view)
        while CountingLogView.rows_rendered - before < SIZE[1]:
            await pilot.pause()
        return time.perf_counter() - start


def ratio_text(rate: float, anchor: tuple[float, float]) -> str:
    low, high = anchor
    return f"{rate / high:,.1f}x-{rate / low:,.1f}x"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--held", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="100k lines per run instead of 1M")
    args = parser.parse_args()
    lines = 100_000 if args.quick else args.lines

    load = os.getloadavg()[0]
    print(f"LogView ingestion, headless {SIZE[0]}x{SIZE[1]}, max_lines=200,000; "
          f"{os.cpu_count()} CPUs, load average before start {load:.2f}")
    runs = [
        await ingest("plain ~100 chars", plain_line, lines, args.batch),
        await ingest("SGR colours on every line", ansi_line, lines, args.batch),
        await ingest("plain, batches of 1,000 (*)", plain_line, max(1_000, lines // 10), 1_000, counts=False),
        await ingest("plain, soft wrap on", plain_line, lines, args.batch, wrap=True),
    ]
    ok = True
    print()
    print(f"{'ingestion':<30} {'lines':>9} {'batch':>7} {'wall s':>7} {'CPU s':>6} {'lines/s':>9} {'paints':>7}"
          f"  {'vs write_line':>15}  {'vs write_lines':>14}  target")
    for run in runs:
        passed = run.rate >= TARGET_LINES_PER_S and run.paints == -(-run.lines // run.batch) and run.last_line_shown
        if run.counts:
            ok &= passed
            verdict = f"{'PASS' if passed else 'FAIL'} (>= {TARGET_LINES_PER_S:,}/s)"
        else:
            verdict = "(not counted)"
        print(
            f"{run.name:<30} {run.lines:>9,} {run.batch:>7,} {run.seconds:>7.2f} {run.cpu_seconds:>6.2f}"
            f" {run.rate:>9,.0f} {run.paints:>7,}"
            f"  {ratio_text(run.rate, ANCHOR_WRITE_LINE):>15}  {ratio_text(run.rate, ANCHOR_WRITE_LINES):>14}  {verdict}"
        )
    print("lines/s = lines / wall seconds, paints included; wall - CPU is the loop waiting for the next frame")
    print("(*) one paint per 1,000 lines: paint-bound (a frame every batch), not what a 100 ms poll hands over")
    print()
    print(f"anchors (env.md §3.2, 100k lines): Log.write_line per line 43-83 s = "
          f"{ANCHOR_WRITE_LINE[0]:,.0f}-{ANCHOR_WRITE_LINE[1]:,.0f} lines/s; "
          f"Log.write_lines batched 0.8-1.5 s = {ANCHOR_WRITE_LINES[0]:,.0f}-{ANCHOR_WRITE_LINES[1]:,.0f} lines/s")
    print("ratio = LogView lines/s / anchor lines/s (range over the anchor's range)")
    print()
    after_append = await first_paint_after_append(args.held)
    when_mounted = await first_paint_when_mounted(args.held)
    print(f"first paint, {args.held:,} lines appended in one call to a view on screen: {after_append * 1000:,.0f} ms")
    print(f"first paint, a view already holding {args.held:,} lines is mounted:        {when_mounted * 1000:,.0f} ms")
    print("  (Log.write_lines needs 1.6-3.0 s just to take in 200k lines at its anchor rate)")
    print(f"peak RSS of this process: {rss_mib():,.0f} MiB")
    print()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
