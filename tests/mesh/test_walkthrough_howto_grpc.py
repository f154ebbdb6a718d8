"""aws-app-mesh-examples' howto-grpc, run as its README runs it, with traffic.

``deploy.sh``'s three stacks (``infra.yaml``, ``mesh.yaml``, ``app.yaml``, unmodified,
in ``tests/cloudformation/walkthroughs/howto-grpc/``) go through our CloudFormation
with the aws CLI; the ``color_server`` and ``color_client`` task definitions that
``app.yaml`` registers run with ``appmesh-local ecs run-task`` (awsvpc: their own
address, port 8080, App Mesh's iptables rules), stand-ins from
``walkthroughs/color_grpc.py`` playing the Go images. Then the README's steps:
``/getColor`` answers ``no_color``; ``/setColor`` is a 404 ``Unimplemented`` because
the route matches only ``GetColor``; ``aws appmesh update-route --cli-input-json
file://mesh/route-all-methods.json`` (the walkthrough's file) lets it through; then
``mesh/route-retries.json``, 50 % ``Internal`` flakiness, and the client proxy's
``upstream_rq_retry`` and gRPC ``health_check`` stats on its admin port.

Not as in the walkthrough: the requests come from this host to the client task's
address instead of through the ALB (which is a record here, not a load balancer), and
the admin port is read from inside the task instead of from the bastion host.
"""

from __future__ import annotations

import collections

import pytest

from appmesh_api.ecs.network import missing_tools
from tests.mesh.walkthrough_tasks import HERE, Walk, admin, http, python, spec_file, stats, until

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason=f"awsvpc mode needs {', '.join(missing_tools())}"
)
MESH = "howto-grpc-mesh"
CLUSTER = f"cluster.cds_egress_{MESH}_color_server_grpc_8080"


@pytest.fixture(scope="module")
def walk(server, tmp_path_factory):
    walk = Walk(server, "howto-grpc", tmp_path_factory.mktemp("howto-grpc"))
    walk.deploy()
    resolver = "GRPC_DNS_RESOLVER=native"  # the task's hosts file names the services
    try:
        walk.start("color_server", app=f"{resolver} {python('color_grpc.py', 'server')}")
        walk.start("color_client", app=f"{resolver} {python('color_grpc.py', 'client')}")
        for task in walk.tasks.values():
            task.wait_for("started app")
            task.wait_for("envoy is HEALTHY")
        yield walk
    finally:
        walk.stop()


def endpoint(walk: Walk) -> str:
    """The client task's app port: what the walkthrough's load balancer forwarded to."""
    return f"http://{walk.tasks['color_client'].address}:8080"


def update_route(walk: Walk, name: str) -> None:
    walk.aws(
        "appmesh", "update-route", "--mesh-name", MESH, "--virtual-router-name",
        "virtual-router", "--route-name", "route",
        "--cli-input-json", spec_file(HERE / "howto-grpc" / "mesh" / name),
    )  # fmt: skip


def test_get_color_answers_no_color_through_both_sidecars(walk):
    status, body = until(lambda: (r := http(f"{endpoint(walk)}/getColor"))[0] == 200 and r)
    assert (status, body) == (200, "no_color")
    server = walk.tasks["color_server"]
    assert sum(
        stats(server, "http.ingress.downstream_rq_http2_total").values()
    )  # gRPC arrived as h2


def test_set_color_is_unimplemented_until_the_route_matches_all_methods(walk):
    status, body = http(f"{endpoint(walk)}/setColor", b"blue")
    assert status == 404 and body.startswith("rpc error: code = Unimplemented"), (status, body)
    update_route(walk, "route-all-methods.json")
    # README step 5: 200, and the previous colour in the answer
    status, body = until(lambda: (r := http(f"{endpoint(walk)}/setColor", b"blue"))[0] == 200 and r)
    assert (status, body) == (200, "no_color")
    assert http(f"{endpoint(walk)}/getColor") == (200, "blue")  # README step 6


def test_grpc_retries_hide_most_internal_errors(walk):
    update_route(walk, "route-retries.json")
    client = walk.tasks["color_client"]
    admin(client, "/reset_counters", "POST")  # README retries step 8, first
    assert http(f"{endpoint(walk)}/getFlakiness") == (200, "flakiness:<>")
    status, body = http(f"{endpoint(walk)}/setFlakiness?code=13&rate=0.5", b"")
    assert (status, body) == (200, "flakiness:<>")  # the previous state
    assert http(f"{endpoint(walk)}/getFlakiness") == (200, "flakiness:<rate:0.5 code:13 >")
    # the retry policy must be live before counting: wait for a first retry
    until(lambda: http(f"{endpoint(walk)}/getColor") and stats(client, "upstream_rq_retry"))
    seen = collections.Counter(http(f"{endpoint(walk)}/getColor")[0] for _ in range(40))
    # P(4 failures in a row) = 1/16 a request: ~2.5 of 40 fail with retries, 20 without
    assert seen[200] >= 32, seen
    retries = stats(client, "upstream_rq_retry")
    assert retries[f"{CLUSTER}.upstream_rq_retry"] >= 10, retries
    assert retries[f"{CLUSTER}.upstream_rq_retry_success"] >= 5, retries


def test_the_grpc_health_checks_succeed(walk):
    """README retries step 5: the client's proxy checks color_server with grpc.health.v1.
    (A check may fail while the server's task is starting; the host ends up healthy.)"""
    client = walk.tasks["color_client"]
    success, healthy = f"{CLUSTER}.health_check.success", f"{CLUSTER}.membership_healthy"
    checks = until(lambda: (s := stats(client, CLUSTER)).get(success) and s.get(healthy) and s)
    assert checks and checks[success] >= 1 and checks[healthy] == 1, checks
