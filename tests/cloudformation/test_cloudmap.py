"""Cloud Map resources in an App Mesh template, as the walkthroughs declare them."""

from __future__ import annotations

from tests.cloudformation.templates import body
from tests.conftest import make_client

WALKTHROUGH_LIKE = {
    "Resources": {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
        "AllFromVpc": {  # no FromPort/ToPort: what the walkthroughs write for IpProtocol -1
            "Type": "AWS::EC2::SecurityGroup",
            "Properties": {
                "GroupDescription": "all traffic from the VPC",
                "VpcId": {"Ref": "Vpc"},
                "SecurityGroupIngress": [{"CidrIp": "10.0.0.0/16", "IpProtocol": -1}],
            },
        },
        "Namespace": {
            "Type": "AWS::ServiceDiscovery::PrivateDnsNamespace",
            "Properties": {"Name": "color.local", "Vpc": {"Ref": "Vpc"}},
        },
        "ColorRegistry": {
            "Type": "AWS::ServiceDiscovery::Service",
            "Properties": {
                "Name": "color",
                "DnsConfig": {
                    "NamespaceId": {"Fn::GetAtt": ["Namespace", "Id"]},
                    "DnsRecords": [{"Type": "A", "TTL": 300}],
                },
                "HealthCheckCustomConfig": {"FailureThreshold": 1},
            },
        },
        "BlueTask": {
            "Type": "AWS::ServiceDiscovery::Instance",
            "Properties": {
                "InstanceId": "blue-1",
                "ServiceId": {"Ref": "ColorRegistry"},
                "InstanceAttributes": {
                    "AWS_INSTANCE_IPV4": "10.0.1.5",
                    "AWS_INSTANCE_PORT": "8080",
                },
            },
        },
        "Mesh": {"Type": "AWS::AppMesh::Mesh", "Properties": {"MeshName": "cloudmap"}},
        "Blue": {
            "Type": "AWS::AppMesh::VirtualNode",
            "Properties": {
                "MeshName": {"Fn::GetAtt": ["Mesh", "MeshName"]},
                "VirtualNodeName": "blue",
                "Spec": {
                    "Listeners": [{"PortMapping": {"Port": 8080, "Protocol": "http"}}],
                    "ServiceDiscovery": {
                        "AWSCloudMap": {
                            "NamespaceName": "color.local",
                            "ServiceName": {"Fn::GetAtt": ["ColorRegistry", "Name"]},
                        }
                    },
                },
            },
        },
    },
    "Outputs": {
        "NamespaceArn": {"Value": {"Fn::GetAtt": ["Namespace", "Arn"]}},
        "ServiceId": {"Value": {"Ref": "ColorRegistry"}},
    },
}


def test_cloud_map_resources_are_made_and_the_node_discovers_through_them(server, account):
    cfn = make_client(server.endpoint, "cloudformation", account)
    cloudmap = make_client(server.endpoint, "servicediscovery", account, inject_host_prefix=False)
    appmesh = make_client(server.endpoint, "appmesh", account)
    cfn.create_stack(StackName="cloudmap", TemplateBody=body(WALKTHROUGH_LIKE))
    stack = cfn.describe_stacks(StackName="cloudmap")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    (namespace,) = cloudmap.list_namespaces()["Namespaces"]
    assert (namespace["Name"], namespace["Arn"]) == ("color.local", outputs["NamespaceArn"])
    (service,) = cloudmap.list_services()["Services"]
    assert (service["Name"], service["Id"]) == ("color", outputs["ServiceId"])
    found = cloudmap.discover_instances(NamespaceName="color.local", ServiceName="color")
    assert [i["InstanceId"] for i in found["Instances"]] == ["blue-1"]
    node = appmesh.describe_virtual_node(meshName="cloudmap", virtualNodeName="blue")
    assert node["virtualNode"]["spec"]["serviceDiscovery"] == {
        "awsCloudMap": {"namespaceName": "color.local", "serviceName": "color"}
    }
    cfn.delete_stack(StackName="cloudmap")
    assert cloudmap.list_services()["Services"] == []
    assert cloudmap.list_namespaces()["Namespaces"] == []
    assert appmesh.list_meshes()["meshes"] == []
