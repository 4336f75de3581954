"""The node side tells the controller when a phase changed, so a running
phase that prints nothing costs nothing.

One long-lived stream per node connection: the controller writes `+<phase>`
to start watching a phase and `-<phase>` to stop; the node answers with a
line `<phase> <what>` whenever that phase may have changed:

* `seen <output size>`: the watch is in place, and this is how much output
  the phase had then (a change made after it comes as a notice, so the
  controller needs no look to start with; a bare `seen` from an older node
  still works: the controller then looks). A phase that had already ended
  when the watch began answers with its `exit` instead;
* `out`: its output grew;
* `exit <code> <ended_at> <output size>`: its exit code is written (the
  watch ends); the facts spare the controller reading three files (a bare
  `exit` from an older node still works: the controller reads them);
* `gone`: its process is gone without an exit code (the watch ends);
* `notice <deadline>`: the machine was given a preemption notice (the
  wrapper's watcher wrote `notice` in the phase's directory: a spot VM's
  metadata said so), said once per watch: the controller puts it on the job's
  timeline without asking the node every few seconds;
* `* all`: the node lost track (an overflow): look at every phase.

The local node host also starts phases on the stream, sparing a channel (a
dozen packets each way, and a session on both ends) per start: it says
`* can launch` first thing, and then takes `!<launch request JSON><TAB>
<script, base64><TAB><env, base64>` (what the launcher command and its input
carry, with the same exactly-once rules) and answers `<phase> started <pid>`,
or `<phase> started - <status> <message, base64>` when it could not. A node
that never said it can is sent the launcher command on a channel, as ever.

The output is still read by offset, so resuming after a drop stays
byte-exact; a stream that ends sets every watcher looking for itself.

On a VM (OpenSSH) the stream is WATCH_SCRIPT, a bash loop that looks at the
watched phases twice a second: one loop per machine, on the machine's own
CPU. The local node host recognises the script by its first line and serves
it natively with inotify (nodehost_watch.py): thousands of sandboxes, no
polling at all.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from skytui.clouds.phase_scripts import ALIVE_FUNCTION, parse_exit_code, parse_node_time

WATCH_MARK = "# skytui-phase-watch 1"
WATCH_SCRIPT = WATCH_MARK + r"""
D0="$HOME/{phases}"
{alive}
declare -A S N
while :; do
  if IFS= read -r -t 0.5 line; then
    case "$line" in
      +*) p=${{line:1}}; S[$p]=$(stat -c %s "$D0/$p/out.log" 2>/dev/null || echo 0); echo "$p seen ${{S[$p]}}"; unset "N[$p]";;
      -*) unset "S[${{line:1}}]" "N[${{line:1}}]";;
    esac
  elif [ $? -le 128 ]; then
    exit 0
  fi
  for p in "${{!S[@]}}"; do
    D="$D0/$p"
    if [ -z "${{N[$p]:-}}" ] && [ -s "$D/notice" ]; then
      read -r n < "$D/notice"; N[$p]=1; echo "$p notice ${{n:--}}"
    fi
    if [ -s "$D/exit_code" ]; then
      read -r e < "$D/exit_code"; t=-; [ -r "$D/ended_at" ] && read -r t < "$D/ended_at"
      echo "$p exit $e ${{t:--}} $(stat -c %s "$D/out.log" 2>/dev/null || echo -)"; unset "S[$p]"; continue
    fi
    pid=; [ -r "$D/pid" ] && read -r pid < "$D/pid"
    if [ -n "$pid" ] && ! alive "$pid" && [ ! -s "$D/exit_code" ]; then
      echo "$p gone"; unset "S[$p]"; continue
    fi
    s=$(stat -c %s "$D/out.log" 2>/dev/null || echo 0)
    if [ "$s" != "${{S[$p]}}" ]; then echo "$p out"; S[$p]=$s; fi
  done
done
"""

NOTICES = ("seen", "out", "exit", "gone", "notice")
CAN_LAUNCH = "* can launch"
LAUNCH_PREFIX = "!"
ENDING = ("exit", "gone")


@dataclass(frozen=True)
class PhaseEnd:
    """What an `exit` notice said: the phase's exit code, when it ended by
    the node's clock, and the size of its output then."""

    exit_code: int
    ended_at: float | None
    output_size: int | None


