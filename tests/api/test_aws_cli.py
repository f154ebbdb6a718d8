"""The unmodified aws CLI against the local endpoint (``--endpoint-url`` or AWS_ENDPOINT_URL)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from unittest import mock

import pytest

from tests.conftest import new_account


def aws_command() -> list[str]:
    """The aws CLI as installed with the test extras (``awscli`` on PyPI)."""
    found = shutil.which("aws")
    return [found] if found else [sys.executable, "-m", "awscli"]


def cli_environment(account: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": account,
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_PAGER": "",
    }


def run_aws_in_process(server, account: str, *args: str) -> subprocess.CompletedProcess:
    """The same CLI (``awscli.clidriver``, what the ``aws`` script runs), called in this
    process: a fresh driver and botocore session per call, the environment and the
    output streams its own for the call. It skips the interpreter's and the CLI's
    start-up (half a second or more a call), for tests that run the CLI dozens of times."""
    from awscli.clidriver import create_clidriver

    command = ["--endpoint-url", server.endpoint, "--output", "json", *args]
    out, err = io.StringIO(), io.StringIO()
    environment = mock.patch.dict(os.environ, cli_environment(account))
    with environment, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = create_clidriver().main(command)
    return subprocess.CompletedProcess(["aws", *command], code, out.getvalue(), err.getvalue())


def run_aws(server, account: str, *args: str, use_env_endpoint: bool = False):
    env = {**os.environ, **cli_environment(account)}
    endpoint = []
    if use_env_endpoint:
        env["AWS_ENDPOINT_URL"] = server.endpoint
    else:
        endpoint = ["--endpoint-url", server.endpoint]
    command = [*aws_command(), *endpoint, "--output", "json", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def cli(server):
    account = new_account()
    return lambda *args, **kw: run_aws(server, account, *args, **kw)


def test_walkthrough_commands_work_with_endpoint_url(cli, tmp_path):
    created = cli("appmesh", "create-mesh", "--mesh-name", "cli-mesh")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["mesh"]["status"]["status"] == "ACTIVE"
    spec = {
        "listeners": [{"portMapping": {"port": 9080, "protocol": "http"}}],
        "serviceDiscovery": {"dns": {"hostname": "colorteller.mesh.local"}},
    }
    spec_file = tmp_path / "node.json"
    spec_file.write_text(json.dumps(spec))
    node = cli(
        "appmesh",
        "create-virtual-node",
        "--mesh-name",
        "cli-mesh",
        "--virtual-node-name",
        "colorteller",
        "--spec",
        f"file://{spec_file}",
    )
    assert node.returncode == 0, node.stderr
    assert json.loads(node.stdout)["virtualNode"]["spec"] == spec
    listed = cli("appmesh", "list-virtual-nodes", "--mesh-name", "cli-mesh")
    names = [ref["virtualNodeName"] for ref in json.loads(listed.stdout)["virtualNodes"]]
    assert names == ["colorteller"]


def test_aws_endpoint_url_environment_variable_is_enough(cli):
    assert (
        cli("appmesh", "create-mesh", "--mesh-name", "env-mesh", use_env_endpoint=True).returncode
        == 0
    )
    listed = cli("appmesh", "list-meshes", use_env_endpoint=True)
    assert [m["meshName"] for m in json.loads(listed.stdout)["meshes"]] == ["env-mesh"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("describe-mesh", "--mesh-name", "absent"), "NotFoundException"),
        (("create-mesh", "--mesh-name", "twice"), "ConflictException"),
        (("delete-mesh", "--mesh-name", "busy"), "ResourceInUseException"),
        (("list-meshes", "--limit", "101"), "BadRequestException"),
    ],
)
def test_the_cli_reports_aws_error_codes(cli, args, code):
    cli("appmesh", "create-mesh", "--mesh-name", "twice")
    cli("appmesh", "create-mesh", "--mesh-name", "busy")
    cli(
        "appmesh",
        "create-virtual-router",
        "--mesh-name",
        "busy",
        "--virtual-router-name",
        "r",
        "--spec",
        json.dumps({"listeners": [{"portMapping": {"port": 80, "protocol": "http"}}]}),
    )
    result = cli("appmesh", *args)
    assert result.returncode != 0
    assert f"An error occurred ({code})" in result.stderr
