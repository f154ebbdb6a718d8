"""The console in a real headless Chromium, against a running mesh: resources, traces and
two live appmesh-proxy sidecars. The service map must pick up a new trace by itself (it
refreshes every 5 s). A busier map checks the drawing itself, from the boxes' and labels'
bounding boxes in the page: one ``clients`` box, no label on a box or on another label, no
name outside its box and every cut name whole on hover. Screenshots of each tab are saved in
the test's tmp_path.

Needs Debian's ``chromium`` (``apt-get install -y chromium``; ``.ci/run`` installs it as
root) and the ``playwright`` Python package, which only drives that browser: its own browser
downloads are never used.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from envoy_bootstrap.envoy_types import LISTENER
from proxy.xds_auth import node_account
from tests.conftest import make_client, new_account
from tests.console.helpers import (
    CART,
    DB,
    FRONTEND,
    REPORTS,
    build_demo_mesh,
    crowded_traces,
    send_traces,
)
from tests.mesh.harness import Mesh
from tests.signing import proxies_of
from tests.xray.helpers import NODE_A, NODE_B, three_hop, wait_for

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


LEDGER_DNS = "payments-ledger.backoffice.svc.local"
# A certificate from a local SDS agent (SPIRE), and a sidecar started without one (no
# APPMESH_SDS_SOCKET_PATH): it refuses the listener rather than serve it without TLS.
STRICT_TLS = {"mode": "STRICT", "certificate": {"sds": {"secretName": "ledger-cert"}}}
NO_TLS = "not the bootstrap's local SDS agent"  # the sidecar's reason for its NACK


def rejected_listener(endpoint: str, node_id: str) -> dict | None:
    """The listener config ``node_id``'s proxy last rejected, from /_appmesh/proxies."""
    proxies = proxies_of(endpoint, node_account(node_id, None))
    found = [p["rejected"].get(LISTENER) for p in proxies if p["nodeId"] == node_id]
    return found[0] if found else None


@pytest.fixture(scope="module")
def crowded(server, tmp_path_factory) -> Iterator[str]:
    """An account with a busier service map, and a node with a long DNS name whose STRICT
    TLS listener (certificate from a local SDS agent) its real sidecar rejects."""
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    appmesh.create_mesh(meshName="shop")
    listeners = [{"portMapping": {"port": 8080, "protocol": "http"}, "tls": STRICT_TLS}]
    discovery = {"dns": {"hostname": LEDGER_DNS}}
    spec = {"listeners": listeners, "serviceDiscovery": discovery}
    appmesh.create_virtual_node(meshName="shop", virtualNodeName="ledger", spec=spec)
    xray = make_client(server.endpoint, "xray", account)
    for trace in crowded_traces(time.time() - 20):
        reply = xray.put_trace_segments(TraceSegmentDocuments=trace.texts())
        assert reply["UnprocessedTraceSegments"] == []
    mesh = Mesh(server.endpoint, account, "shop", tmp_path_factory.mktemp("console-shop"))
    try:
        mesh.proxy("ledger")
        node_id = f"arn:aws:appmesh:us-east-1:{account}:mesh/shop/virtualNode/ledger"
        assert wait_for(lambda: rejected_listener(server.endpoint, node_id), timeout=15)
        yield account
    finally:
        mesh.close()


@contextmanager
def console(browser, server, account: str, hash_: str) -> Iterator[object]:
    """A page on the console for ``account``; fails the test on any page error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    opened.goto(f"{server.endpoint}/console?account={account}&region=us-east-1{hash_}")
    yield opened
    context.close()
    assert problems == []


@pytest.fixture
def page(browser, server, running_mesh):
    with console(browser, server, running_mesh["account"], "#meshes") as opened:
        yield opened


def open_tab(page, tab: str) -> None:
    page.click(f"#tabs a[data-tab={tab}]")
    page.wait_for_function(f"document.body.dataset.loaded === '{tab}'", timeout=10_000)


def edge_text(page, source: str, target: str) -> str:
    """The label of the edge from ``source`` to ``target``, one line after another."""
    selector = f'g.edge[data-from="{source}"][data-to="{target}"] .edge-label text'
    return " ".join(page.locator(selector).all_text_contents())


def wait_loaded(page, tab: str) -> None:
    page.wait_for_function(f"document.body.dataset.loaded === '{tab}'", timeout=10_000)


# Every box's frame and text, and every edge label's backing, as page rectangles.
DRAWING = """graph => {
  const rect = (e) => {
    const r = e.getBoundingClientRect();
    return [r.x, r.y, r.width, r.height];
  };
  const boxes = [...graph.querySelectorAll("g.box")].map((box) => ({
    name: box.dataset.name,
    frame: rect(box.querySelector(".frame")),
    texts: [...box.querySelectorAll("text")].map(rect),
  }));
  const labels = [...graph.querySelectorAll("g.edge-label")].map((label) => ({
    name: `${label.parentNode.dataset.from} -> ${label.parentNode.dataset.to}`,
    frame: rect(label.querySelector("rect")),
  }));
  return { boxes, labels };
}"""


def overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def inside(inner: list[float], outer: list[float]) -> bool:
    x, y, w, h = inner
    return (
        outer[0] <= x
        and x + w <= outer[0] + outer[2]
        and outer[1] <= y <= y + h <= outer[1] + outer[3]
    )


def check_drawing(page, graph: str) -> dict:
    """No label on a box or another label, no text past its box's frame; the drawing."""
    drawing = page.locator(graph).evaluate(DRAWING)
    labels, boxes = drawing["labels"], drawing["boxes"]
    for index, label in enumerate(labels):
        on_boxes = [box["name"] for box in boxes if overlap(label["frame"], box["frame"])]
        assert on_boxes == [], f"the label of {label['name']} covers {on_boxes}"
        on_labels = [o["name"] for o in labels[index + 1 :] if overlap(label["frame"], o["frame"])]
        assert on_labels == [], f"the label of {label['name']} covers those of {on_labels}"
    for box in boxes:
        assert all(inside(text, box["frame"]) for text in box["texts"]), box
    return drawing


