"""Network namespaces on one private bridge, for the tests that need root.

A hub namespace holds a bridge. Every namespace a test adds gets a veth onto it and an
address in one private /24 picked at random (so parallel runs do not collide); the root
namespace gets one too, so the test itself can reach the control plane and the admin
ports. Nothing else in the root namespace changes. Closing kills the processes started
here, deletes the namespaces (which removes every link, the root one included) and the
``/etc/netns/<ns>/`` files that ``ip netns exec`` mounts over ``/etc`` (the hosts file).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

NETNS_ETC = Path("/etc/netns")
T = TypeVar("T")


def sh(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=20)


def in_ns(ns: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *command]


def eventually(check: Callable[[], T], timeout: float = 20.0) -> T:
    """Poll ``check`` until it returns something truthy (config pushes take a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"still {result!r} after {timeout} s"
            return result
        time.sleep(0.1)


class Network:
    """Namespaces joined by a bridge; use as a context manager."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.prefix = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
        self.hub = f"amh-{self.tag}"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen] = []
        self._links = 0

    def __enter__(self) -> Network:
        try:
            self._add_namespace(self.hub)
            sh(*in_ns(self.hub, "ip", "link", "add", "br0", "type", "bridge"))
            sh(*in_ns(self.hub, "ip", "link", "set", "br0", "up"))
            self._plug(None, 1)  # the root namespace: <prefix>.1
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def address(self, octet: int) -> str:
        return f"{self.prefix}.{octet}"

    def host(self, name: str, octet: int, hosts: dict[str, str] | None = None) -> str:
        """A namespace at ``<prefix>.<octet>`` with a default route onto the bridge (so a
        made-up service IP is routable, as in a VPC) and ``hosts`` in its /etc/hosts."""
        ns = f"am{name}-{self.tag}"
        self._add_namespace(ns)
        if hosts:
            lines = ["127.0.0.1 localhost", *(f"{ip} {host}" for host, ip in hosts.items())]
            (NETNS_ETC / ns).mkdir(parents=True, exist_ok=True)
            (NETNS_ETC / ns / "hosts").write_text("\n".join(lines) + "\n")
        device = self._plug(ns, octet)
        sh(*in_ns(ns, "ip", "route", "add", "default", "dev", device))
        return ns

    def spawn(self, ns: str, command: list[str], log: IO[bytes] | None = None, **kw: Any):
        """Start ``command`` inside ``ns``; it is killed on close."""
        output = log if log is not None else subprocess.DEVNULL
        process = subprocess.Popen(
            in_ns(ns, *command), stdout=output, stderr=subprocess.STDOUT, **kw
        )
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)

    def _add_namespace(self, ns: str) -> None:
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)

    def _plug(self, ns: str | None, octet: int) -> str:
        """A veth from ``ns`` (None: the root namespace) to the bridge; returns its name."""
        self._links += 1
        inner, outer = f"v{self.tag}{self._links}a", f"v{self.tag}{self._links}b"
        sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        sh("ip", "link", "set", outer, "netns", self.hub)
        sh(*in_ns(self.hub, "ip", "link", "set", outer, "master", "br0", "up"))
        inside: list[str] = []
        if ns is not None:
            sh("ip", "link", "set", inner, "netns", ns)
            inside = in_ns(ns)
            sh(*inside, "ip", "link", "set", "lo", "up")
        sh(*inside, "ip", "addr", "add", f"{self.address(octet)}/24", "dev", inner)
        sh(*inside, "ip", "link", "set", inner, "up")
        return inner
