"""The remote controller's lifecycle as the client drives it: the folder
skytui keeps on the controller machine, what goes there, the API process a
client talks to, and start, status, stop and down.

On the machine, under the login's home:

    .skytui-controller/
        runtime/<code hash>/skytui/   the client's own skytui (runtime.py)
        home/                         the controller's SKYTUI_HOME: state DB,
                                      logs, config.yaml, credentials/ (0600)
        uploads/<token>/              workdirs and file_mounts sent by clients

Owns `ControllerSite`. Every command it runs carries paths and names only;
config and credentials travel on stdin. May touch link.py, machines.py,
runtime.py, credentials.py and config.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from skytui.config import Config, Paths
from skytui.remote.credentials import (
    ENV_FILE,
    controller_config_text,
    credential_files,
    environment_credentials,
)
from skytui.remote.errors import LinkError, NoController
from skytui.remote.link import Link, LinkLoop, Pipe
from skytui.remote.machines import ControllerMachine, machine_for
from skytui.remote.runtime import RUNTIME_REQUIREMENTS, code_archive, code_hash

BASE = ".skytui-controller"
# The first line the API process prints when the code it should run is not there yet.
NEEDS_CODE = b"skytui-needs-code"
BOOTSTRAP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class SiteStatus:
    """What `controller status` says of a remote controller."""

    where: str
    reachable: bool
    supervisor_pid: int | None = None
    controller_pid: int | None = None
    started_with: dict[str, Any] | None = None
    """site.json as the running controller started with it (its resources)."""
    autostop_minutes: float | None = None
    problem: str | None = None


def _resources_str(resources: dict[str, Any]) -> str:
    """`infra=ssh/box1, cpus=4`: as the user wrote them (4, not 4.0)."""
    return ", ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in resources.items() if value is not None) or "(none)"


class ControllerSite:
    """The controller machine of one config.yaml, reached on a private loop."""

    def __init__(self, paths: Paths, config: Config, loop: LinkLoop) -> None:
        self.paths = paths
        self.config = config
        self.loop = loop
        self.machine: ControllerMachine = machine_for(paths, config)
        self._link: Link | None = None
        self._home_dir: str | None = None

    # ------------------------------------------------------------ plumbing

    @property
    def where(self) -> str:
        return self._link.where if self._link is not None else self.machine.label

    async def link(self, *, create: bool = False) -> Link:
        """The line to the machine; with `create` (a launch, `controller start`)
        a missing pod or VM is made, else NoController says there is none."""
        if self._link is None:
            await self.machine.ensure(create=create)
            self._link = self.machine.link()
        return self._link

    async def home_dir(self) -> str:
        """The login's home on the machine (absolute)."""
        if self._home_dir is None:
            code, out, err = await (await self.link()).run('printf "%s" "$HOME"')
            if code != 0 or not out.startswith("/"):
                raise LinkError(f"cannot read the home folder on {self.where}: {err.strip() or out!r}")
            self._home_dir = out
        return self._home_dir

    async def controller_home(self) -> str:
        return f"{await self.home_dir()}/{BASE}/home"

    @staticmethod
    def _env() -> str:
        """The environment every skytui process there starts with: paths only,
        under the login's home as its shell says (no round trip to ask it)."""
        return (f'SKYTUI_HOME="$HOME/{BASE}/home" '
                f'PYTHONPATH="$HOME/{BASE}/runtime/{code_hash()}"')

    def _python(self) -> str:
        return shlex.quote(self.config.jobs.controller.python)

    async def _run_module(self, module_and_args: str, timeout: float = 60.0) -> tuple[int, str, str]:
        runtime = f"{BASE}/runtime/{code_hash()}"
        command = (f"cd && test -f {runtime}/.complete || {{ echo {NEEDS_CODE.decode()}; exit 3; }}; "
                   f"exec env {self._env()} {self._python()} -m {module_and_args}")
        return await (await self.link()).run(command, timeout=timeout)

    # ------------------------------------------------------------ bootstrap

    def config_digest(self) -> str:
        """What the controller's config and credentials are, as this client would send them."""
        digest = hashlib.sha256(self.config.model_dump_json().encode())
        for item in credential_files(self.paths, self.config):
            digest.update(item.remote.encode() + hashlib.sha256(item.local.read_bytes()).digest())
        return digest.hexdigest()[:16]

    async def bootstrap(self) -> None:
        """Put skytui's code, the controller's config and the credentials on the machine."""
        link = await self.link()
        python = self.config.jobs.controller.python
        check = (f"{self._python()} -c 'import sys; assert sys.version_info >= (3, 10); "
                 "import sqlalchemy, asyncssh, pydantic, yaml, rich'")
        requirements = " ".join(shlex.quote(r) for r in RUNTIME_REQUIREMENTS)
        # Missing dependencies go in the login's user site, as SkyPilot sets
        # its controller up (a pod's image, a fresh host): that needs PyPI there.
        code, out, err = await link.run(
            f"{check} 2>/dev/null || {{ PIP_BREAK_SYSTEM_PACKAGES=1 {self._python()} -m pip install -q --user "
            f"{requirements} >&2 && {check}; }}", timeout=BOOTSTRAP_TIMEOUT_S,
        )
        if code != 0:
            detail = (err.strip().splitlines() or [out.strip()])[-1] if (err or out).strip() else f"exit {code}"
            raise LinkError(
                f"the controller machine {self.where} cannot run skytui with `{python}`: {detail}. Install "
                "Python 3.10+ and skytui's dependencies there (`python3 -m pip install 'skytui'`), or name "
                "a Python that has them in jobs.controller.python"
            )
        code_hash, archive = code_archive()
        runtime = f"{BASE}/runtime/{code_hash}"
        code, _, err = await link.run(
            f"cd && umask 077 && mkdir -p {BASE} && chmod 700 {BASE} && test -f {runtime}/.complete || {{ rm -rf {runtime} && mkdir -p {runtime} && "
            f"tar xzf - -C {runtime} && touch {runtime}/.complete; }}",
            input=archive, timeout=BOOTSTRAP_TIMEOUT_S,
        )
        if code != 0:
            raise LinkError(f"cannot install skytui's code on {self.where}: {err.strip()}")
        await self.send_config()

    async def _write(self, relative: str, data: bytes) -> None:
        """A private file under the controller's home, its content on stdin."""
        target = f"{BASE}/home/{relative}"
        code, _, err = await (await self.link()).run(
            f"cd && umask 077 && mkdir -p {shlex.quote(target.rsplit('/', 1)[0])} && "
            f"cat > {shlex.quote(target)}.part && mv {shlex.quote(target)}.part {shlex.quote(target)}",
            input=data,
        )
        if code != 0:
            raise LinkError(f"cannot write {relative} on {self.where}: {err.strip()}")

    async def send_config(self) -> None:
        """The controller's config.yaml and the credentials, as they are on this machine now."""
        home = await self.controller_home()
        env = environment_credentials(self.config)
        for item in credential_files(self.paths, self.config):
            await self._write(item.remote, item.local.read_bytes())
            if item.env is not None:
                env[item.env] = f"{home}/{item.remote}"
        await self._write(ENV_FILE, yaml.safe_dump(env).encode())
        await self._write("config.yaml", controller_config_text(self.paths, self.config, home).encode())
        autostop = self.config.jobs.controller.autostop
        stop_machine = autostop.stop_machine if not isinstance(autostop, bool) else autostop
        await self._write("site.json", json.dumps({
            "config": self.config_digest(),
            "autostop_command": self.machine.stop_command if stop_machine else None,
            "resources": self.config.jobs.controller.resources.model_dump()
            if self.config.jobs.controller.resources else None,
        }).encode())

    # ------------------------------------------------------------ API process

    async def open_api(self, *, create: bool = False) -> tuple[Pipe, dict[str, Any]]:
        """The API process on the machine, and its hello; the code and the
        config are sent first when the machine lacks them."""
        await self.link(create=create)
        for attempt in range(2):
            runtime = f"{BASE}/runtime/{code_hash()}"
            command = (f"cd && test -f {runtime}/.complete || {{ echo {NEEDS_CODE.decode()}; exit 3; }}; "
                       f"exec env {self._env()} {self._python()} -m skytui.client.serve")
            pipe = await (await self.link()).open_pipe(command)
            first = await pipe.readline()
            if first.strip() == NEEDS_CODE and attempt == 0:
                pipe.close()
                await self.bootstrap()
                continue
            try:
                hello = json.loads(first)["hello"]
            except (ValueError, KeyError, TypeError):
                pipe.close()
                raise LinkError(f"the controller API on {self.where} did not start: {first[:300]!r}") from None
            if hello.get("config") != self.config_digest():
                await self.send_config()  # taken up by the controller at its next start
            return pipe, hello
        raise LinkError(f"skytui's code did not stay on {self.where}")

    # ------------------------------------------------------------ lifecycle

    async def status(self) -> SiteStatus:
        try:
            code, out, err = await self._run_module("skytui.remote.supervisor status", timeout=30)
        except NoController as exc:
            return SiteStatus(self.where, True, problem=f"not started ({exc})")
        except LinkError as exc:
            return SiteStatus(self.where, False, problem=str(exc))
        if code == 3 and NEEDS_CODE.decode() in out:
            return SiteStatus(self.where, True, problem="not started yet")
        if code != 0:
            return SiteStatus(self.where, True, problem=(err.strip() or out.strip())[-500:])
        data = json.loads(out)
        return SiteStatus(self.where, True, data.get("supervisor"), data.get("controller"), data.get("started_with"),
                          data.get("autostop_minutes"))

    def resources_differ(self, started_with: dict[str, Any] | None) -> str | None:
        """What to say when config.yaml asks for other controller resources
        than the running controller started with (they apply at its next start)."""
        if not started_with:
            return None
        wanted = self.config.jobs.controller.resources
        running = started_with.get("resources")
        if wanted is None or running is None or wanted.model_dump() == running:
            return None
        return (f"config.yaml asks for controller resources {_resources_str(wanted.model_dump())}, but the "
                f"running controller started with {_resources_str(running)}: they take effect when its "
                "machine is made again (`skytui controller down`, then a launch)")

    async def start(self) -> SiteStatus:
        await self.link(create=True)
        await self.bootstrap()
        code, out, err = await self._run_module("skytui.remote.supervisor ensure", timeout=60)
        if code != 0:
            raise LinkError(f"the controller did not start on {self.where}: {(err.strip() or out.strip())[-500:]}")
        return await self.status()

    async def stop(self) -> bool:
        try:
            code, out, err = await self._run_module("skytui.remote.supervisor stop", timeout=90)
        except NoController:
            return False
        if code == 3:
            return False  # nothing was ever started there
        if code not in (0, 1):
            raise LinkError(f"the controller did not stop on {self.where}: {(err.strip() or out.strip())[-500:]}")
        return code == 0

    async def down(self) -> None:
        """Stop it and take away everything skytui put on the machine (and the machine, if skytui made it)."""
        try:
            await self.link()
        except NoController:
            return  # nothing was ever made
        await self.stop()
        await self._run_module("skytui.remote.supervisor sweep", timeout=90)
        code, _, err = await (await self.link()).run(f"cd && rm -rf {BASE}", timeout=120)
        if code != 0:
            raise LinkError(f"cannot remove {BASE} on {self.where}: {err.strip()}")
        await self.machine.remove()

    async def upload_dir(self) -> str:
        """A fresh private folder for one submission's files (absolute)."""
        relative = f"{BASE}/uploads/{secrets.token_hex(8)}"
        code, _, err = await (await self.link()).run(f"cd && umask 077 && mkdir -p {relative}")
        if code != 0:
            raise LinkError(f"cannot make {relative} on {self.where}: {err.strip()}")
        return f"{await self.home_dir()}/{relative}"

    async def upload(self, local: Path, remote: str) -> None:
        await (await self.link()).upload(local, remote)

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()
