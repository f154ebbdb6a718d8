"""Transparent interception: the iptables rules App Mesh installed around its Envoy.

On ECS the agent applied them from the task's ``proxyConfiguration`` (type APPMESH:
IgnoredUID/IgnoredGID, ProxyIngressPort, ProxyEgressPort, AppPorts,
EgressIgnoredIPs, EgressIgnoredPorts); on EKS the ``proxy-route-manager`` init
container applied the same from ``APPMESH_*`` variables. Both produce two nat
chains: inbound TCP to the app's ports is redirected to the proxy's ingress
port; outbound TCP from anyone but the proxy's own user is redirected to its
egress port, except the ignored addresses and ports (22 always). The proxy then
recovers the original destination with ``SO_ORIGINAL_DST``.

This module builds those rules as argument lists (pure, testable), and applies
or removes them by running ``iptables`` (root, in the task's network namespace).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

INGRESS_CHAIN = "APPMESH_INGRESS"
EGRESS_CHAIN = "APPMESH_EGRESS"
ALWAYS_IGNORED_PORTS = (22,)
DEFAULT_IGNORED_IPS = ("169.254.170.2", "169.254.169.254")  # ECS metadata endpoints
MAX_IGNORED_PORTS = 15  # ECS's limit for EgressIgnoredPorts

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


def _ints(text: str | None) -> tuple[int, ...]:
    return tuple(int(item) for item in (text or "").replace(" ", "").split(",") if item)


def _words(text: str | None) -> tuple[str, ...]:
    return tuple(item for item in (text or "").replace(" ", "").split(",") if item)


@dataclass(frozen=True)
class Interception:
    """What to intercept; the fields mirror ECS ``proxyConfiguration`` properties."""

    app_ports: tuple[int, ...] = ()
    proxy_ingress_port: int = 15000
    proxy_egress_port: int = 15001
    ignored_uid: int | None = 1337
    ignored_gid: int | None = None
    egress_ignored_ips: tuple[str, ...] = DEFAULT_IGNORED_IPS
    egress_ignored_ports: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.ignored_uid is None and self.ignored_gid is None:
            raise ValueError(
                "set IgnoredUID or IgnoredGID (APPMESH_IGNORE_UID / APPMESH_IGNORE_GID) to the "
                "proxy's user, or its own traffic would loop back into it"
            )
        if len(self.egress_ignored_ports) > MAX_IGNORED_PORTS:
            raise ValueError(f"at most {MAX_IGNORED_PORTS} EgressIgnoredPorts are allowed")

    @classmethod
    def from_properties(cls, properties: Mapping[str, str]) -> Interception:
        """From an ECS task definition's ``proxyConfiguration.properties`` (name -> value)."""
        uid, gid = properties.get("IgnoredUID"), properties.get("IgnoredGID")
        return cls(
            app_ports=_ints(properties.get("AppPorts")),
            proxy_ingress_port=int(properties.get("ProxyIngressPort", 15000)),
            proxy_egress_port=int(properties.get("ProxyEgressPort", 15001)),
            ignored_uid=int(uid) if uid else None,
            ignored_gid=int(gid) if gid else None,
            egress_ignored_ips=_words(properties.get("EgressIgnoredIPs")),
            egress_ignored_ports=_ints(properties.get("EgressIgnoredPorts")),
        )

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Interception:
        """From the EKS proxy-route-manager's variables (APPMESH_APP_PORTS, ...)."""
        uid, gid = env.get("APPMESH_IGNORE_UID"), env.get("APPMESH_IGNORE_GID")
        ips = env.get("APPMESH_EGRESS_IGNORED_IP")
        return cls(
            app_ports=_ints(env.get("APPMESH_APP_PORTS")),
            proxy_ingress_port=int(env.get("APPMESH_ENVOY_INGRESS_PORT", 15000)),
            proxy_egress_port=int(env.get("APPMESH_ENVOY_EGRESS_PORT", 15001)),
            ignored_uid=int(uid) if uid else (None if gid else 1337),
            ignored_gid=int(gid) if gid else None,
            egress_ignored_ips=_words(ips) if ips is not None else DEFAULT_IGNORED_IPS,
            egress_ignored_ports=_ints(env.get("APPMESH_EGRESS_IGNORED_PORTS")),
        )

    def ignored_ports(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.egress_ignored_ports) | set(ALWAYS_IGNORED_PORTS)))


