"""The project's Python CDK app (``cdk/app.py``) through the real CDK CLI against ``serve``.

The colorapp mesh of ``appmesh-local up --example colorapp``, declared with aws-cdk-lib's
App Mesh L2 constructs in Python: bootstrap, deploy, a second deploy that moves the
route's weights, destroy. The CLI comes from npm (``.ci/run`` installs it into
``.ci/cdk``), aws-cdk-lib for Python from the ``cdk`` extra; without either the test is
skipped and says which is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_client, new_account

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / ".ci" / "cdk" / "node_modules" / ".bin" / "cdk"
APP = ROOT / "cdk" / "app.py"
MESH = "colorapp"

pytestmark = [
    pytest.mark.skipif(
        not CDK.exists() or shutil.which("node") is None,
        reason="the CDK CLI is not installed (.ci/run installs it into .ci/cdk with npm)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("aws_cdk") is None,
        reason="aws-cdk-lib for Python is not installed (pip install -e '.[cdk]')",
    ),
]


def cdk(server, account: str, output: Path, *args: str) -> str:
    """One CDK CLI command from the repository root, as the cdk/README.md gives it."""
    environment = {
        **os.environ,
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": account,
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    }
    command = [str(CDK), *args, "--app", f"{sys.executable} {APP}", "--output", str(output)]
    done = subprocess.run(
        [*command, "--no-notices"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"cdk {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def weights(appmesh) -> dict[str, int]:
    route = appmesh.describe_route(
        meshName=MESH, virtualRouterName="colorteller", routeName="colorteller-route"
    )["route"]["spec"]["httpRoute"]
    return {t["virtualNode"]: t["weight"] for t in route["action"]["weightedTargets"]}


def test_the_python_cdk_app_deploys_the_colorapp_mesh_updates_and_destroys(server, tmp_path):
    account = new_account()
    appmesh = make_client(server.endpoint, "appmesh", account)
    output = tmp_path / "cdk.out"

    cdk(server, account, output, "bootstrap", f"aws://{account}/us-east-1")
    deployed = cdk(server, account, output, "deploy", "--require-approval", "never")
    assert "ColorApp.MeshName = colorapp" in deployed, deployed

    nodes = {
        n["virtualNodeName"] for n in appmesh.list_virtual_nodes(meshName=MESH)["virtualNodes"]
    }
    assert nodes == {"colorteller-white", "colorteller-blue", "colorteller-black", "colorgateway"}
    services = appmesh.list_virtual_services(meshName=MESH)["virtualServices"]
    assert [s["virtualServiceName"] for s in services] == ["colorteller.mesh.local"]
    service = appmesh.describe_virtual_service(
        meshName=MESH, virtualServiceName="colorteller.mesh.local"
    )["virtualService"]["spec"]
    assert service["provider"] == {"virtualRouter": {"virtualRouterName": "colorteller"}}
    gateway = appmesh.describe_virtual_node(meshName=MESH, virtualNodeName="colorgateway")
    spec = gateway["virtualNode"]["spec"]
    assert spec["backends"] == [
        {"virtualService": {"virtualServiceName": "colorteller.mesh.local"}}
    ]
    assert spec["listeners"][0]["portMapping"] == {"port": 9080, "protocol": "http"}
    assert weights(appmesh) == {
        "colorteller-white": 1,
        "colorteller-blue": 1,
        "colorteller-black": 1,
    }
    mesh = appmesh.describe_mesh(meshName=MESH)["mesh"]["spec"]
    assert mesh["egressFilter"] == {"type": "DROP_ALL"}

    cdk(server, account, output, "deploy", "--require-approval", "never", "-c", "weights=0:1:0")
    assert weights(appmesh) == {
        "colorteller-white": 0,
        "colorteller-blue": 1,
        "colorteller-black": 0,
    }

    cdk(server, account, output, "destroy", "--force")
    assert appmesh.list_meshes()["meshes"] == []
