"""aws-app-mesh-examples' ECS task definitions, run as they are (see examples/README.md).

The colorapp's task definitions are jq templates; they are filled in with jq exactly as
its ``create-task-defs.sh`` did, and its mesh is its own CloudFormation template. Four
tasks (the gateway and the white, blue and red tellers) run in awsvpc mode, all on the
same ports, with stand-in apps for the images (``--container app=...``); the X-Ray
daemon container needs none. A request from this host to the gateway's address goes
through the gateway's proxy, its app, its proxy again, and one of the tellers' proxies,
as on ECS. howto-ecs-basics' task definitions come from its CloudFormation template and
are run by family, as ``aws ecs run-task --task-definition FAMILY`` would.
"""

from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from appmesh_api.ecs.network import missing_tools
from appmesh_api.ecs.placement import can_run
from tests.conftest import make_client, new_account
from tests.ecs.test_run_task import APP
from tests.signing import proxies_of

pytestmark = pytest.mark.skipif(
    bool(missing_tools()), reason=f"awsvpc mode needs {', '.join(missing_tools())}"
)
EXAMPLES = Path(__file__).parent / "examples"
TEMPLATES = Path(__file__).parents[1] / "cloudformation" / "walkthroughs"  # the same commit
ENVOY_IMAGE = "840364872350.dkr.ecr.us-west-2.amazonaws.com/aws-appmesh-envoy:v1.29.12.1-prod"
DOMAIN = "default.svc.cluster.local"
LOG_GROUP = "colorapp-ecs-services"


