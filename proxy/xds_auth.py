"""Signing the proxy's xDS requests with SigV4, as App Mesh's Envoy signed its stream.

App Mesh's Envoy reached its management server with the task's or pod's credentials
and needed ``appmesh:StreamAggregatedResources`` on its own node's ARN; appmesh-local's
control plane likewise serves a node's config only to a request signed by the node's
account. The credentials are ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (and
``AWS_SESSION_TOKEN``) when set. Without them the proxy signs as the account its node
belongs to (the ARN's account, else ``APPMESH_MESH_OWNER``, else the local default) with
a placeholder secret, which a control plane without ``--verify-signatures`` accepts, so a
local mesh needs no credentials at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

DEFAULT_ACCOUNT = "123456789012"
Signer = Callable[[str, bytes], dict[str, str]]


def node_account(node_id: str, mesh_owner: str | None) -> str:
    """The account a node id names: an ARN's fifth field, else the mesh owner or default."""
    parts = node_id.split(":")
    if node_id.startswith("arn:") and len(parts) > 4 and parts[4]:
        return parts[4]
    return mesh_owner or DEFAULT_ACCOUNT


def credentials_from(env: Mapping[str, str], account: str) -> Credentials:
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(key, secret, env.get("AWS_SESSION_TOKEN") or None)
    return Credentials(account, "appmesh-local")


def xds_signer(credentials: Credentials, region: str) -> Signer:
    """``sign(url, body)`` -> the headers that SigV4-sign one xDS POST for ``appmesh``."""

    def sign(url: str, body: bytes) -> dict[str, str]:
        request = AWSRequest(
            method="POST", url=url, data=body, headers={"content-type": "application/json"}
        )
        SigV4Auth(credentials, "appmesh", region).add_auth(request)
        return dict(request.headers.items())

    return sign
