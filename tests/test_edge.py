"""End-to-end tests of the side-service edge: real uvicorn servers, real boto3 clients.

Every test talks to 127.0.0.1 only; a module-wide guard fails the run if anything in this
process (moto included) tries to connect or resolve anywhere else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import uvicorn
from botocore.config import Config
from botocore.exceptions import ClientError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from appmesh_api.edge import CredentialScope, build_side_services_app, parse_credential_scope

REGION = "us-east-1"
_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


# --------------------------------------------------------------------------- harness


@pytest.fixture(scope="module", autouse=True)
def _only_loopback() -> Iterator[list[Any]]:
    """Fail if this process connects to, or resolves, anything but the loopback address."""
    blocked: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def _check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL_HOSTS:
            blocked.append(address)
            raise OSError(f"test guard: connection to {address} blocked")

    def connect(sock: socket.socket, address: Any) -> None:
        _check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        _check(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in _LOCAL_HOSTS:
            blocked.append(name)
            raise socket.gaierror(f"test guard: lookup of {name!r} blocked")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket.socket, "connect_ex", connect_ex)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        yield blocked
    assert not blocked, f"something tried to leave 127.0.0.1: {blocked}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Endpoint:
    url: str
    port: int
    hosts: list[str] = field(default_factory=list)  # Host header of every request seen


@contextlib.contextmanager
def serve(side_app: Any) -> Iterator[Endpoint]:
    """Run the project's layout: App Mesh routes first, the side-service app as fallback."""

    async def appmesh_stub(request: Request) -> JSONResponse:
        return JSONResponse({"handledBy": "appmesh-api", "path": request.url.path})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        if hasattr(side_app, "aclose"):  # mounted apps get no lifespan of their own
            await side_app.aclose()

    app = Starlette(
        routes=[
            Route("/v20190125/{rest:path}", appmesh_stub, methods=["GET", "PUT", "POST"]),
            Mount("/", app=side_app),
        ],
        lifespan=lifespan,
    )
    port = _free_port()
    endpoint = Endpoint(f"http://127.0.0.1:{port}", port)

    async def recording_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            endpoint.hosts.append(dict(scope["headers"]).get(b"host", b"").decode())
        await app(scope, receive, send)

    config = uvicorn.Config(recording_app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield endpoint
    finally:
        server.should_exit = True
        thread.join(10)


def new_account() -> str:
    """A random 12-digit access key id: the edge maps it to that moto account."""
    return str(secrets.randbelow(9 * 10**11) + 10**11)


def aws(endpoint: str, service: str, key: str, config: Config | None = None) -> Any:
    base = Config(retries={"total_max_attempts": 1})
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key="test",
        config=base.merge(config) if config else base,
    )


@pytest.fixture(scope="module")
def edge() -> Iterator[Endpoint]:
    with serve(build_side_services_app()) as endpoint:
        yield endpoint


@pytest.fixture
def account() -> str:
    return new_account()


def _cloud_map_setup(sd: Any, namespace: str) -> None:
    op = sd.create_http_namespace(Name=namespace)["OperationId"]
    ns_id = sd.get_operation(OperationId=op)["Operation"]["Targets"]["NAMESPACE"]
    service_id = sd.create_service(Name="backend", NamespaceId=ns_id)["Service"]["Id"]
    for n, version in ((1, "v1"), (2, "v2")):
        sd.register_instance(
            ServiceId=service_id,
            InstanceId=f"i-{n}",
            Attributes={
                "AWS_INSTANCE_IPV4": f"10.0.0.{n}",
                "AWS_INSTANCE_PORT": "8080",
                "v": version,
            },
        )


# --------------------------------------------------------------------------- embedded moto


def test_network_guard_is_active(_only_loopback: list[Any]) -> None:
    with pytest.raises(OSError, match="test guard"):
        socket.create_connection(("10.255.255.1", 9), timeout=1)
    with pytest.raises(OSError, match="test guard"):
        socket.create_connection(("s3.amazonaws.com", 443), timeout=1)
    del _only_loopback[:]  # those two were ours


