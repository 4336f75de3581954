"""Which client a face gets: the local controller's, or a remote one's when
`jobs.controller.resources` in config.yaml puts the controller on a machine
of its own. Owns `open_client`; touches config, and loads the remote client
(asyncssh) only when it is the one.
"""

from __future__ import annotations

from skytui.client.api import Client
from skytui.config import Paths, load_config
from skytui.config import paths as default_paths


def open_client(p: Paths | None = None) -> Client:
    """ConfigError for a config.yaml that cannot say where the controller is."""
    p = p or default_paths()
    if not p.config_file.exists():
        return Client(p)
    config = load_config(p)
    if config.jobs.controller.resources is None:
        return Client(p)
    from skytui.client.remote import RemoteClient

    return RemoteClient(p, config)
