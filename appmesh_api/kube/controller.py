"""Store controller objects and reconcile them into App Mesh, as the controller did.

``apply`` takes a batch (one ``kubectl apply -f`` worth), checks every object, sees
the batch together with what is already stored (so a file may reference objects in
any order), then reconciles each object in dependency order through the App Mesh API:
create it, or update it in place; a router's routes are reconciled by name and a
route that left the manifest is deleted. An object is stored, with the controller's
``status`` (ARN, ``observedGeneration``, the ``...Active`` condition), only once App
Mesh accepted it, so a failure leaves nothing half-recorded and names the object.

``delete`` removes objects in reverse dependency order, App Mesh resource first.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from appmesh_api.kube.client import AppMeshCallError, Handle, InProcessAppMesh
from appmesh_api.kube.convert import Cluster, Desired, ObjectKey, app_mesh_kind, desired
from appmesh_api.kube.objects import (
    APPLY_ORDER,
    CORE_KINDS,
    KubeObject,
    ManifestError,
    Unresolved,
    in_apply_order,
    parse_object,
)
from appmesh_api.store import Store

_OPERATION_NAMES = {
    "mesh": "Mesh",
    "virtualNode": "VirtualNode",
    "virtualRouter": "VirtualRouter",
    "route": "Route",
    "virtualService": "VirtualService",
    "virtualGateway": "VirtualGateway",
    "gatewayRoute": "GatewayRoute",
}
_NAME_PARAMS = {
    "mesh": "meshName",
    "virtualNode": "virtualNodeName",
    "virtualRouter": "virtualRouterName",
    "route": "routeName",
    "virtualService": "virtualServiceName",
    "virtualGateway": "virtualGatewayName",
    "gatewayRoute": "gatewayRouteName",
}
_PARENT_PARAMS = {"route": "virtualRouterName", "gatewayRoute": "virtualGatewayName"}
_CASCADE = "appmesh-local/namespace-deleted-until"
# Seconds between deleting a namespace and its objects going (UNCONFIRMED: Kubernetes'
# namespace controller is asynchronous; kubectl expects the objects still there).
CASCADE_GRACE = 1.0


@dataclass
class Outcome:
    """What happened to one object: ``created``, ``configured``, ``unchanged``, ``deleted``,
    or an error message naming it."""

    obj: KubeObject
    action: str
    error: str | None = None
    waiting: str | None = None  # stored, but not Active yet: what it waits for

    def line(self) -> str:
        """kubectl's way of saying it: ``virtualnode.appmesh.k8s.aws/blue created``."""
        if self.error:
            return f"error: {self.error}"
        group = "" if self.obj.kind in CORE_KINDS else ".appmesh.k8s.aws"
        line = f"{self.obj.kind.lower()}{group}/{self.obj.name} {self.action}"
        return f"{line} (not active yet: {self.waiting})" if self.waiting else line


OnChange = Callable[[str, str, Cluster], object]


