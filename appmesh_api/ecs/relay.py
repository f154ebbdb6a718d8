"""The control plane inside a task's namespace, on the address the task expects.

A proxy in an awsvpc task cannot reach ``127.0.0.1`` of the host, where ``serve``
usually listens. Rather than make the control plane listen on the bridge, the runner
opens a listening socket *inside* the task's namespace (a thread enters it with
``setns``, makes the socket, and leaves; a socket stays in the namespace it was made
in) and relays each connection to the real endpoint from the host's side. The task
sees the endpoint at ``127.0.0.1:PORT``, as the ECS agent's endpoints appear inside a
task. UDP is relayed the same way for the X-Ray daemon. Bytes pass unchanged, so SigV4
signatures made for the ``Host`` the task used still verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

CLONE_NEWNET = 0x40000000
CHUNK = 65536


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


def socket_in(namespace: Path, kind: int, port: int) -> socket.socket:
    """A socket bound to ``127.0.0.1:port`` inside ``namespace`` (listening, for TCP)."""
    made: list[socket.socket] = []
    failure: list[BaseException] = []

    def enter_and_bind() -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(namespace, os.O_RDONLY)
        try:
            _setns(target)
            try:
                sock = socket.socket(socket.AF_INET, kind)
                sock.bind(("127.0.0.1", port))
                if kind == socket.SOCK_STREAM:
                    sock.listen(128)
                made.append(sock)
            finally:
                _setns(home)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
        finally:
            os.close(home)
            os.close(target)

    thread = threading.Thread(target=enter_and_bind, name="setns")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return made[0]


class Relay:
    """Relays TCP (and optionally UDP) from inside a namespace to host addresses."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relay", daemon=True)
        self._thread.start()
        self._closers: list[Callable[[], None]] = []

    def tcp(self, listening: socket.socket, host: str, port: int) -> None:
        async def serve() -> None:
            server = await asyncio.start_server(
                lambda r, w: _pipe_both(r, w, host, port), sock=listening
            )
            self._closers.append(server.close)

        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(timeout=10)

    def udp(self, bound: socket.socket, host: str, port: int) -> None:
        """Datagrams (X-Ray segments) sent inside the namespace go to ``host:port``."""
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        bound.settimeout(0.5)  # so the thread sees the stop without a datagram
        stopped = threading.Event()

        def forward() -> None:
            while not stopped.is_set():
                try:
                    out.sendto(bound.recv(CHUNK), (host, port))
                except TimeoutError:
                    continue
                except OSError:
                    return

        threading.Thread(target=forward, name="relay-udp", daemon=True).start()
        self._closers += [stopped.set, bound.close, out.close]

    def close(self) -> None:
        def stop() -> None:
            for close in self._closers:
                with contextlib.suppress(OSError):
                    close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=5)


async def _pipe_both(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(
        _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
    )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()
