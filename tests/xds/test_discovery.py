"""The xDS discovery service, live: subscribe, push on change, ACK/NACK, errors."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from tests.api.helpers import build_mesh, http_node_spec, http_route_spec
from tests.signing import proxies_of, xds_request

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ROUTES = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def discover(server, kind: str, request: dict, wait: float = 0) -> tuple[int, dict | None]:
    url = f"{server.endpoint}/v3/discovery:{kind}" + (f"?wait={wait}" if wait else "")
    call = xds_request(url, request)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as error:
        if error.code == 304:
            return 304, None
        return error.code, json.loads(error.read() or b"null")


def node_request(node_id: str, **extra) -> dict:
    return {"node": {"id": node_id, "cluster": node_id}, **extra}


@pytest.fixture
def mesh(appmesh, account):
    build_mesh(appmesh, "xds")
    appmesh.create_virtual_node(
        meshName="xds",
        virtualNodeName="front",
        spec=http_node_spec(
            hostname="front.local",
            backends=[{"virtualService": {"virtualServiceName": "color.local"}}],
        ),
    )
    return {
        "account": account,
        "front_arn": f"arn:aws:appmesh:us-east-1:{account}:mesh/xds/virtualNode/front",
    }


def test_a_node_receives_its_listeners_and_clusters(server, mesh):
    status, listeners = discover(server, "listeners", node_request(mesh["front_arn"]))
    assert status == 200
    assert listeners["type_url"] == LISTENER
    names = {resource["name"] for resource in listeners["resources"]}
    assert {"lds_ingress_0.0.0.0_15000", "lds_egress_0.0.0.0_15001"} <= names
    assert all(resource["@type"] == LISTENER for resource in listeners["resources"])
    status, clusters = discover(server, "clusters", node_request(mesh["front_arn"]))
    cluster_names = {resource["name"] for resource in clusters["resources"]}
    assert "cds_egress_xds_blue_http_8080" in cluster_names
    assert "cds_ingress_xds_front_http_8080" in cluster_names
    assert clusters["version_info"] == listeners["version_info"] == clusters["nonce"]


def test_the_name_form_of_node_id_is_accepted(server, appmesh):
    appmesh.create_mesh(meshName="named")
    appmesh.create_virtual_node(meshName="named", virtualNodeName="n", spec=http_node_spec())
    node = {
        "id": "mesh/named/virtualNode/n",
        "metadata": {"appmesh_local.mesh_owner": appmesh._request_signer._credentials.access_key},
    }
    status, answer = discover(server, "listeners", {"node": node})
    assert status == 200 and answer["resources"]


def test_an_update_through_the_api_reaches_a_waiting_proxy(server, appmesh, mesh):
    appmesh.create_virtual_node(meshName="xds", virtualNodeName="green", spec=http_node_spec())
    _, first = discover(server, "routes", node_request(mesh["front_arn"]))
    version = first["version_info"]
    outcome: dict = {}

    def long_poll() -> None:
        request = node_request(mesh["front_arn"], version_info=version, response_nonce=version)
        outcome["status"], outcome["answer"] = discover(server, "routes", request, wait=20)
        outcome["at"] = time.monotonic()

    waiter = threading.Thread(target=long_poll)
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive(), "a proxy that has the current version must be held"
    updated_at = time.monotonic()
    appmesh.update_route(
        meshName="xds",
        virtualRouterName="router",
        routeName="route",
        spec=http_route_spec(("blue", 50), ("green", 50)),
    )
    waiter.join(timeout=20)
    assert outcome["status"] == 200
    assert outcome["answer"]["version_info"] != version
    clusters = json.dumps(outcome["answer"]["resources"])
    assert "cds_egress_xds_green_http_8080" in clusters
    assert outcome["at"] >= updated_at


def test_a_long_poll_with_nothing_new_answers_304(server, mesh):
    _, first = discover(server, "listeners", node_request(mesh["front_arn"]))
    version = first["version_info"]
    request = node_request(mesh["front_arn"], version_info=version, response_nonce=version)
    status, answer = discover(server, "listeners", request, wait=0.3)
    assert (status, answer) == (304, None)


def test_a_304_has_no_body_and_no_length(server, mesh):
    """A run-out long-poll says nothing more than 304 (RFC 9110: no Content-Length)."""
    _, first = discover(server, "listeners", node_request(mesh["front_arn"]))
    version = first["version_info"]
    request = node_request(mesh["front_arn"], version_info=version, response_nonce=version)
    call = xds_request(f"{server.endpoint}/v3/discovery:listeners?wait=0.2", request)
    connection = http.client.HTTPConnection(urlsplit(server.endpoint).netloc, timeout=30)
    connection.request("POST", call.selector, call.data, dict(call.header_items()))
    answer = connection.getresponse()
    assert answer.status == 304
    assert answer.getheader("content-length") is None and answer.read() == b""
    connection.close()


@pytest.mark.parametrize("wait", ["soon", "nan", "inf"])
def test_a_wait_that_is_not_a_number_of_seconds_is_refused(server, mesh, wait):
    url = f"{server.endpoint}/v3/discovery:listeners?wait={wait}"
    try:
        urllib.request.urlopen(xds_request(url, node_request(mesh["front_arn"])), timeout=30)
    except urllib.error.HTTPError as error:
        assert error.code == 400
        body = json.loads(error.read())
        assert body["code"] == 3 and wait in body["message"]
    else:
        raise AssertionError(f"wait={wait} was accepted")


def test_discovery_takes_post_only(server, mesh):
    url = f"{server.endpoint}/v3/discovery:listeners"
    call = xds_request(url, node_request(mesh["front_arn"]))
    call.method = "GET"
    call.data = None
    try:
        urllib.request.urlopen(call, timeout=30)
    except urllib.error.HTTPError as error:
        assert error.code == 405 and json.loads(error.read())["code"] == 3
    else:
        raise AssertionError("a GET was answered")


def test_a_nack_is_not_answered_with_the_same_config(server, mesh):
    _, first = discover(server, "listeners", node_request(mesh["front_arn"]))
    rejected = first["version_info"]
    nack = node_request(
        mesh["front_arn"],
        version_info="",
        response_nonce=rejected,
        error_detail={"code": 3, "message": "listener rejected by the proxy"},
    )
    status, _ = discover(server, "listeners", nack, wait=0.3)
    assert status == 304
    proxies = proxies_of(server.endpoint, mesh["account"])
    mine = [p for p in proxies if p["nodeId"] == mesh["front_arn"]]
    assert mine and mine[0]["rejected"][LISTENER]["message"] == "listener rejected by the proxy"


@pytest.mark.parametrize(
    ("node_id", "status", "code"),
    [
        ("arn:aws:appmesh:us-east-1:123456789012:mesh/nope/virtualNode/x", 404, 5),
        ("mesh/nope/virtualNode/x", 404, 5),
        ("not-a-node", 400, 3),
        ("arn:aws:appmesh:us-east-1:123456789012:mesh/nope/virtualRouter/x", 400, 3),
    ],
)
def test_unknown_or_malformed_nodes_get_an_xds_error(server, node_id, status, code):
    answer_status, body = discover(server, "listeners", node_request(node_id))
    assert answer_status == status
    assert body["code"] == code and body["message"]


def test_a_deleted_node_gets_not_found_and_the_server_keeps_serving(server, appmesh, mesh):
    appmesh.delete_virtual_node(meshName="xds", virtualNodeName="front")
    status, body = discover(server, "listeners", node_request(mesh["front_arn"]))
    assert status == 404 and body["code"] == 5
    arn = f"arn:aws:appmesh:us-east-1:{mesh['account']}:mesh/xds/virtualNode/blue"
    assert discover(server, "listeners", node_request(arn))[0] == 200


def test_a_connected_proxy_becomes_its_nodes_endpoint(server, appmesh, mesh):
    blue_arn = f"arn:aws:appmesh:us-east-1:{mesh['account']}:mesh/xds/virtualNode/blue"
    blue_proxy = {
        "node": {
            "id": blue_arn,
            "metadata": {"appmesh_local.ingress_address": "127.0.0.1:25000"},
        }
    }
    assert discover(server, "listeners", blue_proxy)[0] == 200
    status, endpoints = discover(server, "endpoints", node_request(mesh["front_arn"]))
    assert status == 200
    assignments = {e["cluster_name"]: e for e in endpoints["resources"]}
    blue = json.dumps(assignments["cds_egress_xds_blue_http_8080"])
    assert '"port_value": 25000' in blue and "127.0.0.1" in blue


def test_unknown_discovery_type_is_not_found(server, mesh):
    status, body = discover(server, "widgets", node_request(mesh["front_arn"]))
    assert status == 404 and "listeners" in body["message"]


def test_registered_proxies_survive_a_control_plane_restart(tmp_path):
    from tests.conftest import make_client, new_account, start_server

    data_dir = tmp_path / "state"
    first = start_server(tmp_path, data_dir=data_dir)
    account = new_account()
    try:
        build_mesh(make_client(first.endpoint, "appmesh", account), "kept")
        blue = f"arn:aws:appmesh:us-east-1:{account}:mesh/kept/virtualNode/blue"
        gateway = f"arn:aws:appmesh:us-east-1:{account}:mesh/kept/virtualGateway/gw"
        registration = {
            "id": blue,
            "metadata": {"appmesh_local.ingress_address": "127.0.0.1:25111"},
        }
        assert discover(first, "listeners", {"node": registration})[0] == 200
    finally:
        first.stop()
    second = start_server(tmp_path, data_dir=data_dir)
    try:
        # Nobody has reconnected yet: the gateway still gets blue's proxy as its endpoint.
        status, endpoints = discover(second, "endpoints", node_request(gateway))
        assert status == 200
        assert '"port_value": 25111' in json.dumps(endpoints["resources"])
    finally:
        second.stop()


def test_a_later_ack_clears_the_rejection_shown_for_a_proxy(server, mesh):
    _, first = discover(server, "listeners", node_request(mesh["front_arn"]))
    version = first["version_info"]
    nack = node_request(
        mesh["front_arn"],
        response_nonce=version,
        error_detail={"code": 3, "message": "rejected once"},
    )
    discover(server, "listeners", nack, wait=0)
    ack = node_request(mesh["front_arn"], version_info=version, response_nonce=version)
    discover(server, "listeners", ack, wait=0)
    proxies = proxies_of(server.endpoint, mesh["account"])
    mine = [p for p in proxies if p["nodeId"] == mesh["front_arn"]]
    assert mine and LISTENER not in mine[0]["rejected"]
    assert mine[0]["acceptedVersions"][LISTENER] == version
