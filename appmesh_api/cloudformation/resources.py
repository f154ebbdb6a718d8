"""The seven ``AWS::AppMesh::*`` resource types, as moto's CloudFormation engine loads them.

moto finds resource handlers through ``CloudFormationModel.__subclasses__()``; one class
per type is built here from the same generic code, driven by the registry schema
(``schema.py``) and botocore's model (``properties.py``). Every write goes through
``bridge.call``: the App Mesh service the REST API uses, so a template gets the API's
validation, errors and change feed.

An instance is one applied state of one App Mesh resource: the parameters last written and
the resource's data as App Mesh answered. Updating returns a *new* instance, so the stack
lifecycle keeps the old one and can restore it if the update rolls back.
"""

from __future__ import annotations

import contextlib
from typing import Any

from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.core.common_models import CloudFormationModel

from appmesh_api import kinds
from appmesh_api.cloudformation import bridge
from appmesh_api.cloudformation.properties import PropertyError, to_api
from appmesh_api.cloudformation.schema import ResourceSchema, resource_schema
from appmesh_api.errors import NotFoundException
from appmesh_api.identity import Caller
from appmesh_api.kinds import Kind
from appmesh_api.model import service_model

Params = dict[str, Any]


def type_name(kind: Kind) -> str:
    return f"AWS::AppMesh::{kind.api_name}"