class KubeController:
    def __init__(self, store: Store, handle: Handle, on_change: OnChange | None = None) -> None:
        self.store = store
        self.handle = handle
        self.on_change = on_change  # after every write: e.g. Pods to Cloud Map

    def _changed(self, account: str, region: str) -> None:
        if self.on_change is not None:
            live = {
                key: obj
                for key, (obj, document) in self.stored(account, region).items()
                if not (document.get("metadata") or {}).get("deletionTimestamp")
            }
            self.on_change(account, region, Cluster(live))

    # -- reading -----------------------------------------------------------------------------
    def stored(self, account: str, region: str) -> dict[ObjectKey, tuple[KubeObject, dict]]:
        """Stored objects with their whole stored document, by (kind, namespace, name)."""
        found = {}
        for body in self.store.kube_objects(account, region):
            document = json.loads(body)
            obj = parse_object(document)
            found[obj.key] = (obj, document)
        return found

    def get(self, account: str, region: str) -> list[dict[str, Any]]:
        """Every stored object as Kubernetes shows it, status included."""
        return [json.loads(body) for body in self.store.kube_objects(account, region)]

    def document(self, account: str, region: str, key: ObjectKey) -> dict[str, Any] | None:
        found = self.stored(account, region).get(key)
        return None if found is None else found[1]

    # -- apply -------------------------------------------------------------------------------
    def apply(self, account: str, region: str, batch: list[KubeObject]) -> list[Outcome]:
        """Apply a batch; objects waiting on others are stored (not Active) and retried
        whenever something else is applied, as the controller's requeue did."""
        _check_unique(batch)
        stored = self.stored(account, region)
        view = {key: obj for key, (obj, _) in stored.items()}
        view.update({obj.key: obj for obj in batch})
        api = InProcessAppMesh(self.handle, account, region)
        outcomes = []
        for obj in in_apply_order(batch):
            outcomes.append(self._apply_one(api, account, region, obj, Cluster(view), stored))
        self._retry_pending(api, account, region)
        self._refresh_backend_groups(api, account, region, batch)
        self._retry_deletions(api, account, region)
        self._changed(account, region)
        return outcomes

    def _apply_one(
        self,
        api: InProcessAppMesh,
        account: str,
        region: str,
        obj: KubeObject,
        cluster: Cluster,
        stored: dict[ObjectKey, tuple[KubeObject, dict]],
    ) -> Outcome:
        previous = stored.get(obj.key)
        if previous and (previous[1].get("metadata") or {}).get("deletionTimestamp"):
            return Outcome(
                obj, "failed", f"{obj.label}: is being deleted; apply it once it is gone"
            )
        action = "configured" if previous else "created"
        if previous and previous[0].manifest() == obj.manifest() and _active(previous[1]):
            action = "unchanged"
        try:
            status = self._reconcile(api, obj, cluster, previous)
        except (Unresolved, AppMeshCallError) as exc:
            if isinstance(exc, AppMeshCallError) and exc.code != "NotFoundException":
                return Outcome(obj, "failed", _message(obj, exc))
            waiting = _message(obj, exc)
            self._save(account, region, obj, {}, previous, waiting=waiting)
            return Outcome(obj, action, waiting=waiting)
        except ManifestError as exc:
            return Outcome(obj, "failed", _message(obj, exc))
        self._save(account, region, obj, status, previous)
        return Outcome(obj, action)

    def _retry_pending(self, api: InProcessAppMesh, account: str, region: str) -> None:
        """Reconcile waiting objects until a round makes no progress."""
        for _ in range(len(APPLY_ORDER) + 1):
            stored = self.stored(account, region)
            waiting = [
                obj
                for obj, doc in stored.values()
                if not _active(doc) and not (doc.get("metadata") or {}).get("deletionTimestamp")
            ]
            cluster = Cluster({key: obj for key, (obj, _) in stored.items()})
            progress = False
            for obj in in_apply_order(waiting):
                try:
                    status = self._reconcile(api, obj, cluster, stored.get(obj.key))
                except (ManifestError, AppMeshCallError):
                    continue
                self._save(account, region, obj, status, stored.get(obj.key))
                progress = True
            if not progress:
                return

    def _reconcile(
        self,
        api: InProcessAppMesh,
        obj: KubeObject,
        cluster: Cluster,
        previous: tuple[KubeObject, dict] | None,
    ) -> dict[str, Any]:
        want = desired(obj, cluster)
        if want is None:
            return {}
        old_arn = (previous[1].get("status") or {}).get(_arn_field(obj.kind)) if previous else None
        if old_arn and old_arn != _arn_of(api, want):
            raise ManifestError(
                f"{obj.label}: its App Mesh name or mesh cannot change (it is {old_arn}); "
                "delete the object and apply it again"
            )
        arn = _put(api, want)
        status: dict[str, Any] = {_arn_field(obj.kind): arn}
        if want.kind == "virtualRouter":
            status["routeARNs"] = self._reconcile_routes(api, want)
        return status

    def _reconcile_routes(self, api: InProcessAppMesh, router: Desired) -> dict[str, str]:
        arns = {route.name: _put(api, route) for route in router.routes}
        where = _where(router) | {"virtualRouterName": router.name}
        existing = api.call("ListRoutes", **where).get("routes", [])
        for route in existing:
            if route["routeName"] not in arns:
                api.call("DeleteRoute", **where, routeName=route["routeName"])
        return arns

    def _refresh_backend_groups(
        self, api: InProcessAppMesh, account: str, region: str, batch: list[KubeObject]
    ) -> None:
        """Nodes that take backends from a BackendGroup (or ``*``) follow changes to the
        groups and services they stand for, as the controller re-reconciled them."""
        if not any(obj.kind in ("BackendGroup", "VirtualService") for obj in batch):
            return
        stored = self.stored(account, region)
        cluster = Cluster({key: obj for key, (obj, _) in stored.items()})
        applied = {obj.key for obj in batch}
        for key, (obj, doc) in stored.items():
            if obj.kind != "VirtualNode" or not obj.spec.get("backendGroups"):
                continue
            if key in applied or not _active(doc):
                continue
            want = desired(obj, cluster)
            if want is not None:
                _put(api, want)

    def _save(
        self,
        account: str,
        region: str,
        obj: KubeObject,
        status: dict[str, Any],
        previous: tuple[KubeObject, dict] | None,
        waiting: str | None = None,
    ) -> None:
        """Store the object with Kubernetes' server-side metadata and the controller's
        status: the ARN, observedGeneration and the ``...Active`` condition."""
        old = previous[1] if previous else {}
        old_meta = old.get("metadata") or {}
        generation = int(old_meta.get("generation") or 0)
        if not previous or previous[0].spec != obj.spec:
            generation += 1
        document = obj.manifest()
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        document["metadata"].update(
            uid=old_meta.get("uid") or str(uuid.uuid4()),
            creationTimestamp=old_meta.get("creationTimestamp") or now,
            generation=generation,
            resourceVersion=str(time.time_ns()),
        )
        if obj.kind not in ("Namespace", "BackendGroup", "Pod"):
            condition = {"type": f"{obj.kind}Active", "status": "True", "lastTransitionTime": now}
            if waiting:
                condition.update(status="False", reason="Pending", message=waiting)
            status["observedGeneration"] = generation
            status["conditions"] = [condition]
            document["status"] = status
        self.store.put_kube_object(account, region, obj.key, json.dumps(document))

    # -- delete ------------------------------------------------------------------------------
    def delete(self, account: str, region: str, batch: list[KubeObject]) -> list[Outcome]:
        """Delete objects, App Mesh resource first. One App Mesh cannot delete yet (a mesh
        that still has nodes, a node a route targets) is kept terminating, as the
        controller's finalizer kept it, and deleted once what holds it is gone; deleting
        a Namespace deletes the objects in it, as Kubernetes does."""
        stored = self.stored(account, region)
        api = InProcessAppMesh(self.handle, account, region)
        outcomes = []
        for obj in sorted(batch, key=lambda o: -APPLY_ORDER.index(o.kind)):
            found = stored.get(obj.key)
            if found is None:
                outcomes.append(Outcome(obj, "failed", not_found(obj)))
                continue
            if obj.kind == "Namespace":  # what is still there now, not at the start
                for key, (inner, document) in self.stored(account, region).items():
                    if inner.namespace == obj.name and key != obj.key:
                        self._terminate(account, region, inner, document, cascade=True)
            try:
                _remove(api, found[1].get("status") or {})
            except AppMeshCallError as exc:
                if exc.code != "ResourceInUseException":
                    outcomes.append(Outcome(obj, "failed", _message(obj, exc)))
                    continue
                self._terminate(account, region, obj, found[1], _message(obj, exc))
                outcomes.append(Outcome(obj, "deleted", waiting=_message(obj, exc)))
                continue
            self.store.delete_kube_object(account, region, obj.key)
            outcomes.append(Outcome(obj, "deleted"))
        self._retry_deletions(api, account, region)
        self._changed(account, region)
        return outcomes

    def _terminate(
        self,
        account: str,
        region: str,
        obj: KubeObject,
        document: dict,
        reason: str = "",
        cascade: bool = False,
    ) -> None:
        metadata = document.setdefault("metadata", {})
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        metadata.setdefault("deletionTimestamp", now)
        if cascade:  # Kubernetes empties a namespace a moment later, not within the call
            metadata.setdefault("annotations", {})[_CASCADE] = str(time.time() + CASCADE_GRACE)
        metadata["finalizers"] = ["finalizers.appmesh.k8s.aws/aws-resources"]
        if reason:
            metadata.setdefault("annotations", {})["appmesh-local/deletion-blocked"] = reason
        self.store.put_kube_object(account, region, obj.key, json.dumps(document))

    def settle(self, account: str, region: str) -> None:
        """Finish deletions that are due (a namespace's objects); reads call it first."""
        api = InProcessAppMesh(self.handle, account, region)
        if self._retry_deletions(api, account, region):
            self._changed(account, region)

    def _retry_deletions(self, api: InProcessAppMesh, account: str, region: str) -> bool:
        """Delete terminating objects whose App Mesh resource is free now, until a round
        makes no progress (children before parents, so one round rarely suffices).
        True when something was deleted."""
        deleted = False
        for _ in range(len(APPLY_ORDER) + 1):
            stored = self.stored(account, region)
            now = time.time()
            terminating = [
                (obj, doc)
                for obj, doc in stored.values()
                if (doc.get("metadata") or {}).get("deletionTimestamp")
                and float((doc["metadata"].get("annotations") or {}).get(_CASCADE, 0)) <= now
            ]
            progress = False
            for obj, doc in sorted(terminating, key=lambda p: -APPLY_ORDER.index(p[0].kind)):
                try:
                    _remove(api, doc.get("status") or {})
                except AppMeshCallError:
                    continue
                self.store.delete_kube_object(account, region, obj.key)
                progress = deleted = True
            if not progress:
                break
        return deleted


