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