# The two jumps into our chains, shared by install ("-A") and removal ("-D").
EGRESS_JUMP = ["OUTPUT", "-p", "tcp", "-m", "addrtype", "!", "--dst-type", "LOCAL"]
INGRESS_JUMP = ["PREROUTING", "-p", "tcp", "-m", "addrtype", "!", "--src-type", "LOCAL"]
NAT = ["-t", "nat"]


def install_rules(config: Interception) -> list[list[str]]:
    """The ``iptables`` argument lists that set interception up, in order."""
    rules = [[*NAT, "-N", INGRESS_CHAIN], [*NAT, "-N", EGRESS_CHAIN]]
    egress = [*NAT, "-A", EGRESS_CHAIN]
    owners = (("--uid-owner", config.ignored_uid), ("--gid-owner", config.ignored_gid))
    for flag, owner in owners:
        if owner is not None:
            rules.append([*egress, "-m", "owner", flag, str(owner), "-j", "RETURN"])
    ports = ",".join(str(port) for port in config.ignored_ports())
    rules.append([*egress, "-p", "tcp", "-m", "multiport", "--dports", ports, "-j", "RETURN"])
    for address in config.egress_ignored_ips:
        rules.append([*egress, "-p", "tcp", "-d", address, "-j", "RETURN"])
    to_egress = ["-j", "REDIRECT", "--to-ports", str(config.proxy_egress_port)]
    rules.append([*egress, "-p", "tcp", "!", "-d", "127.0.0.1/32", *to_egress])
    rules.append([*NAT, "-A", *EGRESS_JUMP, "-j", EGRESS_CHAIN])
    if config.app_ports:
        app_ports = ",".join(str(port) for port in config.app_ports)
        to_ingress = ["-j", "REDIRECT", "--to-ports", str(config.proxy_ingress_port)]
        match = ["-p", "tcp", "-m", "multiport", "--dports", app_ports]
        rules.append([*NAT, "-A", INGRESS_CHAIN, *match, *to_ingress])
        rules.append([*NAT, "-A", *INGRESS_JUMP, "-j", INGRESS_CHAIN])
    return rules


def remove_rules() -> list[list[str]]:
    """The argument lists that undo ``install_rules`` (each may fail harmlessly if absent)."""
    return [
        [*NAT, "-D", *EGRESS_JUMP, "-j", EGRESS_CHAIN],
        [*NAT, "-D", *INGRESS_JUMP, "-j", INGRESS_CHAIN],
        [*NAT, "-F", EGRESS_CHAIN],
        [*NAT, "-F", INGRESS_CHAIN],
        [*NAT, "-X", EGRESS_CHAIN],
        [*NAT, "-X", INGRESS_CHAIN],
    ]


def _iptables() -> str:
    found = shutil.which("iptables")
    if found is None:
        raise RuntimeError(
            "iptables is not installed; install it (Debian: apt-get install iptables)"
        )
    return found


def _run(arguments: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run([_iptables(), *arguments], capture_output=True, text=True, check=False)


def apply(config: Interception, runner: Runner = _run) -> None:
    """Install the rules; on a failure, undo what was installed and raise with iptables' words."""
    for arguments in install_rules(config):
        result = runner(arguments)
        if result.returncode != 0:
            remove(runner)
            command = " ".join(["iptables", *arguments])
            raise RuntimeError(f"{command} failed: {result.stderr.strip()} (are you root?)")


def remove(runner: Runner = _run) -> None:
    for arguments in remove_rules():
        runner(arguments)
