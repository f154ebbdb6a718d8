"""With ``--aws-endpoint`` the control plane exports ACM material from that endpoint.

Server ``aws`` plays the AWS side (its embedded ACM and ACM PCA hold the CA and the
certificate); server ``local`` runs App Mesh with ``--aws-endpoint`` pointing at it and
must deliver the certificate to its node's proxy as an SDS secret.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import Server, make_client, new_account, start_server
from tests.private_ca import create_root_ca, request_private
from tests.signing import xds_request


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    tmp = tmp_path_factory.mktemp("aws-endpoint")
    aws = start_server(tmp)
    local = start_server(tmp, "--aws-endpoint", aws.endpoint)
    yield aws, local
    local.stop()
    aws.stop()


def test_the_certificate_comes_from_the_aws_endpoint(servers: tuple[Server, Server]) -> None:
    aws, local = servers
    account = new_account()
    ca = create_root_ca(make_client(aws.endpoint, "acm-pca", account), "remote root")
    arn = request_private(make_client(aws.endpoint, "acm", account), ca, "teller.local")
    appmesh = make_client(local.endpoint, "appmesh", account)
    appmesh.create_mesh(meshName="remote")
    tls = {"mode": "STRICT", "certificate": {"acm": {"certificateArn": arn}}}
    listener = {"portMapping": {"port": 8080, "protocol": "http"}, "tls": tls}
    spec = {"listeners": [listener], "serviceDiscovery": {"dns": {"hostname": "teller.local"}}}
    appmesh.create_virtual_node(meshName="remote", virtualNodeName="teller", spec=spec)
    node = f"arn:aws:appmesh:us-east-1:{account}:mesh/remote/virtualNode/teller"
    document = {"node": {"id": node, "cluster": node}, "resource_names": [arn]}
    deadline, secrets = time.monotonic() + 15, []
    while not secrets and time.monotonic() < deadline:
        request = xds_request(f"{local.endpoint}/v3/discovery:secrets", document)
        with urllib.request.urlopen(request, timeout=10) as reply:
            secrets = json.loads(reply.read())["resources"]
    assert [secret["name"] for secret in secrets] == [arn]
    assert "PRIVATE KEY" in secrets[0]["tls_certificate"]["private_key"]["inline_string"]
