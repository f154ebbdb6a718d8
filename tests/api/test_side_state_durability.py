"""Side-service and X-Ray state survive ``kill -9`` of ``serve --data-dir``; a stop is quiet.

Each test drives a real ``serve`` with boto3, kills it (``SIGKILL``: nothing gets a chance
to save on the way out), starts another on the same data directory and reads back what
the first one acknowledged.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Server, make_client, new_account, start_server
from tests.xray.helpers import Trace


def restarted(tmp_path: Path, first: Server) -> Server:
    """Kill ``first`` with SIGKILL and start a server on its data directory."""
    first.stop(signal.SIGKILL)
    return start_server(tmp_path, data_dir=first.data_dir)


def a_csr(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    request = (
        x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def private_acm_certificate(server: Server, account: str, authority: str) -> str:
    """Activate the CA (its own root certificate imported) and request an ACM certificate
    from it, as App Mesh's TLS walkthroughs do."""
    pca = make_client(server.endpoint, "acm-pca", account)
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=authority)["Csr"]
    root = pca.issue_certificate(
        CertificateAuthorityArn=authority,
        Csr=csr.encode(),
        SigningAlgorithm="SHA256WITHRSA",
        TemplateArn="arn:aws:acm-pca:::template/RootCACertificate/V1",
        Validity={"Value": 10, "Type": "YEARS"},
    )["CertificateArn"]
    pem = pca.get_certificate(CertificateAuthorityArn=authority, CertificateArn=root)
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=authority, Certificate=pem["Certificate"].encode()
    )
    acm = make_client(server.endpoint, "acm", account)
    return acm.request_certificate(
        DomainName="teller.durable.local", CertificateAuthorityArn=authority
    )["CertificateArn"]


def write_side_state(server: Server, account: str) -> dict:
    """Cloud Map, ACM PCA, SSM and CloudWatch writes; returns what to look for later."""
    cloudmap = make_client(server.endpoint, "servicediscovery", account, inject_host_prefix=False)
    cloudmap.create_http_namespace(Name="durable.local")
    namespace = next(
        n for n in cloudmap.list_namespaces()["Namespaces"] if n["Name"] == "durable.local"
    )
    service = cloudmap.create_service(Name="blue", NamespaceId=namespace["Id"])["Service"]
    cloudmap.register_instance(
        ServiceId=service["Id"],
        InstanceId="blue-1",
        Attributes={"AWS_INSTANCE_IPV4": "10.0.0.7", "AWS_INSTANCE_PORT": "8080"},
    )
    pca = make_client(server.endpoint, "acm-pca", account)
    authority = pca.create_certificate_authority(
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "RSA_2048",
            "SigningAlgorithm": "SHA256WITHRSA",
            "Subject": {"CommonName": "durable"},
        },
        CertificateAuthorityType="ROOT",
    )["CertificateAuthorityArn"]
    issued = pca.issue_certificate(
        CertificateAuthorityArn=authority,
        Csr=a_csr("blue.durable.local"),
        SigningAlgorithm="SHA256WITHRSA",
        Validity={"Value": 30, "Type": "DAYS"},
    )["CertificateArn"]
    certificate = pca.get_certificate(CertificateAuthorityArn=authority, CertificateArn=issued)
    private = private_acm_certificate(server, account, authority)
    ssm = make_client(server.endpoint, "ssm", account)
    ssm.put_parameter(Name="/durable/password", Value="s3cret", Type="SecureString")
    cloudwatch = make_client(server.endpoint, "cloudwatch", account)
    now = datetime.now(UTC).replace(microsecond=0)
    cloudwatch.put_metric_data(
        Namespace="Durable",
        MetricData=[{"MetricName": "Hits", "Value": 7.0, "Unit": "Count", "Timestamp": now}],
    )
    return {
        "authority": authority,
        "issued": issued,
        "certificate": certificate["Certificate"],
        "private": private,
        "metric_time": now,
    }


