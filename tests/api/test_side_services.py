"""AWS side services answer on the App Mesh endpoint itself (embedded moto)."""

from __future__ import annotations

import http.client
import json
import urllib.parse
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


def _presigned_put(url: str, body, headers: dict[str, str], chunked: bool = False) -> int:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        target = f"{parts.path}?{parts.query}"
        connection.request("PUT", target, body=body, headers=headers, encode_chunked=chunked)
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_presigned_s3_put_stores_its_bytes_whatever_the_upload_looks_like(server, account):
    """curl --data-binary sends a form Content-Type and curl -T - a chunked body: S3
    stores the bytes of both (moto alone stored empty objects and answered 200)."""
    s3 = make_client(server.endpoint, "s3", account)
    s3.create_bucket(Bucket="uploads")
    uploads = {
        "form": (b"a=1&b=2 not a form", {"Content-Type": "application/x-www-form-urlencoded"}),
        "chunked": (iter([b"first chunk, ", b"second chunk"]), {"Content-Type": "text/plain"}),
        "plain": (b"\x00\x01 binary", {"Content-Type": "application/octet-stream"}),
    }
    for key, (body, headers) in uploads.items():
        url = s3.generate_presigned_url("put_object", Params={"Bucket": "uploads", "Key": key})
        assert _presigned_put(url, body, headers, chunked=key == "chunked") == 200
    stored = {key: s3.get_object(Bucket="uploads", Key=key) for key in uploads}
    assert stored["form"]["Body"].read() == b"a=1&b=2 not a form"
    assert stored["form"]["ContentType"] == "application/x-www-form-urlencoded"
    assert stored["chunked"]["Body"].read() == b"first chunk, second chunk"
    assert stored["plain"]["Body"].read() == b"\x00\x01 binary"