def not_found(obj: KubeObject) -> str:
    """Kubernetes' words: ``virtualnodes.appmesh.k8s.aws "blue" not found``."""
    plural = obj.info.plural + ("" if obj.kind in CORE_KINDS else ".appmesh.k8s.aws")
    return f'{plural} "{obj.name}" not found'


def _active(document: dict) -> bool:
    conditions = (document.get("status") or {}).get("conditions") or [{"status": "True"}]
    return conditions[0].get("status") == "True"


# -- App Mesh calls ---------------------------------------------------------------------------
def _where(want: Desired) -> dict[str, Any]:
    where: dict[str, Any] = {"meshName": want.mesh}
    if want.mesh_owner:
        where["meshOwner"] = want.mesh_owner
    return where


def _put(api: InProcessAppMesh, want: Desired) -> str:
    """Create ``want`` or update it in place; returns its ARN."""
    noun = _OPERATION_NAMES[want.kind]
    params = _where(want)
    if want.kind != "mesh":
        params[_NAME_PARAMS[want.kind]] = want.name
    if want.kind in _PARENT_PARAMS:
        params[_PARENT_PARAMS[want.kind]] = want.parent
    try:
        api.call(f"Describe{noun}", **params)
    except AppMeshCallError as exc:
        if exc.code != "NotFoundException":
            raise
        if want.kind == "mesh" and want.mesh_owner:
            raise  # a shared mesh is the owner's to create
        answer = api.call(f"Create{noun}", **params, spec=want.spec)
    else:
        answer = api.call(f"Update{noun}", **params, spec=want.spec)
    return next(iter(answer.values()))["metadata"]["arn"]


