"""The shell side of the detached-phase protocol, shared by every node driver.

A node driver only needs a way to run a command with stdin (an SSH channel, a
Kubernetes exec) and to read files; these scripts do the rest on the node:

`<phases>/<id>/`: `pid` (the process-group leader), `out.log` (stdout and
stderr), `started_at` and `ended_at` (the node's own clock, epoch seconds, so
that durations do not depend on when a controller looked), `exit_code`
(written when the phase ends, after `ended_at`; in place, not moved there,
so a thousand phases ending together fork no thousand `mv`: a reader takes
an empty `exit_code` for one not yet written). `owner` makes starting a
phase exactly-once, so a controller that crashed mid-start can simply start
again (see _LAUNCHER). Secrets travel in a 0600 env file that the phase empties
once read (truncated by a shell builtin: an `rm` was a process per phase);
they never appear on a command line. An env file is never written empty
(`env_file` heads it with a comment), so an empty one means "read": the
user's script began.
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass
from typing import Any

# The detached wrapper. Its clock is bash's own (`$EPOCHREALTIME`, bash 5;
# `date` on an older one): a thousand phases ending at once on one machine
# fork a thousand fewer processes. It traps TERM (and every signal a
# preemption notice may send) so that when a cancel or a notice signals the
# process group, the user's process hears it but the wrapper lives on to
# record its exit code (a handler, not an ignore, so children keep the defaults).
# `$SKYTUI_LOG_SINK`, when the node's environment sets it (a pod sets it to
# its PID 1's stdout), also gets a copy of the output, so `kubectl logs` shows the job;
# its `tee` ignores the signals the group gets, or a job printing while it
# answers a notice or a cancel would die of SIGPIPE (bash itself reports its
# killed children on stderr).
#
# Preemption notices: `notice` in the phase's directory holds the deadline
# (epoch seconds) at which the infra takes the machine, written by the
# watcher below on a VM (started when the env names a metadata source,
# `SKYTUI_NOTICE_KIND` aws|gcp at `SKYTUI_NOTICE_URL`) or by the sim. A job
# that ends once noticed (it checkpointed and exited) has its end left
# unrecorded until the machine goes, well past the deadline: its end is the
# machine's loss, recovered as a preemption, never a success or a failure.
WRAPPER = r"""
trap 'true' TERM INT HUP USR1 USR2
[ -s "$D/pid" ] || { echo $$ > "$D/pid.tmp" && mv "$D/pid.tmp" "$D/pid"; }
_skytui_now() { local t=${EPOCHREALTIME:-}; [ -n "$t" ] && echo "${t/,/.}" || date +%s.%N; }
_skytui_now > "$D/started_at" 2>/dev/null
set -a; . "$D/env"; set +a; : > "$D/env"
_nk=${SKYTUI_NOTICE_KIND:-}; _nu=${SKYTUI_NOTICE_URL:-}; _ns=${SKYTUI_NOTICE_SIGNAL:-TERM}
_ne=${SKYTUI_NOTICE_EVERY_S:-5}; _nl=${SKYTUI_NOTICE_LINGER_S:-300}
unset SKYTUI_NOTICE_KIND SKYTUI_NOTICE_URL SKYTUI_NOTICE_SIGNAL SKYTUI_NOTICE_EVERY_S SKYTUI_NOTICE_LINGER_S
_skytui_notice_at() {
  local t= a= d=
  case "$_nk" in
  aws)
    t=$(curl -sf -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$_nu/latest/api/token") || return 1
    a=$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: $t" "$_nu/latest/meta-data/spot/instance-action") || return 1
    a=${a#*\"time\"}; a=${a#*\"}; a=${a%%\"*}
    d=$(date -d "$a" +%s 2>/dev/null) || d=$(( ${EPOCHSECONDS:-$(date +%s)} + 120 ))
    echo "$d" ;;
  gcp)
    a=$(curl -sf -m 2 -H 'Metadata-Flavor: Google' "$_nu/computeMetadata/v1/instance/preempted") || return 1
    [ "$a" = TRUE ] || return 1
    echo $(( ${EPOCHSECONDS:-$(date +%s)} + 30 )) ;;
  *) return 1 ;;
  esac
}
_skytui_notice_watch() {
  local s= d=
  trap '[ -n "$s" ] && kill $s 2>/dev/null; exit 0' TERM
  until d=$(_skytui_notice_at); do sleep "$_ne" & s=$!; wait $s; s=; done
  echo "$d" > "$D/notice.tmp" && mv "$D/notice.tmp" "$D/notice"
  [ "$_ns" = none ] || kill -"$_ns" -- -$$ 2>/dev/null
}
_nw=; [ -n "$_nk" ] && [ -n "$_nu" ] && { _skytui_notice_watch & _nw=$!; }
cd "$HOME/$PHASE_CWD" 2>/dev/null || cd "$HOME"
if [ -n "${SKYTUI_LOG_SINK:-}" ] && [ -w "$SKYTUI_LOG_SINK" ]; then
  bash "$D/script.sh" < /dev/null 2>&1 | { trap '' TERM INT HUP USR1 USR2; exec tee -a "$SKYTUI_LOG_SINK"; } > "$D/out.log"
  rc=${PIPESTATUS[0]}