def test_appmesh_paths_are_not_served_by_the_edge(edge: Endpoint) -> None:
    with urllib.request.urlopen(f"{edge.url}/v20190125/meshes") as resp:
        assert json.load(resp) == {"handledBy": "appmesh-api", "path": "/v20190125/meshes"}


def test_parse_credential_scope() -> None:
    auth = (
        "AWS4-HMAC-SHA256 Credential=AKID/20261125/eu-west-1/servicediscovery/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abc"
    )
    assert parse_credential_scope(auth) == CredentialScope("AKID", "eu-west-1", "servicediscovery")
    assert parse_credential_scope("AWS AKID:signature") is None
    assert parse_credential_scope(None) is None


def test_cloud_map_discover_with_inject_host_prefix_false(edge: Endpoint, account: str) -> None:
    sd = aws(edge.url, "servicediscovery", account, Config(inject_host_prefix=False))
    _cloud_map_setup(sd, "demo.local")
    found = sd.discover_instances(
        NamespaceName="demo.local", ServiceName="backend", QueryParameters={"v": "v2"}
    )["Instances"]
    assert [(i["InstanceId"], i["Attributes"]["AWS_INSTANCE_IPV4"]) for i in found] == [
        ("i-2", "10.0.0.2")
    ]


def test_cloud_map_discover_with_env_var(
    edge: Endpoint, account: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DISABLE_HOST_PREFIX_INJECTION", "true")
    sd = aws(edge.url, "servicediscovery", account)
    _cloud_map_setup(sd, "env.local")
    found = sd.discover_instances(NamespaceName="env.local", ServiceName="backend")["Instances"]
    assert sorted(i["InstanceId"] for i in found) == ["i-1", "i-2"]


def test_cloud_map_discover_with_data_prefixed_host(edge: Endpoint, account: str) -> None:
    """A client that keeps botocore's ``data-`` host prefix (with DNS for it) is served."""
    sd = aws(edge.url, "servicediscovery", account)
    _cloud_map_setup(sd, "prefix.local")
    prefixed = f"data-127.0.0.1:{edge.port}"

    def as_if_dns_resolved(request: Any, **_: Any) -> None:
        # Stand-in for a hosts entry: connect to 127.0.0.1, keep the Host botocore chose.
        assert request.url.startswith(f"http://{prefixed}/")
        request.headers["Host"] = prefixed
        request.url = request.url.replace(prefixed, f"127.0.0.1:{edge.port}", 1)

    sd.meta.events.register("before-send.servicediscovery.DiscoverInstances", as_if_dns_resolved)
    found = sd.discover_instances(NamespaceName="prefix.local", ServiceName="backend")["Instances"]
    assert len(found) == 2
    assert prefixed in edge.hosts


def test_sts_caller_identity_uses_the_12_digit_key_as_account(edge: Endpoint, account: str) -> None:
    assert aws(edge.url, "sts", account).get_caller_identity()["Account"] == account


@pytest.mark.parametrize("style", ["default", "path"])
def test_s3_path_style(edge: Endpoint, account: str, style: str) -> None:
    config = Config(s3={"addressing_style": "path"}) if style == "path" else None
    s3 = aws(edge.url, "s3", account, config)
    bucket = f"edge-{style}-{account}"
    s3.create_bucket(Bucket=bucket)
    keys = ["plain.txt", "dir/sp ace+plus.txt", "a%41.txt", "x%2Fy", "ü.bin"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode() * 3)
    big = secrets.token_bytes(1_500_000)  # > 1 MB: botocore adds "Expect: 100-continue"
    s3.put_object(Bucket=bucket, Key="big.bin", Body=big)
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == big
    s3.delete_object(Bucket=bucket, Key="big.bin")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(listed) == sorted(keys)
    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode() * 3
    assert all(h == f"127.0.0.1:{edge.port}" for h in edge.hosts[-len(keys) :])


def test_unsigned_presigned_s3_url_falls_back_to_moto_inference(
    edge: Endpoint, account: str
) -> None:
    s3 = aws(edge.url, "s3", account)
    bucket = f"presign-{account}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    with urllib.request.urlopen(url) as resp:  # no Authorization header at all
        assert resp.read() == b"presigned body"


def test_accounts_are_isolated_by_access_key(edge: Endpoint) -> None:
    first, second = new_account(), new_account()
    aws(edge.url, "ssm", first).put_parameter(Name="/iso", Value="first", Type="String")
    with pytest.raises(ClientError) as err:
        aws(edge.url, "ssm", second).get_parameter(Name="/iso")
    assert err.value.response["Error"]["Code"] == "ParameterNotFound"


def test_ssm_parameters(edge: Endpoint, account: str) -> None:
    ssm = aws(edge.url, "ssm", account)
    ssm.put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="21", Type="String")
    got = ssm.get_parameter(Name="/cdk-bootstrap/hnb659fds/version")["Parameter"]
    assert got["Value"] == "21"


