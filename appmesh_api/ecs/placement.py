"""Where a task's containers run: on the host (explicit mode) or in a namespace (awsvpc).

The two differ only in how a container's program is started, what its environment
says about the network, and what is set up before the first container and taken down
after the last; ``TaskRunner`` asks its placement and knows nothing else of networks.

- ``Explicit``: every container on the host; apps reach the mesh through
  ``http_proxy`` pointing at the task's egress port, peers reach the app through the
  ingress port the proxy registers on 127.0.0.1. Works without root.
- ``Awsvpc``: ECS's awsvpc mode with App Mesh's ``proxyConfiguration`` honoured as the
  ECS agent did: a namespace and address of the task's own (``network.TaskNetwork``),
  the iptables rules built from the properties (``AppPorts``, ``IgnoredUID`` /
  ``IgnoredGID``, ``ProxyIngressPort``, ``ProxyEgressPort``, ``EgressIgnoredIPs``,
  ``EgressIgnoredPorts``), the proxy running as the ignored user or group, and the
  control plane relayed into the namespace (``relay``). Apps need no proxy settings.

A virtual gateway's task (no ``proxyConfiguration``) gets neither rules nor
``http_proxy``: its proxy is reached directly on the gateway's listener ports.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from appmesh_api.ecs.network import SERVICE_ADDRESS, TaskNetwork, missing_tools
from appmesh_api.ecs.relay import Relay, socket_in
from appmesh_api.ecs.taskdef import Container, TaskDefinition, TaskDefinitionError

Say = Callable[[str], None]
_RULE_VARIABLES = {  # proxyConfiguration property -> the EKS proxy-route-manager variable
    "AppPorts": "APPMESH_APP_PORTS",
    "IgnoredUID": "APPMESH_IGNORE_UID",
    "IgnoredGID": "APPMESH_IGNORE_GID",
    "ProxyIngressPort": "APPMESH_ENVOY_INGRESS_PORT",
    "ProxyEgressPort": "APPMESH_ENVOY_EGRESS_PORT",
    "EgressIgnoredIPs": "APPMESH_EGRESS_IGNORED_IP",
    "EgressIgnoredPorts": "APPMESH_EGRESS_IGNORED_PORTS",
}


class Placement(Protocol):
    description: str
    control_plane: str  # the endpoint as the task's containers reach it
    notes: list[str]  # what this placement does differently from ECS, said at the start

    def start(self) -> None: ...

    def argv(self, container: Container, program: list[str]) -> list[str]: ...

    def inside(self, command: list[str]) -> list[str]: ...

    def xray_port_taken(self, port: int) -> bool: ...

    def environment(self, container: Container, env: dict[str, str]) -> dict[str, str]: ...

    def close(self) -> None: ...


def _ports(task: TaskDefinition) -> tuple[str, str]:
    props = task.proxy_properties
    return props.get("ProxyIngressPort", "15000"), props.get("ProxyEgressPort", "15001")


class Explicit:
    description = "explicit mode (http_proxy to the egress port; no iptables)"

    def __init__(self, task: TaskDefinition, endpoint: str) -> None:
        self.task, self.endpoint, self.control_plane = task, endpoint, endpoint
        if task.gateway:
            self.description = "explicit mode (the gateway listens on 127.0.0.1; no iptables)"
        self.notes: list[str] = []
        self._users = {c.name: self._user(c) for c in task.containers}

    def _user(self, container: Container) -> list[str]:
        """``user`` as root (setpriv); without root only this user can run anything."""
        if not container.user or container.name == self.task.proxy_container:
            if container.user:
                self.notes.append(
                    f"container {container.name}: user {container.user} not applied in explicit "
                    "mode (no iptables rules to exempt the proxy from)"
                )
            return []
        if os.geteuid() == 0:
            return run_as(container.user)
        if run_as(container.user)[1:3] != [f"--reuid={os.geteuid()}", f"--regid={os.getegid()}"]:
            self.notes.append(
                f"container {container.name}: user {container.user} not applied "
                f"(not root: it runs as uid {os.geteuid()})"
            )
        return []

    def start(self) -> None:
        pass

    def argv(self, container: Container, program: list[str]) -> list[str]:
        return [*self._users.get(container.name, []), *program]

    def inside(self, command: list[str]) -> list[str]:
        return command

    def xray_port_taken(self, port: int) -> bool:
        """Whether ``serve``'s own X-Ray daemon listens on 127.0.0.1:``port`` here."""
        return _xray_daemon(self.endpoint) == ("127.0.0.1", port)

    def environment(self, container: Container, env: dict[str, str]) -> dict[str, str]:
        ingress, egress = _ports(self.task)
        if container.name == self.task.proxy_container:
            _default(env, "APPMESH_XDS_ENDPOINT", self.endpoint)
            env.setdefault("APPMESH_INGRESS_PORT", ingress)
            env.setdefault("APPMESH_EGRESS_PORT", egress)
            env.setdefault("APPMESH_LISTEN_ADDRESS", "127.0.0.1")
        elif self.task.intercepted:  # a gateway's task sends nothing through it
            proxy = f"http://127.0.0.1:{egress}"
            env.update(http_proxy=proxy, HTTP_PROXY=proxy)
            env.setdefault("no_proxy", "localhost,127.0.0.1")
            env.setdefault("NO_PROXY", "localhost,127.0.0.1")
        return env

    def close(self) -> None:
        pass


