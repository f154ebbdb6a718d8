"""A tiny server for the network-namespace tests: answers each connection with
``<label> <original destination or local address>`` and closes it."""

from __future__ import annotations

import socket
import sys
import threading

from proxy.interception.original_dst import original_destination


def serve(port: int, label: str) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(16)
    while True:
        connection, _ = listener.accept()
        found = original_destination(connection)
        where = found or connection.getsockname()[:2]
        connection.sendall(f"{label} {where[0]}:{where[1]}\n".encode())
        connection.close()


if __name__ == "__main__":
    pairs = [item.split("=") for item in sys.argv[1:]]
    threads = [
        threading.Thread(target=serve, args=(int(p), label), daemon=True) for p, label in pairs
    ]
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    threading.Event().wait()