def visible_lines(page, box: str, part: str) -> list[str]:
    """The lines a box shows for its title or subtitle (without the hover text)."""
    return page.locator(f"{box} text.{part} tspan").all_text_contents()


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
    check_drawing(page, "#mesh-graph")
    page.screenshot(path=tmp_path / "console-meshes.png", full_page=True)

    open_tab(page, "map")
    assert edge_text(page, NODE_A, NODE_B) == "3 req · 0.6/min 4xx 0% · 5xx 100% avg 200 ms"
    row = page.locator("#map-edges tbody tr", has_text=NODE_B).inner_text().split("\t")
    assert row == [NODE_A, NODE_B, "3", "0.6", "0 (0%)", "3 (100%)", "200 ms"]
    check_drawing(page, "#map-graph")
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
        row = page.locator(f'#proxy-table tr.proxy[data-node="{name}"]')
        assert f"127.0.0.1:{proxy.ingress}" in row.inner_text()
        versions = row.locator(".tag").all_text_contents()
        assert [tag.split()[0] for tag in versions][:3] == ["LDS", "CDS", "RDS"], versions
    page.screenshot(path=tmp_path / "console-proxies.png", full_page=True)
    print(f"screenshots in {tmp_path}")


def test_the_service_map_has_one_clients_box_clear_labels_and_whole_names(
    browser, server, crowded, tmp_path
):
    with console(browser, server, crowded, "#servicemap") as page:
        wait_loaded(page, "map")  # #servicemap is the Service map tab, not Meshes
        assert page.locator("#tabs a.active").get_attribute("data-tab") == "map"
        assert (
            page.locator("#tab-map").is_visible() and not page.locator("#tab-meshes").is_visible()
        )
        drawing = check_drawing(page, "#map-graph")
        names = sorted(box["name"] for box in drawing["boxes"])
        assert names == sorted(["clients", FRONTEND, REPORTS, CART, DB])
        assert edge_text(page, FRONTEND, DB).startswith("1 req")  # the edge that skips cart
        box = f'#map-graph g.box[data-name="{REPORTS}"]'
        shown = visible_lines(page, box, "title")
        assert len(shown) == 2 and shown[-1].endswith("…"), shown
        assert page.locator(f"{box} text.title > title").text_content() == REPORTS
        assert page.locator(f"{box} > title").text_content().startswith(REPORTS)
        page.screenshot(path=tmp_path / "console-crowded-map.png", full_page=True)

        open_tab(page, "meshes")
        ledger = '#mesh-graph g.box[data-name="ledger"]'
        assert "".join(visible_lines(page, ledger, "subtitle")) == f"dns {LEDGER_DNS}"
        check_drawing(page, "#mesh-graph")


def test_an_unknown_page_says_so_and_links_to_the_tabs(browser, server, crowded):
    with console(browser, server, crowded, "#nonsense") as page:
        wait_loaded(page, "notfound")
        assert page.locator("#tab-notfound h1").inner_text() == "No such page: #nonsense"
        assert not page.locator("#tab-meshes").is_visible()
        assert page.locator("#tabs a.active").count() == 0
        links = page.locator("#tab-notfound a")
        assert links.evaluate_all("as => as.map(a => a.getAttribute('href'))") == [
            "#meshes",
            "#map",
            "#traces",
            "#proxies",
        ]
        links.nth(1).click()
        wait_loaded(page, "map")
        assert not page.locator("#tab-notfound").is_visible()


def test_a_rejected_config_shows_its_reason_in_red(browser, server, crowded, tmp_path):
    with console(browser, server, crowded, "#proxies") as page:
        wait_loaded(page, "proxies")
        row = page.locator('#proxy-table tr.proxy[data-node="ledger"]')
        assert row.locator(".tag.bad").inner_text().startswith("LDS ")
        line = page.locator(
            f'#proxy-table tr.rejection[data-node="ledger"][data-type="{LISTENER}"]'
        )
        text = line.inner_text()
        assert text.startswith("config rejected: listener ") and NO_TLS in text, text
        assert "(LDS version " in text
        assert line.locator("td").evaluate("td => getComputedStyle(td).color") == "rgb(214, 69, 69)"
        page.screenshot(path=tmp_path / "console-rejected.png", full_page=True)