def test_dynamodb_table_item_round_trip(edge: Endpoint, account: str) -> None:
    ddb = aws(edge.url, "dynamodb", account)
    ddb.create_table(
        TableName="meshes",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    item = {"pk": {"S": "mesh#demo"}, "version": {"N": "1"}}
    ddb.put_item(TableName="meshes", Item=item, ConditionExpression="attribute_not_exists(pk)")
    assert ddb.get_item(TableName="meshes", Key={"pk": {"S": "mesh#demo"}})["Item"] == item


def test_xray_segments_and_summaries(edge: Endpoint, account: str) -> None:
    xray = aws(edge.url, "xray", account)
    now = time.time()
    trace_id = f"1-{int(now):08x}-{secrets.token_hex(12)}"
    segment = {
        "name": "frontend",
        "id": secrets.token_hex(8),
        "trace_id": trace_id,
        "start_time": now - 1,
        "end_time": now - 0.5,
        "origin": "AWS::AppMesh::Proxy",
        "http": {"request": {"method": "GET", "url": "http://frontend/"}},
    }
    put = xray.put_trace_segments(TraceSegmentDocuments=[json.dumps(segment)])
    assert put["UnprocessedTraceSegments"] == []
    summaries = xray.get_trace_summaries(StartTime=now - 60, EndTime=now + 60)["TraceSummaries"]
    assert trace_id in [s["Id"] for s in summaries]


def test_cloudwatch_metrics(edge: Endpoint, account: str) -> None:
    cw = aws(edge.url, "cloudwatch", account)
    dims = [{"Name": "Mesh", "Value": "demo"}]
    cw.put_metric_data(
        Namespace="AppMeshLocal",
        MetricData=[
            {"MetricName": "RequestCount", "Dimensions": dims, "Value": v} for v in (1, 2, 3)
        ],
    )
    now = time.time()
    points = cw.get_metric_statistics(
        Namespace="AppMeshLocal",
        MetricName="RequestCount",
        Dimensions=dims,
        StartTime=now - 600,
        EndTime=now + 60,
        Period=60,
        Statistics=["Sum", "SampleCount"],
    )["Datapoints"]
    assert sum(p["Sum"] for p in points) == 6
    assert sum(p["SampleCount"] for p in points) == 3


def test_cloudwatch_logs(edge: Endpoint, account: str) -> None:
    logs = aws(edge.url, "logs", account)
    logs.create_log_group(logGroupName="/appmesh/envoy")
    logs.create_log_stream(logGroupName="/appmesh/envoy", logStreamName="node-a")
    line = json.dumps({"Mesh": "demo", "status": 200})
    logs.put_log_events(
        logGroupName="/appmesh/envoy",
        logStreamName="node-a",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": line}],
    )
    events = logs.get_log_events(
        logGroupName="/appmesh/envoy", logStreamName="node-a", startFromHead=True
    )["events"]
    assert [e["message"] for e in events] == [line]


def test_ecs_task_definition_proxy_configuration_round_trip(edge: Endpoint, account: str) -> None:
    ecs = aws(edge.url, "ecs", account)
    proxy = {
        "type": "APPMESH",
        "containerName": "envoy",
        "properties": [
            {"name": "IgnoredUID", "value": "1337"},
            {"name": "ProxyIngressPort", "value": "15000"},
            {"name": "ProxyEgressPort", "value": "15001"},
            {"name": "AppPorts", "value": "8080"},
            {"name": "EgressIgnoredIPs", "value": "169.254.170.2,169.254.169.254"},
        ],
    }
    ecs.register_task_definition(
        family="colorteller",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {"name": "app", "image": "colorteller:latest", "essential": True},
            {"name": "envoy", "image": "envoy:v1", "essential": True, "user": "1337"},
        ],
        proxyConfiguration=proxy,
    )
    described = ecs.describe_task_definition(taskDefinition="colorteller")["taskDefinition"]
    assert described["proxyConfiguration"] == proxy


