"""``AWS::EC2::SecurityGroup`` ingress rules without ports, as App Mesh's walkthroughs write them.

``IpProtocol: -1`` (all traffic) needs no ``FromPort``/``ToPort``, and the walkthrough
templates (howto-http-retries, howto-http-headers, howto-ecs-basics) leave them out;
moto 5.2 reads ``rule["FromPort"]`` and the whole stack fails with ``'FromPort'``. A rule
without ports is given -1 to -1 (all ports, which is what EC2 stores for them) before
moto's handler runs. UNCONFIRMED for protocols other than -1, where EC2 may refuse it.
"""

from __future__ import annotations

import copy
from typing import Any

from moto.core.common_models import CloudFormationModel
from moto.ec2.models.security_groups import SecurityGroup


def with_ports(properties: dict[str, Any]) -> dict[str, Any]:
    """A copy of the properties whose ingress rules all name their ports."""
    fixed = copy.deepcopy(properties)
    for rule in fixed.get("SecurityGroupIngress") or []:
        rule.setdefault("FromPort", -1)
        rule.setdefault("ToPort", -1)
    return fixed


class PortlessSecurityGroup(SecurityGroup, CloudFormationModel):
    """Registered after moto's model for the same type, so moto's engine uses this one."""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::EC2::SecurityGroup"

    @classmethod
    def create_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SecurityGroup:
        fixed = {**cloudformation_json, "Properties": with_ports(cloudformation_json["Properties"])}
        return SecurityGroup.create_from_cloudformation_json(
            resource_name, fixed, account_id, region_name, **kwargs
        )

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> SecurityGroup:
        fixed = {**cloudformation_json, "Properties": with_ports(cloudformation_json["Properties"])}
        return SecurityGroup.update_from_cloudformation_json(
            original_resource, new_resource_name, fixed, account_id, region_name
        )
