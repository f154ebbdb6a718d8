"""Cloud Map (``AWS::ServiceDiscovery::*``) resources, made in the embedded moto's Cloud Map.

moto 5.2's CloudFormation has no Cloud Map types, and App Mesh templates lean on them: a
virtual node's ``AWSCloudMap`` discovery names a namespace and a service the same template
declares (the walkthroughs' ``PrivateDnsNamespace`` + ``Service`` pairs, ECS services'
``ServiceRegistries``). These models create them through moto's servicediscovery backend,
the same state Cloud Map API calls to appmesh-local see. Property names are the Cloud Map
API's own (CloudFormation uses the same PascalCase), so they pass through unchanged.
"""

from __future__ import annotations

from typing import Any

from moto.core.common_models import CloudFormationModel
from moto.servicediscovery.models import ServiceDiscoveryBackend, servicediscovery_backends


def _backend(account_id: str, region_name: str) -> ServiceDiscoveryBackend:
    return servicediscovery_backends[account_id][region_name]


def _tags(properties: dict[str, Any]) -> list[dict[str, str]]:
    return list(properties.get("Tags") or [])


class _CloudMapResource:
    """One Cloud Map resource a stack holds: its id, ARN and what GetAtt can read."""

    attributes: frozenset[str] = frozenset()
    moto_service = "servicediscovery"  # whose saved state holds what this made (sidestate)

    def __init__(self, account_id: str, region_name: str, ident: str, values: dict[str, Any]):
        self.account_id = account_id
        self.region_name = region_name
        self.ident = ident
        self.values = values

    @property
    def physical_resource_id(self) -> str:
        return self.ident

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in cls.attributes

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name not in self.attributes:
            raise UnformattedGetAttTemplateException()
        return self.values[attribute_name]

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    def is_created(self) -> bool:
        return True

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Any:
        """Replace on any change (UNCONFIRMED: Cloud Map updates some properties in place)."""
        if cloudformation_json.get("Properties") == original_resource.values.get("Properties"):
            return original_resource
        replacement = cls.create_from_cloudformation_json(  # type: ignore[attr-defined]
            new_resource_name, cloudformation_json, account_id, region_name
        )
        original_resource.delete(account_id, region_name)
        return replacement

    @classmethod
    def delete_from_cloudformation_json(cls, *args: Any) -> None:
        raise NotImplementedError("Cloud Map resources are deleted through their instance")


class _Namespace(_CloudMapResource):
    attributes = frozenset({"Id", "Arn", "HostedZoneId"})
    namespace_type = ""  # "HTTP", "DNS_PRIVATE", "DNS_PUBLIC"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> _Namespace:
        properties = cloudformation_json.get("Properties") or {}
        backend = _backend(account_id, region_name)
        common = {
            "name": resource_name,
            "creator_request_id": "",
            "description": properties.get("Description", ""),
            "tags": _tags(properties),
        }
        if cls.namespace_type == "HTTP":
            backend.create_http_namespace(**common)
        elif cls.namespace_type == "DNS_PRIVATE":
            backend.create_private_dns_namespace(
                vpc=properties["Vpc"], properties=properties.get("Properties") or {}, **common
            )
        else:
            backend.create_public_dns_namespace(
                properties=properties.get("Properties") or {}, **common
            )
        made = next(
            ns
            for ns in reversed(list(backend.namespaces.values()))
            if ns.name == resource_name and ns.type == cls.namespace_type
        )
        zone = (made.dns_properties or {}).get("HostedZoneId", "")
        values = {"Id": made.id, "Arn": made.arn, "HostedZoneId": zone, "Properties": properties}
        return cls(account_id, region_name, made.id, values)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = _backend(self.account_id, self.region_name)
        if self.ident in backend.namespaces:
            backend.delete_namespace(self.ident)


class _Service(_CloudMapResource):
    attributes = frozenset({"Id", "Arn", "Name"})

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ServiceDiscovery::Service"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> _Service:
        properties = cloudformation_json.get("Properties") or {}
        dns_config = properties.get("DnsConfig") or {}
        service = _backend(account_id, region_name).create_service(
            name=resource_name,
            namespace_id=properties.get("NamespaceId") or dns_config.get("NamespaceId") or "",
            creator_request_id="",
            description=properties.get("Description", ""),
            dns_config=dns_config or None,  # type: ignore[arg-type]
            health_check_config=properties.get("HealthCheckConfig"),  # type: ignore[arg-type]
            health_check_custom_config=properties.get("HealthCheckCustomConfig"),  # type: ignore[arg-type]
            tags=_tags(properties),
            service_type=properties.get("Type"),  # type: ignore[arg-type]
        )
        values = {"Id": service.id, "Arn": service.arn, "Name": service.name}
        return cls(account_id, region_name, service.id, {**values, "Properties": properties})

    def delete(self, account_id: str, region_name: str) -> None:
        _backend(self.account_id, self.region_name).delete_service(self.ident)


class _Instance(_CloudMapResource):
    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ServiceDiscovery::Instance"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "InstanceId"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> _Instance:
        properties = cloudformation_json.get("Properties") or {}
        attributes = {k: str(v) for k, v in (properties.get("InstanceAttributes") or {}).items()}
        _backend(account_id, region_name).register_instance(
            service_id=properties["ServiceId"],
            instance_id=resource_name,
            creator_request_id="",
            attributes=attributes,
        )
        values = {"ServiceId": properties["ServiceId"], "Properties": properties}
        return cls(account_id, region_name, resource_name, values)

    def delete(self, account_id: str, region_name: str) -> None:
        backend = _backend(self.account_id, self.region_name)
        if self.values["ServiceId"] in backend.services:
            backend.deregister_instance(self.values["ServiceId"], self.ident)


def _namespace_model(type_name: str, namespace_type: str) -> type[CloudFormationModel]:
    attributes = {
        "namespace_type": namespace_type,
        "cloudformation_type": staticmethod(lambda: type_name),
        "__module__": __name__,
        "__doc__": f"{type_name}.",
    }
    name = type_name.rsplit(":", 1)[-1]
    return type(f"CloudMap{name}", (_Namespace, CloudFormationModel), attributes)


MODELS: dict[str, type[CloudFormationModel]] = {
    "AWS::ServiceDiscovery::HttpNamespace": _namespace_model(
        "AWS::ServiceDiscovery::HttpNamespace", "HTTP"
    ),
    "AWS::ServiceDiscovery::PrivateDnsNamespace": _namespace_model(
        "AWS::ServiceDiscovery::PrivateDnsNamespace", "DNS_PRIVATE"
    ),
    "AWS::ServiceDiscovery::PublicDnsNamespace": _namespace_model(
        "AWS::ServiceDiscovery::PublicDnsNamespace", "DNS_PUBLIC"
    ),
    "AWS::ServiceDiscovery::Service": type(
        "CloudMapService", (_Service, CloudFormationModel), {"__module__": __name__}
    ),
    "AWS::ServiceDiscovery::Instance": type(
        "CloudMapInstance", (_Instance, CloudFormationModel), {"__module__": __name__}
    ),
}
# pickle (sidestate, the stacks' saved copies) finds a class by its module's attribute.
globals().update({model.__name__: model for model in MODELS.values()})
