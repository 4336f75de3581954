"""The one error of a remote controller's line, apart from the transports so
that a face can name it without loading asyncssh."""

from __future__ import annotations


class LinkError(RuntimeError):
    """The controller machine cannot be reached, or a command on it failed to run."""


class NoController(LinkError):
    """No controller machine exists yet (a pod or VM is made by the first
    launch, never by a look): a read answers as an empty controller would."""