def test_acm_pca_create_certificate_authority(edge: Endpoint, account: str) -> None:
    pca = aws(edge.url, "acm-pca", account)
    arn = pca.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": {"CommonName": "mesh-root", "Organization": "appmesh-local"},
        },
        CertificateAuthorityType="ROOT",
    )["CertificateAuthorityArn"]
    assert f":{account}:" in arn
    ca = pca.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"]
    assert ca["Status"] == "PENDING_CERTIFICATE"
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    assert csr.startswith("-----BEGIN CERTIFICATE REQUEST-----")


def test_cloudformation_describe_missing_stack(edge: Endpoint, account: str) -> None:
    cfn = aws(edge.url, "cloudformation", account)
    with pytest.raises(ClientError) as err:
        cfn.describe_stacks(StackName="CDKToolkit")
    assert err.value.response["Error"]["Code"] == "ValidationError"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "does not exist" in err.value.response["Error"]["Message"]


def test_iam_create_role(edge: Endpoint, account: str) -> None:
    iam = aws(edge.url, "iam", account)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName="envoy-task", AssumeRolePolicyDocument=json.dumps(trust))
    assert role["Role"]["Arn"] == f"arn:aws:iam::{account}:role/envoy-task"
    assert iam.get_role(RoleName="envoy-task")["Role"]["RoleName"] == "envoy-task"


def test_one_debug_line_per_call(
    edge: Endpoint, account: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="appmesh_api.edge")
    aws(edge.url, "sts", account).get_caller_identity()
    aws(edge.url, "servicediscovery", account).list_namespaces()
    lines = [r.getMessage() for r in caplog.records if r.name == "appmesh_api.edge"]
    assert "side-service sts GetCallerIdentity -> 200 OK" in lines
    assert "side-service servicediscovery ListNamespaces -> 200 OK" in lines


# --------------------------------------------------------------------------- forwarding


