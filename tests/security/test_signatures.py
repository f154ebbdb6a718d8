"""``serve --verify-signatures``: forged, absent and stale signatures, as AWS refuses them.

The server is given one key pair; clients are real boto3 clients of several protocols
(rest-json App Mesh and X-Ray, awsJson Cloud Map, awsQuery STS, rest-xml S3 and
CloudWatch's CBOR), each of which must get the error code AWS sends in its protocol.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import Server, start_server

KEY, SECRET, ACCOUNT = "AKIAAPPMESHLOCAL01", "s3cret-s3cret", "111122223333"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("guarded"),
        "--verify-signatures",
        "--credentials",
        f"{KEY}={SECRET}",
        "--account",
        f"{KEY}={ACCOUNT}",
    )
    yield running
    running.stop()


def client(server: Server, service: str, key: str = KEY, secret: str = SECRET, **extra: Any) -> Any:
    return boto3.client(
        service,
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}, **extra),
    )


def error_of(call: Any, *args: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as raised:
        call(*args, **kwargs)
    error = raised.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]


def test_correctly_signed_calls_of_every_protocol_are_served(guarded: Server) -> None:
    appmesh = client(guarded, "appmesh")
    appmesh.create_mesh(meshName="signed")
    assert appmesh.describe_mesh(meshName="signed")["mesh"]["metadata"]["meshOwner"] == ACCOUNT
    assert client(guarded, "sts").get_caller_identity()["Account"] == ACCOUNT
    s3 = client(guarded, "s3")
    s3.create_bucket(Bucket="signed-bucket")
    s3.put_object(Bucket="signed-bucket", Key="dir/a b%41.txt", Body=b"hello")
    assert s3.get_object(Bucket="signed-bucket", Key="dir/a b%41.txt")["Body"].read() == b"hello"
    assert "Namespaces" in client(guarded, "servicediscovery").list_namespaces()
    client(guarded, "cloudwatch").put_metric_data(
        Namespace="signed", MetricData=[{"MetricName": "m", "Value": 1.0}]
    )
    assert "SamplingRuleRecords" in client(guarded, "xray").get_sampling_rules()
    client(guarded, "ssm").put_parameter(Name="/signed", Value="v", Type="String")


def test_a_wrong_secret_is_an_invalid_signature_in_each_protocol(guarded: Server) -> None:
    def forged(service: str) -> Any:
        return client(guarded, service, secret="not-the-secret")

    assert error_of(forged("appmesh").list_meshes) == ("InvalidSignatureException", 403)
    assert error_of(forged("xray").get_sampling_rules) == ("InvalidSignatureException", 403)
    assert error_of(forged("servicediscovery").list_namespaces) == (
        "InvalidSignatureException",
        403,
    )
    assert error_of(forged("sts").get_caller_identity) == ("SignatureDoesNotMatch", 403)
    assert error_of(forged("s3").list_buckets) == ("SignatureDoesNotMatch", 403)
    assert error_of(forged("cloudwatch").list_metrics) == ("InvalidSignatureException", 403)


def test_an_unknown_access_key_is_an_unrecognized_client(guarded: Server) -> None:
    def stranger(service: str) -> Any:
        return client(guarded, service, key="AKIASTRANGER000000", secret="x")

    assert error_of(stranger("appmesh").list_meshes) == ("UnrecognizedClientException", 403)
    assert error_of(stranger("sts").get_caller_identity) == ("InvalidClientTokenId", 403)
    assert error_of(stranger("s3").list_buckets) == ("InvalidAccessKeyId", 403)


def test_a_twelve_digit_key_is_not_an_account_pass_when_signatures_are_checked(
    guarded: Server,
) -> None:
    own_account = client(guarded, "appmesh", key="123456789012", secret="local")
    assert error_of(own_account.list_meshes) == ("InvalidSignatureException", 403)


def test_an_unsigned_request_is_missing_its_authentication_token(guarded: Server) -> None:
    unsigned = {"signature_version": UNSIGNED}
    appmesh = client(guarded, "appmesh", **unsigned)
    assert error_of(appmesh.list_meshes) == ("MissingAuthenticationTokenException", 403)
    sts = client(guarded, "sts", **unsigned)
    assert error_of(sts.get_caller_identity) == ("MissingAuthenticationToken", 403)


def test_a_signature_older_than_15_minutes_has_expired(guarded: Server) -> None:
    then = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=20)
    appmesh = client(guarded, "appmesh")
    clock = mock.patch("botocore.auth.get_current_datetime", return_value=then)
    with clock, pytest.raises(ClientError) as raised:
        appmesh.list_meshes()
    assert raised.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "Signature expired" in raised.value.response["Error"]["Message"]


def test_a_body_changed_after_signing_is_refused(guarded: Server) -> None:
    appmesh = client(guarded, "appmesh")

    def tamper(request: Any, **_: Any) -> None:
        request.body = request.body.replace(b"honest", b"forged")

    appmesh.meta.events.register_last("before-send.app-mesh.CreateMesh", tamper)
    assert error_of(appmesh.create_mesh, meshName="honest") == ("InvalidSignatureException", 403)
    assert [m["meshName"] for m in client(guarded, "appmesh").list_meshes()["meshes"]].count(
        "forged"
    ) == 0


def _assumed(guarded: Server) -> dict[str, str]:
    sts = client(guarded, "sts")
    role = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-deploy-role"
    return dict(sts.assume_role(RoleArn=role, RoleSessionName="cdk")["Credentials"])


def _temporary(guarded: Server, service: str, credentials: dict[str, str], token: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=guarded.endpoint,
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=token,
        config=Config(retries={"max_attempts": 1}),
    )


def test_credentials_from_the_embedded_sts_are_verified_with_their_session_token(
    guarded: Server,
) -> None:
    """What the CDK CLI does: assume a role, then call with the temporary credentials."""
    issued = _assumed(guarded)
    assert issued["AccessKeyId"].startswith("ASIA")
    appmesh = _temporary(guarded, "appmesh", issued, issued["SessionToken"])
    appmesh.create_mesh(meshName="assumed")
    mesh = appmesh.describe_mesh(meshName="assumed")["mesh"]
    assert mesh["metadata"]["meshOwner"] == ACCOUNT
    assert "Buckets" in _temporary(guarded, "s3", issued, issued["SessionToken"]).list_buckets()


def test_temporary_credentials_with_a_wrong_session_token_or_secret_are_refused(
    guarded: Server,
) -> None:
    issued = _assumed(guarded)
    wrong_token = _temporary(guarded, "appmesh", issued, issued["SessionToken"][:-4] + "AAAA")
    assert error_of(wrong_token.list_meshes) == ("UnrecognizedClientException", 403)
    no_token = _temporary(guarded, "sts", issued, None)  # type: ignore[arg-type]
    assert error_of(no_token.get_caller_identity) == ("InvalidClientTokenId", 403)
    forged = _temporary(
        guarded, "appmesh", {**issued, "SecretAccessKey": "x"}, issued["SessionToken"]
    )
    assert error_of(forged.list_meshes) == ("InvalidSignatureException", 403)
    # a temporary key STS never issued is unknown
    last = "R" if issued["AccessKeyId"].endswith("Q") else "Q"
    other = {**issued, "AccessKeyId": issued["AccessKeyId"][:-1] + last}
    stranger = _temporary(guarded, "appmesh", other, issued["SessionToken"])
    assert error_of(stranger.list_meshes) == ("UnrecognizedClientException", 403)


def test_an_iam_users_access_key_from_the_embedded_iam_signs_as_that_account(
    guarded: Server,
) -> None:
    iam = client(guarded, "iam")
    iam.create_user(UserName="deployer")
    made = iam.create_access_key(UserName="deployer")["AccessKey"]
    appmesh = client(guarded, "appmesh", made["AccessKeyId"], made["SecretAccessKey"])
    appmesh.create_mesh(meshName="by-iam-user")
    mesh = appmesh.describe_mesh(meshName="by-iam-user")["mesh"]
    assert mesh["metadata"]["meshOwner"] == ACCOUNT  # the user's account, as in AWS
    forged = client(guarded, "appmesh", made["AccessKeyId"], "not-the-secret")
    assert error_of(forged.list_meshes) == ("InvalidSignatureException", 403)
    iam.update_access_key(UserName="deployer", AccessKeyId=made["AccessKeyId"], Status="Inactive")
    assert error_of(appmesh.list_meshes) == ("UnrecognizedClientException", 403)
