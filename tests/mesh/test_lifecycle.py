"""A sidecar's life: control plane outages, restarts, draining on SIGTERM, access logs."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

from tests.conftest import make_client, new_account, start_server
from tests.mesh.harness import Mesh, get
from tests.signing import proxies_of


def build(appmesh, mesh: Mesh, log_path) -> None:
    appmesh.create_mesh(meshName="life")
    port = mesh.app("blue")
    appmesh.create_virtual_node(
        meshName="life",
        virtualNodeName="blue",
        spec={
            "listeners": [{"portMapping": {"port": port, "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "blue.life.local"}},
        },
    )
    appmesh.create_virtual_service(
        meshName="life",
        virtualServiceName="blue.life.local",
        spec={"provider": {"virtualNode": {"virtualNodeName": "blue"}}},
    )
    logging = {
        "accessLog": {
            "file": {
                "path": str(log_path),
                "format": {"json": [
                    {"key": "code", "value": "%RESPONSE_CODE%"},
                    {"key": "method", "value": "%REQ(:METHOD)%"},
                    {"key": "cluster", "value": "%UPSTREAM_CLUSTER%"},
                ]},
            }
        }
    }  # fmt: skip
    appmesh.create_virtual_node(
        meshName="life",
        virtualNodeName="front",
        spec={
            "listeners": [{"portMapping": {"port": mesh.app("front"), "protocol": "http"}}],
            "serviceDiscovery": {"dns": {"hostname": "front.life.local"}},
            "backends": [{"virtualService": {"virtualServiceName": "blue.life.local"}}],
            "logging": logging,
        },
    )
    return port


def test_the_proxy_keeps_serving_through_a_control_plane_outage_and_reconnects(tmp_path):
    data_dir = tmp_path / "state"
    control = start_server(tmp_path, data_dir=data_dir)
    account = new_account()
    mesh = Mesh(control.endpoint, account, "life", tmp_path)
    try:
        appmesh = make_client(control.endpoint, "appmesh", account)
        port = build(appmesh, mesh, tmp_path / "access.log")
        front, _ = mesh.proxy("front"), mesh.proxy("blue")
        host = f"blue.life.local:{port}"
        assert get(front.egress, "/color", host)[2] == "blue"
        started = time.monotonic()
        control.stop()
        # Proxies hold long-polls open; a stop still ends at once, one line, no traceback.
        assert time.monotonic() - started < 5
        stop_log = control.log()
        assert "Traceback" not in stop_log and "Cancel" not in stop_log, stop_log
        assert "App Mesh API stopped" in stop_log
        assert all(get(front.egress, "/color", host)[0] == 200 for _ in range(20))
        deadline = time.monotonic() + 20
        while front.stat("control_plane.connected_state") != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        control = start_server(tmp_path, data_dir=data_dir, port=control.port)
        deadline = time.monotonic() + 60  # back-off is capped at 10 s; restarts are slow under load
        while front.stat("control_plane.connected_state") != 1:
            assert time.monotonic() < deadline, "the proxy never reconnected"
            time.sleep(0.1)
        # The restarted control plane still knows blue's proxy (registrations are saved),
        # so front keeps reaching blue through it while both reconnect.
        answers = [get(front.egress, "/color", host)[2] for _ in range(20)]
        assert answers == ["blue"] * 20
        # The outage was one warning and one recovery line, not one per poll and retry.
        proxy_log = (tmp_path / "proxy-front.log").read_text()
        assert proxy_log.count("unreachable") == 1, proxy_log
        assert proxy_log.count("reachable again") == 1, proxy_log
        assert "Traceback" not in proxy_log
        proxies = proxies_of(control.endpoint, account)
        assert {p["resourceName"] for p in proxies} == {"front", "blue"}
    finally:
        mesh.close()
        control.stop()


def test_access_log_lines_follow_the_nodes_logging_format(server, tmp_path):
    account = new_account()
    mesh = Mesh(server.endpoint, account, "life", tmp_path)
    log_path = tmp_path / "access.log"
    try:
        port = build(make_client(server.endpoint, "appmesh", account), mesh, log_path)
        front, _ = mesh.proxy("front"), mesh.proxy("blue")
        for _ in range(3):
            get(front.egress, "/color", f"blue.life.local:{port}")
        get(front.egress, "/", "nowhere.life.local:80")
        deadline = time.monotonic() + 10
        while not log_path.exists() or len(log_path.read_text().splitlines()) < 4:
            assert time.monotonic() < deadline, "no access log lines"
            time.sleep(0.1)
        entries = [json.loads(line) for line in log_path.read_text().splitlines()]
        assert {"code": "200", "method": "GET", "cluster": f"cds_egress_life_blue_http_{port}"} in [
            {k: str(v) for k, v in e.items()} for e in entries
        ]
        assert any(str(e["code"]) == "404" for e in entries)
    finally:
        mesh.close()


def test_sigterm_lets_an_in_flight_request_finish(server, tmp_path):
    account = new_account()
    mesh = Mesh(server.endpoint, account, "life", tmp_path)
    try:
        port = build(make_client(server.endpoint, "appmesh", account), mesh, tmp_path / "a.log")
        front, blue = mesh.proxy("front"), mesh.proxy("blue", drain_seconds=5)
        result: dict = {}
        request = threading.Thread(
            target=lambda: result.update(
                answer=get(front.egress, "/delay/800", f"blue.life.local:{port}")
            )
        )
        request.start()
        time.sleep(0.3)
        blue.process.send_signal(signal.SIGTERM)
        request.join(timeout=10)
        assert result["answer"][0] == 200 and result["answer"][2] == "blue"
        blue.process.wait(timeout=15)
    finally:
        mesh.close()


def test_envoy_concurrency_runs_workers_that_share_the_ports(server, tmp_path):
    account = new_account()
    mesh = Mesh(server.endpoint, account, "life", tmp_path)
    try:
        port = build(make_client(server.endpoint, "appmesh", account), mesh, tmp_path / "a.log")
        blue = mesh.proxy("blue", env={"ENVOY_CONCURRENCY": "2"})
        deadline = time.monotonic() + 20
        while (
            len(
                subprocess.run(
                    ["pgrep", "-P", str(blue.process.pid)], capture_output=True
                ).stdout.split()
            )
            < 1
        ):
            assert time.monotonic() < deadline, "the second worker never started"
            time.sleep(0.1)
        time.sleep(1.0)  # let the second worker take its config
        answers = [get(blue.ingress, "/color", f"blue.life.local:{port}") for _ in range(40)]
        assert all(status == 200 and body == "blue" for status, _, body in answers)
        # Each connection is new, and the kernel spreads them over both workers' sockets;
        # the admin port shows the first worker's share only.
        assert blue.stat("http.ingress.downstream_rq_total") < 40
    finally:
        mesh.close()