def read_side_state(server: Server, account: str, written: dict) -> None:
    cloudmap = make_client(server.endpoint, "servicediscovery", account, inject_host_prefix=False)
    found = cloudmap.discover_instances(NamespaceName="durable.local", ServiceName="blue")
    assert [i["Attributes"]["AWS_INSTANCE_IPV4"] for i in found["Instances"]] == ["10.0.0.7"]
    pca = make_client(server.endpoint, "acm-pca", account)
    authorities = pca.list_certificate_authorities()["CertificateAuthorities"]
    assert [a["Arn"] for a in authorities] == [written["authority"]]
    again = pca.get_certificate(
        CertificateAuthorityArn=written["authority"], CertificateArn=written["issued"]
    )
    assert again["Certificate"] == written["certificate"]
    # The CA's key came back too: it still signs.
    pca.issue_certificate(
        CertificateAuthorityArn=written["authority"],
        Csr=a_csr("green.durable.local"),
        SigningAlgorithm="SHA256WITHRSA",
        Validity={"Value": 30, "Type": "DAYS"},
    )
    acm = make_client(server.endpoint, "acm", account)
    described = acm.describe_certificate(CertificateArn=written["private"])["Certificate"]
    assert (described["Status"], described["Type"]) == ("ISSUED", "PRIVATE")
    exported = acm.export_certificate(CertificateArn=written["private"], Passphrase=b"local")
    chained = x509.load_pem_x509_certificate(exported["Certificate"].encode())
    authority_pem = pca.get_certificate_authority_certificate(
        CertificateAuthorityArn=written["authority"]
    )["Certificate"]
    ca_certificate = x509.load_pem_x509_certificate(authority_pem.encode())
    chained.verify_directly_issued_by(ca_certificate)  # still the CA's, after the restart
    ssm = make_client(server.endpoint, "ssm", account)
    parameter = ssm.get_parameter(Name="/durable/password", WithDecryption=True)["Parameter"]
    assert (parameter["Type"], parameter["Value"]) == ("SecureString", "s3cret")
    cloudwatch = make_client(server.endpoint, "cloudwatch", account)
    at = written["metric_time"]
    data = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "hits",
                "MetricStat": {
                    "Metric": {"Namespace": "Durable", "MetricName": "Hits"},
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=at - timedelta(minutes=5),
        EndTime=at + timedelta(minutes=5),
    )["MetricDataResults"]
    assert data[0]["Values"] == [7.0]


def write_xray(server: Server, account: str) -> str:
    xray = make_client(server.endpoint, "xray", account)
    trace = Trace(start=time.time() - 5)
    trace.segment("durable/gateway", 0.0, 0.2, http={"response": {"status": 200}})
    trace.segment("durable/blue", 0.05, 0.15)
    answer = xray.put_trace_segments(TraceSegmentDocuments=trace.texts())
    assert answer["UnprocessedTraceSegments"] == []
    xray.create_sampling_rule(
        SamplingRule={
            "RuleName": "durable",
            "ResourceARN": "*",
            "Priority": 100,
            "FixedRate": 0.5,
            "ReservoirSize": 3,
            "ServiceName": "durable/*",
            "ServiceType": "*",
            "Host": "*",
            "HTTPMethod": "*",
            "URLPath": "*",
            "Version": 1,
        }
    )
    xray.create_group(GroupName="errors", FilterExpression="error = true")
    return trace.trace_id


def read_xray(server: Server, account: str, trace_id: str) -> None:
    xray = make_client(server.endpoint, "xray", account)
    traces = xray.batch_get_traces(TraceIds=[trace_id])
    assert traces["UnprocessedTraceIds"] == []
    (trace,) = traces["Traces"]
    names = sorted(json.loads(s["Document"])["name"] for s in trace["Segments"])
    assert names == ["durable/blue", "durable/gateway"]
    rules = xray.get_sampling_rules()["SamplingRuleRecords"]
    assert {r["SamplingRule"]["RuleName"] for r in rules} == {"Default", "durable"}
    groups = xray.get_groups()["Groups"]
    assert {g["GroupName"] for g in groups} == {"Default", "errors"}


