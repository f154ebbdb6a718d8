"""WebSockets through a mesh: client -> front's egress -> chat's ingress -> echo app.

The mesh is made with boto3 against the control plane; both sidecars are
``appmesh-proxy`` processes configured by its translation, whose HCMs enable the
``websocket`` upgrade (as App Mesh's did) and ``allow_connect`` (beyond App Mesh).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import make_client, new_account
from tests.mesh.harness import Mesh, Proxy
from tests.websocket_peers import MIB, H2WebSocket

PEERS = str(Path(__file__).parent.parent / "websocket_peers.py")
HOST = "chat.mesh.local:8080"


def http_node(port: int, backends: tuple[str, ...] = ()) -> dict:
    return {
        "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": f"node-{port}.mesh.local"}},
        "backends": [{"virtualService": {"virtualServiceName": b}} for b in backends],
    }


@pytest.fixture(scope="module")
def chatmesh(server, tmp_path_factory):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = Mesh(server.endpoint, account, "chat", tmp_path_factory.mktemp("mesh"))
    try:
        appmesh.create_mesh(meshName="chat")
        chat = mesh.app("chat", script=PEERS)
        appmesh.create_virtual_node(meshName="chat", virtualNodeName="chat", spec=http_node(chat))
        front = http_node(mesh.app("front"), backends=("chat.mesh.local",))
        appmesh.create_virtual_node(meshName="chat", virtualNodeName="front", spec=front)
        router = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http"}}]}
        appmesh.create_virtual_router(meshName="chat", virtualRouterName="chat", spec=router)
        action = {"weightedTargets": [{"virtualNode": "chat", "weight": 1}]}
        appmesh.create_route(
            meshName="chat",
            virtualRouterName="chat",
            routeName="main",
            spec={"httpRoute": {"match": {"prefix": "/"}, "action": action}},
        )
        provider = {"virtualRouter": {"virtualRouterName": "chat"}}
        appmesh.create_virtual_service(
            meshName="chat", virtualServiceName="chat.mesh.local", spec={"provider": provider}
        )
        proxies = {name: mesh.proxy(name) for name in ("front", "chat")}
        yield proxies
    finally:
        mesh.close()


def upgrades(proxy: Proxy, stat: str) -> int:
    """One upgrade stat summed over the proxy's HCMs (egress on front, ingress on chat)."""
    total = 0
    for line in proxy.admin_get("/stats").splitlines():
        key, _, value = line.partition(": ")
        if key.startswith("http.") and key.endswith(f".{stat}"):
            total += int(value)
    return total


async def wait_for(predicate, attempts: int = 200) -> None:
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("condition not reached")


def test_echo_text_binary_a_mebibyte_and_both_closes(chatmesh) -> None:
    front, chat = chatmesh["front"], chatmesh["chat"]
    url = f"http://127.0.0.1:{front.egress}/room"

    async def run() -> None:
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.ws_connect(url, headers={"Host": HOST}, max_msg_size=4 * MIB) as ws:
                await ws.send_str("hello mesh")
                assert await ws.receive_str(timeout=5) == "hello mesh"
                await ws.send_bytes(b"\x00\x01\xfe\xff")
                assert await ws.receive_bytes(timeout=5) == b"\x00\x01\xfe\xff"
                big = bytes(range(256)) * (MIB // 256)
                await ws.send_bytes(big)
                assert await ws.receive_bytes(timeout=10) == big
                assert await ws.close()
                assert ws.close_code == aiohttp.WSCloseCode.OK
            async with session.ws_connect(url, headers={"Host": HOST}) as ws:
                await ws.send_str("close-me")
                message = await ws.receive(timeout=5)
                assert message.type == aiohttp.WSMsgType.CLOSE
                assert (message.data, message.extra) == (4001, "server says bye")
        for proxy in (front, chat):
            await wait_for(lambda p=proxy: upgrades(p, "downstream_cx_upgrades_active") == 0)

    before = upgrades(front, "downstream_cx_upgrades_total")
    asyncio.run(run())
    assert upgrades(front, "downstream_cx_upgrades_total") == before + 2
    assert upgrades(chat, "downstream_cx_upgrades_total") >= 2


def test_a_backend_answering_200_reaches_the_client_as_200(chatmesh) -> None:
    url = f"http://127.0.0.1:{chatmesh['front'].egress}/plain"

    async def run() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url, headers={"Host": HOST}):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert asyncio.run(run()) == 200


