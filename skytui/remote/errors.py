"""The one error of a remote controller's line, apart from the transports so
that a face can name it without loading asyncssh."""

from __future__ import annotations


class LinkError(RuntimeError):
    """The controller machine cannot be reached, or a command on it failed to run."""
