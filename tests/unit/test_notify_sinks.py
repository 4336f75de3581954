"""The notification sinks on their own: what a log may say of a webhook, and
a command sink that event text cannot turn into code."""

from __future__ import annotations

from pathlib import Path

import pytest

from skytui.config import NotifySink
from skytui.engine.notify_events import Notification
from skytui.engine.notify_sinks import Sink, deliver, redacted_url


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:pa55@hooks.example.com/services/T0?token=abc#x", "https://hooks.example.com/services/T0"),
    ("http://127.0.0.1:8080/hook?k=v", "http://127.0.0.1:8080/hook"),
    ("http://[::1]:9000/h", "http://[::1]:9000/h"),
])
def test_a_webhook_is_named_without_its_credentials_or_query(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
    assert Sink(NotifySink(webhook=url)).label == f"webhook {shown}"


def _news(reason: str) -> Notification:
    return Notification(event_id=7, category="terminal", event="terminal", job=3, name="train", task=0,
                        status="FAILED", reason=reason, cost_usd=0.125, at=0.0)


async def test_event_text_reaches_a_command_as_data_never_as_code(tmp_path: Path) -> None:
    out, planted = tmp_path / "out", tmp_path / "planted"
    reason = f"$(touch {planted}); `touch {planted}` ' \" ;"
    sink = Sink(NotifySink(command=f'printf "%s|%s|%s" "$SKYTUI_REASON" "$SKYTUI_JOB_ID" "$SKYTUI_COST_USD" > "{out}"'))
    assert await deliver(sink, _news(reason)) is None
    assert out.read_text() == f"{reason}|3|0.1250"
    assert not planted.exists()


async def test_a_command_that_fails_is_reported_with_its_exit_code(tmp_path: Path) -> None:
    tries = tmp_path / "tries"
    sink = Sink(NotifySink(command=f'echo x >> "{tries}"; exit 4'))
    assert await deliver(sink, _news("r"), tries=2) == "exit code 4"
    assert tries.read_text().count("x") == 2
