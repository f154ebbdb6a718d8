"""Templates for the CloudFormation tests, built as dicts so each test states its change."""

from __future__ import annotations

import copy
import json
from typing import Any


def colorapp(mesh: str = "color", port: int | str = "8080") -> dict[str, Any]:
    """All seven AWS::AppMesh::* types, wired by Ref/GetAtt as CDK synthesizes them."""
    name = {"Fn::GetAtt": ["Mesh", "MeshName"]}
    return {
        "Resources": {
            "Mesh": {
                "Type": "AWS::AppMesh::Mesh",
                "Properties": {
                    "MeshName": mesh,
                    "Spec": {"EgressFilter": {"Type": "ALLOW_ALL"}},
                    "Tags": [{"Key": "team", "Value": "color"}],
                },
            },
            "Blue": {
                "Type": "AWS::AppMesh::VirtualNode",
                "Properties": {
                    "MeshName": name,
                    "VirtualNodeName": "blue",
                    "Spec": {
                        "Listeners": [
                            {
                                "PortMapping": {"Port": port, "Protocol": "http"},
                                "HealthCheck": {
                                    "Protocol": "http",
                                    "Path": "/ping",
                                    "HealthyThreshold": 2,
                                    "UnhealthyThreshold": "3",
                                    "TimeoutMillis": 2000,
                                    "IntervalMillis": 5000,
                                },
                            }
                        ],
                        "ServiceDiscovery": {"DNS": {"Hostname": "blue.color.local"}},
                        "Backends": [
                            {"VirtualService": {"VirtualServiceName": "color.color.local"}}
                        ],
                    },
                },
            },
            "Router": {
                "Type": "AWS::AppMesh::VirtualRouter",
                "Properties": {
                    "MeshName": name,
                    "VirtualRouterName": "color-router",
                    "Spec": {"Listeners": [{"PortMapping": {"Port": 8080, "Protocol": "http"}}]},
                },
            },
            "Route": {
                "Type": "AWS::AppMesh::Route",
                "Properties": {
                    "MeshName": name,
                    "VirtualRouterName": {"Fn::GetAtt": ["Router", "VirtualRouterName"]},
                    "RouteName": "color-route",
                    "Spec": {
                        "HttpRoute": {
                            "Match": {"Prefix": "/"},
                            "Action": {
                                "WeightedTargets": [
                                    {
                                        "VirtualNode": {"Fn::GetAtt": ["Blue", "VirtualNodeName"]},
                                        "Weight": 1,
                                    }
                                ]
                            },
                            "RetryPolicy": {
                                "HttpRetryEvents": ["server-error"],
                                "MaxRetries": 2,
                                "PerRetryTimeout": {"Unit": "ms", "Value": 500},
                            },
                        }
                    },
                },
            },
            "Service": {
                "Type": "AWS::AppMesh::VirtualService",
                "Properties": {
                    "MeshName": name,
                    "VirtualServiceName": "color.color.local",
                    "Spec": {
                        "Provider": {
                            "VirtualRouter": {
                                "VirtualRouterName": {"Fn::GetAtt": ["Router", "VirtualRouterName"]}
                            }
                        }
                    },
                },
            },
            "Gateway": {
                "Type": "AWS::AppMesh::VirtualGateway",
                "Properties": {
                    "MeshName": name,
                    "VirtualGatewayName": "ingress",
                    "Spec": {"Listeners": [{"PortMapping": {"Port": 9080, "Protocol": "http"}}]},
                },
            },
            "GatewayRoute": {
                "Type": "AWS::AppMesh::GatewayRoute",
                "Properties": {
                    "MeshName": name,
                    "VirtualGatewayName": {"Fn::GetAtt": ["Gateway", "VirtualGatewayName"]},
                    "GatewayRouteName": "to-color",
                    "Spec": {
                        "HttpRoute": {
                            "Match": {"Prefix": "/"},
                            "Action": {
                                "Target": {
                                    "VirtualService": {
                                        "VirtualServiceName": {
                                            "Fn::GetAtt": ["Service", "VirtualServiceName"]
                                        }
                                    }
                                }
                            },
                        }
                    },
                },
            },
        },
        "Outputs": {
            "MeshArn": {"Value": {"Ref": "Mesh"}},
            "BlueUid": {"Value": {"Fn::GetAtt": ["Blue", "Uid"]}},
            "RouteOwner": {"Value": {"Fn::GetAtt": ["Route", "ResourceOwner"]}},
            "GatewayRouteName": {"Value": {"Fn::GetAtt": ["GatewayRoute", "GatewayRouteName"]}},
        },
    }


def changed(template: dict[str, Any], logical_id: str, *path: str | int, value: Any) -> dict:
    """A copy of ``template`` with one property of one resource replaced."""
    result = copy.deepcopy(template)
    node = result["Resources"][logical_id]["Properties"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return result


def body(template: dict[str, Any]) -> str:
    return json.dumps(template)
