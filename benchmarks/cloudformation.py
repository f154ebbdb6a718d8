"""CloudFormation to the proxies: how long a stack takes, and how soon every proxy has it.

    python benchmarks/cloudformation.py [--nodes 8] [--rounds 5]

Starts ``appmesh-local serve`` (data directory on disk) and measures, for a stack of
1 mesh + N nodes + N node-provided services + 1 router, route and router-provided service
(2N + 4 resources: 20 for N = 8):

- ``aws cloudformation deploy`` wall time (the CLI's own start-up included) for the create;
- CreateStack and DeleteStack call time through boto3 (they run synchronously here);
- with one ``appmesh-proxy`` per node connected: ExecuteChangeSet of a change of the
  route's weights (template from the embedded S3 by URL, as the CDK CLI sends it) until
  every proxy has acknowledged the mesh's new version (read from ``/_appmesh/proxies``).

App Mesh itself took tens of seconds to converge a change like this on its Envoys.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appmesh_api.localports import free_port, wait_for_port  # noqa: E402

ACCOUNT = "210987654321"
MESH = "cfn-bench"


def template(nodes: int, heavy: int) -> dict:
    """The stack; ``heavy`` is the node that gets most of the route's weight."""
    mesh = {"Fn::GetAtt": ["Mesh", "MeshName"]}
    resources: dict = {
        "Mesh": {"Type": "AWS::AppMesh::Mesh", "Properties": {"MeshName": MESH}},
        "Router": {
            "Type": "AWS::AppMesh::VirtualRouter",
            "Properties": {
                "MeshName": mesh,
                "VirtualRouterName": "router",
                "Spec": {"Listeners": [{"PortMapping": {"Port": 8080, "Protocol": "http"}}]},
            },
        },
        "FrontService": {
            "Type": "AWS::AppMesh::VirtualService",
            "Properties": {
                "MeshName": mesh,
                "VirtualServiceName": "front.bench.local",
                "Spec": {"Provider": {"VirtualRouter": {"VirtualRouterName": "router"}}},
            },
            "DependsOn": "Router",
        },
    }
    targets = []
    for index in range(nodes):
        resources[f"Node{index}"] = {
            "Type": "AWS::AppMesh::VirtualNode",
            "Properties": {
                "MeshName": mesh,
                "VirtualNodeName": f"node{index}",
                "Spec": {
                    "Listeners": [{"PortMapping": {"Port": 8080, "Protocol": "http"}}],
                    "ServiceDiscovery": {"DNS": {"Hostname": f"node{index}.bench.local"}},
                    "Backends": [{"VirtualService": {"VirtualServiceName": "front.bench.local"}}],
                },
            },
        }
        resources[f"Service{index}"] = {
            "Type": "AWS::AppMesh::VirtualService",
            "Properties": {
                "MeshName": mesh,
                "VirtualServiceName": f"node{index}.bench.local",
                "Spec": {
                    "Provider": {
                        "VirtualNode": {
                            "VirtualNodeName": {"Fn::GetAtt": [f"Node{index}", "VirtualNodeName"]}
                        }
                    }
                },
            },
        }
        node_name = {"Fn::GetAtt": [f"Node{index}", "VirtualNodeName"]}
        targets.append({"VirtualNode": node_name, "Weight": 90 if index == heavy else 1})
    resources["Route"] = {
        "Type": "AWS::AppMesh::Route",
        "Properties": {
            "MeshName": mesh,
            "VirtualRouterName": {"Fn::GetAtt": ["Router", "VirtualRouterName"]},
            "RouteName": "route",
            "Spec": {
                "HttpRoute": {"Match": {"Prefix": "/"}, "Action": {"WeightedTargets": targets}}
            },
        },
    }
    return {"Resources": resources}


def client(endpoint: str, service: str):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCOUNT,
        aws_secret_access_key="local",
        config=Config(retries={"max_attempts": 1}),
    )


