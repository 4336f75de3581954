"""What every node driver shares: the detached-phase protocol driven through a shell.

Owns where a phase lives on the node (`<phases dir>/<id>/`), starting a phase
with the launcher of phase_scripts.py over a plain command, and stopping its
process group. A driver (sshnode.py, podnode.py) brings only its transport:
`run` (a short command with stdin), how it reads the phase's state and
output, and how it finds the pid of a phase still running. May touch
clouds.base and clouds.phase_scripts; nothing of the engine.
"""

from __future__ import annotations

import abc
import shlex

from skytui.clouds.base import NodeError, NodeInfo, PhaseState
from skytui.clouds.phase_scripts import kill_command, launcher_command, launcher_input

# How long a start may take before the node is taken for unreachable (the
# launcher waits up to 4 s for another start's owner).
START_TIMEOUT_S = 30.0


def env_prefix(env: dict[str, str] | None) -> str:
    """`env` as exports ahead of a command line (so never secrets)."""
    return "".join(f"export {k}={shlex.quote(v)}; " for k, v in (env or {}).items())


class ShellNode(abc.ABC):
    """A node whose phases are started, watched and stopped by shell commands."""

    info: NodeInfo

    @abc.abstractmethod
    async def run(
        self, command: str, *, env: dict[str, str] | None = None, timeout: float = 60.0,
        input: str | None = None,
    ) -> tuple[int, str, str]:
        """Run a short command. `env` goes on the command line: never secrets
        there; they travel on `input` (stdin)."""

    @abc.abstractmethod
    async def phase_state(self, phase_id: str, *, check_alive: bool = False) -> PhaseState: ...

    @abc.abstractmethod
    async def _running_pid(self, phase_id: str) -> int | None:
        """The pid of the phase's process group while it may still run; None
        when it finished or never started (nothing to stop)."""

    def _phase_dir(self, phase_id: str) -> str:
        return f"{self.info.phases_dir}/{phase_id}"

    async def start_phase(
        self, phase_id: str, script: str, env: dict[str, str], *, cwd: str | None = None
    ) -> int:
        """Start a phase detached (a no-op if it was already started); its pid.

        `cwd` is relative to the node's home; the phase falls back to home
        when it does not exist (a task without a workdir).
        """
        command = launcher_command(self.info.phases_dir, phase_id, cwd)
        status, out, err = await self.run(command, timeout=START_TIMEOUT_S, input=launcher_input(script, env))
        try:
            return int(out.strip())
        except ValueError as exc:
            raise NodeError(f"phase {phase_id} did not start (exit {status}): {err.strip()[:300]}") from exc

    async def kill_phase(self, phase_id: str, *, grace_s: float = 5.0) -> None:
        """TERM the phase's process group, KILL it after the grace period."""
        pid = await self._running_pid(phase_id)
        if pid is None:
            return
        await self.run(kill_command(self._phase_dir(phase_id), pid, grace_s), timeout=grace_s + 15)
