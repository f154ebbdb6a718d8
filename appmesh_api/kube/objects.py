"""Manifests in, ``KubeObject``s out: the App Mesh controller's kinds and ``Namespace``.

A manifest file holds one or more YAML (or JSON) documents; a document may be a
``List`` of objects, as ``kubectl get -o yaml`` writes. Only the kinds the App Mesh
controller reconciled, plus ``Namespace`` (whose labels decide mesh membership), are
accepted: anything else is refused with the kind named, because silently skipping
a Deployment would look like it had been applied. A caller that asks to skip them
(``kube apply --skip-other-kinds``) passes a ``skipped`` list and gets one
kubectl-style line per object left out, so the skip is said, not silent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

GROUP = "appmesh.k8s.aws"
VERSIONS = ("v1beta2",)


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    namespaced: bool
    api_version: str


KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo("Namespace", "namespaces", False, "v1"),
        KindInfo("Pod", "pods", True, "v1"),
        KindInfo("Mesh", "meshes", False, f"{GROUP}/v1beta2"),
        KindInfo("VirtualGateway", "virtualgateways", True, f"{GROUP}/v1beta2"),
        KindInfo("VirtualNode", "virtualnodes", True, f"{GROUP}/v1beta2"),
        KindInfo("VirtualRouter", "virtualrouters", True, f"{GROUP}/v1beta2"),
        KindInfo("VirtualService", "virtualservices", True, f"{GROUP}/v1beta2"),
        KindInfo("GatewayRoute", "gatewayroutes", True, f"{GROUP}/v1beta2"),
        KindInfo("BackendGroup", "backendgroups", True, f"{GROUP}/v1beta2"),
    )
}
# The order the controller's objects can be created in: what a kind refers to comes first.
APPLY_ORDER = (
    "Namespace",
    "Mesh",
    "VirtualGateway",
    "VirtualNode",
    "VirtualRouter",
    "VirtualService",
    "BackendGroup",
    "GatewayRoute",
    "Pod",
)
CORE_KINDS = ("Namespace", "Pod")  # served under /api/v1, not appmesh.k8s.aws
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


class ManifestError(ValueError):
    """A manifest that cannot be applied; the message names the file and object."""


class OtherKind(ManifestError):
    """An object of a kind appmesh-local does not serve (a Deployment, a Service...).

    ``line`` names it as kubectl does (``deployment.apps/colorteller``) and says why
    it was skipped, for callers that skip such objects instead of refusing the file."""

    def __init__(self, message: str, kind: str, api_version: Any, name: Any) -> None:
        super().__init__(message)
        group = str(api_version).rpartition("/")[0] if isinstance(api_version, str) else ""
        resource = f"{kind.lower()}.{group}" if group else kind.lower()
        self.line = (
            f"{resource}/{name or ''} skipped (not an App Mesh kind: "
            "appmesh-local runs no workloads)"
        )


class Unresolved(ManifestError):
    """An object that names something not there yet (its mesh, gateway, a referenced
    object). Kubernetes accepts such an object and the controller retries it; so does
    appmesh-local: it is stored as not Active and reconciled when its target arrives."""


@dataclass
class KubeObject:
    kind: str
    name: str
    namespace: str  # "" for cluster-scoped kinds (Namespace, Mesh)
    spec: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    source: str = ""  # where it came from, for error messages
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def info(self) -> KindInfo:
        return KINDS[self.kind]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def label(self) -> str:
        """``VirtualNode default/colorteller-blue``: how errors name an object."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"

    def manifest(self) -> dict[str, Any]:
        """The object as Kubernetes would show it (without status)."""
        metadata: dict[str, Any] = {"name": self.name}
        if self.namespace:
            metadata["namespace"] = self.namespace
        if self.labels:
            metadata["labels"] = dict(self.labels)
        if self.annotations:
            metadata["annotations"] = dict(self.annotations)
        body: dict[str, Any] = {
            "apiVersion": self.info.api_version,
            "kind": self.kind,
            "metadata": metadata,
        }
        if self.kind != "Namespace":
            body["spec"] = self.spec
        return body


