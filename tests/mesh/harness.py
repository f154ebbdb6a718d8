"""Run a real mesh on 127.0.0.1: example apps and appmesh-proxy sidecars as processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from appmesh_api.localports import wait_for_port
from tests.conftest import free_port

COLOR_APP = str(Path(__file__).with_name("color_app.py"))
T = TypeVar("T")


@dataclass
class Proxy:
    name: str
    ingress: int
    egress: int
    admin: int
    process: subprocess.Popen

    def admin_get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}{path}", timeout=5) as reply:
            return reply.read().decode()

    def stat(self, name: str) -> int:
        for line in self.admin_get("/stats").splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0

    def ingress_ssl(self, name: str) -> int:
        """A TLS counter (``handshake``, ``fail_verify_san``, ...) of the ingress listener."""
        return self.stat(f"listener.127.0.0.1_{self.ingress}.ssl.{name}")


@dataclass
class Mesh:
    """Processes for one test's mesh; everything is stopped by ``close``."""

    endpoint: str
    account: str
    mesh: str
    tmp: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def app(
        self, name: str, failure_rate: float = 0.0, script: str = COLOR_APP, args: tuple = ()
    ) -> int:
        """Start ``script NAME PORT FAILURE_RATE *args`` on a free port; returns the port."""
        port = free_port()
        log = (self.tmp / f"app-{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, script, name, str(port), str(failure_rate), *map(str, args)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        wait_for_port(port, process, timeout=20)
        return port

    def proxy(
        self,
        node: str,
        kind: str = "virtualNode",
        drain_seconds: float = 0,
        env: dict[str, str] | None = None,
    ) -> Proxy:
        """Start an ``appmesh-proxy`` for ``node``; ``env`` adds to its environment."""
        ingress, egress, admin = free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "APPMESH_RESOURCE_ARN": (
                f"arn:aws:appmesh:us-east-1:{self.account}:mesh/{self.mesh}/{kind}/{node}"
            ),
            "APPMESH_XDS_ENDPOINT": self.endpoint,
            "APPMESH_INGRESS_PORT": str(ingress),
            "APPMESH_EGRESS_PORT": str(egress),
            "ENVOY_ADMIN_ACCESS_PORT": str(admin),
            "APPMESH_LISTEN_ADDRESS": "127.0.0.1",
            "LISTENER_DRAIN_WAIT_TIME_S": str(drain_seconds),
            **(env or {}),
        }
        log = (self.tmp / f"proxy-{node}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy.main"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        proxy = Proxy(node, ingress, egress, admin, process)
        wait_for_port(admin, process, timeout=20)
        self.wait_live(proxy)
        return proxy

    @staticmethod
    def wait_live(proxy: Proxy, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = json.loads(proxy.admin_get("/server_info"))
            if info.get("state") == "LIVE":
                return
            time.sleep(0.05)
        raise RuntimeError(f"proxy {proxy.name} never became LIVE")

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def wait_for(check: Callable[[], T], timeout: float = 15.0) -> T:
    """Poll ``check`` every 0.1 s until it returns something truthy or ``timeout`` passes;
    its last value either way, for the caller to assert on."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def get(
    port: int, path: str, host: str, headers: dict[str, str] | None = None, timeout: float = 10
):
    """One HTTP GET through a proxy port with a Host header; returns (status, headers, body)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Host": host, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()
