"""aws-app-mesh-examples' howto-http2, run as its README runs it, with traffic.

``deploy.sh``'s three stacks (``infra.yaml``, ``mesh.yaml``, ``app.yaml``, unmodified,
in ``tests/cloudformation/walkthroughs/howto-http2/``) go through our CloudFormation
with the aws CLI; the ``color_client``, ``red``, ``green`` and ``blue`` task
definitions that ``app.yaml`` registers run with ``appmesh-local ecs run-task``
(awsvpc: their own address, port 8080, App Mesh's iptables rules), stand-ins from
``walkthroughs/color_h2.py`` playing the Go images (the client calls
``color_server.howto-http2.local:8080`` over h2c). Then the README's steps: ``/color``
is ``red``; ``update-route`` with the walkthrough's ``mesh/route-red-blue.json`` (about
half blue), ``route-blue.json`` (only blue), ``route-red-blue-green.json`` (all three),
``route-red-retries.json`` with 50 % flaky 500s, and the client proxy's retry and
HTTP/2 health-check stats on its admin port.

Not as in the walkthrough: the requests come from this host to the client task's
address instead of through the ALB, and the admin port is read from inside the task
instead of from the bastion host.
"""

from __future__ import annotations

import collections
import functools

import pytest

from appmesh_api.ecs.network import missing_tools
from tests.mesh.walkthrough_tasks import HERE, Walk, admin, http, python, spec_file, stats, until

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason=f"awsvpc mode needs {', '.join(missing_tools())}"
)
MESH = "howto-http2-mesh"
COLORS = ("red", "green", "blue")


def cluster(color: str) -> str:
    return f"cluster.cds_egress_{MESH}_color_server-{color}_http2_8080"


@pytest.fixture(scope="module")
def walk(server, tmp_path_factory):
    walk = Walk(server, "howto-http2", tmp_path_factory.mktemp("howto-http2"))
    walk.deploy()
    try:
        for family in (*COLORS, "color_client"):
            role = "client" if family == "color_client" else "server"
            walk.start(family, app=python("color_h2.py", role))
        for task in walk.tasks.values():
            task.wait_for("started app")
            task.wait_for("envoy is HEALTHY")
        yield walk
    finally:
        walk.stop()


def color(walk: Walk) -> str:
    status, body = http(f"http://{walk.tasks['color_client'].address}:8080/color")
    return body if status == 200 else f"{status} {body}"


def colors(walk: Walk, count: int) -> collections.Counter:
    return collections.Counter(color(walk) for _ in range(count))


def update_route(walk: Walk, name: str) -> None:
    walk.aws(
        "appmesh", "update-route", "--mesh-name", MESH, "--virtual-router-name",
        "virtual-router", "--route-name", "route",
        "--cli-input-json", spec_file(HERE / "howto-http2" / "mesh" / name),
    )  # fmt: skip


def test_color_is_red_over_http2_on_every_hop(walk):
    assert until(lambda: color(walk) == "red"), color(walk)
    assert colors(walk, 10) == {"red": 10}
    client, red = walk.tasks["color_client"], walk.tasks["red"]
    assert sum(stats(client, "http.egress.downstream_rq_http2_total").values())  # h2c from the app
    assert sum(stats(red, "http.ingress.downstream_rq_http2_total").values())  # proxy to proxy
    assert not sum(stats(red, "http.ingress.downstream_cx_http1_total").values())


def test_route_red_blue_splits_about_evenly(walk):
    update_route(walk, "route-red-blue.json")
    assert until(lambda: color(walk) == "blue"), "the new route never sent to blue"
    seen = colors(walk, 60)
    assert set(seen) == {"red", "blue"} and min(seen.values()) >= 15, seen


def test_route_blue_sends_only_blue(walk):
    update_route(walk, "route-blue.json")
    assert until(lambda: colors(walk, 5) == {"blue": 5}), "red never stopped"
    assert colors(walk, 20) == {"blue": 20}


def test_route_red_blue_green_balances_across_all_three(walk):
    update_route(walk, "route-red-blue-green.json")
    assert until(lambda: "red" in colors(walk, 5)), "the new route never sent to red"
    seen = colors(walk, 90)
    assert set(seen) == set(COLORS) and min(seen.values()) >= 15, seen


def test_http2_retries_hide_most_server_errors(walk):
    update_route(walk, "route-red-retries.json")
    client, endpoint = walk.tasks["color_client"], walk.tasks["color_client"].address
    assert until(lambda: colors(walk, 5) == {"red": 5}), "the retry route never applied"
    admin(client, "/reset_counters", "POST")
    status, body = http(f"http://{endpoint}:8080/setFlake?code=500&rate=0.5", b"")
    assert (status, body) == (200, "rate: 0, code: 200")  # the previous state
    seen = colors(walk, 40)
    # P(4 failures in a row) = 1/16 a request: ~2.5 of 40 flaky with retries, 20 without
    assert seen["red"] >= 32, seen
    retries = stats(client, cluster("red"))
    assert retries[f"{cluster('red')}.upstream_rq_retry"] >= 10, retries
    assert retries[f"{cluster('red')}.upstream_rq_retry_success"] >= 5, retries


def test_the_http2_health_checks_succeed(walk):
    """README retries step 4: the client's proxy checks color_server-red's /ping over h2
    (the one node the route still targets, so the one cluster left). A check may fail
    while a server's task is starting; the host ends up healthy."""
    client, red = walk.tasks["color_client"], cluster("red")
    success, healthy = f"{red}.health_check.success", f"{red}.membership_healthy"
    checks = until(functools.partial(healthy_now, client, success, healthy))
    assert checks, stats(client, red)


def healthy_now(client, success: str, healthy: str) -> dict[str, int] | None:
    found = stats(client, success.rpartition(".health_check")[0])
    return found if found.get(success) and found.get(healthy) else None
