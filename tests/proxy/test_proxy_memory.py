"""What a sidecar loads at start: only what its configuration needs.

A sidecar is one process per task or pod, so its memory is paid once per application
instance. ``appmesh-proxy`` is started here as a real process from a bootstrap, gets one
App Mesh virtual node (one listener, three clusters) over REST xDS from a control plane
on 127.0.0.1, carries a request, and on SIGTERM writes the modules it had loaded. What
its configuration does not use must not be among them: the heavy libraries are loaded
only by the features that need them (h2 by HTTP/2, RE2 by a regex, botocore by the
CloudWatch sink, cryptography and protobuf never). The memory it takes is measured by
``benchmarks/proxy_memory.py``, not asserted here.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotocoreCredentials
from proxy_harness import backends, client, fetch

from appmesh_api.localports import free_port
from envoy_bootstrap.bootstrap import build_bootstrap
from envoy_bootstrap.snapshot import MeshSnapshot, NodeIdentity
from envoy_bootstrap.translate import translate
from proxy.xds_auth import Credentials, sigv4_headers

ROOT = Path(__file__).resolve().parents[2]
NODE = "arn:aws:appmesh:us-east-1:123456789012:mesh/demo/virtualNode/front"
#: Loaded by features this configuration does not use, or by none at all.
NOT_AT_START = (
    "aiohttp",
    "botocore",
    "boto3",
    "h2",
    "hpack",
    "re2",
    "cryptography",
    "google.protobuf",
    "grpc",  # the local SDS agent speaks gRPC over h2 (proxy.sds_client)
    "yaml",
    "envoy_bootstrap.translate",
    "email",
    "hashlib",  # SigV4 signs on the built-in SHA-256 (awssigv4/sha256.py)
    "hmac",
    "decimal",  # durations are formatted with integers
    "datetime",  # only /certs and certificate reading use it
)
#: Modules a sidecar carrying HTTP/1.1 cannot do without (the dump is not empty).
NEEDED = ("uvloop", "httptools", "proxy.codec.http1", "proxy.upstream.http1", "ssl")


def front_resources(app_port: int, peer_port: int, ingress: int, egress: int) -> list[dict]:
    """Node ``front`` (one HTTP listener on the app's port) with one backend, ``peer``:
    ingress and egress listeners, and three clusters (the app, the peer, amazonaws)."""

    def node(name: str, port: int, backends: tuple[str, ...] = ()) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "serviceDiscovery": {"dns": {"hostname": f"{name}.demo.local"}},
            "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
            "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
        }
        return {"meshName": "demo", "virtualNodeName": name, "spec": spec}

    provider = {"virtualNode": {"virtualNodeName": "peer"}}
    snapshot = MeshSnapshot(
        mesh={"meshName": "demo", "spec": {}},
        virtual_nodes={
            "front": node("front", app_port, ("peer.demo.local",)),
            "peer": node("peer", peer_port),
        },
        virtual_routers={},
        routes={},
        virtual_services={"peer.demo.local": {"spec": {"provider": provider}}},
        virtual_gateways={},
        gateway_routes={},
        registered_endpoints={"peer": (("127.0.0.1", peer_port),)},
    )
    identity = NodeIdentity("virtualNode", "front", ingress, egress, "127.0.0.1", "127.0.0.1")
    return [dict(resource) for resource in translate(snapshot, identity).all()]


class ControlPlane:
    """REST xDS on 127.0.0.1 serving one fixed version of ``resources``."""

    def __init__(self, resources: list[dict]) -> None:
        self.resources = resources
        self.runner: web.AppRunner | None = None

    async def discovery(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("version_info") == "1":  # current: hold the long-poll briefly
            await asyncio.sleep(min(float(request.query.get("wait", "1")), 1.0))
            return web.Response(status=304)
        names = set(body.get("resource_names") or ())
        found = [
            r
            for r in self.resources
            if r["@type"] == body["type_url"]
            and (not names or (r.get("name") or r.get("cluster_name")) in names)
        ]
        answer = {"version_info": "1", "resources": found, "type_url": body["type_url"]}
        return web.json_response({**answer, "nonce": "n1"})

    async def start(self) -> int:
        app = web.Application()
        app.router.add_post("/v3/discovery:{kind}", self.discovery)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


_DUMP_MODULES = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: open(sys.argv[1], 'w').write(json.dumps(sorted(sys.modules))))\n"
    "from proxy.main import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


async def test_a_sidecar_with_one_listener_and_three_clusters_loads_no_heavy_library(tmp_path):
    async with backends("app", "peer") as (app, peer):
        ingress, egress, admin = free_port(), free_port(), free_port()
        resources = front_resources(app.port, peer.port, ingress, egress)
        clusters = [r for r in resources if r["@type"].endswith("cluster.v3.Cluster")]
        assert len(clusters) == 3, [c["name"] for c in clusters]
        plane = ControlPlane(resources)
        xds_port = await plane.start()
        env = {
            "APPMESH_RESOURCE_ARN": NODE,
            "ENVOY_ADMIN_ACCESS_PORT": str(admin),
            "APPMESH_INGRESS_PORT": str(ingress),
            "APPMESH_EGRESS_PORT": str(egress),
        }
        path = tmp_path / "bootstrap.json"
        path.write_text(json.dumps(build_bootstrap(env, f"127.0.0.1:{xds_port}")))
        dump = tmp_path / "modules.json"
        command = [sys.executable, "-c", _DUMP_MODULES, str(dump), "-c", str(path)]
        command += ["--drain-time-s", "0"]
        child_env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen(command, env=child_env, stderr=subprocess.PIPE)
        try:
            async with client() as session:
                await _until_live(session, admin)
                status, _, body = await fetch(session, f"http://127.0.0.1:{ingress}/")
                assert (status, body) == (200, "app")
                status, _, text = await fetch(session, f"http://127.0.0.1:{admin}/clusters")
                assert status == 200 and "cds_egress_demo_peer_http_" in text
        finally:
            child.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.get_running_loop().run_in_executor(
                None, lambda: child.communicate(timeout=20)
            )
            await plane.stop()
        assert child.returncode == 0, stderr.decode()[-2000:]
    loaded = set(json.loads(dump.read_text()))
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in NOT_AT_START))
    assert heavy == [], f"loaded without being needed: {heavy}"
    assert set(NEEDED) <= loaded, sorted(set(NEEDED) - loaded)


async def _until_live(session: aiohttp.ClientSession, admin: int) -> None:
    """Poll the admin's ``/server_info`` (bounded: 10 s) until the sidecar is LIVE."""
    state = ""
    for _ in range(200):
        try:
            _, _, text = await fetch(session, f"http://127.0.0.1:{admin}/server_info")
            state = json.loads(text)["state"]
        except aiohttp.ClientError:
            pass
        if state == "LIVE":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the sidecar is {state or 'not answering'}, not LIVE")


def test_the_xds_signature_is_botocores_signature_for_the_same_request():
    """The proxy signs with its own SigV4 (no botocore at start); it must be the one
    botocore computes, with and without a session token, on http and https, with and
    without a default port."""
    now = 1_764_700_000.0
    for url, token in (
        ("http://127.0.0.1:4567/v3/discovery:listeners?wait=30", None),
        ("https://cp.example:443/v3/discovery:clusters?wait=30", "token/with+chars=="),
        ("http://[::1]:8080/v3/discovery:secrets?wait=5&b=2", None),
    ):
        credentials = Credentials("AKIDEXAMPLE", "secret/key+x", token)
        body = b'{"node": {"id": "x"}}'
        ours = sigv4_headers(credentials, "eu-west-1", "appmesh", url, body, now)
        request = AWSRequest(
            method="POST", url=url, data=body, headers={"content-type": "application/json"}
        )
        request.context["timestamp"] = ours["X-Amz-Date"]
        auth = SigV4Auth(BotocoreCredentials(*credentials), "appmesh", "eu-west-1")
        auth._modify_request_before_signing(request)
        signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)),
                                   request)  # fmt: skip
        auth._inject_signature_to_request(request, signature)
        assert ours == dict(request.headers.items()), url


