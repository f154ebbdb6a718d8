"""The network around a mesh, as App Mesh's walkthrough templates declare it."""

from __future__ import annotations

from tests.cloudformation.templates import body
from tests.conftest import make_client


def ref(name: str) -> dict:
    return {"Ref": name}


VPC_WITH_NLB = {
    "Resources": {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
        "Gateway": {"Type": "AWS::EC2::InternetGateway", "Properties": {}},
        "Attachment": {
            "Type": "AWS::EC2::VPCGatewayAttachment",
            "Properties": {"VpcId": ref("Vpc"), "InternetGatewayId": ref("Gateway")},
        },
        "SubnetA": {
            "Type": "AWS::EC2::Subnet",
            "Properties": {"VpcId": ref("Vpc"), "CidrBlock": "10.0.1.0/24"},
        },
        "SubnetB": {
            "Type": "AWS::EC2::Subnet",
            "Properties": {"VpcId": ref("Vpc"), "CidrBlock": "10.0.2.0/24"},
        },
        "Routes": {"Type": "AWS::EC2::RouteTable", "Properties": {"VpcId": ref("Vpc")}},
        "DefaultRoute": {
            "Type": "AWS::EC2::Route",
            "DependsOn": "Attachment",
            "Properties": {
                "RouteTableId": ref("Routes"),
                "DestinationCidrBlock": "0.0.0.0/0",
                "GatewayId": ref("Gateway"),
            },
        },
        "SubnetARoutes": {
            "Type": "AWS::EC2::SubnetRouteTableAssociation",
            "Properties": {"RouteTableId": ref("Routes"), "SubnetId": ref("SubnetA")},
        },
        "Ingress": {
            "Type": "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "Properties": {
                "Type": "network",
                "Scheme": "internet-facing",
                "Subnets": [ref("SubnetA"), ref("SubnetB")],
            },
        },
        "Gateways": {
            "Type": "AWS::ElasticLoadBalancingV2::TargetGroup",
            "Properties": {
                "VpcId": ref("Vpc"),
                "Port": 8080,
                "Protocol": "TCP",
                "TargetType": "ip",
            },
        },
        "Listener": {
            "Type": "AWS::ElasticLoadBalancingV2::Listener",
            "Properties": {
                "LoadBalancerArn": ref("Ingress"),
                "Port": 80,
                "Protocol": "TCP",
                "DefaultActions": [{"Type": "forward", "TargetGroupArn": ref("Gateways")}],
            },
        },
    }
}


def test_a_vpc_with_a_network_load_balancer_deploys_and_deletes(server, account):
    cfn = make_client(server.endpoint, "cloudformation", account)
    cfn.create_stack(StackName="network", TemplateBody=body(VPC_WITH_NLB))
    stack = cfn.describe_stacks(StackName="network")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    elbv2 = make_client(server.endpoint, "elbv2", account)
    (balancer,) = elbv2.describe_load_balancers()["LoadBalancers"]
    assert balancer["Type"] == "network"
    (listener,) = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    assert listener["Protocol"] == "TCP"
    stack_id = stack["StackId"]
    cfn.delete_stack(StackName="network")
    deleted = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
    assert deleted["StackStatus"] == "DELETE_COMPLETE", deleted.get("StackStatusReason")
    ec2 = make_client(server.endpoint, "ec2", account)
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": ["10.0.0.0/16"]}])["Vpcs"]
    assert [v for v in vpcs if not v.get("IsDefault")] == []
