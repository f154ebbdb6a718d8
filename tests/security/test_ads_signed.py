"""gRPC ADS over TLS with the signature App Mesh's Envoy image sent, verified.

The image's Envoy reached its management server with Google gRPC over TLS and signed every
call with the ``envoy.grpc_credentials.aws_iam`` call credentials. These tests drive a real
``serve --verify-signatures --xds-tls-port`` with a grpcio client that signs the same
canonical request with botocore (``tests.signing.AwsIamPlugin``) over a TLS channel that
trusts only the CA the server exported, and check that only a valid signature of the
node's own account streams config, and that a refused stream registers nothing.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from appmesh_api.localports import free_port
from tests.api.helpers import build_mesh
from tests.certificates import Authority
from tests.conftest import Server, new_account, start_server
from tests.mesh.harness import Mesh
from tests.signing import ADS_METHOD, AwsIamPlugin, aws_iam_metadata, signed_headers

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
KEY, SECRET = "AKIAENVOYTASKROLE", "envoy-task-secret"
OTHER_KEY, OTHER_SECRET = "AKIAOTHERACCOUNT", "other-secret"


@dataclass
class Guarded:
    server: Server
    tls_port: int
    account: str
    other: str
    ca_pem: bytes

    def arn(self, account: str | None = None) -> str:
        return f"arn:aws:appmesh:us-east-1:{account or self.account}:mesh/prey/virtualNode/blue"


def _serve(tmp: Path, data: Path, tls_port: int, account: str, other: str, *extra: str) -> Server:
    return start_server(
        tmp,
        "--verify-signatures",
        "--credentials",
        f"{KEY}={SECRET},{OTHER_KEY}={OTHER_SECRET}",
        "--account",
        f"{KEY}={account},{OTHER_KEY}={other}",
        "--xds-tls-port",
        str(tls_port),
        *extra,
        data_dir=data,
    )


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    tmp = tmp_path_factory.mktemp("ads-tls")
    account, other, tls_port = new_account(), new_account(), free_port()
    server = _serve(tmp, tmp / "data", tls_port, account, other)
    try:
        appmesh = boto3.client(
            "appmesh",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
        )
        build_mesh(appmesh, "prey")
        ca_pem = (tmp / "data" / "ads-tls" / "ca.pem").read_bytes()
        yield Guarded(server, tls_port, account, other, ca_pem)
    finally:
        server.stop()


def _tls_channel(
    port: int, ca_pem: bytes, plugin: AwsIamPlugin | None, name: str | None = None
) -> grpc.aio.Channel:
    """A TLS channel trusting only ``ca_pem`` (checking the name ``name`` if given), with
    the plugin's signature on every call, as Envoy's Google gRPC client makes them."""
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    if plugin is not None:
        call = grpc.metadata_call_credentials(plugin, name="aws_iam")
        credentials = grpc.composite_channel_credentials(credentials, call)
    options = [("grpc.ssl_target_name_override", name)] if name else None
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options)


def _stream(
    make_channel, arn: str, metadata: tuple = (), ingress: str = "127.0.0.1:15000"
) -> grpc.StatusCode | str:
    """Open one ADS stream, ask for listeners (registering ``ingress`` as the node's
    endpoint); the type URL answered, or the status code."""

    async def scenario() -> grpc.StatusCode | str:
        async with make_channel() as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources(metadata=metadata or None)
            node = base_pb2.Node(id=arn, cluster=arn)
            node.metadata.update({"appmesh_local.ingress_address": ingress})
            try:  # a refused stream may already be closed when the request is written
                await call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=LISTENER))
                response = await asyncio.wait_for(call.read(), 10)
            except grpc.aio.AioRpcError as error:
                if error.code() is not grpc.StatusCode.INTERNAL:
                    return error.code()
                # the write raced the server's refusal and grpc core reports that as its own
                # INTERNAL error: ask again without writing, a refusal comes before any request
                again = stub.StreamAggregatedResources(metadata=metadata or None)
                try:
                    await asyncio.wait_for(again.read(), 10)
                except grpc.aio.AioRpcError as refused:
                    return refused.code()
                return grpc.StatusCode.INTERNAL
            call.cancel()
            return str(response.type_url)

    return asyncio.run(scenario())


def _signed(guarded: Guarded, key: str = KEY, secret: str = SECRET, host: str | None = None):
    plugin = AwsIamPlugin(key, secret, host)
    return lambda: _tls_channel(guarded.tls_port, guarded.ca_pem, plugin)


def _proxies(guarded: Guarded) -> list[dict]:
    url = f"{guarded.server.endpoint}/_appmesh/proxies"
    request = urllib.request.Request(url, headers=signed_headers("GET", url, b"", KEY, SECRET))
    with urllib.request.urlopen(request, timeout=5) as reply:
        return list(json.loads(reply.read())["proxies"])


def test_a_stream_signed_like_envoys_aws_iam_plugin_gets_its_config_over_tls(
    guarded: Guarded,
) -> None:
    plugin = AwsIamPlugin(KEY, SECRET)
    channel = lambda: _tls_channel(guarded.tls_port, guarded.ca_pem, plugin)  # noqa: E731
    assert _stream(channel, guarded.arn()) == LISTENER
    # what gRPC core handed the plugin, and so what the signature covers
    assert plugin.signed_urls[0] == f"https://127.0.0.1:{guarded.tls_port}{ADS_METHOD}"


def test_unsigned_over_tls_is_permission_denied(guarded: Guarded) -> None:
    channel = lambda: _tls_channel(guarded.tls_port, guarded.ca_pem, None)  # noqa: E731
    assert _stream(channel, guarded.arn()) == grpc.StatusCode.PERMISSION_DENIED


def test_a_claimed_account_without_a_signature_is_permission_denied(guarded: Guarded) -> None:
    claim = (
        f"AWS4-HMAC-SHA256 Credential={guarded.account}/20260101/us-east-1/appmesh/"
        f"aws4_request, SignedHeaders=host, Signature={'0' * 64}"
    )
    channel = lambda: _tls_channel(guarded.tls_port, guarded.ca_pem, None)  # noqa: E731
    outcome = _stream(channel, guarded.arn(), (("authorization", claim),))
    assert outcome == grpc.StatusCode.PERMISSION_DENIED


def test_a_wrong_secret_is_refused_before_any_registration(guarded: Guarded) -> None:
    decoy = "10.66.6.6:15000"  # an address the attacker wants other nodes to route to
    for channel in (_signed(guarded, secret="not-the-secret"), _signed(guarded, "AKIAUNKNOWN")):
        outcome = _stream(channel, guarded.arn(), ingress=decoy)
        assert outcome == grpc.StatusCode.PERMISSION_DENIED
    assert all(p["ingressAddress"] != decoy for p in _proxies(guarded))


def test_a_valid_signature_of_another_account_is_permission_denied(guarded: Guarded) -> None:
    foreign = _signed(guarded, OTHER_KEY, OTHER_SECRET)
    assert _stream(foreign, guarded.arn()) == grpc.StatusCode.PERMISSION_DENIED


def test_a_signature_made_for_another_host_is_refused(guarded: Guarded) -> None:
    replayed = _signed(guarded, host="appmesh-envoy-management.us-east-1.amazonaws.com")
    assert _stream(replayed, guarded.arn()) == grpc.StatusCode.PERMISSION_DENIED


def test_the_plaintext_port_accepts_the_same_signature(guarded: Guarded) -> None:
    """gRPC sends call credentials only over TLS; a client that signs by hand over the
    plaintext port is verified the same way."""
    port = guarded.server.xds_port
    url = f"http://127.0.0.1:{port}{ADS_METHOD}"
    metadata = aws_iam_metadata(url, KEY, SECRET)
    channel = lambda: grpc.aio.insecure_channel(f"127.0.0.1:{port}")  # noqa: E731
    assert _stream(channel, guarded.arn(), metadata) == LISTENER
    forged = aws_iam_metadata(url, KEY, "wrong")
    assert _stream(channel, guarded.arn(), forged) == grpc.StatusCode.PERMISSION_DENIED


def test_the_ca_is_exported(guarded: Guarded) -> None:
    url = f"{guarded.server.endpoint}/_appmesh/ads-ca.pem"
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.read() == guarded.ca_pem
    printed = subprocess.run(
        [sys.executable, "-m", "appmesh_api.cli", "ads-ca", "--endpoint", guarded.server.endpoint],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert printed.stdout == guarded.ca_pem


def test_the_ca_a_task_trusts_survives_a_restart(tmp_path: Path) -> None:
    """The CA stays in the data directory; the restarted server's new certificate is
    issued by it, so a task that trusted it before still connects and is verified."""
    account, other, data = new_account(), new_account(), tmp_path / "data"
    first = _serve(tmp_path, data, free_port(), account, other)
    try:
        appmesh = boto3.client(
            "appmesh",
            endpoint_url=first.endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
        )
        build_mesh(appmesh, "prey")
        trusted = (data / "ads-tls" / "ca.pem").read_bytes()
    finally:
        first.stop()
    tls_port = free_port()
    again = _serve(tmp_path, data, tls_port, account, other)
    try:
        assert (data / "ads-tls" / "ca.pem").read_bytes() == trusted
        arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/prey/virtualNode/blue"
        channel = lambda: _tls_channel(tls_port, trusted, AwsIamPlugin(KEY, SECRET))  # noqa: E731
        assert _stream(channel, arn) == LISTENER
    finally:
        again.stop()


def test_a_certificate_given_on_the_command_line_is_served(tmp_path: Path) -> None:
    authority = Authority(tmp_path)
    leaf = authority.issue("ads.local.test", ["localhost"])
    tls_port, account = free_port(), new_account()
    server = start_server(
        tmp_path,
        "--xds-tls-port",
        str(tls_port),
        "--xds-tls-cert",
        str(leaf.chain),
        "--xds-tls-key",
        str(leaf.key),
    )
    try:
        appmesh = boto3.client(
            "appmesh",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=account,
            aws_secret_access_key="local",
        )
        build_mesh(appmesh, "prey")
        arn = f"arn:aws:appmesh:us-east-1:{account}:mesh/prey/virtualNode/blue"
        plugin = AwsIamPlugin(account, "local")
        ca = authority.pem.read_bytes()
        channel = lambda: _tls_channel(tls_port, ca, plugin, "localhost")  # noqa: E731
        assert _stream(channel, arn) == LISTENER
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server.endpoint}/_appmesh/ads-ca.pem", timeout=5)
        assert refused.value.code == 404
    finally:
        server.stop()


def test_a_half_given_certificate_stops_serve(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--in-memory"]
    command += ["--xds-tls-port", str(free_port()), "--xds-tls-cert", str(tmp_path / "x.pem")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--xds-tls-key" in result.stderr


def test_signed_stream_setup_costs_little(guarded: Guarded) -> None:
    """Setting up a verified stream stays in the same order as a plaintext claim's."""
    start = time.perf_counter()
    for _ in range(5):
        assert _stream(_signed(guarded), guarded.arn()) == LISTENER
    per_stream = (time.perf_counter() - start) / 5
    assert per_stream < 1.0, f"{per_stream * 1000:.0f} ms per signed TLS stream"


