"""EC2 resources of App Mesh's walkthrough templates, where moto 5.2 mishandles them.

Security groups: ``IpProtocol: -1`` (all traffic) needs no ``FromPort``/``ToPort``, and
the walkthrough templates (howto-http-retries, howto-http-headers, howto-ecs-basics) leave
them out;
moto 5.2 reads ``rule["FromPort"]`` and the whole stack fails with ``'FromPort'``. A rule
without ports is given -1 to -1 (all ports, which is what EC2 stores for them) before
moto's handler runs. UNCONFIRMED for protocols other than -1, where EC2 may refuse it.
Route tables: see ``DeletableRouteTable``.
"""

from __future__ import annotations

import copy
from typing import Any

from moto.core.common_models import CloudFormationModel
from moto.ec2.models.route_tables import RouteTable
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


class DeletableRouteTable(RouteTable, CloudFormationModel):
    """``AWS::EC2::RouteTable`` that a stack's delete (or rollback) removes.

    moto 5.2 has no delete for it (nor for ``SubnetRouteTableAssociation``), so the table
    stays and the VPC after it fails with "has dependencies": every VPC stack ends
    ``DELETE_FAILED`` (or ``ROLLBACK_FAILED``). The table goes with its associations, whose
    subnets the stack deletes too.
    """

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::EC2::RouteTable"

    @classmethod
    def delete_from_cloudformation_json(
        cls,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> None:
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[account_id][region_name]
        table = backend.route_tables.get(resource_name)
        if table is not None:
            table._associations.clear()
            backend.delete_route_table(resource_name)