def _arn_of(api: InProcessAppMesh, want: Desired) -> str:
    """The ARN ``want`` has (or will have), to notice a rename before making it."""
    owner = want.mesh_owner or api.account
    base = f"arn:aws:appmesh:{api.region}:{owner}:mesh/{want.mesh}"
    if want.kind == "mesh":
        return base
    if want.kind == "route":
        return f"{base}/virtualRouter/{want.parent}/route/{want.name}"
    if want.kind == "gatewayRoute":
        return f"{base}/virtualGateway/{want.parent}/gatewayRoute/{want.name}"
    return f"{base}/{want.kind}/{want.name}"


def _remove(api: InProcessAppMesh, status: dict[str, Any]) -> None:
    """Delete the App Mesh resource (a router's routes first) a stored object made."""
    arn = next((v for k, v in status.items() if k.endswith("ARN") and isinstance(v, str)), None)
    if arn is None:
        return  # Namespace, BackendGroup: nothing in App Mesh
    for route_arn in (status.get("routeARNs") or {}).values():
        _delete_arn(api, route_arn)
    _delete_arn(api, arn)


def _delete_arn(api: InProcessAppMesh, arn: str) -> None:
    owner = arn.split(":")[4]
    parts = arn.split(":", 5)[5].split("/")  # mesh/M[/kind/N[/route/R]]
    params: dict[str, Any] = {"meshName": parts[1]}
    if len(parts) == 2:
        operation = "DeleteMesh"  # only the owner deletes a mesh: no meshOwner parameter
    else:
        params["meshOwner"] = owner
        kind, name = parts[-2], parts[-1]
        if len(parts) == 6:
            params[_PARENT_PARAMS[_kind_of(kind)]] = parts[3]
        params[_NAME_PARAMS[_kind_of(kind)]] = name
        operation = f"Delete{_OPERATION_NAMES[_kind_of(kind)]}"
    try:
        api.call(operation, **params)
    except AppMeshCallError as exc:
        if exc.code != "NotFoundException":  # already gone is what we wanted
            raise


def _kind_of(arn_kind: str) -> str:
    return {"route": "route", "gatewayRoute": "gatewayRoute"}.get(arn_kind, arn_kind)


def _arn_field(kind: str) -> str:
    """The status field the controller kept the ARN in: ``virtualNodeARN`` ..."""
    name = app_mesh_kind(kind) or kind[0].lower() + kind[1:]
    return f"{name}ARN"


def _message(obj: KubeObject, exc: Exception) -> str:
    text = str(exc)
    return text if text.startswith(obj.label) else f"{obj.label}: {text}"


def _check_unique(batch: list[KubeObject]) -> None:
    seen: set[ObjectKey] = set()
    for obj in batch:
        if obj.key in seen:
            raise ManifestError(f"{obj.label}: appears twice in the manifests")
        seen.add(obj.key)
