"""boto3 clients for the CLI's views, and what to say when the endpoint does not answer.

The views talk to an endpoint as any AWS client would, so they work against a remote
appmesh-local too. Credentials and region come from the usual AWS environment; with none
set, the defaults of ``appmesh-local serve`` (account 123456789012, us-east-1) are used, so
``appmesh-local mesh describe demo`` works in a fresh shell.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError

from appmesh_api.settings import DEFAULT_ACCOUNT, DEFAULT_REGION

DEFAULT_ENDPOINT = "http://127.0.0.1:4567"
#: The errors that mean "nothing is listening there" rather than "the server said no".
UNREACHABLE = (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError)


def default_endpoint() -> str:
    """``$AWS_ENDPOINT_URL`` when set (as boto3 and the aws CLI honour it), else the local one."""
    return os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT


def client(
    service: Literal["appmesh", "xray", "ecs", "logs"], endpoint: str, region: str | None = None
) -> Any:
    """A client that fails fast: one attempt, a short connect timeout."""
    session = boto3.Session()
    key: str | None = None  # None: the session's own credentials
    secret: str | None = None
    if session.get_credentials() is None:
        key, secret = DEFAULT_ACCOUNT, "local"
    return session.client(
        service,
        endpoint_url=endpoint,
        region_name=region or session.region_name or DEFAULT_REGION,
        config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=30),
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def unreachable(endpoint: str) -> str:
    """The message for a refused or timed-out connection, with the command that fixes it."""
    return (
        f"cannot reach {endpoint}: is appmesh-local serve running? start it with "
        "`appmesh-local serve` (or point --endpoint / AWS_ENDPOINT_URL at a running one)"
    )
