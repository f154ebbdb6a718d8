"""The App Mesh API's behaviour: one generic implementation for all seven kinds.

Parameters arrive already parsed and checked against botocore's model
(``protocol.py``); here live the rules of the service itself: who may touch what
in a shared mesh, references and deletes, quotas, clientToken idempotency,
metadata and pagination. Every method runs to completion without awaiting, on
the event loop's thread, so each check-then-write is atomic: concurrent writers
are serialized and never lose an update.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from botocore.model import StructureShape

from appmesh_api import kinds, rules
from appmesh_api.arns import build_arn
from appmesh_api.changefeed import ChangeFeed
from appmesh_api.defaults import complete_spec
from appmesh_api.dependencies import (
    REFERABLE,
    check_delete,
    check_references,
    contents,
    referenced_keys,
)
from appmesh_api.errors import (
    BadRequestException,
    ConflictException,
    ForbiddenException,
    LimitExceededException,
    NotFoundException,
)
from appmesh_api.identity import Caller
from appmesh_api.kinds import Kind
from appmesh_api.model import service_model
from appmesh_api.pagination import paginate
from appmesh_api.ram.shares import Shares
from appmesh_api.settings import Settings
from appmesh_api.store import (
    Guard,
    Key,
    MeshKey,
    QuotaReached,
    Record,
    Store,
    StoreConflict,
    Tally,
)
from appmesh_api.tagging import Tagging

#: A write that loses races this often to other replicas' writes is refused with
#: ConflictException (UNCONFIRMED: App Mesh documents no concurrent-modification error).
CONFLICT_RETRIES = 5

Result = dict[str, Any]

#: [M] clientToken: "Up to 36 letters, numbers, hyphens, and underscores are allowed."
_CLIENT_TOKEN = re.compile(r"[A-Za-z0-9_-]{0,36}")


class AppMeshService:
    """Executes App Mesh operations against a Store and announces changes on a ChangeFeed."""

    def __init__(
        self, store: Store, feed: ChangeFeed, settings: Settings, shares: Shares | None = None
    ) -> None:
        self.store = store
        self.feed = feed
        self.settings = settings
        self.shares = shares or Shares()
        self.tagging = Tagging(store, self._commit)

    # -- entry point ---------------------------------------------------------------
    def call(self, operation: str, params: dict[str, Any], caller: Caller) -> Result:
        """Run ``operation`` (a botocore operation name) for ``caller``.

        A write that lost a race with another replica (``StoreConflict``) is decided again
        on the refreshed state, a few times, before the caller gets a ConflictException.
        """
        for _attempt in range(CONFLICT_RETRIES):
            try:
                return self._call(operation, params, caller)
            except StoreConflict:
                continue
        raise ConflictException(
            f"{operation} lost {CONFLICT_RETRIES} races with concurrent writes to the same "
            "resource on other control-plane replicas. Retry the request."
        )

    def _call(self, operation: str, params: dict[str, Any], caller: Caller) -> Result:
        tag_handler = self.tagging.handler(operation)
        if tag_handler is not None:
            return tag_handler(params, caller)
        split = kinds.split_operation(operation)
        if split is None:
            raise NotFoundException(f"Unknown operation {operation}")
        verb, kind = split
        if not (verb == "Create" and kind is kinds.MESH):
            self._check_shared(params, caller)
        handler: Callable[..., Result] = getattr(self, f"_{verb.lower()}")
        token = params.get("clientToken")
        if token is not None and not _CLIENT_TOKEN.fullmatch(token):
            shown = token if len(token) <= 80 else token[:77] + "..."
            raise BadRequestException(
                f"1 validation error detected: Value '{shown}' at 'clientToken' failed to "
                "satisfy constraint: Member must have length less than or equal to 36 and "
                "contain only letters, numbers, hyphens, and underscores"
            )
        if verb in ("Create", "Update") and token:
            return self._idempotent(
                operation, params, caller, lambda t: handler(kind, params, caller, t)
            )
        return handler(kind, params, caller, None)

    def _idempotent(self, operation: str, params: dict, caller: Caller, run) -> Result:
        """Same token and input: the original result; same token, other input: Conflict."""
        token = params["clientToken"]
        body = {k: v for k, v in params.items() if k != "clientToken"}
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        token_key = (caller.account, caller.region, operation, token)
        seen = self.store.client_token(*token_key)
        if seen is not None:
            if seen[0] != fingerprint:
                raise ConflictException(
                    f"The clientToken {token} was used for a previous {operation} call with "
                    "different specifications. Use a new clientToken for a different request."
                )
            return json.loads(seen[1])
        return run((token_key, fingerprint))

    def _check_shared(self, params: dict, caller: Caller) -> None:
        """Another account's mesh is reachable only through an accepted RAM share.

        App Mesh answered a mesh it had not been shared as missing (NotFoundException,
        reference §1.9); ``--share-all-meshes`` keeps the old every-mesh-is-open rule.
        """
        owner = params.get("meshOwner")
        if not owner or owner == caller.account or self.settings.share_all_meshes:
            return
        mesh = params["meshName"]
        arn = build_arn(caller.region, owner, mesh, kinds.MESH, mesh)
        if not self.shares.allows(arn, caller.account, caller.region):
            raise NotFoundException(f"Mesh with name {mesh} is not present for account {owner}")

    # -- locating ------------------------------------------------------------------
    @staticmethod
    def _mesh_key(params: dict, caller: Caller) -> MeshKey:
        return MeshKey(caller.region, params.get("meshOwner") or caller.account, params["meshName"])

    def _key(self, kind: Kind, params: dict, caller: Caller) -> Key:
        mesh = self._mesh_key(params, caller)
        if kind is kinds.MESH:
            return Key(mesh.region, mesh.mesh_owner, mesh.mesh, "mesh", "", mesh.mesh)
        parent = params[kind.parent.name_param] if kind.parent else ""
        return Key(*mesh, kind.key, parent, params[kind.name_param])

    def _require_mesh(self, mesh: MeshKey) -> Record:
        record = self.store.get(Key(*mesh, "mesh", "", mesh.mesh))
        if record is None:
            raise NotFoundException(
                f"Mesh with name {mesh.mesh} is not present for account {mesh.mesh_owner}"
            )
        return record

    def _require(self, key: Key, kind: Kind) -> Record:
        record = self.store.get(key)
        if record is not None:
            return record
        if kind is kinds.MESH:
            self._require_mesh(key.mesh_key)
        where = f"under mesh {key.mesh}"
        if kind.parent is not None:
            where = f"under {kind.parent.api_name} {key.parent} in mesh {key.mesh}"
        raise NotFoundException(
            f"{kind.api_name} with name {key.name} is not present {where} "
            f"for account {key.mesh_owner}"
        )

    def _require_container(self, kind: Kind, key: Key) -> Record | None:
        """The mesh must exist; routes also need their router (gateway routes their gateway)."""
        if kind is kinds.MESH:
            return None
        self._require_mesh(key.mesh_key)
        if kind.parent is None:
            return None
        parent_key = Key(*key.mesh_key, kind.parent.key, "", key.parent)
        return self._require(parent_key, kind.parent)

    # -- verbs ---------------------------------------------------------------------
    def _create(self, kind: Kind, params: dict, caller: Caller, token) -> Result:
        key = self._key(kind, params, caller)
        if kind is kinds.MESH and params.get("meshOwner"):
            key = key._replace(mesh_owner=caller.account)
        if "/" in key.name:
            # Choice (UNCONFIRMED): the model sets no pattern, but a '/' would make the ARN
            # ambiguous (mesh "m/virtualNode/n" against node "n" of mesh "m").
            raise BadRequestException(
                f"1 validation error detected: Value '{key.name}' at '{kind.name_param}' failed "
                "to satisfy constraint: Member must not contain '/'"
            )
        parent = self._require_container(kind, key)
        if kind.parent is not None and parent is not None:
            owner = parent.data["metadata"]["resourceOwner"]
            if owner != caller.account:
                raise ForbiddenException(
                    f"Only the owner of {kind.parent.api_name} {key.parent} "
                    f"(account {owner}) can create {kind.plural} in it"
                )
        if self.store.get(key) is not None:
            raise ConflictException(
                f"{kind.api_name} with name {key.name} already exists "
                f"{'' if kind is kinds.MESH else f'in mesh {key.mesh} '}"
                f"for account {key.mesh_owner}"
            )
        self._check_quota(kind, key)
        spec = complete_spec(kind, params.get("spec") or {})
        self._check_spec(kind, key, spec, parent)
        now = round(time.time(), 3)
        metadata = {
            "arn": build_arn(key.region, caller.account, key.mesh, kind, key.name, key.parent),
            "createdAt": now,
            "lastUpdatedAt": now,
            "meshOwner": key.mesh_owner,
            "resourceOwner": caller.account,
            "uid": str(uuid.uuid4()),
            "version": 1,
        }
        data = self._data(kind, key, spec, metadata, "ACTIVE")
        tags = {tag["key"]: tag.get("value", "") for tag in params.get("tags") or ()}
        result = {kind.key: data}
        guard = Guard(
            counted=Tally.of(key),
            limit=self.settings.quota(kind.quota),
            container=self._container_key(kind, key),
            referenced=tuple(sorted(referenced_keys(key.mesh_key, kind, spec))),
        )
        try:
            self._commit(
                Record(key, data, tags), token=self._token_record(token, result), guard=guard
            )
        except QuotaReached:
            raise self._quota_exceeded(kind, key) from None
        return copy.deepcopy(result)

    def _describe(self, kind: Kind, params: dict, caller: Caller, _token) -> Result:
        key = self._key(kind, params, caller)
        self._require_container(kind, key)
        return {kind.key: self._require(key, kind).data}

    def _update(self, kind: Kind, params: dict, caller: Caller, token) -> Result:
        key = self._key(kind, params, caller)
        parent = self._require_container(kind, key)
        record = self._require(key, kind)
        self._check_owner(record, caller, "update")
        spec = complete_spec(kind, params.get("spec") or {})
        self._check_spec(kind, key, spec, parent)
        self._check_listener_change(kind, key, spec)
        data = copy.deepcopy(record.data)
        data["spec"] = spec
        data["metadata"]["version"] += 1
        data["metadata"]["lastUpdatedAt"] = round(time.time(), 3)
        result = {kind.key: data}
        before = self._known(referenced_keys(key.mesh_key, kind, record.data["spec"]))
        after = referenced_keys(key.mesh_key, kind, spec)
        guard = Guard(
            referenced=tuple(sorted(after - before)), released=tuple(sorted(before - after))
        )
        record = Record(key, data, record.tags)
        self._commit(record, token=self._token_record(token, result), guard=guard)
        return copy.deepcopy(result)

    def _delete(self, kind: Kind, params: dict, caller: Caller, _token) -> Result:
        key = self._key(kind, params, caller)
        self._require_container(kind, key)
        record = self._require(key, kind)
        if caller.account not in (record.data["metadata"]["resourceOwner"], key.mesh_owner):
            self._check_owner(record, caller, "delete")
        check_delete(self.store, key.mesh_key, kind, key.name)
        guard = Guard(
            uncounted=Tally.of(key),
            empty=contents(key),
            released=tuple(
                sorted(self._known(referenced_keys(key.mesh_key, kind, record.data["spec"])))
            ),
            unreferenced=kind.key in REFERABLE,
        )
        self._commit(None, delete=key, guard=guard)
        data = copy.deepcopy(record.data)
        data["status"]["status"] = "DELETED"
        return {kind.key: data}

    def _list(self, kind: Kind, params: dict, caller: Caller, _token) -> Result:
        if kind is kinds.MESH:
            records = self._visible_meshes(caller)
            listing = [caller.region, caller.account]
        else:
            key = self._key(kind, {**params, kind.name_param: ""}, caller)
            self._require_container(kind, key)
            records = self.store.children(key.mesh_key, kind.key, key.parent)
            listing = [*key.mesh_key, key.parent]
        # The token's scope is the listing itself (kind and container), so a token from one
        # mesh's, router's or account's listing is refused by any other.
        scope = f"{kind.key}:{json.dumps(listing, separators=(',', ':'))}"
        page, next_token = paginate(
            sorted(records), params.get("limit"), params.get("nextToken"), scope
        )
        refs = [self._ref(kind, records[name].data) for name in page]
        return {kind.list_member: refs, "nextToken": next_token}

    # -- helpers -------------------------------------------------------------------
    def _visible_meshes(self, caller: Caller) -> dict[str, Record]:
        """The caller's meshes and those shared with it through an accepted RAM share.

        App Mesh's ``MeshRef.meshOwner`` is documented as "the ID of the account that shared
        the mesh with your account" when it is not yours, so ListMeshes lists shared meshes
        too, each with its owner. Keyed (and so sorted and paginated) by ARN: two owners
        may each have a mesh of the same name.
        """
        owned = self.store.meshes_owned_by(caller.region, caller.account).values()
        records = {record.data["metadata"]["arn"]: record for record in owned}
        for share in self.shares.shared_with(caller.account, caller.region):
            for arn in share.resources:
                record = self.store.get_by_arn(arn)
                if record is not None and record.key.kind == kinds.MESH.key:
                    records[arn] = record
        return records

    @staticmethod
    def _data(kind: Kind, key: Key, spec: dict, metadata: dict, status: str) -> dict:
        data: dict[str, Any] = {"meshName": key.mesh}
        if kind is not kinds.MESH:
            data[kind.name_param] = key.name
        if kind.parent is not None:
            data[kind.parent.name_param] = key.parent
        data.update({"spec": spec, "metadata": metadata, "status": {"status": status}})
        return data

    @staticmethod
    def _ref(kind: Kind, data: dict) -> dict:
        """A list entry: the Ref shape's members, taken from the data and its metadata."""
        ref_shape = service_model().shape_for(f"{kind.api_name}Ref")
        assert isinstance(ref_shape, StructureShape)
        metadata = data["metadata"]
        return {
            member: data[member] if member in data else metadata.get(member)
            for member in ref_shape.members
        }

    def _check_owner(self, record: Record, caller: Caller, action: str) -> None:
        owner = record.data["metadata"]["resourceOwner"]
        if owner != caller.account:
            raise ForbiddenException(
                f"Account {caller.account} cannot {action} {record.data['metadata']['arn']}: "
                f"it is owned by account {owner}. Only a resource's owner may {action} it."
            )

    def _check_quota(self, kind: Kind, key: Key) -> None:
        """Against this replica's index: exact with one writer; with replicas sharing a
        table, the store's ``Guard.counted`` check is the exact one (``QuotaReached``)."""
        if kind is kinds.MESH:
            count = self.store.count_meshes(key.region, key.mesh_owner)
        else:
            count = len(self.store.children(key.mesh_key, kind.key, key.parent))
        if count >= self.settings.quota(kind.quota):
            raise self._quota_exceeded(kind, key)

    def _quota_exceeded(self, kind: Kind, key: Key) -> LimitExceededException:
        if kind is kinds.MESH:
            scope = f"account {key.mesh_owner}"
        else:
            scope = f"{kind.parent.api_name} {key.parent}" if kind.parent else f"mesh {key.mesh}"
        limit = self.settings.quota(kind.quota)
        return LimitExceededException(
            f"The maximum number of {kind.plural} in {scope} ({limit}) has been reached "
            f"(quota {self.settings.quota_code(kind.quota)}). Delete unused {kind.plural}, "
            f"or start appmesh-local with --quota {kind.quota.replace('_', '-')}=N."
        )

    @staticmethod
    def _container_key(kind: Kind, key: Key) -> Key | None:
        """What a new resource lives in: its router or gateway, else its mesh."""
        if kind is kinds.MESH:
            return None
        if kind.parent is not None:
            return Key(*key.mesh_key, kind.parent.key, "", key.parent)
        return Key(*key.mesh_key, "mesh", "", key.mesh)

    def _known(self, keys: set[Key]) -> set[Key]:
        """Those of ``keys`` that exist (a reference to a missing resource, left by an
        older table, is nothing to release)."""
        return {key for key in keys if self.store.get(key) is not None}

    def _check_spec(self, kind: Kind, key: Key, spec: dict, parent: Record | None) -> None:
        if kind is kinds.VIRTUAL_NODE:
            self._check_backends(spec)
        if kind is kinds.ROUTE or kind is kinds.GATEWAY_ROUTE:
            assert parent is not None  # _require_container returned the router or gateway
            check = (
                rules.check_route_spec if kind is kinds.ROUTE else rules.check_gateway_route_spec
            )
            check(spec, parent.data["spec"], key.parent)
        else:
            SPEC_CHECKS[kind.key](spec)
        check_references(self.store, key.mesh_key, kind, spec)

    def _check_backends(self, spec: dict) -> None:
        limit = self.settings.quota("backends_per_virtual_node")
        backends = spec.get("backends") or ()
        if len(backends) > limit:
            raise LimitExceededException(
                f"A VirtualNode may have at most {limit} backends; this spec has "
                f"{len(backends)}. Remove backends, or start appmesh-local with "
                "--quota backends-per-virtual-node=N."
            )

    def _check_listener_change(self, kind: Kind, key: Key, spec: dict) -> None:
        if kind is kinds.VIRTUAL_ROUTER:
            routes = self.store.children(key.mesh_key, "route", key.name)
            rules.check_router_listeners_against_routes(
                spec, {name: r.data["spec"] for name, r in routes.items()}
            )
        elif kind is kinds.VIRTUAL_GATEWAY:
            routes = self.store.children(key.mesh_key, "gatewayRoute", key.name)
            rules.check_gateway_listeners_against_routes(
                spec, {name: r.data["spec"] for name, r in routes.items()}
            )

    @staticmethod
    def _token_record(token, result: Result):
        if token is None:
            return None
        token_key, fingerprint = token
        return token_key, fingerprint, json.dumps(result)

    def _commit(
        self,
        record: Record | None,
        delete: Key | None = None,
        token=None,
        guard: Guard | None = None,
    ) -> None:
        """Persist one change, then tell the change feed (only what is committed is announced)."""
        version = self.store.write(put=record, delete=delete, token=token, guard=guard)
        changed = record.key if record is not None else delete
        if changed is not None:
            self.feed.publish(changed.mesh_key, version)


SPEC_CHECKS: dict[str, Callable[[dict], None]] = {
    "mesh": rules.check_mesh_spec,
    "virtualNode": rules.check_virtual_node_spec,
    "virtualRouter": rules.check_virtual_router_spec,
    "virtualService": rules.check_virtual_service_spec,
    "virtualGateway": rules.check_virtual_gateway_spec,
}