def test_side_services_and_xray_survive_kill_9(tmp_path):
    account = new_account()
    first = start_server(tmp_path, data_dir=tmp_path / "data")
    try:
        written = write_side_state(first, account)
        trace_id = write_xray(first, account)
    finally:
        second = restarted(tmp_path, first)
    try:
        read_side_state(second, account, written)
        read_xray(second, account, trace_id)
    finally:
        second.stop()
    third = restarted(tmp_path, second)  # what the second run wrote (and its restore) holds
    try:
        read_side_state(third, account, written)
        read_xray(third, account, trace_id)
    finally:
        third.stop()


def snapshot_files(data: Path) -> dict[str, tuple[int, int]]:
    """Each file of the data directory's side-service and X-Ray state: (inode, mtime_ns)."""
    found = {}
    for path in sorted([*(data / "moto").rglob("*"), *data.glob("xray.sqlite3*")]):
        if path.is_file():
            stat = path.stat()
            found[str(path.relative_to(data))] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return found


def test_reads_write_nothing(tmp_path):
    account = new_account()
    server = start_server(tmp_path, data_dir=tmp_path / "data")
    try:
        written = write_side_state(server, account)
        trace_id = write_xray(server, account)
        before = snapshot_files(tmp_path / "data")
        assert any(name.startswith("moto/ssm/") for name in before)
        read_side_state(server, account, written)  # issues one certificate: a write
        after_write = snapshot_files(tmp_path / "data")
        ssm = make_client(server.endpoint, "ssm", account)
        ssm.get_parameters_by_path(Path="/durable")
        ssm.describe_parameters()
        make_client(server.endpoint, "servicediscovery", account).list_services()
        make_client(server.endpoint, "acm-pca", account).describe_certificate_authority(
            CertificateAuthorityArn=written["authority"]
        )
        make_client(server.endpoint, "cloudwatch", account).list_metrics()
        xray = make_client(server.endpoint, "xray", account)
        xray.batch_get_traces(TraceIds=[trace_id])
        xray.get_sampling_rules()
        xray.get_groups()
        assert snapshot_files(tmp_path / "data") == after_write
        assert (
            after_write["moto/ssm/" + account + "/us-east-1.pickle"]
            == (before["moto/ssm/" + account + "/us-east-1.pickle"])
        )
    finally:
        server.stop()