def test_a_session_token_is_signed_along(guarded: Guarded) -> None:
    """Task-role credentials carry a session token, which the plugin signs as
    ``x-amz-security-token``; changing it after signing breaks the signature."""
    port = guarded.server.xds_port
    url = f"http://127.0.0.1:{port}{ADS_METHOD}"
    metadata = aws_iam_metadata(url, KEY, SECRET, token="session-token")
    assert ("x-amz-security-token", "session-token") in metadata
    channel = lambda: grpc.aio.insecure_channel(f"127.0.0.1:{port}")  # noqa: E731
    assert _stream(channel, guarded.arn(), metadata) == LISTENER
    swapped = tuple((k, "another-token" if k == "x-amz-security-token" else v) for k, v in metadata)
    assert _stream(channel, guarded.arn(), swapped) == grpc.StatusCode.PERMISSION_DENIED


def _delta_sidecar(guarded: Guarded, tmp: Path, secret: str) -> tuple[Mesh, dict[str, str]]:
    """A mesh harness for ``blue`` and the environment of its sidecar on Delta ADS over
    the TLS port, trusting only the server's CA, signing with ``KEY`` and ``secret``."""
    ca = tmp / "ads-ca.pem"
    ca.write_bytes(guarded.ca_pem)
    env = {
        "APPMESH_XDS_DELTA": "1",
        "APPMESH_XDS_ENDPOINT": f"https://127.0.0.1:{guarded.tls_port}",
        "SSL_CERT_FILE": str(ca),
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": secret,
    }
    return Mesh(guarded.server.endpoint, guarded.account, "prey", tmp), env