def test_an_http2_client_speaks_websocket_through_the_mesh(chatmesh) -> None:
    """RFC 8441 into front's egress (h2c), an HTTP/1.1 upgrade from there on."""

    async def run() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", chatmesh["front"].egress)
        try:
            ws = H2WebSocket(reader, writer)
            response = await ws.open("/room", authority=HOST)
            assert dict(response.headers)[":status"] == "200"
            await ws.send(0x1, b"h2 through two sidecars")
            assert await ws.receive() == (0x1, b"h2 through two sidecars")
            await ws.send(0x8, (1000).to_bytes(2, "big"))
            opcode, _ = await ws.receive()
            assert opcode == 0x8
        finally:
            writer.close()

    asyncio.run(run())


@pytest.fixture(scope="module")
def h2mesh(server, tmp_path_factory):
    """chat2 listens ``http2`` and its app is an RFC 8441 server (HTTP/2 only): front's
    cluster to it speaks HTTP/2, so a WebSocket crosses that hop as extended CONNECT."""
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = Mesh(server.endpoint, account, "chat2", tmp_path_factory.mktemp("mesh"))
    try:
        appmesh.create_mesh(meshName="chat2")
        port = mesh.app("chat2", script=PEERS, args=("h2",))
        spec = http_node(port)
        spec["listeners"][0]["portMapping"]["protocol"] = "http2"
        appmesh.create_virtual_node(meshName="chat2", virtualNodeName="chat2", spec=spec)
        front = http_node(mesh.app("front"), backends=("chat2.mesh.local",))
        appmesh.create_virtual_node(meshName="chat2", virtualNodeName="front", spec=front)
        router = {"listeners": [{"portMapping": {"port": 8080, "protocol": "http2"}}]}
        appmesh.create_virtual_router(meshName="chat2", virtualRouterName="chat2", spec=router)
        action = {"weightedTargets": [{"virtualNode": "chat2", "weight": 1}]}
        appmesh.create_route(
            meshName="chat2",
            virtualRouterName="chat2",
            routeName="main",
            spec={"http2Route": {"match": {"prefix": "/"}, "action": action}},
        )
        provider = {"virtualRouter": {"virtualRouterName": "chat2"}}
        appmesh.create_virtual_service(
            meshName="chat2", virtualServiceName="chat2.mesh.local", spec={"provider": provider}
        )
        yield {name: mesh.proxy(name) for name in ("front", "chat2")}
    finally:
        mesh.close()


H2_HOST = "chat2.mesh.local:8080"


def test_an_http1_websocket_crosses_http2_hops_to_an_http2_app(h2mesh) -> None:
    """aiohttp (RFC 6455) into front's egress; extended CONNECT to chat2's sidecar and on
    to its HTTP/2-only app; the app's 200 comes back as the client's 101."""
    front, chat = h2mesh["front"], h2mesh["chat2"]
    url = f"http://127.0.0.1:{front.egress}/room"

    async def run() -> None:
        timeout = aiohttp.ClientTimeout(total=20)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.ws_connect(url, headers={"Host": H2_HOST}) as ws,
        ):
            await ws.send_str("over two http2 hops")
            assert await ws.receive_str(timeout=5) == "over two http2 hops"
            await ws.send_bytes(b"\x07" * 30000)
            assert await ws.receive_bytes(timeout=5) == b"\x07" * 30000
            assert await ws.close()
            assert ws.close_code == aiohttp.WSCloseCode.OK
        for proxy in (front, chat):
            await wait_for(lambda p=proxy: upgrades(p, "downstream_cx_upgrades_active") == 0)

    asyncio.run(run())
    assert upgrades(chat, "downstream_cx_upgrades_total") >= 1
    assert upgrades(chat, "downstream_rq_http2_total") >= 1  # it arrived over HTTP/2


def test_an_http2_websocket_crosses_http2_hops_to_an_http2_app(h2mesh) -> None:
    """RFC 8441 from the client to the app, through both sidecars."""

    async def run() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", h2mesh["front"].egress)
        try:
            ws = H2WebSocket(reader, writer)
            response = await ws.open("/room", authority=H2_HOST)
            assert dict(response.headers)[":status"] == "200"
            await ws.send(0x1, b"h2 all the way")
            assert await ws.receive() == (0x1, b"h2 all the way")
            await ws.send(0x8, (1000).to_bytes(2, "big"))
            opcode, _ = await ws.receive()
            assert opcode == 0x8
        finally:
            writer.close()

    asyncio.run(run())
