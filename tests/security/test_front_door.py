"""The front door, attacked as a process on the same host would: raw sockets, real clients.

Every request on the control-plane port passes one chain (appmesh_api.frontdoor), so the
limits hold for App Mesh, X-Ray and the side services alike, and refusals come back in
the protocol the client spoke.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import Server, make_client, new_account, start_server
from tests.security.wire import read_reply, request_head, send_raw


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("door"))
    yield running
    running.stop()


def _signed_head(service: str, region: str = "us-east-1") -> str:
    return (
        f"Authorization: AWS4-HMAC-SHA256 Credential={new_account()}/20260101/{region}/"
        f"{service}/aws4_request, SignedHeaders=host, Signature={'0' * 64}"
    )


def test_a_request_head_over_64_kib_gets_431_and_the_server_keeps_serving(door: Server) -> None:
    head = request_head("GET", "/v20190125/meshes", "X-Pad: " + "a" * 100_000)
    reply = send_raw(door.port, head)
    assert reply.status == 431
    appmesh = make_client(door.endpoint, "appmesh", new_account())
    assert appmesh.list_meshes()["meshes"] == []


def test_many_small_headers_count_towards_the_same_head_limit(door: Server) -> None:
    pads = [f"X-Pad-{i}: {'b' * 60}" for i in range(2000)]  # 2000 x ~70 bytes
    assert send_raw(door.port, request_head("GET", "/v20190125/meshes", *pads)).status == 431


def test_a_declared_app_mesh_body_over_1_mib_is_refused_before_it_is_sent(door: Server) -> None:
    head = request_head(
        "PUT", "/v20190125/meshes", "Content-Type: application/json", "Content-Length: 300000000"
    )
    started = time.monotonic()
    reply = send_raw(door.port, head)  # no body follows: the answer must not wait for one
    assert time.monotonic() - started < 5
    assert reply.status == 413
    assert reply.headers["x-amzn-errortype"] == "RequestEntityTooLargeException"
    assert "1048576 bytes" in json.loads(reply.body)["message"]


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(door: Server) -> None:
    head = request_head("PUT", "/v20190125/meshes", "Transfer-Encoding: chunked")
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    with socket.create_connection(("127.0.0.1", door.port), timeout=10) as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:  # far past the limit; the server stops reading
                sock.sendall(chunk)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_reply(sock)
    assert reply.status == 413
    assert sent < 8 * 1024 * 1024


def test_a_side_service_body_over_64_mib_is_refused_in_s3s_own_words(door: Server) -> None:
    head = request_head(
        "PUT", "/bucket/key", _signed_head("s3"), f"Content-Length: {65 * 1024 * 1024}"
    )
    reply = send_raw(door.port, head)
    assert reply.status == 400
    assert b"<Code>EntityTooLarge</Code>" in reply.body


def test_an_x_ray_body_over_5_mib_is_refused_in_x_rays_words(door: Server) -> None:
    head = request_head(
        "POST", "/TraceSegments", _signed_head("xray"), f"Content-Length: {6 * 1024 * 1024}"
    )
    reply = send_raw(door.port, head)
    assert reply.status == 413
    assert "5242880 bytes" in json.loads(reply.body)["Message"]


def test_moto_admin_api_is_closed_on_the_shared_port(door: Server) -> None:
    for method, path in (("GET", "/moto-api/data.json"), ("POST", "/moto-api/reset")):
        reply = send_raw(door.port, request_head(method, path, "Content-Length: 0"))
        assert reply.status == 404, path
        assert b"--moto-admin" in reply.body


def test_moto_admin_api_opens_with_moto_admin(tmp_path: Path) -> None:
    running = start_server(tmp_path, "--moto-admin")
    try:
        reply = send_raw(running.port, request_head("GET", "/moto-api/data.json"))
        assert reply.status == 200
    finally:
        running.stop()


CREATES = [
    ("PUT", "/v20190125/meshes", {"meshName": "m\ud800"}),
    ("PUT", "/v20190125/meshes/m/virtualNodes", {"virtualNodeName": "n\ud800", "spec": {}}),
    ("PUT", "/v20190125/meshes/m/virtualRouters", {"virtualRouterName": "r\udfff", "spec": {}}),
    ("PUT", "/v20190125/meshes/m/virtualServices", {"virtualServiceName": "s\ud800", "spec": {}}),
    (
        "PUT",
        "/v20190125/meshes/m/virtualGateways",
        {"virtualGatewayName": "g\ud800", "spec": {"listeners": []}},
    ),
    (
        "PUT",
        "/v20190125/meshes/m/virtualRouter/r/routes",
        {"routeName": "x\ud800", "spec": {}},
    ),
    (
        "PUT",
        "/v20190125/meshes/m/virtualGateway/g/gatewayRoutes",
        {"gatewayRouteName": "x\ud800", "spec": {}},
    ),
]


@pytest.mark.parametrize(("method", "path", "document"), CREATES)
def test_a_lone_surrogate_in_a_resource_name_is_a_bad_request(
    door: Server, method: str, path: str, document: dict
) -> None:
    body = json.dumps(document).encode()  # json.dumps spells the surrogate "\ud800"
    assert b"\\ud" in body
    head = request_head(method, path, _signed_head("appmesh"), f"Content-Length: {len(body)}")
    reply = send_raw(door.port, head, body)
    assert reply.status == 400, reply.body
    assert reply.headers["x-amzn-errortype"] == "BadRequestException"


def test_bad_utf_8_in_a_body_or_a_path_label_is_a_bad_request(door: Server) -> None:
    body = b'{"meshName": "m\xff"}'
    head = request_head("PUT", "/v20190125/meshes", f"Content-Length: {len(body)}")
    assert send_raw(door.port, head, body).headers["x-amzn-errortype"] == "BadRequestException"
    label = request_head("GET", "/v20190125/meshes/m%ED%A0%80")
    assert send_raw(door.port, label).headers["x-amzn-errortype"] == "BadRequestException"


@pytest.mark.parametrize("region", ["<script>", "xx-evil-1", "us-east-1x"])
def test_a_credential_scope_outside_aws_regions_is_refused(door: Server, region: str) -> None:
    head = request_head("GET", "/v20190125/meshes", _signed_head("appmesh", region))
    reply = send_raw(door.port, head)
    assert reply.status == 403
    assert reply.headers["x-amzn-errortype"] == "InvalidSignatureException"
    assert "valid region" in json.loads(reply.body)["message"]


def test_an_unknown_region_is_refused_in_each_protocols_words(door: Server) -> None:
    with pytest.raises(ClientError) as query:
        make_client_in("sts", door, "xx-evil-1").get_caller_identity()
    assert query.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as s3:
        make_client_in("s3", door, "xx-evil-1").list_buckets()
    assert s3.value.response["Error"]["Code"] == "AuthorizationHeaderMalformed"
    with pytest.raises(ClientError) as cbor:
        make_client_in("cloudwatch", door, "xx-evil-1").list_metrics()
    assert cbor.value.response["Error"]["Code"] == "InvalidSignatureException"


def make_client_in(service: str, server: Server, region: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.endpoint,
        region_name=region,
        aws_access_key_id=new_account(),
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}),
    )