def test_hmac_sha256_on_the_built_in_sha256_is_the_hmac_modules():
    """awssigv4/sha256.py computes what ``hmac`` and ``hashlib`` do, for keys shorter
    than, as long as and longer than SHA-256's 64-byte block, and long messages."""
    import hashlib
    import hmac

    from awssigv4.sha256 import hmac_sha256, sha256_hex

    for size in (0, 1, 20, 63, 64, 65, 128, 200):
        key = bytes(range(size % 256)) * (size // 256 + 1)
        key = key[:size]
        for message in (b"", b"20261207", b"x" * 1000):
            assert hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()
            assert sha256_hex(key + message) == hashlib.sha256(key + message).hexdigest()


def test_the_date_header_is_written_as_email_utils_writes_it():
    """The proxy formats ``Date`` itself (no email package at start); same text."""
    from email.utils import formatdate

    from proxy.timers import http_date

    for seconds in (0, 951_782_400, 1_764_700_000, 4_102_444_799, *range(0, 10**9, 86_399_937)):
        assert http_date(seconds) == formatdate(seconds, usegmt=True), seconds


async def test_a_finished_http2_stream_is_freed_without_the_cycle_collector():
    """A downstream HTTP/2 stream and its router point at each other; the codec cuts
    that link when the stream is done, so each stream's objects go back to the
    allocator at once instead of piling up until a full collection (which left the
    allocator's arenas at their high-water mark after load). With the cycle collector
    off, no router outlives its stream: none is left among the tracked objects."""
    import gc

    from proxy_envoy import cluster, http_listener, route, vhost
    from proxy_harness import running_proxy
    from test_proxy_http2 import h2_request

    from proxy.router.router import Router

    async with backends("app") as (app,):
        routes = [route({"prefix": "/"}, "app")]
        listener = http_listener("ingress", [vhost("all", ["*"], routes)])
        resources = [cluster("app", [app.port]), listener]
        async with running_proxy(resources) as proxy:
            gc.collect()
            gc.disable()
            try:
                for _ in range(5):
                    status, _, data = await h2_request(proxy.port(), "GET", "/")
                    assert (status, data) == (200, b"app")
                await asyncio.sleep(0.05)  # the loop's callbacks after each response
                left = [o for o in gc.get_objects() if isinstance(o, Router)]
            finally:
                gc.enable()
    assert left == [], f"{len(left)} routers wait for the cycle collector"
