"""Shared fixtures: a real appmesh-local server over real sockets, and real clients.

The server runs as a subprocess (``appmesh-local serve``) exactly as a user starts
it. Each test gets its own 12-digit access key, which appmesh-local treats as the
account id, so tests never see each other's meshes or quotas.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from appmesh_api.localports import free_port, wait_for_port

REGION = "us-east-1"


@dataclass
class Server:
    """A running ``appmesh-local serve`` process."""

    port: int
    xds_port: int
    xray_daemon_port: int
    process: subprocess.Popen
    data_dir: Path | None
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(tmp: Path, *extra: str, data_dir: Path | None = None, port: int = 0) -> Server:
    """Start a server and wait until it answers; fail loudly with its log if it does not."""
    port = port or free_port()
    where = ["--data-dir", str(data_dir)] if data_dir else ["--in-memory"]
    log_path = tmp / f"server-{port}-{time.monotonic_ns()}.log"
    xds_port, xray_daemon_port = free_port(), free_port()
    command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--port", str(port), *where]
    command += ["--xds-port", str(xds_port), "--xray-daemon-port", str(xray_daemon_port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, *extra], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    server = Server(port, xds_port, xray_daemon_port, process, data_dir, log_path)
    try:
        wait_for_port(port, process, "the server", timeout=30)
    except RuntimeError as problem:
        server.stop()
        raise RuntimeError(f"{problem}:\n{server.log()}") from None
    return server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("server")
    running = start_server(tmp, data_dir=tmp / "data")
    yield running
    running.stop()


def new_account() -> str:
    return str(random.randint(100000000000, 999999999999))


@pytest.fixture
def account() -> str:
    return new_account()


ClientFactory = Callable[..., object]


def make_client(endpoint: str, service: str, account: str, **config: object):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=account,
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}, **config),
    )


@pytest.fixture
def appmesh(server: Server, account: str):
    """An App Mesh client for a fresh account of its own."""
    return make_client(server.endpoint, "appmesh", account)


@pytest.fixture
def client_for(server: Server) -> ClientFactory:
    """Build more clients: ``client_for("appmesh", account="210987654321")``."""

    def build(service: str = "appmesh", account: str | None = None, **config: object):
        return make_client(server.endpoint, service, account or new_account(), **config)

    return build