else
  bash "$D/script.sh" > "$D/out.log" 2>&1 < /dev/null
  rc=$?
fi
[ -n "$_nw" ] && kill "$_nw" 2>/dev/null
if [ -s "$D/notice" ]; then
  read -r _n < "$D/notice"; _n=${_n%%.*}
  while [ "${EPOCHSECONDS:-$(date +%s)}" -lt $(( _n + _nl )) ]; do sleep 1; done
fi
_skytui_now > "$D/ended_at" 2>/dev/null
echo $rc > "$D/exit_code"
"""
# A phase's preemption notice, in its directory (see WRAPPER).
NOTICE_FILE = "notice"

# Runs in one exec, exactly-once whatever dies when:
# * the whole input (script, env, an end mark) is read and decoded before
#   anything is taken, so a channel dropped mid-send leaves nothing behind;
# * the start is owned through `owner`, a symlink naming the launcher's pid
#   (made in one step, so it names its owner from the start). A launcher that
#   died holding it before the wrapper was on its own leaves no pid: the next
#   start takes over once that launcher is gone. So does one whose wrapper was
#   killed before it read its env (the user's script never began);
# * `$!` is the wrapper's pid: setsid only forks for a group leader, and a
#   background job of a shell without job control is not one. Both the
#   launcher and the wrapper record it, so it is on disk when the launch
#   returns, and even if the launcher died right after the fork.
# A phase started earlier answers with the recorded pid (`lock`: one started
# by an older skytui).
_LAUNCHER = r"""
D="$HOME/{phases}/{phase_id}"
mkdir -p "$D"
IFS= read -r script && IFS= read -r env && IFS= read -r end && [ "$end" = {end} ] || {{
  echo "the phase's input was cut short" >&2; exit 3; }}
T="$D/in.$$"; rm -rf "$T"; mkdir "$T"
printf %s "$script" | base64 -d > "$T/script.sh" && (umask 077; printf %s "$env" | base64 -d > "$T/env") || {{
  rm -rf "$T"; echo "the phase's input is not base64" >&2; exit 3; }}
take() {{
  ln -s "$$" "$D/owner" 2>/dev/null || return 1
  mv "$T/script.sh" "$D/script.sh"; mv "$T/env" "$D/env"; rm -rf "$T"
  D="$D" PHASE_CWD={cwd} setsid bash -c {wrapper} > /dev/null 2>&1 < /dev/null &
  echo $! > "$D/pid.launcher" && mv "$D/pid.launcher" "$D/pid"
  echo $!
  exit 0
}}
[ -e "$D/lock" ] || take
for _ in $(seq 1 200); do [ -s "$D/pid" ] && break; sleep 0.02; done
if [ ! -e "$D/lock" ] && [ ! -e "$D/exit_code" ]; then
  p=$(cat "$D/pid" 2>/dev/null); o=$(readlink "$D/owner" 2>/dev/null)
  if {{ [ -z "$p" ] && ! kill -0 "${{o:-none}}" 2>/dev/null; }} || \
     {{ [ -n "$p" ] && [ -s "$D/env" ] && ! kill -0 "$p" 2>/dev/null; }}; then
    rm -f "$D/pid" "$D/owner"; take
  fi
fi
rm -rf "$T"
cat "$D/pid" 2>/dev/null
"""
END_MARK = "end-of-phase-input"
# The launcher's first line: a comment to bash; to the local node host, which
# serves it natively (nodehost_launch.py), the request in JSON.
LAUNCH_MARK = "# skytui-phase-launch 1 "


@dataclass(frozen=True)
class LaunchRequest:
    """What a launcher command starts: a phase of a node's phases directory
    (relative to the login's home), to run in `cwd` (relative too; home if
    empty or missing)."""

    phases_dir: str
    phase_id: str
    cwd: str


def _marked_request(command: str, mark: str) -> dict[str, Any] | None:
    """The JSON object on a command's first line after `mark`, or None."""
    head, _, _ = command.partition("\n")
    if not head.startswith(mark):
        return None
    try:
        fields = json.loads(head[len(mark):])
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


def launch_request_of(command: str) -> LaunchRequest | None:
    """The request a launcher command carries, or None if `command` is not one."""
    fields = _marked_request(command, LAUNCH_MARK)
    if fields is None:
        return None
    try:
        return LaunchRequest(str(fields["phases"]), str(fields["phase"]), str(fields.get("cwd") or ""))
    except KeyError:
        return None


