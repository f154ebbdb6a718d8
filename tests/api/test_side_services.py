"""AWS side services answer on the App Mesh endpoint itself (embedded moto)."""

from __future__ import annotations

import json
import urllib.request

from tests.conftest import make_client


def test_cloud_map_register_and_discover_through_the_shared_endpoint(server, account):
    cloudmap = make_client(server.endpoint, "servicediscovery", account, inject_host_prefix=False)
    operation = cloudmap.create_http_namespace(Name="mesh.local")["OperationId"]
    namespace_id = cloudmap.get_operation(OperationId=operation)["Operation"]["Targets"][
        "NAMESPACE"
    ]
    service_id = cloudmap.create_service(Name="colorteller", NamespaceId=namespace_id)["Service"][
        "Id"
    ]
    for index, version in enumerate(["v1", "v2"]):
        cloudmap.register_instance(
            ServiceId=service_id,
            InstanceId=f"i-{index}",
            Attributes={"AWS_INSTANCE_IPV4": f"127.0.0.{index + 1}", "version": version},
        )
    found = cloudmap.discover_instances(
        NamespaceName="mesh.local", ServiceName="colorteller", QueryParameters={"version": "v2"}
    )["Instances"]
    assert [i["Attributes"]["AWS_INSTANCE_IPV4"] for i in found] == ["127.0.0.2"]


def test_app_mesh_and_side_services_share_one_account_view(server, account):
    sts = make_client(server.endpoint, "sts", account)
    assert sts.get_caller_identity()["Account"] == account
    appmesh = make_client(server.endpoint, "appmesh", account)
    mesh = appmesh.create_mesh(meshName="same-account")["mesh"]
    assert mesh["metadata"]["meshOwner"] == account


def test_health_endpoint_reports_running(server):
    with urllib.request.urlopen(f"{server.endpoint}/_appmesh/health", timeout=5) as response:
        assert json.loads(response.read())["status"] == "running"


def test_xray_segments_are_stored_by_the_embedded_xray(server, account):
    xray = make_client(server.endpoint, "xray", account)
    segment = {
        "name": "demo/blue",
        "id": "70de5b6f19ff9a0a",
        "trace_id": "1-581cf771-a006649127e371903a2de979",
        "start_time": 1.0,
        "end_time": 1.5,
        "origin": "AWS::AppMesh::Proxy",
    }
    result = xray.put_trace_segments(TraceSegmentDocuments=[json.dumps(segment)])
    assert result["UnprocessedTraceSegments"] == []
    traces = xray.batch_get_traces(TraceIds=[segment["trace_id"]])["Traces"]
    assert traces[0]["Segments"][0]["Id"] == segment["id"]
