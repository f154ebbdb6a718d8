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

With the CDK CLI installed (``.ci/run`` puts it in ``.ci/cdk``) and aws-cdk-lib for Python
(the ``cdk`` extra), also for the colorapp stack of ``cdk/app.py`` (mesh, 4 nodes, router,
route, virtual service): ``cdk bootstrap``, ``cdk deploy`` of the create, then, with one
``appmesh-proxy`` per node connected, ``cdk deploy`` of a change of the route's weights,
and the time from its ExecuteChangeSet (the stack's ``UPDATE_IN_PROGRESS`` event) to every
proxy holding the new config; ``aws cloudformation deploy`` of the same synthesized
template; ``cdk destroy``. Each CDK command's wall time includes the CLI's and the app's
start-up (Node, and Python with jsii for the app).

App Mesh itself took tens of seconds to converge a change like this on its Envoys.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appmesh_api.localports import free_port, wait_for_port  # noqa: E402

ACCOUNT = "210987654321"
MESH = "cfn-bench"
CDK = ROOT / ".ci" / "cdk" / "node_modules" / ".bin" / "cdk"
CDK_APP = ROOT / "cdk" / "app.py"
COLORAPP = "colorapp"
COLORAPP_NODES = ("colorteller-white", "colorteller-blue", "colorteller-black", "colorgateway")


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


def start_proxy(endpoint: str, node: str, mesh: str = MESH) -> subprocess.Popen:
    env = {
        **os.environ,
        "APPMESH_RESOURCE_ARN": f"arn:aws:appmesh:us-east-1:{ACCOUNT}:mesh/{mesh}/virtualNode/"
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
    """A GET signed by the benchmark's account: ``/_appmesh/proxies`` lists only the
    proxies of the signer's meshes."""
    request = AWSRequest(method="GET", url=url, data=b"")
    SigV4Auth(Credentials(ACCOUNT, "local"), "appmesh", "us-east-1").add_auth(request)
    signed = urllib.request.Request(url, headers=dict(request.headers.items()))
    with urllib.request.urlopen(signed, timeout=10) as response:
        return json.loads(response.read())


def mesh_version(endpoint: str, mesh: str = MESH) -> int:
    url = f"{endpoint}/_appmesh/meshes/{mesh}/version?meshOwner={ACCOUNT}&region=us-east-1"
    return int(get_json(url)["version"])


def all_proxies_at(endpoint: str, version: int, count: int, mesh: str = MESH) -> bool:
    proxies = [
        p for p in get_json(f"{endpoint}/_appmesh/proxies")["proxies"] if p["meshName"] == mesh
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


def cdk_missing() -> str | None:
    """Why the CDK part cannot run, or None."""
    if not CDK.exists() or shutil.which("node") is None:
        return "no CDK CLI in .ci/cdk (bash .ci/run installs it with npm)"
    if importlib.util.find_spec("aws_cdk") is None:
        return "no aws-cdk-lib for Python (pip install -e '.[cdk]')"
    return None


def cli_env(endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCOUNT,
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    }


def run_timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started


def cdk(endpoint: str, output: Path, *args: str) -> float:
    """Wall time of one CDK CLI command on ``cdk/app.py``."""
    app = f"{sys.executable} {CDK_APP}"
    command = [str(CDK), *args, "--app", app, "--output", str(output), "--no-notices"]
    return run_timed(command, cli_env(endpoint))


def execution_started(endpoint: str, stack: str) -> float:
    """When the last update of ``stack`` began (its ``UPDATE_IN_PROGRESS`` event), epoch s."""
    events = client(endpoint, "cloudformation").describe_stack_events(StackName=stack)
    started = [
        e["Timestamp"].timestamp()
        for e in events["StackEvents"]
        if e["LogicalResourceId"] == stack and e["ResourceStatus"] == "UPDATE_IN_PROGRESS"
    ]
    return max(started)


WEIGHTS = ("0:1:0", "1:0:0", "1:1:1")


def cdk_update(endpoint: str, output: Path, weights: str) -> tuple[float, float]:
    """``cdk deploy`` of new route weights, with the colorapp's proxies connected: its wall
    time, and the time from its ExecuteChangeSet until every proxy holds the change."""
    count = len(COLORAPP_NODES)
    before = mesh_version(endpoint, COLORAPP)
    wall: list[float] = []
    command = ("deploy", "--require-approval", "never", "-c", f"weights={weights}")
    deploy = threading.Thread(target=lambda: wall.append(cdk(endpoint, output, *command)))
    deploy.start()
    wait_until(lambda: mesh_version(endpoint, COLORAPP) > before, timeout=300, every=0.005)
    target = mesh_version(endpoint, COLORAPP)
    wait_until(lambda: all_proxies_at(endpoint, target, count, COLORAPP), every=0.005)
    held = time.time()
    deploy.join()
    return wall[0], held - execution_started(endpoint, "ColorApp")


def bench_cdk(endpoint: str, folder: str) -> dict[str, list[float]]:
    """The colorapp stack through the CDK CLI; see the module's docstring."""
    output = Path(folder) / "cdk.out"
    times = {"cdk bootstrap": [cdk(endpoint, output, "bootstrap", f"aws://{ACCOUNT}/us-east-1")]}
    create = cdk(endpoint, output, "deploy", "--require-approval", "never")
    times["cdk deploy (create, 8 App Mesh resources)"] = [create]
    proxies = [start_proxy(endpoint, node, COLORAPP) for node in COLORAPP_NODES]
    count = len(COLORAPP_NODES)
    try:
        wait_until(
            lambda: all_proxies_at(endpoint, mesh_version(endpoint, COLORAPP), count, COLORAPP)
        )
        rounds = [cdk_update(endpoint, output, weights) for weights in WEIGHTS]
        times["cdk deploy (route weights change)"] = [wall for wall, _ in rounds]
        times["its ExecuteChangeSet -> all 4 proxies hold it"] = [held for _, held in rounds]
    finally:
        for proxy in proxies:
            proxy.terminate()
    template = Path(folder) / "cli.out"
    cdk(endpoint, template, "synth", "-c", "mesh=colorapp-cli", "--quiet")
    command = [sys.executable, "-m", "awscli", "cloudformation", "deploy", "--stack-name"]
    command += ["colorapp-cli", "--template-file", str(template / "ColorApp.template.json")]
    times["aws cloudformation deploy (same template)"] = [run_timed(command, cli_env(endpoint))]
    times["cdk destroy"] = [cdk(endpoint, output, "destroy", "--force")]
    return times


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
            for proxy in proxies:
                proxy.terminate()
            proxies = []
            # Last, so that the numbers above are those of a fresh server, as before.
            missing = cdk_missing()
            cdk_times = bench_cdk(endpoint, folder) if missing is None else {}
        finally:
            for proxy in proxies:
                proxy.terminate()
            process.terminate()
            process.wait(timeout=10)
    print(f"stack of {resources} App Mesh resources, {args.nodes} proxies, {args.rounds} rounds")
    print(f"aws cloudformation deploy (create, CLI start-up included): {cli_seconds:.2f} s")
    print(f"CreateStack: {summary(creates)}   DeleteStack: {summary(deletes)}")
    print(f"ExecuteChangeSet -> every proxy holds the new config: {summary(converge)}")
    if missing:
        print(f"colorapp through the CDK CLI: skipped ({missing})")
    else:
        print("colorapp stack (cdk/app.py) through the CDK CLI, 4 proxies:")
        for what, values in cdk_times.items():
            said = summary(values) if len(values) > 1 else f"{values[0]:.2f} s"
            print(f"  {what}: {said}")


if __name__ == "__main__":
    main()
