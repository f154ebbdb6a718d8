"""``AWS::ElasticLoadBalancingV2::LoadBalancer`` of ``Type: network``.

moto 5.2's CloudFormation drops the load balancer's ``Type``, so every one is an
application load balancer and a network load balancer's ``TCP`` listener fails with
"Listener protocol 'TCP' must be one of 'HTTP, HTTPS'" (howto-metrics-extension's
ingress). This model passes the type (and the IP address type) on.
"""

from __future__ import annotations

from typing import Any

from moto.core.common_models import CloudFormationModel
from moto.elbv2.models import FakeLoadBalancer, elbv2_backends


class TypedLoadBalancer(FakeLoadBalancer, CloudFormationModel):
    """Registered after moto's model for the same type, so moto's engine uses this one."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::ElasticLoadBalancingV2::LoadBalancer"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> FakeLoadBalancer:
        properties = cloudformation_json["Properties"]
        return elbv2_backends[account_id][region_name].create_load_balancer(
            resource_name,
            properties.get("SecurityGroups") or [],
            properties.get("Subnets") or [],
            subnet_mappings=properties.get("SubnetMappings"),
            scheme=properties.get("Scheme", "internet-facing"),
            loadbalancer_type=properties.get("Type", "application"),
            ip_address_type=properties.get("IpAddressType", "ipv4"),
            tags=properties.get("Tags"),
        )