def jq(template: str, **arguments: object) -> dict:
    """``jq -n --arg K V --argjson K JSON -f TEMPLATE``, as the walkthrough's scripts ran it."""
    command = ["jq", "-n"]
    for key, value in arguments.items():
        if isinstance(value, str):
            command += ["--arg", key, value]
        else:
            command += ["--argjson", key, json.dumps(value)]
    done = subprocess.run(
        [*command, "-f", str(EXAMPLES / template)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def sidecars(app: str, mesh: str, prefix: str = "colorapp") -> dict:
    """``generate_sidecars APP`` of create-task-defs.sh (or the Fargate walkthrough's
    script, whose X-Ray template names its prefix variable differently)."""
    logs = {"ECS_SERVICE_LOG_GROUP": LOG_GROUP, "AWS_REGION": "us-east-1"}
    envoy = jq(
        f"{prefix}-envoy-container.json",
        ENVOY_IMAGE=ENVOY_IMAGE,
        VIRTUAL_NODE=f"mesh/{mesh}/virtualNode/{app}-vn",
        APPMESH_XDS_ENDPOINT="",  # unset in the walkthrough's environment
        ENVOY_LOG_LEVEL="debug",
        AWS_LOG_STREAM_PREFIX=f"{app}-envoy",
        **logs,
    )
    variable = "AWS_LOG_STREAM_PREFIX" + ("_ENVOY" if prefix == "fargate" else "")
    xray = jq(f"{prefix}-xray-container.json", **{variable: f"{app}-xray"}, **logs)
    return {"ENVOY_CONTAINER_JSON": envoy, "XRAY_CONTAINER_JSON": xray}


def common(app: str) -> dict:
    return {
        "STAGE": "",
        "APP_IMAGE": f"111122223333.dkr.ecr.us-east-1.amazonaws.com/{app}:latest",
        "AWS_REGION": "us-east-1",
        "ECS_SERVICE_LOG_GROUP": LOG_GROUP,
        "AWS_LOG_STREAM_PREFIX_APP": f"{app}-app",
        "TASK_ROLE_ARN": "arn:aws:iam::111122223333:role/colorapp-task",
        "EXECUTION_ROLE_ARN": "arn:aws:iam::111122223333:role/colorapp-execution",
    }


def colorgateway(mesh: str) -> dict:
    return jq(
        "colorapp-colorgateway-base-task-def.json",
        NAME="colorapp-ColorGateway",
        COLOR_TELLER_ENDPOINT=f"colorteller.{DOMAIN}:9080",
        TCP_ECHO_ENDPOINT=f"tcpecho.{DOMAIN}:2701",
        **common("colorgateway"),
        **sidecars("colorgateway", mesh),
    )


def colorteller(mesh: str, color: str, prefix: str = "colorapp") -> dict:
    app = f"colorteller-{color}"
    template = "colorteller-base-task-def" if prefix == "colorapp" else "colorteller-task-def"
    return jq(
        f"{prefix}-{template}.json",
        NAME=f"{prefix}-colorteller-{color}",
        COLOR=color,
        **common(app),
        **sidecars(app, mesh, prefix),
    )


class Task:
    """One ``appmesh-local ecs run-task`` process; its output lines with their times."""

    def __init__(self, server, account: str, definition: str, logs: Path, **commands: str):
        env = {
            "AWS_ENDPOINT_URL": server.endpoint,
            "AWS_ACCESS_KEY_ID": account,
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        }
        command = [
            sys.executable, "-m", "appmesh_api.cli", "ecs", "run-task",
            "--task-definition", definition, "--logs", str(logs), "--network-mode", "awsvpc",
        ]  # fmt: skip
        for name, program in commands.items():
            command += ["--container", f"{name.replace('_', '-')}={program}"]
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line))

    @property
    def output(self) -> str:
        return "".join(line for _, line in self.lines)

    def wait_for(self, pattern: str, timeout: float = 90.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, line in self.lines:
                if found := re.search(pattern, line):
                    return found
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in:\n{self.output}")

    def seconds_to(self, pattern: str) -> float:
        self.wait_for(pattern)
        return next(t for t, line in self.lines if re.search(pattern, line)) - self.started

    @property
    def namespace(self) -> str:
        return self.wait_for(r"namespace (\S+), ([\d.]+)\)").group(1)

    @property
    def address(self) -> str:
        return self.wait_for(r"namespace (\S+), ([\d.]+)\)").group(2)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return self.output


def server_info(task: Task) -> dict:
    """The task's own proxy's admin /server_info, from inside the task."""
    url = "http://127.0.0.1:9901/server_info"
    inside = ["ip", "netns", "exec", task.namespace, "curl", "-s", url]
    answer = subprocess.run(inside, capture_output=True, text=True, timeout=10)
    return dict(json.loads(answer.stdout))


def deploy(server, account: str, name: str, template: str, **parameters: str) -> None:
    """Create the stack, or update it when it exists (as ``aws cloudformation deploy``)."""
    cfn = make_client(server.endpoint, "cloudformation", account)
    exists = any(
        stack["StackName"] == name for stack in cfn.list_stacks()["StackSummaries"]
        if stack["StackStatus"] != "DELETE_COMPLETE"
    )  # fmt: skip
    (cfn.update_stack if exists else cfn.create_stack)(
        StackName=name,
        TemplateBody=(
            EXAMPLES / template if "/" not in template else TEMPLATES / template
        ).read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    wanted = "UPDATE_COMPLETE" if exists else "CREATE_COMPLETE"
    assert stack["StackStatus"] == wanted, stack.get("StackStatusReason")


def joined(task: Task, server, account: str, node: str) -> None:
    """Its proxy is LIVE, and the control plane lists it holding the node's config."""
    assert server_info(task)["state"] == "LIVE"
    mine = [p for p in proxies_of(server.endpoint, account) if p["resourceName"] == node]
    assert mine and mine[0]["acceptedVersions"], mine
    assert mine[0]["ingressAddress"] == f"{task.address}:15000", mine


def colors_through(address: str, requests: int = 30, port: int = 9080) -> collections.Counter:
    seen: collections.Counter = collections.Counter()
    deadline = time.monotonic() + 60
    while sum(seen.values()) < requests and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/color", timeout=5) as reply:
                seen[json.loads(reply.read())["color"]] += 1
        except OSError:
            time.sleep(0.3)
    return seen


def test_colorapp_task_definitions_carry_traffic_through_their_sidecars(server, tmp_path):
    account, mesh = new_account(), "colorapp-mesh"
    make_client(server.endpoint, "appmesh", account).create_mesh(meshName=mesh)
    deploy(
        server, account, "colorapp-mesh", "colorapp/servicemesh/appmesh-colorapp.yaml",
        EnvironmentName="colorapp", ServicesDomain=DOMAIN, AppMeshMeshName=mesh,
    )  # fmt: skip
    make_client(server.endpoint, "logs", account).create_log_group(logGroupName=LOG_GROUP)
    app = " ".join(APP)
    tasks: dict[str, Task] = {}
    try:
        for color in ("white", "blue", "red"):
            path = tmp_path / f"colorteller-{color}.json"
            path.write_text(json.dumps(colorteller(mesh, color)))
            teller = f'{app} teller "$COLOR" "$SERVER_PORT"'
            tasks[color] = Task(server, account, str(path), tmp_path / color, app=teller)
        path = tmp_path / "colorgateway.json"
        path.write_text(json.dumps(colorgateway(mesh)))
        gateway = f'echo "colorgateway on $SERVER_PORT"; exec {app} gateway "$SERVER_PORT" '
        gateway += '"http://$COLOR_TELLER_ENDPOINT/"'
        tasks["gateway"] = Task(server, account, str(path), tmp_path / "gateway", app=gateway)
        for task in tasks.values():
            task.wait_for("started app")
        for name, task in tasks.items():
            node = "colorgateway-vn" if name == "gateway" else f"colorteller-{name}-vn"
            joined(task, server, account, node)
        seen = colors_through(tasks["gateway"].address)
        assert set(seen) == {"white", "blue", "red"}, seen
        live = {name: round(task.seconds_to("envoy is HEALTHY"), 1) for name, task in tasks.items()}
        print(f"task start to proxy HEALTHY (LIVE), seconds: {live}")
    finally:
        outputs = {name: task.stop() for name, task in tasks.items()}
    # awslogs: the app's output reached CloudWatch Logs, in ECS's stream name.
    task_id = re.search(r"\(id ([0-9a-f]{32})\)", outputs["gateway"]).group(1)
    events = make_client(server.endpoint, "logs", account).get_log_events(
        logGroupName=LOG_GROUP, logStreamName=f"colorgateway-app/app/{task_id}"
    )["events"]
    assert any(e["message"] == "colorgateway on 9080" for e in events), events
    exempt_group = not can_run(["setpriv", "--reuid=1337", "--regid=1337"])
    for output in outputs.values():
        # IgnoredUID only, and uid 1337 cannot run this Python: the proxy runs in group
        # 1337 and the rules exempt it (the traffic above shows they do, or it would loop).
        assert not exempt_group or "the proxy runs as root in group 1337" in output, output
        assert "xray-daemon (public.ecr.aws/xray/aws-xray-daemon): appmesh-local's X-Ray" in output
        assert output.index("envoy is HEALTHY") < output.index("started app"), output
        assert output.index("stopped app") < output.index("stopped envoy"), output


TELLER = f'{" ".join(APP)} teller "$COLOR" "$SERVER_PORT"'


def test_the_fargate_walkthroughs_colorteller_joins_its_mesh(server, tmp_path):
    """The Fargate walkthrough's green teller, after its mesh template (which adds the
    green node to the colorapp's): accepted as it is, its proxy LIVE and registered."""
    account, mesh = new_account(), "colorapp-mesh"
    make_client(server.endpoint, "appmesh", account).create_mesh(meshName=mesh)
    deploy(
        server, account, "colorapp-mesh", "fargate-appmesh-colorapp.yaml",
        EnvironmentName="colorapp", ServicesDomain=DOMAIN, AppMeshMeshName=mesh,
    )  # fmt: skip
    make_client(server.endpoint, "logs", account).create_log_group(logGroupName=LOG_GROUP)
    path = tmp_path / "colorteller-green.json"
    path.write_text(json.dumps(colorteller(mesh, "green", prefix="fargate")))
    task = Task(server, account, str(path), tmp_path / "green", app=TELLER)
    try:
        task.wait_for("started app")
        joined(task, server, account, "colorteller-green-vn")
        print(f"one task, start to proxy HEALTHY: {task.seconds_to('envoy is HEALTHY'):.1f} s")
    finally:
        output = task.stop()
    assert "requiresCompatibilities FARGATE: the task runs on this machine" in output, output


BASICS = "howto-ecs-basics"


def test_howto_ecs_basics_task_definitions_run_by_family_from_its_stack(server, tmp_path):
    """The walkthrough's step 2 deployed through CloudFormation, then each of its task
    definitions run by family, as ``aws ecs run-task --task-definition FAMILY`` would,
    and the front app's calls reach the color app through both proxies; then step 3
    (an update of the stack) and its color-v2 task, which gets half of the calls."""
    account = new_account()
    ecr = f"{account}.dkr.ecr.us-east-1.amazonaws.com/{BASICS}"
    parameters = {
        "ProjectName": BASICS, "EnvoyImage": ENVOY_IMAGE,
        "CloudWatchAgentImage": f"{ecr}/cwagent:1", "ColorAppImage": f"{ecr}/colorapp:1",
        "FrontAppImage": f"{ecr}/feapp:1",
    }  # fmt: skip
    deploy(server, account, f"appmesh-{BASICS}", f"{BASICS}/deploy/2-meshify.yaml", **parameters)
    registered = make_client(server.endpoint, "ecs", account).list_task_definition_families()
    assert {f"{BASICS}-color", f"{BASICS}-front"} <= set(registered["families"])
    cwagent = "sleep infinity"  # a stand-in for the agent image, runnable as its user 1337
    tasks = {}
    try:
        tasks["color"] = Task(
            server, account, f"{BASICS}-color", tmp_path / "color",
            app=f'{" ".join(APP)} teller "$COLOR" "$PORT"', cwagent=cwagent,
        )  # fmt: skip
        tasks["front"] = Task(
            server, account, f"{BASICS}-front:1", tmp_path / "front",
            app=f'{" ".join(APP)} gateway "$PORT" "http://$COLOR_HOST/"', cwagent=cwagent,
        )  # fmt: skip
        for name, task in tasks.items():
            task.wait_for("started app")
            joined(task, server, account, f"{BASICS}-{name}-node")
        # front -> color.howto-ecs-basics.mesh.local: an awsCloudMap node, reached at its
        # connected proxy (no ECS service registers the task in Cloud Map here).
        seen = colors_through(tasks["front"].address, requests=5, port=8080)
        assert seen == {"green": 5}, seen
        # Step 3 as the walkthrough's deploy.sh runs it: an update of the same stack adds
        # color-v2 (blue) and a router sending each half the traffic.
        step3 = f"{BASICS}/deploy/3-routing.yaml"
        deploy(server, account, f"appmesh-{BASICS}", step3, **parameters)
        tasks["color-v2"] = Task(
            server, account, f"{BASICS}-color-v2", tmp_path / "color-v2",
            app=f'{" ".join(APP)} teller "$COLOR" "$PORT"', cwagent=cwagent,
        )  # fmt: skip
        tasks["color-v2"].wait_for("started app")
        joined(tasks["color-v2"], server, account, f"{BASICS}-color-v2-node")
        seen = colors_through(tasks["front"].address, requests=40, port=8080)
        assert set(seen) == {"green", "blue"}, seen
    finally:
        outputs = [task.stop() for task in tasks.values()]
    for output in outputs:
        assert "container xray (public.ecr.aws/xray/aws-xray-daemon)" in output, output
        # dependsOn: the app waits for envoy HEALTHY and xray START; envoy for xray START.
        assert output.index("started xray") < output.index("started envoy"), output
        assert output.index("envoy is HEALTHY") < output.index("started app"), output