# `alive PID`: the process exists and is not a zombie (kill -0 says a zombie
# lives until its parent reaps it, and a killed phase is one for a moment).
ALIVE_FUNCTION = (
    'alive() { kill -0 "$1" 2>/dev/null || return 1; '
    'local l; read -r l < "/proc/$1/stat" 2>/dev/null || return 0; l=${l##*) }; [ "${l%% *}" != Z ]; }'
)


ENV_FILE_HEAD = "# skytui phase env: emptied once read\n"


def env_file(env: dict[str, str]) -> str:
    """The env file's text: never empty, so that empty means "read"."""
    return ENV_FILE_HEAD + "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())


def launch_request_json(phases_dir: str, phase_id: str, cwd: str | None) -> str:
    """The request a launcher command carries on its first line (one line of JSON)."""
    return json.dumps({"phases": phases_dir, "phase": phase_id, "cwd": cwd or ""})


def launcher_command(phases_dir: str, phase_id: str, cwd: str | None) -> str:
    """The command that starts a phase; feed it `launcher_input` on stdin."""
    request = launch_request_json(phases_dir, phase_id, cwd)
    return LAUNCH_MARK + request + "\n" + _LAUNCHER.format(
        phases=phases_dir, phase_id=phase_id, cwd=shlex.quote(cwd or ""), wrapper=shlex.quote(WRAPPER),
        end=END_MARK,
    )


def encoded_launch_input(script: str, env: dict[str, str]) -> tuple[str, str]:
    """The script and the env file, each in base64 (one line each)."""
    return base64.b64encode(script.encode()).decode(), base64.b64encode(env_file(env).encode()).decode()


def launcher_input(script: str, env: dict[str, str]) -> str:
    encoded_script, encoded_env = encoded_launch_input(script, env)
    return encoded_script + "\n" + encoded_env + "\n" + END_MARK + "\n"


# The kill command's first line: a comment to bash; to the local node host,
# which serves it natively (nodehost_launch.kill_phase_group), the request.
# `ps` over 10,000 sandboxes' processes, ten times a second per cancelled
# job, kept 9,000 cancels from doing anything for two minutes.
KILL_MARK = "# skytui-phase-kill 1 "


@dataclass(frozen=True)
class KillRequest:
    """What a kill command stops: the process group `pid` (the phase's
    wrapper leads it), given `grace_s` after TERM before KILL; 137 goes to
    `<phase_dir>/exit_code` (relative to the login's home) if none is there."""

    phase_dir: str
    pid: int
    grace_s: float


def kill_request_of(command: str) -> KillRequest | None:
    """The request a kill command carries, or None if `command` is not one."""
    fields = _marked_request(command, KILL_MARK)
    if fields is None:
        return None
    try:
        return KillRequest(str(fields["dir"]), int(fields["pid"]), float(fields["grace"]))
    except (ValueError, KeyError, TypeError):
        return None


def kill_command(phase_dir: str, pid: int, grace_s: float) -> str:
    """TERM the phase's process group, KILL it after the grace period, and
    record 137 if KILL took the wrapper before it wrote the exit code.

    By process group from a second exec, because OpenSSH ignores channel
    signals for root logins and keeps no-pty processes when a channel closes.
    Zombies do not count as alive (kill -0 says they are until reaped).
    """
    request = json.dumps({"dir": phase_dir, "pid": pid, "grace": grace_s})
    alive = (
        f"if command -v ps >/dev/null 2>&1; then "
        f"ps -eo pgid=,stat= | awk -v g={pid} '$1==g && $2 !~ /^Z/ {{f=1}} END {{exit !f}}'; "
        f"else kill -0 -- -{pid} 2>/dev/null; fi"
    )
    return (
        f"{KILL_MARK}{request}\n"
        f"kill -TERM -- -{pid} 2>/dev/null; "
        f"for _ in $(seq 1 {max(1, int(grace_s * 10))}); do "
        f"{{ {alive}; }} || exit 0; sleep 0.1; done; "
        f"kill -KILL -- -{pid} 2>/dev/null; "
        f'D="$HOME/{phase_dir}"; '
        f'[ -e "$D/exit_code" ] || {{ echo 137 > "$D/exit.tmp" && mv "$D/exit.tmp" "$D/exit_code"; }}; exit 0'
    )


def parse_node_time(text: str | None) -> float | None:
    """A `started_at`/`ended_at` stamp; None where the node's `date` has no
    %N (busybox prints it literally) or the file is not there."""
    try:
        return float(text.strip()) if text else None
    except ValueError:
        head = text.strip().split(".", 1)[0] if text else ""
        return float(head) if head.isdigit() else None


def parse_exit_code(text: str | None) -> int | None:
    return int(text) if text and text.strip().lstrip("-").isdigit() else None