class Awsvpc:
    def __init__(self, task: TaskDefinition, endpoint: str, subnet: str, say: Say) -> None:
        self.task, self.endpoint, self.subnet, self.say = task, endpoint, subnet, say
        self.network: TaskNetwork | None = None
        self.relay: Relay | None = None
        self.notes: list[str] = []
        self.control_plane = _inside(endpoint)
        self._extra_gid: str | None = None
        self._users = {c.name: self._user(c) for c in task.containers}
        self.description = "awsvpc mode"

    def _user(self, container: Container) -> list[str]:
        """The proxy as IgnoredUID/IgnoredGID; another container as its ``user``."""
        if container.name == self.task.proxy_container and self.task.gateway:
            return self._gateway_user(container)
        if container.name == self.task.proxy_container:
            prefix, extra_gid, note = _proxy_user(self.task)
            self._extra_gid = extra_gid
            if note:
                self.notes.append(note)
            return prefix
        if not container.user:
            return []
        if is_xray_daemon(container) and not can_run(run_as(container.user)):
            # A built-in of ours that this user cannot start (a private interpreter): it
            # runs as root in the user's group; it sends only to 127.0.0.1, which the
            # egress rules never intercept.
            group = run_as(container.user)[2]
            self.notes.append(
                f"container {container.name}: user {container.user} cannot run "
                f"{sys.executable} here; it runs as root with {group}"
            )
            return ["setpriv", group, "--clear-groups"]
        return run_as(container.user)

    def _gateway_user(self, container: Container) -> list[str]:
        """A virtual gateway's proxy as its container's ``user`` when that user can run
        this Python; else as root, said: no rules exempt it, so nothing else changes."""
        if not container.user:
            return []
        prefix = run_as(container.user)
        if can_run(prefix):
            return prefix
        self.notes.append(
            f"container {container.name}: user {container.user} cannot run {sys.executable} "
            "here; the gateway's proxy runs as root (a gateway's task has no iptables rules)"
        )
        return []

    # -- set-up and tear-down -------------------------------------------------------------------
    def start(self) -> None:
        network = self.network = TaskNetwork.open(self.task.family, self.subnet)
        self.description = f"awsvpc mode (namespace {network.namespace}, {network.address})"
        network.write_hosts({name: SERVICE_ADDRESS for name in self._service_names()})
        if self.task.intercepted:
            self._install_rules(network)
        self._start_relay(network)

    def _install_rules(self, network: TaskNetwork) -> None:
        """``appmesh-proxy iptables apply`` in the namespace, as the ECS agent applied the
        rules before the first container (the EKS variables carry the same properties)."""
        env = {k: v for k, v in os.environ.items() if k not in _RULE_VARIABLES.values()}
        for prop, variable in _RULE_VARIABLES.items():
            if prop in self.task.proxy_properties:
                env[variable] = self.task.proxy_properties[prop]
        if self._extra_gid is not None:
            env["APPMESH_IGNORE_GID"] = self._extra_gid
        command = network.wrap([sys.executable, "-m", "proxy.main", "iptables", "apply"])
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise TaskDefinitionError(
                f"the proxyConfiguration's iptables rules failed: {result.stderr.strip()}"
            )

    def _start_relay(self, network: TaskNetwork) -> None:
        relay = self.relay = Relay()
        parts = urlsplit(self.endpoint)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        relay.tcp(socket_in(network.path, socket.SOCK_STREAM, port), host, port)
        daemon = _xray_daemon(self.endpoint)
        if daemon is not None and not any(is_xray_daemon(c) for c in self.task.containers):
            daemon_host, daemon_port = daemon
            bound = socket_in(network.path, socket.SOCK_DGRAM, daemon_port)
            relay.udp(bound, daemon_host, daemon_port)

    def close(self) -> None:
        if self.relay is not None:
            self.relay.close()
        if self.network is not None:
            self.network.close()

    # -- per container -------------------------------------------------------------------------
    def argv(self, container: Container, program: list[str]) -> list[str]:
        assert self.network is not None, "start() first"
        return self.inside([*self._users.get(container.name, []), *program])

    def inside(self, command: list[str]) -> list[str]:
        """A command as run inside the task (a container, or its health check)."""
        assert self.network is not None, "start() first"
        return self.network.wrap(command)

    def xray_port_taken(self, port: int) -> bool:
        return False  # the task's own 127.0.0.1: serve's daemon is relayed only without one

    def environment(self, container: Container, env: dict[str, str]) -> dict[str, str]:
        assert self.network is not None, "start() first"
        if container.name == self.task.proxy_container:
            ingress, egress = _ports(self.task)
            _default(env, "APPMESH_XDS_ENDPOINT", self.control_plane)
            env.setdefault("APPMESH_INGRESS_PORT", ingress)
            env.setdefault("APPMESH_EGRESS_PORT", egress)
            env.setdefault("APPMESH_INGRESS_ADDRESS", f"{self.network.address}:{ingress}")
        return env

    def _service_names(self) -> list[str]:
        """The virtual services of the proxy's mesh: the names the apps will call."""
        from appmesh_api.views.endpoint import client

        mesh = _mesh_of(self.task)
        if mesh is None:
            return []
        try:
            pages = client("appmesh", self.endpoint).get_paginator("list_virtual_services")
            return [
                service["virtualServiceName"]
                for page in pages.paginate(meshName=mesh)
                for service in page["virtualServices"]
            ]
        except Exception as exc:  # the task still runs; the apps' names may not resolve
            self.say(f"  could not list the virtual services of mesh {mesh}: {exc}")
            return []


