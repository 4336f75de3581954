"""The `:` prompt (k9s' command mode): `:jobs`, `:pools`, `:job 12`, `:logs 12`,
`:launch PATH`, `:q`. It only reads what was typed; the app runs it."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input

COMMANDS = ("jobs", "pools", "job ", "logs ", "launch ", "quit")
ALIASES = {"j": "jobs", "po": "pools", "p": "pools", "q": "quit", "q!": "quit", "l": "logs", "n": "launch"}


@dataclass(frozen=True)
class Command:
    verb: str
    argument: str = ""


class CommandError(ValueError):
    """What was typed is not a command; the message says what is."""


def parse_command(text: str) -> Command:
    words = text.strip().lstrip(":").split(maxsplit=1)
    if not words:
        raise CommandError("type a command: jobs, pools, job ID, logs ID, launch PATH, quit")
    verb = ALIASES.get(words[0], words[0])
    argument = words[1].strip() if len(words) > 1 else ""
    if verb not in {c.strip() for c in COMMANDS}:
        raise CommandError(f"unknown command {words[0]!r}: try jobs, pools, job ID, logs ID, launch PATH, quit")
    if verb in ("job", "logs") and not argument.isdigit():
        raise CommandError(f":{verb} needs a job id, e.g. :{verb} 12")
    if verb == "launch" and not argument:
        raise CommandError(":launch needs a task YAML path, e.g. :launch examples/hello.yaml")
    return Command(verb, argument)


class CommandPrompt(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Close", id="command.close")]

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="jobs · pools · job ID · logs ID · launch PATH · quit",
            suggester=SuggestFromList(COMMANDS, case_sensitive=False),
            id="command-input",
        )

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)
