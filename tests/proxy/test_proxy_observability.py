"""Access logs (text and JSON) and the admin endpoint, as Envoy formats them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from proxy_envoy import cluster, file_access_log, http_listener, route, simple_proxy, vhost
from proxy_harness import backends, client, fetch, running_proxy

TEXT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    '"%REQ(X-AMZN-TRACE-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% '
    "%REQ(USER-AGENT):5%\n"
)


def _logged_proxy(port: int, log: dict) -> list[dict]:
    routes = [route({"prefix": "/app"}, "app")]
    return [
        cluster("app", [port]),
        http_listener("ingress", [vhost("vh", ["*"], routes)], access_log=[log]),
    ]


async def test_text_access_log_line(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    async with backends("app") as (app,):
        resources = _logged_proxy(app.port, file_access_log(str(path), text=TEXT_FORMAT))
        async with running_proxy(resources) as proxy, client() as session:
            headers = {
                "x-amzn-trace-id": "Root=1-abc",
                "Host": "svc.local",
                "User-Agent": "curl/8.0",
            }
            await fetch(session, proxy.url("/app?x=1"), "POST", data=b"12345", headers=headers)
            await fetch(session, proxy.url("/none"), headers=headers)
            proxy.server.flush_access_logs()
            lines = path.read_text().splitlines()
    assert len(lines) == 2
    ok, missing = lines
    assert ok.startswith("[20") and ok[24:26] == "Z]"
    assert ok[27:] == (
        f'"POST /app?x=1 HTTP/1.1" 200 - 5 3 {ok.split()[8]} "Root=1-abc" "svc.local" '
        f'"127.0.0.1:{app.port}" app curl/'
    )
    assert '"GET /none HTTP/1.1" 404 NR 0 0 ' in missing
    assert missing.endswith('"-" - curl/')


async def test_json_access_log(tmp_path: Path) -> None:
    path = tmp_path / "access.json"
    fmt = {
        "method": "%REQ(:METHOD)%",
        "status": "%RESPONSE_CODE%",
        "flags": "%RESPONSE_FLAGS%",
        "upstream": "%UPSTREAM_CLUSTER% via %UPSTREAM_HOST%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "nested": {"sent": "%BYTES_SENT%"},
    }
    async with backends("app") as (app,):
        resources = _logged_proxy(app.port, file_access_log(str(path), json=fmt))
        async with running_proxy(resources) as proxy, client() as session:
            await fetch(session, proxy.url("/app"), headers={"x-request-id": "rid-1"})
            proxy.server.flush_access_logs()
            entry = json.loads(path.read_text())
    assert entry == {
        "method": "GET",
        "status": 200,
        "flags": "-",
        "upstream": f"app via 127.0.0.1:{app.port}",
        "request_id": "rid-1",
        "nested": {"sent": 3},
    }


async def test_default_format_and_flush_on_stop(tmp_path: Path) -> None:
    path = tmp_path / "default.log"
    async with backends("app") as (app,):
        resources = _logged_proxy(app.port, file_access_log(str(path)))
        async with running_proxy(resources) as proxy, client() as session:
            port = proxy.port()
            await fetch(session, proxy.url("/app"), headers={"User-Agent": "tester"})
    # Nothing flushed explicitly: stopping the proxy writes the buffered line.
    pattern = (
        r'\[\S+\] "GET /app HTTP/1\.1" 200 - 0 3 \d+ \d+ "-" "tester" "[0-9a-f-]{36}" '
        rf'"127\.0\.0\.1:{port}" "127\.0\.0\.1:{app.port}"\n'
    )
    assert re.fullmatch(pattern, path.read_text())


async def test_admin_endpoints() -> None:
    async with (
        backends("app") as (app,),
        running_proxy(simple_proxy("app", [app.port]), version="v7") as proxy,
        client() as session,
    ):
        await fetch(session, proxy.url("/"))
        status, _, body = await fetch(session, proxy.admin("/server_info"))
        info = json.loads(body)
        assert (status, info["state"], info["node"]["id"]) == (200, "LIVE", "test-node")
        assert '\n "state": "LIVE",\n' in body
        assert (await fetch(session, proxy.admin("/ready")))[::2] == (200, "LIVE\n")

        stats = (await fetch(session, proxy.admin("/stats")))[2]
        assert "cluster.app.upstream_rq_total: 1\n" in stats
        assert "http.ingress.downstream_rq_total: 1\n" in stats
        filtered = (await fetch(session, proxy.admin("/stats?filter=rq_2xx")))[2]
        assert filtered.splitlines() == [
            "cluster.app.upstream_rq_2xx: 1",
            "http.ingress.downstream_rq_2xx: 1",
        ]
        as_json = json.loads((await fetch(session, proxy.admin("/stats?format=json")))[2])
        assert {"name": "cluster.app.upstream_rq_200", "value": 1} in as_json["stats"]

        prom = (await fetch(session, proxy.admin("/stats/prometheus")))[2]
        assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="app"} 1' in prom
        assert (
            'envoy_cluster_upstream_rq_xx{envoy_cluster_name="app",envoy_response_code_class="2"} 1'
        ) in prom
        assert "# TYPE envoy_cluster_upstream_cx_active gauge" in prom

        clusters = (await fetch(session, proxy.admin("/clusters")))[2]
        assert "app::default_priority::max_connections::1024\n" in clusters
        assert f"app::127.0.0.1:{app.port}::rq_total::1\n" in clusters
        assert f"app::127.0.0.1:{app.port}::health_flags::healthy\n" in clusters
        cj = json.loads((await fetch(session, proxy.admin("/clusters?format=json")))[2])
        assert cj["cluster_statuses"][0]["name"] == "app"

        dump = json.loads((await fetch(session, proxy.admin("/config_dump")))[2])
        kinds = [c["@type"].rsplit(".", 1)[1] for c in dump["configs"]]
        assert kinds == [
            "BootstrapConfigDump", "ClustersConfigDump", "ListenersConfigDump",
            "RoutesConfigDump", "SecretsConfigDump",
        ]  # fmt: skip
        listeners = dump["configs"][2]["dynamic_listeners"]
        assert listeners[0]["active_state"]["version_info"] == "v7"

        text = (await fetch(session, proxy.admin("/listeners")))[2]
        assert text == f"ingress::127.0.0.1:{proxy.port()}\n"