def exit_notice(exit_code: str, ended_at: str | None, output_size: int | None) -> str:
    """The `exit` notice's words after the phase id (the node host's side)."""
    def word(value: object) -> str:
        text = str(value).strip() if value is not None else ""
        return text if text and " " not in text else "-"

    return f"exit {word(exit_code)} {word(ended_at)} {word(output_size)}"


def parse_phase_end(facts: list[str]) -> PhaseEnd | None:
    """The facts of an `exit` notice; None when there are none (an older
    node) or they do not parse: the controller then reads the files."""
    if len(facts) != 3:
        return None
    exit_code = parse_exit_code(facts[0])
    if exit_code is None:
        return None
    size = int(facts[2]) if facts[2].isdigit() else None
    return PhaseEnd(exit_code, parse_node_time(facts[1]) if facts[1] != "-" else None, size)

log = logging.getLogger("skytui.phase_watch")


class WatchStreamClosed(Exception):
    """The stream ended (an SSH drop) before the node answered."""


class StartRefused(Exception):
    """The node could not start the phase: its launcher's status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"exit {status}: {message.strip()}")
        self.status = status


def watch_command(phases_dir: str) -> str:
    return WATCH_SCRIPT.format(phases=phases_dir, alive=ALIVE_FUNCTION)


def phases_dir_of(command: str) -> str | None:
    """The phases directory a watch command names (relative to the login's
    home), or None if `command` is not a watch."""
    lines = command.splitlines()
    if len(lines) < 2 or lines[0] != WATCH_MARK:
        return None
    head, _, rest = lines[1].partition('D0="$HOME/')
    if head or not rest.endswith('"'):
        return None
    return rest[:-1]


class PhaseWatchStream:
    """The controller's end of one node's watch stream.

    `watch(phase)` returns an Event that is set whenever the node sends a
    notice for that phase; the caller clears it before looking, and waits on
    it after. When the stream ends (an SSH drop), every Event is set, so each
    waiter looks again and meets the drop itself.
    """

    def __init__(self, process: Any) -> None:
        self._process = process  # asyncssh.SSHClientProcess[str]
        self._signals: dict[str, asyncio.Event] = {}
        self._watched: set[str] = set()
        # Phases the node said are gone without an exit code: the next look
        # at them checks the process (SSHNode.phase_state).
        self.gone: set[str] = set()
        # Phases the node said ended, with what it said (see PhaseEnd).
        self.ended: dict[str, PhaseEnd] = {}
        # Phases whose watch the node confirmed, with the output size it last
        # said (None: unknown, or grown since): a look at one of them needs
        # no read until the node says something changed.
        self.sizes: dict[str, int | None] = {}
        # Preemption notices the node said its phases' machine was given: the deadline.
        self.notices: dict[str, float] = {}
        self._noticed: dict[str, asyncio.Event] = {}
        self.closed = False
        # The node starts phases sent on the stream (it said `* can launch`).
        self.can_launch = False
        self._starts: dict[str, asyncio.Future[int]] = {}
        self._reader = asyncio.create_task(self._read(), name="phase-watch")

    async def start(self, phase_id: str, request_json: str, script_b64: str, env_b64: str) -> int:
        """Start a phase through the stream (only if `can_launch`); its pid.
        WatchStreamClosed if the stream ends first, StartRefused if the node
        could not. A start of the same phase already on its way is shared."""
        if self.closed:
            raise WatchStreamClosed()
        future = self._starts.get(phase_id)
        if future is None or future.done():
            future = self._starts[phase_id] = asyncio.get_running_loop().create_future()
            # Its caller may have stopped waiting (cancelled): the outcome is still taken.
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
            try:
                self._process.stdin.write(f"{LAUNCH_PREFIX}{request_json}\t{script_b64}\t{env_b64}\n")
            except Exception as exc:  # noqa: BLE001 - the channel closed under us
                self._end()
                raise WatchStreamClosed() from exc
        try:
            return await asyncio.shield(future)
        finally:
            if future.done():
                self._starts.pop(phase_id, None)

    def watch(self, phase_id: str) -> asyncio.Event:
        event = self._signals.setdefault(phase_id, asyncio.Event())
        if self.closed or phase_id in self.ended:
            # Ended: the node said how, and has nothing more to say of it.
            event.set()
        elif phase_id not in self._watched:
            self._watched.add(phase_id)
            try:
                self._process.stdin.write(f"+{phase_id}\n")
            except Exception:  # noqa: BLE001 - the channel closed under us: a look meets the drop
                self._end()
        return event

    def watching(self, phase_id: str) -> bool:
        """The node watches this phase for us (asked, and not ended), or has
        said how it ended: either way, asking again would tell nothing new."""
        return not self.closed and (phase_id in self._watched or phase_id in self.ended)

    async def wait_notice(self, phase_id: str) -> float | None:
        """Until the node says the phase's machine was given a preemption
        notice: its deadline (epoch seconds); None once the stream has ended
        (a new stream says it again). Wait only on a phase being watched."""
        event = self._noticed.setdefault(phase_id, asyncio.Event())
        if phase_id not in self.notices and not self.closed:
            await event.wait()
        return self.notices.get(phase_id)

    def unwatch(self, phase_id: str) -> None:
        self._signals.pop(phase_id, None)
        self.gone.discard(phase_id)
        self.ended.pop(phase_id, None)
        self.sizes.pop(phase_id, None)
        if phase_id in self._watched and not self.closed:
            self._watched.discard(phase_id)
            with contextlib.suppress(Exception):
                self._process.stdin.write(f"-{phase_id}\n")

    async def _read(self) -> None:
        try:
            async for line in self._process.stdout:
                words = line.split()
                if len(words) < 2:
                    continue  # not a notice
                phase_id, what, facts = words[0], words[1], words[2:]
                if line.strip() == CAN_LAUNCH:
                    self.can_launch = True
                    continue
                if what == "started":
                    self._started(phase_id, facts)
                    continue
                if phase_id == "*":
                    self.sizes.clear()  # the node lost track: the next looks read for themselves
                    for every in self._signals.values():
                        every.set()
                    continue
                if what in ENDING:
                    self._watched.discard(phase_id)  # the node ended this watch
                if phase_id not in self._signals:
                    continue  # no longer watched (a late notice)
                if what == "gone":
                    self.gone.add(phase_id)
                elif what == "exit":
                    end = parse_phase_end(facts)
                    if end is not None:
                        self.ended[phase_id] = end
                    else:
                        self.sizes.pop(phase_id, None)  # an older node: the next look reads the files
                elif what == "seen":
                    self.sizes[phase_id] = int(facts[0]) if facts and facts[0].isdigit() else None
                elif what == "out":
                    self.sizes[phase_id] = None
                elif what == "notice":
                    deadline = parse_node_time(facts[0]) if facts else None
                    if deadline is not None:
                        self.notices[phase_id] = deadline
                        self._noticed.setdefault(phase_id, asyncio.Event()).set()
                    continue  # nothing for the phase's follow to look at
                event = self._signals.get(phase_id)
                if event is not None:
                    event.set()
        except Exception as exc:  # noqa: BLE001 - any end of the stream is handled the same way
            log.debug("phase watch stream ended: %s", exc)
        finally:
            self._end()

    def _started(self, phase_id: str, facts: list[str]) -> None:
        future = self._starts.get(phase_id)
        if future is None or future.done():
            return  # a late answer
        if facts and facts[0].isdigit():
            future.set_result(int(facts[0]))
            return
        status = int(facts[1]) if len(facts) > 1 and facts[1].lstrip("-").isdigit() else 1
        try:
            message = base64.b64decode(facts[2]).decode(errors="replace") if len(facts) > 2 else ""
        except ValueError:
            message = ""
        future.set_exception(StartRefused(status, message or "the node could not start it"))

    def _end(self) -> None:
        self.closed = True
        self._watched.clear()
        for event in (*self._signals.values(), *self._noticed.values()):
            event.set()
        for future in self._starts.values():
            if not future.done():
                future.set_exception(WatchStreamClosed())
        self._starts.clear()

    def close(self) -> None:
        self._end()
        self._reader.cancel()
        with contextlib.suppress(Exception):
            self._process.close()
