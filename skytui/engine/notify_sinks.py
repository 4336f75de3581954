"""Delivering one notification to one sink of config.yaml's `jobs.notify`,
with retries: a webhook (POST JSON, urllib in a daemon thread of its own) or
a command (run through `sh -c` as the user wrote it, the event only in its
environment, never in the command's text).

Retries: up to `TRIES` tries, each bounded by `TRY_TIMEOUT_S`, with waits of
1, 2, 4, 8 s between them (`BACKOFF_*`): a notification gives up after about
a minute at worst. A 4xx other than 408/429 is not retried (it will not get
better). What is said of a failure names a webhook by scheme, host and path
only: a query string or user:password often carries a token.

Touches: the network (the webhook's host), child processes (the command).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from skytui.config import NotifySink
from skytui.engine.notify_events import CATEGORIES, Notification

TRIES = 5
TRY_TIMEOUT_S = 10.0
BACKOFF_INITIAL_S = 1.0
BACKOFF_FACTOR = 2.0
BACKOFF_MAX_S = 30.0


class DeliveryError(Exception):
    """A try failed; `final` if trying again would not help."""

    def __init__(self, message: str, *, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


def redacted_url(url: str) -> str:
    """The URL as logs may show it: no user:password, query or fragment."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class Sink:
    """One configured sink: what it is called in logs, which categories it
    wants, and its durable key (a digest: the URL itself may hold a secret,
    and a changed URL is a new sink that starts from now)."""

    config: NotifySink

    @property
    def label(self) -> str:
        if self.config.webhook is not None:
            return f"webhook {redacted_url(self.config.webhook)}"
        return f"command #{self.key[:8]}"  # the command line may carry a token too

    @property
    def key(self) -> str:
        target = f"webhook:{self.config.webhook}" if self.config.webhook is not None else f"command:{self.config.command}"
        return hashlib.sha256(target.encode()).hexdigest()[:16]

    def wants(self, notification: Notification) -> bool:
        return notification.category in (self.config.events or CATEGORIES)

    async def deliver_once(self, notification: Notification, timeout: float = TRY_TIMEOUT_S) -> None:
        """One try; raises DeliveryError."""
        if self.config.webhook is not None:
            await _post_json(self.config.webhook, notification, timeout)
        else:
            assert self.config.command is not None
            await _run_command(self.config.command, notification, timeout)


async def deliver(sink: Sink, notification: Notification, *, tries: int = TRIES) -> str | None:
    """Deliver with retries; None once delivered, else why it was not."""
    delay = BACKOFF_INITIAL_S
    error = "not tried"
    for attempt in range(tries):
        if attempt:
            await asyncio.sleep(delay)
            delay = min(delay * BACKOFF_FACTOR, BACKOFF_MAX_S)
        try:
            await sink.deliver_once(notification)
            return None
        except DeliveryError as exc:
            error = str(exc)
            if exc.final:
                break
        except Exception as exc:  # noqa: BLE001 - a try that could not even start (no /bin/sh, say)
            error = f"{type(exc).__name__}: {exc}"
            if sink.config.webhook is not None:
                error = error.replace(sink.config.webhook, redacted_url(sink.config.webhook))
    return error


async def _post_json(url: str, notification: Notification, timeout: float) -> None:
    body = json.dumps(notification.payload()).encode()
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "skytui-notify"},
    )
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str | None] = loop.create_future()

    def post() -> None:
        outcome: str | None = None
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only (config)
                response.read(65536)
        except urllib.error.HTTPError as exc:
            final = 400 <= exc.code < 500 and exc.code not in (408, 429)
            outcome = f"{'final:' if final else ''}HTTP {exc.code}"
        except urllib.error.URLError as exc:
            outcome = str(exc.reason)
        except Exception as exc:  # noqa: BLE001 - whatever the socket says, as a failed try
            outcome = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
            loop.call_soon_threadsafe(_settle, done, outcome)

    # A daemon thread, not an executor: a host that never answers holds it
    # only until `timeout`, and never holds up the controller's exit.
    threading.Thread(target=post, name="notify-webhook", daemon=True).start()
    try:
        outcome = await asyncio.wait_for(asyncio.shield(done), timeout + 1.0)
    except asyncio.TimeoutError:
        outcome = f"no answer within {timeout:g}s"
    if outcome is not None:
        final = outcome.startswith("final:")
        raise DeliveryError(outcome.removeprefix("final:").replace(url, redacted_url(url)), final=final)


def _settle(future: asyncio.Future[str | None], outcome: str | None) -> None:
    if not future.done():
        future.set_result(outcome)


async def _run_command(command: str, notification: Notification, timeout: float) -> None:
    # The command is the user's own text from config.yaml; the event reaches
    # it only as environment variables, which a shell expands without parsing.
    process = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, env={**os.environ, **notification.environment()},
        start_new_session=True,
    )
    try:
        code = await asyncio.wait_for(process.wait(), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(process.wait(), 1.0)
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise DeliveryError(f"still running after {timeout:g}s; killed") from None
    if code != 0:
        raise DeliveryError(f"exit code {code}")
