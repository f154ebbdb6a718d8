"""The unmodified CDK CLI against ``serve``: bootstrap, deploy, diff, a second deploy, destroy.

Only ``AWS_ENDPOINT_URL`` points the CLI at appmesh-local. The CLI and aws-cdk-lib come
from npm, installed by ``.ci/run`` into ``.ci/cdk`` (pinned there); without them the test
is skipped and says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import make_client, new_account

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / ".ci" / "cdk" / "node_modules"
CDK = MODULES / ".bin" / "cdk"
APP = Path(__file__).resolve().parent / "cdk_app"

pytestmark = pytest.mark.skipif(
    not CDK.exists() or shutil.which("node") is None,
    reason="the CDK CLI is not installed (.ci/run installs it into .ci/cdk with npm)",
)


def cdk(server, account: str, folder: Path, *args: str, **env: str) -> str:
    environment = {
        **os.environ,
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": account,
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "NODE_PATH": str(MODULES),
        **env,
    }
    command = [str(CDK), *args, "--no-notices"]
    done = subprocess.run(
        command, cwd=folder, env=environment, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, f"cdk {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_cdk_bootstraps_deploys_updates_and_destroys_an_app_mesh_app(server, tmp_path):
    account = new_account()
    folder = tmp_path / "app"
    shutil.copytree(APP, folder)
    appmesh = make_client(server.endpoint, "appmesh", account)

    cdk(server, account, folder, "bootstrap", f"aws://{account}/us-east-1")
    cdk(server, account, folder, "deploy", "--require-approval", "never")
    (route,) = appmesh.list_routes(meshName="cdk-color", virtualRouterName="color-router")["routes"]
    spec = appmesh.describe_route(
        meshName="cdk-color", virtualRouterName="color-router", routeName=route["routeName"]
    )["route"]["spec"]["httpRoute"]
    assert spec["action"]["weightedTargets"] == [{"virtualNode": "blue", "weight": 1}]
    assert spec["retryPolicy"]["maxRetries"] == 2
    node = appmesh.describe_virtual_node(meshName="cdk-color", virtualNodeName="blue")
    listener = node["virtualNode"]["spec"]["listeners"][0]
    assert listener["outlierDetection"]["maxServerErrors"] == 5

    diff = cdk(server, account, folder, "diff", COLOR_VERSION="2")
    assert "AWS::AppMesh::VirtualNode" in diff and "Green" in diff
    cdk(server, account, folder, "deploy", "--require-approval", "never", COLOR_VERSION="2")
    spec = appmesh.describe_route(
        meshName="cdk-color", virtualRouterName="color-router", routeName=route["routeName"]
    )["route"]["spec"]["httpRoute"]
    assert spec["action"]["weightedTargets"] == [
        {"virtualNode": "blue", "weight": 3},
        {"virtualNode": "green", "weight": 1},
    ]

    cdk(server, account, folder, "destroy", "--force", COLOR_VERSION="2")
    assert appmesh.list_meshes()["meshes"] == []
