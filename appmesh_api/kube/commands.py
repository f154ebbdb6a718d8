"""``appmesh-local kube apply|delete|get``: App Mesh controller manifests, kubectl-style.

Manifests are read and checked here (so errors name the file), then sent, signed with
the caller's AWS credentials, to a running appmesh-local, which reconciles them.
Output follows kubectl's: ``virtualnode.appmesh.k8s.aws/blue created``.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

import boto3
import yaml
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from appmesh_api.kube.objects import KINDS, ManifestError, OtherKind, load_paths
from appmesh_api.settings import DEFAULT_ACCOUNT, DEFAULT_REGION
from appmesh_api.views.endpoint import unreachable


def _signed(method: str, url: str, body: bytes) -> urllib.request.Request:
    session = boto3.Session()
    credentials = session.get_credentials() or Credentials(DEFAULT_ACCOUNT, "local")
    request = AWSRequest(
        method=method, url=url, data=body, headers={"content-type": "application/json"}
    )
    SigV4Auth(credentials, "appmesh", session.region_name or DEFAULT_REGION).add_auth(request)
    return urllib.request.Request(
        url, data=body or None, method=method, headers=dict(request.headers)
    )


def _send(endpoint: str, method: str, path: str, payload: Any = None) -> dict:
    body = b"" if payload is None else json.dumps(payload).encode()
    request = _signed(method, f"{endpoint.rstrip('/')}/_appmesh/kube/{path}", body)
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as error:
        message = json.loads(error.read() or b"{}").get("message", error.reason)
        raise ManifestError(f"{message}") from error
    except urllib.error.URLError as error:
        raise ManifestError(unreachable(endpoint)) from error


SKIP_HINT = (
    "; pass --skip-other-kinds to apply the App Mesh objects and skip the others "
    "(appmesh-local runs no workloads)"
)


def apply_or_delete(verb: str, files: list[str], endpoint: str, skip_other: bool = False) -> int:
    """Send the files' objects to the server; with ``skip_other``, objects of other kinds
    (the walkthroughs' Deployments and Services) are left out, each named on stdout."""
    skipped: list[OtherKind] | None = [] if skip_other else None
    try:
        objects = load_paths(files, skipped)
        for other in skipped or []:
            print(other.line)
        if not objects:
            raise ManifestError("no objects passed to " + verb)
        answer = _send(endpoint, "POST", verb, {"objects": [o.manifest() for o in objects]})
    except OtherKind as exc:
        print(f"error: {exc}{SKIP_HINT}", file=sys.stderr)
        return 1
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = 0
    for result in answer["results"]:
        if result["error"]:
            failed += 1
            print(result["line"], file=sys.stderr)
        else:
            print(result["line"])
    return 1 if failed else 0


def get(kind: str | None, output: str, endpoint: str) -> int:
    wanted = _kind(kind) if kind else None
    if kind and wanted is None:
        print(f'error: the server doesn\'t have a resource type "{kind}"', file=sys.stderr)
        return 1
    try:
        items = _send(endpoint, "GET", "objects")["items"]
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    items = [i for i in items if wanted is None or i["kind"] == wanted]
    if output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2))
    elif output == "yaml":
        print(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}, sort_keys=False))
    else:
        _table(items)
    return 0


def _kind(text: str) -> str | None:
    """``virtualnodes``, ``virtualnode``, ``VirtualNode`` and ``vn``-free plurals all work."""
    lowered = text.lower().removesuffix(".appmesh.k8s.aws")
    for kind, info in KINDS.items():
        if lowered in (kind.lower(), info.plural, info.plural.rstrip("s")):
            return kind
    return None


def _table(items: list[dict]) -> None:
    rows = [("KIND", "NAMESPACE", "NAME", "ARN", "ACTIVE")]
    for item in items:
        status = item.get("status") or {}
        arn = next((v for k, v in status.items() if k.endswith("ARN")), "")
        conditions = status.get("conditions") or [{}]
        rows.append(
            (
                item["kind"],
                item["metadata"].get("namespace", ""),
                item["metadata"]["name"],
                arn,
                conditions[0].get("status", ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def kubeconfig(endpoint: str) -> int:
    """A kubeconfig for kubectl: the cluster is this account and region's object set."""
    session = boto3.Session()
    credentials = session.get_credentials()
    key = credentials.access_key if credentials else DEFAULT_ACCOUNT
    account = key if key.isdigit() and len(key) == 12 else DEFAULT_ACCOUNT
    region = session.region_name or DEFAULT_REGION
    server = f"{endpoint.rstrip('/')}/_appmesh/kube/clusters/{account}/{region}"
    name = f"appmesh-local-{account}-{region}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": {"token": "appmesh-local"}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}
        ],
        "current-context": name,
    }
    print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0