def placement(
    mode: str, task: TaskDefinition, endpoint: str, subnet: str, say: Say
) -> Explicit | Awsvpc:
    """``auto`` is awsvpc when this machine can run it (root, ip, iptables, setpriv, and a
    proxy user the rules can exempt), and says why when it falls back to explicit."""
    if mode == "explicit":
        return Explicit(task, endpoint)
    missing = missing_tools()
    try:
        if missing:
            raise TaskDefinitionError(
                f"awsvpc mode needs {', '.join(missing)}; run as root with iproute2, "
                "iptables and setpriv installed, or use --network-mode explicit"
            )
        return Awsvpc(task, endpoint, subnet, say)
    except TaskDefinitionError as exc:
        if mode == "awsvpc":
            raise
        if not missing:  # a root user would expect awsvpc: say why not
            say(f"  not using awsvpc mode: {exc}")
        return Explicit(task, endpoint)


def _inside(endpoint: str) -> str:
    """The endpoint as a task sees it: the relay on its own 127.0.0.1, same port and path."""
    parts = urlsplit(endpoint)
    port = parts.port or 80
    return urlunsplit((parts.scheme, f"127.0.0.1:{port}", parts.path, "", ""))


def _mesh_of(task: TaskDefinition) -> str | None:
    if not task.proxy_container:
        return None
    env = task.container(task.proxy_container).environment
    name = env.get("APPMESH_RESOURCE_ARN") or env.get("APPMESH_VIRTUAL_NODE_NAME") or ""
    parts = name.split(":")[-1].split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "mesh" else None