def load_text(
    text: str, source: str = "<stdin>", skipped: list[OtherKind] | None = None
) -> list[KubeObject]:
    """Every object in one manifest text, in document order. Objects of other kinds are
    refused, or, when ``skipped`` is given, left out and recorded there."""
    if len(text.encode()) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{source}: larger than {MAX_MANIFEST_BYTES // 1024 // 1024} MiB")
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML: {exc}") from exc
    found: list[KubeObject] = []
    for doc in (d for d in documents if d is not None):  # an empty document: `---` twice
        for item in _flattened(doc, source):
            try:
                found.append(parse_object(item, source))
            except OtherKind as other:
                if skipped is None:
                    raise
                skipped.append(other)
    return found


def load_paths(paths: Iterable[str], skipped: list[OtherKind] | None = None) -> list[KubeObject]:
    """Objects from files and directories (``*.yaml``, ``*.yml``, ``*.json``, sorted), as
    ``kubectl apply -f`` reads them; ``-`` is standard input. ``skipped`` as in
    ``load_text``."""
    found: list[KubeObject] = []
    for path in paths:
        for file in _files(Path(path)):
            try:
                text = file.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise ManifestError(f"{file}: cannot read: {exc}") from exc
            found.extend(load_text(text, str(file), skipped))
    return found


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(
            p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
        )
    elif path.exists():
        yield path
    else:
        raise ManifestError(f"{path}: no such file or directory")


def _flattened(doc: Any, source: str) -> Iterator[dict[str, Any]]:
    """The objects of one document: itself, or the items of a ``List`` (nested too)."""
    if not isinstance(doc, dict):
        raise ManifestError(f"{source}: a manifest document must be an object")
    if doc.get("kind") == "List" or str(doc.get("kind", "")).endswith("List"):
        for item in doc.get("items") or []:
            yield from _flattened(item, source)
        return
    yield doc


def parse_object(doc: dict[str, Any], source: str = "") -> KubeObject:
    """One manifest object, checked for what the API server would check."""
    kind = doc.get("kind")
    api_version = doc.get("apiVersion")
    metadata = doc.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    where = f"{source}: " if source else ""
    if not isinstance(kind, str) or not kind:
        raise ManifestError(f"{where}object has no kind")
    info = KINDS.get(kind)
    if info is None:
        raise OtherKind(
            f"{where}{kind} {name or ''}: appmesh-local is not a Kubernetes cluster; it "
            f"applies only the App Mesh controller's kinds ({', '.join(KINDS)})".replace("  ", " "),
            kind,
            api_version,
            name,
        )
    if api_version != info.api_version:
        raise ManifestError(
            f"{where}{kind} {name or ''}: apiVersion {api_version!r} is not served; "
            f"use {info.api_version}"
        )
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > 253:
        raise ManifestError(f"{where}{kind}: metadata.name {name!r} is not a valid name")
    namespace = str(metadata.get("namespace") or ("default" if info.namespaced else ""))
    if not info.namespaced and metadata.get("namespace"):
        raise ManifestError(f"{where}{kind} {name}: is cluster-scoped and takes no namespace")
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ManifestError(f"{where}{kind} {name}: metadata.labels must map strings to strings")
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise ManifestError(f"{where}{kind} {name}: metadata.annotations must map strings")
    spec = doc.get("spec") or {}
    if not isinstance(spec, dict):
        raise ManifestError(f"{where}{kind} {name}: spec must be an object")
    return KubeObject(kind, name, namespace, spec, dict(labels), source, dict(annotations))


def in_apply_order(objects: Iterable[KubeObject]) -> list[KubeObject]:
    """Stable sort by ``APPLY_ORDER``, so a file may list objects in any order."""
    return sorted(objects, key=lambda obj: APPLY_ORDER.index(obj.kind))