def test_appmesh_proxy_on_delta_ads_streams_over_tls_with_a_verified_signature(
    guarded: Guarded, tmp_path: Path
) -> None:
    """The sidecar's own gRPC (h2 over TLS, SigV4 of the Delta method's path) against
    ``serve --verify-signatures --xds-tls-port``: it gets its config and goes LIVE."""
    mesh, env = _delta_sidecar(guarded, tmp_path, SECRET)
    try:
        blue = mesh.proxy("blue", env=env)
        assert blue.stat("control_plane.delta.streams") == 1
        assert blue.stat("control_plane.delta.resources_received") >= 3
        assert blue.stat("control_plane.delta.nacks") == 0
        assert f"lds_ingress_127.0.0.1_{blue.ingress}" in blue.admin_get("/config_dump")
    finally:
        mesh.close()


def test_appmesh_proxy_on_delta_ads_with_a_wrong_secret_is_refused(
    guarded: Guarded, tmp_path: Path
) -> None:
    mesh, env = _delta_sidecar(guarded, tmp_path, "not-the-secret")
    try:
        with pytest.raises(RuntimeError, match="never became LIVE"):
            mesh.proxy("blue", env=env)
        log = (tmp_path / "proxy-blue.log").read_text()
        assert "PERMISSION_DENIED: InvalidSignatureException" in log, log
        # Said once: each retry connects and is refused again, and says nothing more.
        assert log.count("unreachable") == 1 and "reachable again" not in log, log
    finally:
        mesh.close()