def _xray_daemon(endpoint: str) -> tuple[str, int] | None:
    """Where the control plane's X-Ray daemon listens, if it runs one."""
    try:
        with urllib.request.urlopen(f"{endpoint.rstrip('/')}/_appmesh/health", timeout=5) as r:
            daemon = json.loads(r.read()).get("xray_daemon")
    except (OSError, ValueError):
        return None
    if not daemon:
        return None
    host, _, port = str(daemon).rpartition(":")
    return ("127.0.0.1" if host in ("", "0.0.0.0") else host), int(port)


def _proxy_user(task: TaskDefinition) -> tuple[list[str], str | None, str]:
    """setpriv for the proxy, a group the rules must exempt besides the task's, and what
    to say. The proxy runs as the ignored uid (App Mesh's 1337) when that user can run
    this Python. When it cannot (an interpreter under a private home), it runs as root in
    the ignored group: the task's IgnoredGID, else a group numbered as the IgnoredUID,
    which the rules then exempt too, so the proxy's own traffic is never intercepted (it
    would loop) and the task's containers, which run in other groups, still are."""
    props = task.proxy_properties
    uid, gid = props.get("IgnoredUID"), props.get("IgnoredGID")
    if not uid and not gid:
        uid = "1337"
    if uid and can_run(as_uid := ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}"]):
        return [*as_uid, "--clear-groups"], None, ""
    if gid:
        note = (
            ""
            if not uid
            else (
                f"the proxy runs as root in IgnoredGID {gid}: IgnoredUID {uid} cannot run "
                f"{sys.executable} here"
            )
        )
        return ["setpriv", f"--regid={gid}", "--clear-groups"], None, note
    note = (
        f"the proxy runs as root in group {uid}, and the rules exempt that group too: "
        f"IgnoredUID {uid} cannot run {sys.executable} here (set IgnoredGID to choose the group)"
    )
    return ["setpriv", f"--regid={uid}", "--clear-groups"], uid, note


def run_as(user: str) -> list[str]:
    """setpriv for ECS's ``user``: ``uid``, ``uid:gid``, ``name`` or ``name:group``."""
    name, _, group = user.partition(":")
    try:
        if name.isdigit():
            uid = int(name)
            primary = int(group) if group.isdigit() else _gid_of(uid)
        else:
            entry = pwd.getpwnam(name)
            uid, primary = entry.pw_uid, entry.pw_gid
        if group and not group.isdigit():
            primary = grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise TaskDefinitionError(f"user {user}: no such user or group on this machine") from exc
    return ["setpriv", f"--reuid={uid}", f"--regid={primary}", "--clear-groups"]


def _gid_of(uid: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:  # a bare number, as containers use: its group is the same number
        return uid


def is_xray_daemon(container: Container) -> bool:
    """A container of AWS's X-Ray daemon image (public.ecr.aws/xray/aws-xray-daemon,
    amazon/aws-xray-daemon, or a copy in a registry of one's own)."""
    return re.search(r"(^|/)aws-xray-daemon(:|@|$)", container.image) is not None


def _default(env: dict[str, str], key: str, value: str) -> None:
    """Set ``key`` unless the container sets it to something (empty counts as unset, as
    for the Envoy image's agent)."""
    if not env.get(key, "").strip():
        env[key] = value


def can_run(prefix: list[str]) -> bool:
    """Whether ``prefix`` can start this interpreter with our packages (a user that cannot
    read the interpreter's prefix falls back to a bare standard library)."""
    code = f"import sys, proxy.server; sys.exit(sys.prefix != {sys.prefix!r})"
    groups = [] if "--clear-groups" in prefix else ["--clear-groups"]
    command = [*prefix, *groups, sys.executable, "-c", code]
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
