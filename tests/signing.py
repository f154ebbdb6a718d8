"""Requests signed the way AWS clients sign them, for endpoints boto3 has no client for.

xDS and ``/_appmesh/proxies`` serve an account's data only to a request whose SigV4
credential scope names that account, so tests sign those requests with botocore.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from proxy.xds_auth import node_account


def signed_headers(
    method: str, url: str, body: bytes, account: str, secret: str = "local"
) -> dict[str, str]:
    """The headers of a SigV4 signature for ``appmesh`` by ``account`` (its own key id)."""
    request = AWSRequest(
        method=method, url=url, data=body, headers={"content-type": "application/json"}
    )
    SigV4Auth(Credentials(account, secret), "appmesh", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def xds_request(url: str, document: dict, account: str | None = None) -> urllib.request.Request:
    """A DiscoveryRequest POST signed by the node's account (or ``account``)."""
    node = document.get("node") or {}
    owner = (node.get("metadata") or {}).get("appmesh_local.mesh_owner")
    signer = account or node_account(str(node.get("id") or ""), owner)
    body = json.dumps(document).encode()
    headers = signed_headers("POST", url, body, signer)
    return urllib.request.Request(url, data=body, headers=headers, method="POST")


def proxies_of(endpoint: str, account: str) -> list[dict[str, Any]]:
    """``/_appmesh/proxies`` as ``account`` sees it."""
    url = f"{endpoint}/_appmesh/proxies"
    request = urllib.request.Request(url, headers=signed_headers("GET", url, b"", account))
    with urllib.request.urlopen(request, timeout=5) as reply:
        return list(json.loads(reply.read())["proxies"])


ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def aws_iam_metadata(
    url: str, key: str, secret: str, region: str = "us-east-1", token: str | None = None
) -> tuple[tuple[str, str], ...]:
    """The call metadata Envoy's ``envoy.grpc_credentials.aws_iam`` plugin sends for a gRPC
    call to ``url`` (``https://<authority><path>``): a bodiless ``POST`` signed for
    ``appmesh`` with botocore, covering host, ``x-amz-content-sha256`` (of nothing) and
    ``x-amz-date`` (and the session token), sent with lower-case names as gRPC needs."""
    request = AWSRequest(method="POST", url=url, headers={"X-Amz-Content-SHA256": EMPTY_SHA256})
    SigV4Auth(Credentials(key, secret, token), "appmesh", region).add_auth(request)
    return tuple((name.lower(), value) for name, value in request.headers.items())


class AwsIamPlugin:
    """A grpcio call-credentials plugin that signs each call as Envoy's ``aws_iam`` does:
    over ``service_url/method_name``, the URL gRPC core gives every call-credentials
    plugin (``https://<authority without :443><service>``)."""

    def __init__(self, key: str, secret: str, host: str | None = None) -> None:
        self.key, self.secret, self.host = key, secret, host
        self.signed_urls: list[str] = []

    def __call__(self, context: Any, callback: Any) -> None:
        url = f"{context.service_url}/{context.method_name}"
        if self.host is not None:  # a signature made for another endpoint
            url = f"https://{self.host}{ADS_METHOD}"
        self.signed_urls.append(url)
        callback(aws_iam_metadata(url, self.key, self.secret), None)
