"""Ports on this machine: pick a free one, wait until a started process listens on one.

Shared by ``appmesh-local up``, the benchmarks and the tests, which all start servers
as processes on 127.0.0.1.
"""

from __future__ import annotations

import socket
import subprocess
import time


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int, process: subprocess.Popen, what: str | None = None, timeout: float = 30
) -> None:
    """Return once ``process`` accepts connections on ``port``; raise RuntimeError if it
    exits first or the port stays closed for ``timeout`` seconds."""
    what = what or str(process.args)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not open port {port} within {timeout:.0f} s")
