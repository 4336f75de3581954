"""The remote controller: the jobs controller on a machine of its own (one
of your `ssh` hosts, a Kubernetes pod), so that jobs keep being watched and
recovered while the laptop sleeps.

link.py reaches the machine (asyncssh; pod_link.py: the Kubernetes exec
API); machines.py finds, makes and removes it (pod_machine.py: a pod); runtime.py and credentials.py are
what the client sends there; site.py is its lifecycle as the client drives
it (start, status, stop, down, the API process); supervisor.py runs on the
machine and keeps the controller daemon up, and stops it when idle.
The client's side of the API is `client.remote`, its far side `client.serve`.
May touch config, clouds (the node drivers and host keys) and, on the
machine, engine.daemon and the store; never the client or the faces.
"""
