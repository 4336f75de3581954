"""The import direction of DESIGN.md, read from the source with `ast`.

The screens know the client and widgets; the client knows the store; the
engine knows the store and the clouds; the clouds know nothing of the engine.
No import runs upward. Every import statement counts, including those under
`if TYPE_CHECKING:` and inside functions: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
PACKAGE = REPO / "skytui"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in `path` names, relative ones resolved."""
    return imports_in_source(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def imports_in_source(source: str, this: str, *, is_package: bool = False) -> set[str]:
    """The modules a source text imports, as if it were the module `this`.

    `from skytui import client` yields both `skytui` and `skytui.client`, as it
    may name a submodule.
    """
    tree = ast.parse(source)
    package_parts = this.split(".") if is_package else this.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package_parts[: len(package_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                found.add(base)
            for alias in node.names:
                if alias.name != "*":
                    found.add(f"{base}.{alias.name}" if base else alias.name)
    return found


def violates(module: str, forbidden: str) -> bool:
    return module == forbidden or module.startswith(forbidden + ".")


def python_files(directory: Path) -> list[Path]:
    files = sorted(directory.rglob("*.py"))
    assert files, f"no modules found under {directory}"
    return files


def offending_imports(directory: Path, forbidden: list[str]) -> list[str]:
    problems = []
    for path in python_files(directory):
        for module in sorted(imported_modules(path)):
            for bad in forbidden:
                if violates(module, bad):
                    problems.append(f"{path.relative_to(REPO)} imports {module}")
    return problems


def test_the_import_reader_sees_every_kind_of_import() -> None:
    """The checker itself: absolute, from-, relative, lazy and TYPE_CHECKING imports."""
    source = (
        "import textual.app\n"
        "from skytui.engine import store\n"
        "from ..client import Client\n"
        "from . import base\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from skytui.screens.main import Main\n"
        "def later():\n    import skytui.cli\n"
    )
    found = imports_in_source(source, "skytui.clouds.probe")
    assert {"textual.app", "skytui.engine", "skytui.engine.store", "skytui.client",
            "skytui.client.Client", "skytui.clouds", "skytui.clouds.base",
            "skytui.screens.main", "skytui.cli"} <= found
    forbidden = ["skytui.engine", "skytui.client", "skytui.cli", "skytui.screens"]
    assert sorted(m for m in found if any(violates(m, bad) for bad in forbidden)) == [
        "skytui.cli", "skytui.client", "skytui.client.Client", "skytui.engine",
        "skytui.engine.store", "skytui.screens.main", "skytui.screens.main.Main",
    ]
    assert not violates("skytui.engineering", "skytui.engine")
    assert imports_in_source("from .status import X", "skytui.engine", is_package=True) >= {
        "skytui.engine.status"
    }


def test_clouds_know_nothing_of_the_engine_or_the_front_ends() -> None:
    problems = offending_imports(
        PACKAGE / "clouds", ["skytui.engine", "skytui.client", "skytui.cli", "skytui.screens"]
    )
    assert problems == []


def test_engine_imports_no_front_end() -> None:
    problems = offending_imports(
        PACKAGE / "engine",
        ["skytui.client", "skytui.cli", "skytui.screens", "skytui.widgets", "textual"],
    )
    assert problems == []


# The faces (the TUI and the CLI) reach skytui only through these: the client
# is their one API, and `engine.status` and `engine.event_kinds` the shared
# vocabulary of statuses and events.
FACE_SHARED = ("skytui.client", "skytui.format", "skytui.config", "skytui.spec", "skytui.logs",
               "skytui.engine.status", "skytui.engine.event_kinds")
# Each face's own packages on top. The app composes screens and widgets;
# screens compose widgets and never import the app (which imports them); the
# CLI starts the TUI for `skytui` with no command (a lazy import of the app).
FACE_OWN = {
    "skytui/app.py": ("skytui.app", "skytui.screens", "skytui.widgets"),
    "skytui/screens": ("skytui.screens", "skytui.widgets"),
    "skytui/widgets": ("skytui.widgets",),
    "skytui/cli": ("skytui.cli", "skytui.app"),
}


def face_problems(module: str, imports: set[str], own: tuple[str, ...]) -> list[str]:
    """The imports of a face's module that go past the client."""
    allowed = FACE_SHARED + own
    return [
        f"{module} imports {name}" for name in sorted(imports)
        if name.startswith("skytui.") and not any(violates(name, ok) for ok in allowed)
    ]


def test_the_faces_rule_catches_what_reaches_past_the_client() -> None:
    """The checker itself, on the imports the faces had before they went through the client."""
    source = (
        "from skytui.engine.store import EventRow, StoreError\n"
        "from skytui.client import Client\n"
        "from skytui import format\n"
        "def later():\n    from skytui.engine.optimizer import considered_rows\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from skytui.app import SkyTUI\n"
        "from skytui.engine.status import TERMINAL\n"
        "from skytui.clouds.base import InfraStatus\n"
    )
    found = imports_in_source(source, "skytui.screens.probe")
    assert face_problems("probe", found, FACE_OWN["skytui/screens"]) == [
        "probe imports skytui.app", "probe imports skytui.app.SkyTUI", "probe imports skytui.clouds.base",
        "probe imports skytui.clouds.base.InfraStatus", "probe imports skytui.engine.optimizer",
        "probe imports skytui.engine.optimizer.considered_rows", "probe imports skytui.engine.store",
        "probe imports skytui.engine.store.EventRow", "probe imports skytui.engine.store.StoreError",
    ]


def test_the_faces_import_from_skytui_only_through_the_client() -> None:
    problems = []
    for face, own in FACE_OWN.items():
        path = REPO / face
        for module in python_files(path) if path.is_dir() else [path]:
            problems += face_problems(str(module.relative_to(REPO)), imported_modules(module), own)
    assert problems == []


def test_the_client_and_the_log_store_import_no_face() -> None:
    """The client is under the faces; `logs` is under the client (its follower reads rows, not the client)."""
    faces = ["skytui.cli", "skytui.screens", "skytui.widgets", "skytui.app", "textual"]
    problems = offending_imports(PACKAGE / "client", faces)
    problems += offending_imports(PACKAGE / "logs", [*faces, "skytui.client"])
    assert problems == []


def test_spec_imports_no_other_skytui_layer() -> None:
    """spec/ is the user's language, the leaf everything else builds on.

    Its modules import each other, and may lean on private helper modules
    (`skytui._*`) as long as those, in turn, import nothing from skytui: the
    closure of spec's skytui imports stays inside spec.
    """
    seen: set[str] = set()
    problems = []
    pending = python_files(PACKAGE / "spec")
    while pending:
        path = pending.pop()
        for module in sorted(imported_modules(path)):
            if module != "skytui" and not module.startswith("skytui."):
                continue
            if violates(module, "skytui.spec"):
                continue
            top = module.split(".")[1] if module != "skytui" else ""
            helper = PACKAGE / f"{top}.py"
            if top.startswith("_") and helper.is_file() and not (PACKAGE / top).is_dir():
                if top not in seen:
                    seen.add(top)
                    pending.append(helper)
                continue
            problems.append(f"{path.relative_to(REPO)} imports {module}")
    assert problems == []


def test_importing_the_cli_does_not_load_textual(tmp_path: Path) -> None:
    env = {**os.environ, "SKYTUI_HOME": str(tmp_path / "home")}
    env.pop("SKYTUI_DB_URL", None)
    code = (
        "import sys\n"
        "import skytui.cli\n"
        "loaded = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(loaded) or 'none')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"


@pytest.mark.parametrize("module", ["skytui.client", "skytui.engine.store", "skytui.spec"])
def test_headless_modules_do_not_load_textual(tmp_path: Path, module: str) -> None:
    env = {**os.environ, "SKYTUI_HOME": str(tmp_path / "home")}
    code = f"import sys, {module}\nprint('textual' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# What a command that only reads the DB must never load: the cloud SDKs (and
# what they pull in), SSH, the optimizer, the spec models, Textual.
HEAVY_FOR_READS = ("boto3", "botocore", "google", "kubernetes", "asyncssh", "skytui.engine.optimizer",
                   "skytui.clouds.registry", "skytui.spec", "textual")


def modules_imported_by(argv: list[str], home: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `skytui ARGV` with -X importtime; every module it imported."""
    env = {**os.environ, "SKYTUI_HOME": str(home)}
    env.pop("SKYTUI_DB_URL", None)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "skytui.cli", *argv], capture_output=True, text=True,
        env=env, cwd=home.parent, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )
    loaded = {
        line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }
    return result, loaded


@pytest.mark.parametrize("argv", [["jobs", "queue", "--json"], ["jobs", "queue", "-a"], ["controller", "status"],
                                  ["cost", "--json"], ["cost"]])
def test_reading_commands_load_no_cloud_sdk_ssh_or_optimizer(tmp_path: Path, argv: list[str]) -> None:
    home = tmp_path / "home"
    first, _ = modules_imported_by(["jobs", "queue", "--json"], home)  # creates the DB
    assert first.returncode == 0, first.stderr[-2000:]
    result, loaded = modules_imported_by(argv, home)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skytui.engine.store" in loaded  # the probe sees what the command imported
    heavy = sorted(m for m in loaded if any(violates(m, bad) for bad in HEAVY_FOR_READS))
    assert heavy == []


def test_the_import_contracts_hold() -> None:
    """The contracts in .importlinter (the layers of docs/architecture.md,
    and only the store speaking SQL), checked by import-linter over the
    whole import graph: an import that breaks one names its line here."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


MAX_MODULE_LINES = 500


def test_no_module_is_over_500_lines() -> None:
    """A module past 500 lines holds more than one job (issue 13): split it
    by concern before adding to it."""
    too_long = {
        str(path.relative_to(REPO)): count
        for path in python_files(PACKAGE)
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}
