"""The node drivers: one shell protocol base and its two transports.

`shell_node.py` owns the detached-phase protocol every driver shares;
`sshnode.py` drives it over an asyncssh channel (VMs, SSH hosts, the local
node host), `podnode.py` over the Kubernetes exec API. Nothing here knows the
engine. Import the driver's own module: this package imports none of them,
so that reaching for a pod's driver does not load asyncssh.
"""
