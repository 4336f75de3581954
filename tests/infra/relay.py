"""`relay.py HOST PORT`: stdin/stdout <-> a TCP connection, as an ssh ProxyCommand.

Tests give cloud nodes (moto's and the fakes' made-up addresses) this proxy
command, so that SSH to any of them reaches the test sshd on 127.0.0.1.
"""

import os
import selectors
import socket
import sys

sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
selector = selectors.DefaultSelector()
selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "in")
selector.register(sock, selectors.EVENT_READ, "sock")
while True:
    for key, _ in selector.select():
        if key.data == "in":
            data = os.read(sys.stdin.fileno(), 65536)
            if not data:
                sock.shutdown(socket.SHUT_WR)
                selector.unregister(sys.stdin.fileno())
                continue
            sock.sendall(data)
        else:
            data = sock.recv(65536)
            if not data:
                sys.exit(0)
            os.write(sys.stdout.fileno(), data)
