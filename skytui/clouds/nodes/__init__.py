"""The node drivers: one shell protocol base and its two transports.

`shell_node.py` owns the detached-phase protocol every driver shares;
`sshnode.py` drives it over an asyncssh channel (VMs, SSH hosts, the local
node host), `podnode.py` over the Kubernetes exec API. Nothing here knows the
engine.
"""

from skytui.clouds.nodes.podnode import PodNode
from skytui.clouds.nodes.shell_node import ShellNode
from skytui.clouds.nodes.sshnode import SSHNode

__all__ = ["PodNode", "SSHNode", "ShellNode"]