def test_a_stacks_moto_resources_come_back_once_after_kill_9(tmp_path):
    """The stack adopts its VPC from EC2's restored state: a second VPC would mean the
    restart created it again from the template."""
    account = new_account()
    template = {
        "Resources": {
            "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.77.0.0/16"}},
            "VpcId": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": "/durable/vpc", "Type": "String", "Value": {"Ref": "Vpc"}},
            },
        },
        "Outputs": {"VpcId": {"Value": {"Ref": "Vpc"}}},
    }
    first = start_server(tmp_path, data_dir=tmp_path / "data")
    try:
        cfn = make_client(first.endpoint, "cloudformation", account)
        cfn.create_stack(StackName="network", TemplateBody=json.dumps(template))
        (vpc_id,) = [
            o["OutputValue"]
            for o in cfn.describe_stacks(StackName="network")["Stacks"][0]["Outputs"]
        ]
    finally:
        second = restarted(tmp_path, first)
    try:
        ec2 = make_client(second.endpoint, "ec2", account)
        filters = [{"Name": "cidr-block", "Values": ["10.77.0.0/16"]}]
        assert [v["VpcId"] for v in ec2.describe_vpcs(Filters=filters)["Vpcs"]] == [vpc_id]
        ssm = make_client(second.endpoint, "ssm", account)
        assert ssm.get_parameter(Name="/durable/vpc")["Parameter"]["Value"] == vpc_id
        cfn = make_client(second.endpoint, "cloudformation", account)
        stack = cfn.describe_stacks(StackName="network")["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE"
        assert stack["Outputs"][0]["OutputValue"] == vpc_id
        cfn.delete_stack(StackName="network")
        assert ec2.describe_vpcs(Filters=filters)["Vpcs"] == []
        with pytest.raises(ClientError):
            ssm.get_parameter(Name="/durable/vpc")
    finally:
        second.stop()
    assert "could not restore" not in second.log()


#: One line each, in the order ``serve`` stops them.
STOP_LINES = (
    "appmesh_local.api: xDS gRPC server on",
    "appmesh_local.api: X-Ray daemon stopped",
    "appmesh_local.api: side services stopped; state in",
    "appmesh_local.api: X-Ray stopped; 1 traces in",
    "appmesh_local.api: App Mesh API stopped; state in",
)


def test_a_sigterm_logs_one_line_per_component_and_no_traceback(tmp_path):
    account = new_account()
    server = start_server(tmp_path, data_dir=tmp_path / "data")
    try:
        make_client(server.endpoint, "appmesh", account).create_mesh(meshName="quiet")
        make_client(server.endpoint, "ssm", account).put_parameter(
            Name="/quiet", Value="1", Type="String"
        )
        write_xray(server, account)
    finally:
        server.stop(signal.SIGTERM)
    assert server.process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    log = server.log()
    assert "Traceback" not in log
    logged = [line for line in log.splitlines() if " INFO " in line or " WARNING " in line]
    first_stop = next(i for i, line in enumerate(logged) if STOP_LINES[0] in line)
    lines = logged[first_stop:]
    assert len(lines) == len(STOP_LINES), lines
    for line, expected in zip(lines, STOP_LINES, strict=True):
        assert expected in line, line


def test_parallel_writes_and_a_presigned_upload_are_all_there_after_kill_9(tmp_path):
    """Twenty writers at once each get their answer only once their write is saved; a
    presigned PUT (no Authorization header) is saved too."""
    account = new_account()
    first = start_server(tmp_path, data_dir=tmp_path / "data")
    try:

        def write(index: int) -> None:
            ssm = make_client(first.endpoint, "ssm", account)
            for round_ in range(3):
                ssm.put_parameter(Name=f"/parallel/{index}/{round_}", Value="v", Type="String")

        with ThreadPoolExecutor(max_workers=20) as pool:
            list(pool.map(write, range(20)))
        s3 = make_client(first.endpoint, "s3", account)
        s3.create_bucket(Bucket="durable-uploads")
        url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": "durable-uploads", "Key": "note.txt"}
        )
        request = urllib.request.Request(
            url, data=b"presigned", method="PUT", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    finally:
        second = restarted(tmp_path, first)
    try:
        ssm = make_client(second.endpoint, "ssm", account)
        names = set()
        for page in ssm.get_paginator("get_parameters_by_path").paginate(
            Path="/parallel", Recursive=True
        ):
            names |= {p["Name"] for p in page["Parameters"]}
        assert len(names) == 60
        s3 = make_client(second.endpoint, "s3", account)
        note = s3.get_object(Bucket="durable-uploads", Key="note.txt")
        assert note["Body"].read() == b"presigned"
        other = make_client(second.endpoint, "s3", new_account())
        with pytest.raises(ClientError) as taken:  # bucket names are global again
            other.create_bucket(Bucket="durable-uploads")
        assert taken.value.response["Error"]["Code"] == "BucketAlreadyExists"
    finally:
        second.stop()


def test_ec2_keeps_moto_defaults_out_of_its_snapshot_and_back_once_after_kill_9(tmp_path):
    """A user's VPC, subnet, security group, instance and image come back; moto's default
    images come back once each, as they were (the snapshot holds only their ids)."""
    account, data = new_account(), tmp_path / "data"
    first = start_server(tmp_path, data_dir=data)
    ec2 = make_client(first.endpoint, "ec2", account)
    images_before = ec2.describe_images(Owners=["amazon"])["Images"]
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="durable", Description="d", VpcId=vpc)["GroupId"]
    instance = ec2.run_instances(
        ImageId=images_before[0]["ImageId"], MinCount=1, MaxCount=1, SubnetId=subnet
    )["Instances"][0]["InstanceId"]
    image = ec2.create_image(InstanceId=instance, Name="durable-image")["ImageId"]
    changed = images_before[1]["ImageId"]  # a default image changed is saved whole
    ec2.modify_image_attribute(
        ImageId=changed, LaunchPermission={"Add": [{"UserId": "111122223333"}]}
    )
    snapshot = data / "moto" / "ec2" / account / "us-east-1.pickle"
    assert snapshot.stat().st_size < 150_000  # was ~780 kB with moto's defaults in it
    second = restarted(tmp_path, first)
    try:
        ec2 = make_client(second.endpoint, "ec2", account)
        assert [v["VpcId"] for v in ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"]] == [vpc]
        assert (
            len(ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"])
            == 1
        )
        assert ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"] == vpc
        assert ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["VpcId"] == vpc
        found = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"]
        assert found[0]["SubnetId"] == subnet
        assert ec2.describe_images(ImageIds=[image])["Images"][0]["Name"] == "durable-image"
        images_after = ec2.describe_images(Owners=["amazon"])["Images"]
        ids = [each["ImageId"] for each in images_after]
        assert len(ids) == len(set(ids)) == len(images_before)
        assert sorted(images_after, key=lambda i: i["ImageId"]) == sorted(
            images_before, key=lambda i: i["ImageId"]
        )  # the same snapshot ids and creation dates too
        permissions = ec2.describe_image_attribute(ImageId=changed, Attribute="launchPermission")
        assert {"UserId": "111122223333"} in permissions["LaunchPermissions"]
    finally:
        second.stop()


def test_s3_object_bytes_are_written_once_beside_the_snapshot_and_collected(tmp_path):
    account, data = new_account(), tmp_path / "data"
    first = start_server(tmp_path, data_dir=data)
    s3 = make_client(first.endpoint, "s3", account)
    s3.create_bucket(Bucket=f"durable-{account}")
    big = bytes(range(256)) * 40_000  # 10 MB
    s3.put_object(Bucket=f"durable-{account}", Key="big", Body=big)
    s3.put_object(Bucket=f"durable-{account}", Key="gone", Body=b"short-lived")
    blobs = data / "moto" / "s3-objects"
    files = {p.name: p.stat().st_mtime_ns for p in blobs.iterdir()}
    assert len(files) == 2
    snapshot = data / "moto" / "s3" / account / "aws.pickle"
    assert snapshot.stat().st_size < 100_000
    s3.delete_object(Bucket=f"durable-{account}", Key="gone")
    s3.put_object(Bucket=f"durable-{account}", Key="small", Body=b"hello")
    after = {p.name: p.stat().st_mtime_ns for p in blobs.iterdir()}
    assert len(after) == 2  # 'gone' collected, 'small' added; 'big' not written again
    assert [after[name] for name in files if name in after] == [
        files[name] for name in files if name in after
    ]
    second = restarted(tmp_path, first)
    try:
        s3 = make_client(second.endpoint, "s3", account)
        assert s3.get_object(Bucket=f"durable-{account}", Key="big")["Body"].read() == big
        assert s3.get_object(Bucket=f"durable-{account}", Key="small")["Body"].read() == b"hello"
        with pytest.raises(ClientError):
            s3.get_object(Bucket=f"durable-{account}", Key="gone")
    finally:
        second.stop()


def test_an_s3_snapshot_that_cannot_be_loaded_keeps_its_object_files(tmp_path):
    account, data = new_account(), tmp_path / "data"
    first = start_server(tmp_path, data_dir=data)
    s3 = make_client(first.endpoint, "s3", account)
    s3.create_bucket(Bucket=f"kept-{account}")
    s3.put_object(Bucket=f"kept-{account}", Key="k", Body=b"still here")
    first.stop(signal.SIGKILL)
    snapshot = data / "moto" / "s3" / account / "aws.pickle"
    good = snapshot.read_bytes()
    snapshot.write_bytes(b"not a pickle")
    files = sorted(p.name for p in (data / "moto" / "s3-objects").iterdir())
    second = start_server(tmp_path, data_dir=data)
    make_client(second.endpoint, "s3", account).list_buckets()  # waits for the restore
    second.stop(signal.SIGKILL)
    assert "side service s3 not restored" in second.log()
    assert sorted(p.name for p in (data / "moto" / "s3-objects").iterdir()) == files
    snapshot.write_bytes(good)
    third = start_server(tmp_path, data_dir=data)
    try:
        got = make_client(third.endpoint, "s3", account).get_object(
            Bucket=f"kept-{account}", Key="k"
        )
        assert got["Body"].read() == b"still here"
    finally:
        third.stop()