class AppMeshResource:
    """Behaviour shared by the seven types; each subclass sets ``kind``."""

    kind: Kind

    def __init__(self, caller: Caller, params: Params, data: dict[str, Any]) -> None:
        self.caller = caller
        self.params = params  # names, spec and tags as last written (API form)
        self.data = data  # the resource as App Mesh answered (metadata, spec, status...)
        self.replaces: AppMeshResource | None = None  # set when this one is a replacement

    # -- what moto asks of a model ---------------------------------------------------
    @classmethod
    def cloudformation_type(cls) -> str:
        return type_name(cls.kind)

    @classmethod
    def cloudformation_name_type(cls) -> str:
        """The property that names the resource (moto generates one when it is absent)."""
        return "MeshName" if cls.kind is kinds.MESH else f"{cls.kind.api_name}Name"

    @classmethod
    def schema(cls) -> ResourceSchema:
        return resource_schema(type_name(cls.kind))

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.schema().attributes

    @property
    def physical_resource_id(self) -> str:
        """``Ref`` gives the ARN (the AWS::AppMesh::* documentation says so)."""
        return self.data["metadata"]["arn"]

    def is_created(self) -> bool:
        return True

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name not in self.schema().attributes:
            raise UnformattedGetAttTemplateException()
        if attribute_name in ("Arn", "Id"):
            # Choice (UNCONFIRMED): the registry's primary identifier Id is served as the ARN.
            return self.data["metadata"]["arn"]
        wanted = attribute_name.lower()
        for source in (self.data, self.data["metadata"]):
            for key, value in source.items():
                if key.lower() == wanted and isinstance(value, str):
                    return value
        raise UnformattedGetAttTemplateException()

    # -- create ----------------------------------------------------------------------
    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> AppMeshResource:
        caller = Caller(account_id, region_name)
        params = cls.api_params(cloudformation_json.get("Properties") or {}, resource_name)
        return cls._create(caller, params)

    @classmethod
    def _create(cls, caller: Caller, params: Params) -> AppMeshResource:
        result = bridge.call(f"Create{cls.kind.api_name}", params, caller)
        return cls(caller, params, result[cls.kind.key])

    @classmethod
    def api_params(cls, properties: dict[str, Any], name: str) -> Params:
        """The Create operation's parameters for the template's properties.

        Raises PropertyError for what the registry schema refuses (unknown or read-only
        properties, missing required ones) and for keys the API's shapes do not have.
        """
        schema = cls.schema()
        for key in properties:
            if key not in schema.inputs:
                raise PropertyError(f"#: extraneous key [{key}] is not permitted")
        for key in sorted(schema.required - set(properties)):
            raise PropertyError(f"#: required key [{key}] not found")
        shape = service_model().operation_model(f"Create{cls.kind.api_name}").input_shape
        assert shape is not None
        params: Params = to_api(shape, properties, "#")
        params[cls.kind.name_param] = name
        return params

    # -- update ----------------------------------------------------------------------
    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: AppMeshResource,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> AppMeshResource:
        properties = cloudformation_json.get("Properties") or {}
        if cls.cloudformation_name_type() not in properties:
            # moto draws a fresh random name on every update; CloudFormation keeps the
            # generated one unless a replacement is due for another reason.
            new_resource_name = original_resource.params[cls.kind.name_param]
        params = cls.api_params(properties, new_resource_name)
        old = original_resource
        if cls._identity(params, old.caller) != cls._identity(old.params, old.caller):
            replacement = cls._create(Caller(account_id, region_name), params)
            replacement.replaces = old
            return replacement
        return old.apply(params)

    @classmethod
    def _identity(cls, params: Params, caller: Caller) -> tuple[str, ...]:
        """The create-only parameters: any change to them means a new resource."""
        names = [cls.kind.name_param, "meshName"]
        if cls.kind.parent is not None:
            names.append(cls.kind.parent.name_param)
        return (*(params.get(name, "") for name in names), params.get("meshOwner", ""))

    def apply(self, params: Params) -> AppMeshResource:
        """Write ``params`` over this resource in place; return the new state (or self)."""
        if params == self.params:
            return self
        data = self.data
        if params.get("spec") != self.params.get("spec"):
            update = {k: v for k, v in params.items() if k != "tags"}
            data = bridge.call(f"Update{self.kind.api_name}", update, self.caller)[self.kind.key]
        self._retag(self.params.get("tags") or [], params.get("tags") or [])
        return type(self)(self.caller, params, data)

    def restore(self, current: AppMeshResource) -> None:
        """Rollback: put this (earlier) state back over ``current``."""
        current.apply(self.params)

    def _retag(self, before: list[dict[str, str]], after: list[dict[str, str]]) -> None:
        old = {tag["key"]: tag.get("value", "") for tag in before}
        new = {tag["key"]: tag.get("value", "") for tag in after}
        arn = self.physical_resource_id
        removed = sorted(set(old) - set(new))
        if removed:
            bridge.call("UntagResource", {"resourceArn": arn, "tagKeys": removed}, self.caller)
        changed = [{"key": k, "value": v} for k, v in new.items() if old.get(k) != v]
        if changed:
            bridge.call("TagResource", {"resourceArn": arn, "tags": changed}, self.caller)

    # -- delete ----------------------------------------------------------------------
    def delete(self, account_id: str, region_name: str) -> None:
        """Delete the App Mesh resource; one already gone counts as deleted, as in AWS."""
        with contextlib.suppress(NotFoundException):
            bridge.call(f"Delete{self.kind.api_name}", self._locator(self.params), self.caller)

    @classmethod
    def _locator(cls, params: Params) -> Params:
        """The parameters that name the resource (for Describe and Delete)."""
        names = [cls.kind.name_param, "meshName", "meshOwner"]
        if cls.kind.parent is not None:
            names.append(cls.kind.parent.name_param)
        return {name: params[name] for name in names if params.get(name)}

    @classmethod
    def adopt(cls, caller: Caller, params: Params) -> AppMeshResource:
        """The instance for a resource a stack made before a restart (NotFound if gone)."""
        data = bridge.call(f"Describe{cls.kind.api_name}", cls._locator(params), caller)
        return cls(caller, params, data[cls.kind.key])

    @classmethod
    def delete_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        raise NotImplementedError("App Mesh resources are deleted through their instance")


def _model_class(kind: Kind) -> type[CloudFormationModel]:
    """A direct CloudFormationModel subclass (moto only looks one level down)."""
    attributes = {"kind": kind, "__module__": __name__, "__doc__": f"{type_name(kind)}."}
    return type(f"AppMesh{kind.api_name}", (AppMeshResource, CloudFormationModel), attributes)


MODELS: dict[str, type[CloudFormationModel]] = {
    type_name(kind): _model_class(kind) for kind in kinds.ALL_KINDS
}
