#!/usr/bin/env python3
"""A TCP tunnel from this machine's loopback to a port on a testbed VM's own loopback, through `docker exec`.

    vm_tunnel.py CONTAINER PORT     prints "LISTENING 127.0.0.1:N", then serves until killed

The secure scenario's firewall admits nobody on the test network to HTTPS, so a browser on this machine
cannot reach the VM's nginx; this stands in for an SSH or IAP TCP-forwarding tunnel: every connection to
127.0.0.1:N becomes a `docker exec -i CONTAINER python3 -c RELAY` whose relay connects to 127.0.0.1:PORT
inside the VM and copies bytes both ways. Nothing on the VM changes; the firewall stays as it is.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

# Inside the VM (its python3, standard library only): stdin -> the port, the port -> stdout.
RELAY = r"""
import os, socket, sys, threading
peer = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def down():
    while chunk := peer.recv(65536):
        os.write(1, chunk)
    os._exit(0)
threading.Thread(target=down, daemon=True).start()
while chunk := os.read(0, 65536):
    peer.sendall(chunk)
peer.shutdown(socket.SHUT_WR)
threading.Event().wait()
"""


def serve(client: socket.socket, container: str, port: int) -> None:
    relay = subprocess.Popen(  # noqa: S603 - the test's own container
        ["docker", "exec", "-i", container, "python3", "-c", RELAY, str(port)],  # noqa: S607
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
    )

    def up() -> None:
        try:
            while chunk := client.recv(65536):
                relay.stdin.write(chunk)
        except OSError:
            pass
        finally:
            try:
                relay.stdin.close()
            except OSError:
                pass

    threading.Thread(target=up, daemon=True).start()
    try:
        while chunk := relay.stdout.read(65536):
            client.sendall(chunk)
    except OSError:
        pass
    finally:
        client.close()
        relay.kill()
        relay.wait()


def main() -> int:
    container, port = sys.argv[1], int(sys.argv[2])
    listener = socket.create_server(("127.0.0.1", 0))
    print(f"LISTENING 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, container, port), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