def start_server(data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "appmesh_api.cli", "serve", "--port", str(port)]
    command += ["--data-dir", data_dir, "--xds-port", "0", "--xray-daemon-port", "0"]
    process = subprocess.Popen(
        [*command, "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_port(port, process)
    return process, f"http://127.0.0.1:{port}"


def start_proxy(endpoint: str, node: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "APPMESH_RESOURCE_ARN": f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/{MESH}/virtualNode/"
        + node,
        "APPMESH_XDS_ENDPOINT": endpoint,
        "APPMESH_INGRESS_PORT": str(free_port()),
        "APPMESH_EGRESS_PORT": str(free_port()),
        "ENVOY_ADMIN_ACCESS_PORT": str(free_port()),
        "APPMESH_LISTEN_ADDRESS": "127.0.0.1",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "proxy.main"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def mesh_version(endpoint: str) -> int:
    url = f"{endpoint}/_appmesh/meshes/{MESH}/version?meshOwner={ACCOUNT}&region=us-east-1"
    return int(get_json(url)["version"])


def all_proxies_at(endpoint: str, version: int, count: int) -> bool:
    proxies = [
        p for p in get_json(f"{endpoint}/_appmesh/proxies")["proxies"] if p["meshName"] == MESH
    ]
    if len(proxies) < count:
        return False
    return all(
        p["acceptedVersions"]
        and min(int(v.rsplit("-", 1)[-1]) for v in p["acceptedVersions"].values()) >= version
        for p in proxies
    )


def wait_until(predicate, timeout: float = 60.0, every: float = 0.002) -> float:
    """Seconds until ``predicate()`` holds (raises after ``timeout``)."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            raise TimeoutError("the proxies never caught up")
        time.sleep(every)
    return time.perf_counter() - started


def deploy_with_cli(endpoint: str, body: str, folder: str) -> float:
    path = Path(folder) / "stack.json"
    path.write_text(body)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCOUNT,
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    command = [sys.executable, "-m", "awscli", "cloudformation", "deploy"]
    command += ["--stack-name", "cli-stack", "--template-file", str(path)]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - started


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    resources = 2 * args.nodes + 4
    with tempfile.TemporaryDirectory() as folder:
        process, endpoint = start_server(str(Path(folder) / "data"))
        proxies: list[subprocess.Popen] = []
        try:
            cfn, s3 = client(endpoint, "cloudformation"), client(endpoint, "s3")
            first = json.dumps(template(args.nodes, 0))
            cli_seconds = deploy_with_cli(endpoint, first, folder)
            cfn.delete_stack(StackName="cli-stack")
            creates, deletes = [], []
            for _ in range(args.rounds):
                started = time.perf_counter()
                cfn.create_stack(StackName="bench", TemplateBody=first)
                creates.append(time.perf_counter() - started)
                started = time.perf_counter()
                cfn.delete_stack(StackName="bench")
                deletes.append(time.perf_counter() - started)
            cfn.create_stack(StackName="bench", TemplateBody=first)
            proxies = [start_proxy(endpoint, f"node{i}") for i in range(args.nodes)]
            wait_until(lambda: all_proxies_at(endpoint, mesh_version(endpoint), args.nodes))
            s3.create_bucket(Bucket="bench-assets")
            converge = []
            for round_number in range(1, args.rounds + 1):
                key = f"round{round_number}.json"
                heavy = round_number % args.nodes
                s3.put_object(
                    Bucket="bench-assets", Key=key, Body=json.dumps(template(args.nodes, heavy))
                )
                name = f"round{round_number}"
                cfn.create_change_set(
                    StackName="bench",
                    ChangeSetName=name,
                    TemplateURL=f"{endpoint}/bench-assets/{key}",
                    ChangeSetType="UPDATE",
                )
                started = time.perf_counter()
                cfn.execute_change_set(StackName="bench", ChangeSetName=name)
                target = mesh_version(endpoint)
                wait_until(lambda: all_proxies_at(endpoint, target, args.nodes))  # noqa: B023
                converge.append(time.perf_counter() - started)
        finally:
            for proxy in proxies:
                proxy.terminate()
            process.terminate()
            process.wait(timeout=10)
    print(f"stack of {resources} App Mesh resources, {args.nodes} proxies, {args.rounds} rounds")
    print(f"aws cloudformation deploy (create, CLI start-up included): {cli_seconds:.2f} s")
    print(f"CreateStack: {summary(creates)}   DeleteStack: {summary(deletes)}")
    print(f"ExecuteChangeSet -> every proxy holds the new config: {summary(converge)}")


if __name__ == "__main__":
    main()
