"""Both stores under the API tests: modules in ``BOTH_STORES`` run once on SQLite and
once on DynamoDB (moto's real server on 127.0.0.1 in a process of its own; appmesh-local
talks to it with boto3), so neither store drifts from the other."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import boto3
import pytest

from appmesh_api.dynamo import local_dynamodb_command
from appmesh_api.localports import free_port, wait_for_port
from tests.conftest import Server, start_server

BOTH_STORES = {
    "test_operations",
    "test_idempotency",
    "test_pagination",
    "test_change_feed",
    "test_references",
    "test_quotas",
    "test_errors",
    "test_durability",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "server" in metafunc.fixturenames and module in BOTH_STORES:
        metafunc.parametrize("store_kind", ["sqlite", "dynamodb"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def store_kind(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def dynamodb_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server (real HTTP on 127.0.0.1, its own process) standing in for DynamoDB."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    # Serial moto: see appmesh_api.localdynamo for why.
    process = subprocess.Popen(local_dynamodb_command(port), stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(port, process, "moto's server", timeout=30)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)
    log.close()


def dynamodb_store(endpoint: str, table: str | None = None) -> str:
    table = table or f"appmesh-{uuid.uuid4().hex[:8]}"
    return f"dynamodb://{table}?endpoint={endpoint}&region=us-east-1"


def table_client(endpoint: str):
    """A DynamoDB client on moto's server, for looking at the table behind the store."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def table_of(store: str) -> str:
    """The table a ``dynamodb://TABLE?...`` store URL names."""
    return store.split("://", 1)[1].split("?", 1)[0]


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, store_kind: str, request: pytest.FixtureRequest
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"server-{store_kind}")
    extra: list[str] = []
    if store_kind == "dynamodb":
        endpoint = request.getfixturevalue("dynamodb_endpoint")
        extra = ["--store", dynamodb_store(endpoint), "--create-table"]
    running = start_server(tmp, *extra, data_dir=tmp / "data")
    yield running
    running.stop()