@pytest.fixture(scope="module")
def other_moto() -> Iterator[str]:
    """A separate moto (ThreadedMotoServer in its own process, so its state is its own)."""
    port = _free_port()
    code = (
        "import sys; from moto.server import ThreadedMotoServer; "
        "s = ThreadedMotoServer(ip_address='127.0.0.1', port=int(sys.argv[1]), verbose=False); "
        "s.start(); print('ready', flush=True); sys.stdin.read(); s.stop()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def forwarding_edge(other_moto: str) -> Iterator[Endpoint]:
    with serve(build_side_services_app(aws_endpoint=other_moto)) as endpoint:
        yield endpoint


def test_forwarded_call_lands_in_the_other_server(
    forwarding_edge: Endpoint, other_moto: str, edge: Endpoint, account: str
) -> None:
    name = f"/forwarded/{account}"
    aws(forwarding_edge.url, "ssm", account).put_parameter(Name=name, Value="v", Type="String")
    direct = aws(other_moto, "ssm", account).get_parameter(Name=name)["Parameter"]
    assert direct["Value"] == "v"
    # The request was relayed as sent: the plain moto server files it under its default
    # account (only our embedded edge maps 12-digit keys), and the embedded moto never saw it.
    assert aws(other_moto, "ssm", "AKIDDEFAULT").get_parameter(Name=name)["Parameter"]["Value"]
    for key in (account, "AKIDDEFAULT"):
        with pytest.raises(ClientError):
            aws(edge.url, "ssm", key).get_parameter(Name=name)


def test_forwarding_streams_s3_bodies_and_keeps_raw_keys(
    forwarding_edge: Endpoint, other_moto: str, account: str
) -> None:
    s3 = aws(forwarding_edge.url, "s3", account)
    bucket = f"fwd-{account}"
    s3.create_bucket(Bucket=bucket)
    payload = secrets.token_bytes(1_500_000)  # > 1 MB: botocore adds "Expect: 100-continue"
    s3.put_object(Bucket=bucket, Key="blob/a%41.bin", Body=payload)
    assert s3.get_object(Bucket=bucket, Key="blob/a%41.bin")["Body"].read() == payload
    assert s3.head_object(Bucket=bucket, Key="blob/a%41.bin")["ContentLength"] == len(payload)
    direct = aws(other_moto, "s3", account).list_objects_v2(Bucket=bucket)["Contents"]
    assert [o["Key"] for o in direct] == ["blob/a%41.bin"]


def test_forwarding_cloud_map_and_errors(forwarding_edge: Endpoint, account: str) -> None:
    sd = aws(forwarding_edge.url, "servicediscovery", account, Config(inject_host_prefix=False))
    _cloud_map_setup(sd, f"fwd{account}.local")
    found = sd.discover_instances(NamespaceName=f"fwd{account}.local", ServiceName="backend")
    assert len(found["Instances"]) == 2
    with pytest.raises(ClientError) as err:
        aws(forwarding_edge.url, "cloudformation", account).describe_stacks(StackName="nope")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_forwarding_to_an_unreachable_endpoint_is_a_502() -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    with serve(build_side_services_app(aws_endpoint=dead)) as endpoint:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{endpoint.url}/some-bucket")
        assert err.value.code == 502
        assert dead in err.value.read().decode()


def test_forwarding_to_aws_re_signs_with_the_default_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "real-token")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    assert not build_side_services_app("http://127.0.0.1:4566").resign
    fwd = build_side_services_app("https://monitoring.eu-west-1.amazonaws.com")
    assert fwd.resign
    client_auth = (
        "AWS4-HMAC-SHA256 Credential=123456789012/20261125/eu-west-1/monitoring/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=forourhost"
    )
    headers = [
        ("Authorization", client_auth),
        ("X-Amz-Date", "20261125T000000Z"),
        ("Content-Type", "application/x-amz-json-1.0"),
    ]
    signed = dict(
        fwd._sign(
            "POST",
            "https://monitoring.eu-west-1.amazonaws.com/",
            headers,
            b"{}",
            parse_credential_scope(client_auth),
        )
    )
    assert signed["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAREALKEY/")
    assert "/eu-west-1/monitoring/aws4_request" in signed["Authorization"]
    assert "Signature=forourhost" not in signed["Authorization"]
    assert signed["X-Amz-Security-Token"] == "real-token"
    assert signed["X-Amz-Date"] != "20261125T000000Z"

    s3 = build_side_services_app("https://s3.eu-west-1.amazonaws.com")
    trailer = [("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")]
    s3_signed = dict(
        s3._sign(
            "PUT",
            "https://s3.eu-west-1.amazonaws.com/b/k",
            trailer,
            b"",
            CredentialScope("123456789012", "eu-west-1", "s3"),
        )
    )
    assert s3_signed["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
