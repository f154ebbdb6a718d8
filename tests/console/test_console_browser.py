"""The console in a real headless Chromium, against a running mesh: resources, traces and
two live appmesh-proxy sidecars. The service map must pick up a new trace by itself (it
refreshes every 5 s). Screenshots of each tab are saved in the test's tmp_path.

Needs Debian's ``chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it as
root) and the ``playwright`` Python package, which only drives that browser: its own browser
downloads are never used.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_client, new_account
from tests.console.helpers import build_demo_mesh, send_traces
from tests.mesh.harness import Mesh
from tests.xray.helpers import NODE_A, NODE_B, three_hop

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is needed: pip install -e '.[test]'"
)
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def running_mesh(server, tmp_path_factory) -> Iterator[dict]:
    """The demo mesh, three traces, and real sidecars for node-a and node-b."""
    account = new_account()
    build_demo_mesh(make_client(server.endpoint, "appmesh", account))
    xray = make_client(server.endpoint, "xray", account)
    traces = send_traces(xray)
    mesh = Mesh(server.endpoint, account, "demo", tmp_path_factory.mktemp("console-mesh"))
    try:
        proxies = {name: mesh.proxy(name) for name in ("node-a", "node-b")}
        yield {"account": account, "traces": traces, "proxies": proxies, "xray": xray}
    finally:
        mesh.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server, running_mesh):
    """A page on the console for the mesh's account; fails the test on any page error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    query = f"account={running_mesh['account']}&region=us-east-1"
    opened.goto(f"{server.endpoint}/console?{query}#meshes")
    yield opened
    context.close()
    assert problems == []


def open_tab(page, tab: str) -> None:
    page.click(f"#tabs a[data-tab={tab}]")
    page.wait_for_function(f"document.body.dataset.loaded === '{tab}'", timeout=10_000)


def edge_text(page, source: str, target: str) -> str:
    """The label of the edge from ``source`` to ``target``, one line after another."""
    selector = f'g.edge[data-from="{source}"][data-to="{target}"] .edge-label text'
    return " ".join(page.locator(selector).all_text_contents())


def test_console_shows_the_mesh_map_traces_and_proxies(page, running_mesh, tmp_path):
    page.wait_for_function("document.body.dataset.loaded === 'meshes'", timeout=10_000)
    assert page.locator("#account").input_value() == running_mesh["account"]
    assert page.locator("#region").input_value() == "us-east-1"
    boxes = page.locator("#mesh-graph g.box").evaluate_all("gs => gs.map(g => g.dataset.name)")
    assert set(boxes) == {
        "gateway",
        "a.demo.local",
        "b.demo.local",
        "b-router",
        "b-route",
        "node-a",
        "node-b",
        "node-b-v2",
    }
    assert edge_text(page, "b-route", "node-b") == "75% weight 3"
    assert edge_text(page, "b-route", "node-b-v2") == "25% weight 1"
    assert edge_text(page, "gateway", "a.demo.local") == "to-a http prefix /"
    page.screenshot(path=tmp_path / "console-meshes.png", full_page=True)

    open_tab(page, "map")
    assert edge_text(page, NODE_A, NODE_B) == "3 req · 0.6/min 4xx 0% · 5xx 100% avg 200 ms"
    row = page.locator("#map-edges tbody tr", has_text=NODE_B).inner_text().split("\t")
    assert row == [NODE_A, NODE_B, "3", "0.6", "0 (0%)", "3 (100%)", "200 ms"]
    page.screenshot(path=tmp_path / "console-map.png", full_page=True)
    newest = three_hop(time.time() - 5)  # the map refreshes itself every 5 s
    running_mesh["xray"].put_trace_segments(TraceSegmentDocuments=newest.texts())
    edge = f'g.edge[data-from="{NODE_A}"][data-to="{NODE_B}"] .edge-label text'
    page.wait_for_function(
        f"document.querySelector('{edge}').textContent.startsWith('4 req')", timeout=15_000
    )

    open_tab(page, "traces")
    rows = page.locator("#trace-table tbody tr")
    assert rows.count() == 4
    assert rows.first.get_attribute("data-trace") == newest.trace_id
    assert "200 ok" in rows.first.inner_text() and "600 ms" in rows.first.inner_text()
    rows.first.click()
    page.wait_for_selector("#waterfall .wf-svg")
    bars = page.locator("#waterfall g.wf-row")
    assert bars.evaluate_all("gs => gs.map(g => g.dataset.name)") == [
        "demo/gateway",
        NODE_A,
        NODE_A,
        NODE_B,
        NODE_B,
    ]
    assert bars.last.locator(".wf-info").text_content() == "400 ms · 503 fault"
    assert newest.trace_id in page.locator("#waterfall h2").inner_text()
    page.screenshot(path=tmp_path / "console-trace.png", full_page=True)

    open_tab(page, "proxies")
    for name, proxy in running_mesh["proxies"].items():
        row = page.locator(f'#proxy-table tr[data-node="{name}"]')
        assert f"127.0.0.1:{proxy.ingress}" in row.inner_text()
        versions = row.locator(".tag").all_text_contents()
        assert [tag.split()[0] for tag in versions][:3] == ["LDS", "CDS", "RDS"], versions
    page.screenshot(path=tmp_path / "console-proxies.png", full_page=True)
    print(f"screenshots in {tmp_path}")
