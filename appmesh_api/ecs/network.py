"""awsvpc for local tasks: each task a network namespace of its own, on one shared bridge.

On ECS an ``awsvpc`` task had its own network interface and address, and the ECS agent
installed App Mesh's iptables rules in the task's namespace. Here the first task creates
a hub namespace holding a bridge, with a veth from the root namespace at
``<subnet>.1`` (so this host can reach every task, as a VPC peer could); every task gets a
namespace, a veth onto the bridge and the next free ``<subnet>.N`` address. Tasks reach
each other over the bridge, so two tasks may use the same ports, as on ECS. Nothing
else in the root namespace changes (no forwarding, no NAT).

Leases are files under ``/run/appmesh-local/ecs`` written under a lock, one per task,
naming the owner's pid, so tasks run by separate ``run-task`` processes never share an
address and a lease left by a killed process is taken over. The last task to stop
removes the hub (and with it the bridge and the root namespace's veth).

``ip netns exec`` mounts ``/etc/netns/<ns>/hosts`` over ``/etc/hosts``: each task's hosts
file gives its mesh's virtual service names an address (App Mesh's guide: any address
will do, the egress rule takes the connection before it leaves).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from appmesh_api.ecs.tasks import process_alive

HUB = "appmesh-ecs"
BRIDGE = "br0"
ROOT_LINK = "amecs0"
DEFAULT_SUBNET = "10.77.0"  # a /24; --subnet changes it
STATE = Path("/run/appmesh-local/ecs")
NETNS_ETC = Path("/etc/netns")
NETNS_RUN = Path("/run/netns")
SERVICE_ADDRESS = "10.10.10.10"  # what virtual service names resolve to in a task


class NetworkError(RuntimeError):
    """The task's namespace could not be made (with what to do about it)."""


def missing_tools() -> list[str]:
    """What awsvpc mode needs and this machine lacks (empty when it can run)."""
    missing = [] if os.geteuid() == 0 else ["root"]
    return missing + [tool for tool in ("ip", "iptables", "setpriv") if not shutil.which(tool)]


def _ip(*arguments: str, namespace: str | None = None) -> None:
    command = ["ip", *arguments] if namespace is None else in_namespace(namespace, "ip", *arguments)
    result = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    if result.returncode != 0:
        raise NetworkError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")


def in_namespace(namespace: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *command]


def _exists(namespace: str) -> bool:
    return (NETNS_RUN / namespace).exists()


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _leases() -> dict[int, dict]:
    """Live leases by octet; stale ones (their process is gone) are cleaned up here."""
    found = {}
    for path in STATE.glob("lease-*.json"):
        try:
            lease = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if process_alive(int(lease.get("pid", 0))):
            found[int(lease["octet"])] = lease
            continue
        _remove_namespace(str(lease.get("namespace", "")))
        path.unlink(missing_ok=True)
    return found


def _remove_namespace(namespace: str) -> None:
    if namespace and _exists(namespace):
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
    if namespace:
        shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)


def _ensure_hub(subnet: str) -> None:
    if _exists(HUB):
        return
    _ip("netns", "add", HUB)
    _ip("link", "add", BRIDGE, "type", "bridge", namespace=HUB)
    _ip("link", "set", BRIDGE, "up", namespace=HUB)
    _plug(None, ROOT_LINK, f"{subnet}.1")


def _plug(namespace: str | None, link: str, address: str) -> None:
    """A veth from ``namespace`` (None: the root one) onto the hub's bridge."""
    peer = f"{link}p"
    # The lease is ours (under the lock): a pair of this name is one a killed task left in
    # the root namespace half-wired. Deleting one end takes the pair.
    subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=20, check=False)
    _ip("link", "add", link, "type", "veth", "peer", "name", peer)
    _ip("link", "set", peer, "netns", HUB)
    _ip("link", "set", peer, "master", BRIDGE, "up", namespace=HUB)
    if namespace is not None:
        _ip("link", "set", link, "netns", namespace)
        _ip("link", "set", "lo", "up", namespace=namespace)
    _ip("addr", "add", f"{address}/24", "dev", link, namespace=namespace)
    _ip("link", "set", link, "up", namespace=namespace)
    if namespace is not None:  # a made-up service address must be routable, as in a VPC
        _ip("route", "add", "default", "dev", link, namespace=namespace)


@dataclass
class TaskNetwork:
    """One task's namespace and address; ``close`` gives both back."""

    namespace: str
    address: str
    octet: int

    @classmethod
    def open(cls, family: str, subnet: str = DEFAULT_SUBNET) -> TaskNetwork:
        with _locked():
            leases = _leases()
            _ensure_hub(subnet)
            octet = next((n for n in range(2, 255) if n not in leases), None)
            if octet is None:
                raise NetworkError(f"all 253 task addresses of {subnet}.0/24 are in use")
            namespace = f"ecs-{octet}-{family[:24]}"
            _remove_namespace(namespace)
            lease = {"octet": octet, "pid": os.getpid(), "namespace": namespace}
            (STATE / f"lease-{octet}.json").write_text(json.dumps(lease))
            network = cls(namespace, f"{subnet}.{octet}", octet)
            try:
                _ip("netns", "add", namespace)
                _plug(namespace, f"amecs{octet}", network.address)
            except NetworkError:
                network._release()  # under the lock already: a second flock would wait forever
                raise
            return network

    @property
    def path(self) -> Path:
        """The namespace's handle, for ``setns``."""
        return NETNS_RUN / self.namespace

    def wrap(self, command: list[str]) -> list[str]:
        return in_namespace(self.namespace, *command)

    def write_hosts(self, names: Mapping[str, str]) -> None:
        lines = ["127.0.0.1 localhost", *(f"{ip} {name}" for name, ip in sorted(names.items()))]
        folder = NETNS_ETC / self.namespace
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hosts").write_text("\n".join(lines) + "\n")

    def close(self) -> None:
        with _locked():
            self._release()

    def _release(self) -> None:
        """Give the namespace and address back (the caller holds the state lock)."""
        _remove_namespace(self.namespace)
        (STATE / f"lease-{self.octet}.json").unlink(missing_ok=True)
        if not _leases() and _exists(HUB):
            _remove_namespace(HUB)  # the bridge and the root veth go with it
