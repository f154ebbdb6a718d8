"""``appmesh-local mesh describe`` and ``appmesh-local traces`` against a live server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from appmesh_api.cli import main
from tests.api.helpers import share_mesh
from tests.conftest import free_port, make_client, new_account
from tests.console.helpers import MESH, build_demo_mesh, send_traces
from tests.xray.helpers import GATEWAY, NODE_A, NODE_B

TREE = """\
mesh demo  owner {account} · us-east-1 · egress DROP_ALL
├─ gateway gateway  listeners http:8088
│  └─ gateway route to-a  http prefix / → service a.demo.local
│     └─ service a.demo.local → node node-a
│        └─ node node-a
│              listeners http:9001 · discovery dns node-a.demo.local
│              backends b.demo.local
└─ service b.demo.local → router b-router
   └─ router b-router  listeners http:8080
      └─ route b-route  http prefix /
         ├─ 75% (weight 3) → node node-b
         │     listeners http:9002 · discovery dns node-b.demo.local
         └─ 25% (weight 1) → node node-b-v2
               listeners http:9003 · discovery dns node-b-v2.demo.local
"""


@pytest.fixture(scope="module")
def demo(server):
    account = new_account()
    build_demo_mesh(make_client(server.endpoint, "appmesh", account))
    traces = send_traces(make_client(server.endpoint, "xray", account))
    return {"account": account, "traces": traces}


@pytest.fixture
def cli(server, demo, monkeypatch, capsys):
    """Run the CLI in-process as the demo account; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", demo["account"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.setenv("NO_COLOR", "1")

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_mesh_describe_draws_the_resource_tree(cli, demo):
    code, out, err = cli("mesh", "describe", MESH)
    assert (code, err) == (0, "")
    assert out == TREE.format(account=demo["account"])


def test_mesh_describe_json_is_the_same_tree(cli):
    code, out, _ = cli("mesh", "describe", MESH, "--json")
    tree = json.loads(out)
    assert code == 0 and tree["kind"] == "mesh" and tree["facts"]["egress"] == "DROP_ALL"
    route = tree["children"][1]["children"][0]["children"][0]
    assert route["kind"] == "route" and route["facts"]["match"] == "http prefix /"
    shares = [(child["name"], child["facts"]["percent"]) for child in route["children"]]
    assert shares == [("node-b", 75), ("node-b-v2", 25)]


def test_mesh_describe_reads_a_shared_mesh_with_its_owner(cli, demo, server, monkeypatch):
    consumer = new_account()

    def client_for(service: str, account: str):
        return make_client(server.endpoint, service, account)

    share_mesh(client_for, demo["account"], MESH, consumer)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", consumer)
    code, out, _ = cli("mesh", "describe", MESH, "--mesh-owner", demo["account"])
    assert code == 0 and out == TREE.format(account=demo["account"])


def test_mesh_describe_of_an_unknown_mesh_says_so(cli):
    code, out, err = cli("mesh", "describe", "nope")
    assert code == 1 and out == ""
    assert err.startswith("appmesh-local mesh describe: NotFoundException: ") and "nope" in err


def test_traces_lists_recent_traces_newest_first(cli, demo):
    code, out, _ = cli("traces", "--minutes", "5")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == [
        "TRACE",
        "ID",
        "TIME",
        "ROOT",
        "STATUS",
        "DURATION",
        "HTTP",
    ]
    ids = [line.split()[0] for line in lines[1:]]
    assert ids == [trace.trace_id for trace in reversed(demo["traces"])]
    assert f"{GATEWAY}  200 ok    600 ms  GET http://gateway.demo/colors" in lines[1]


def test_traces_filter_and_bad_filter(cli, demo):
    code, out, _ = cli("traces", "--filter", f'service("{NODE_B}") {{ fault }}', "--json")
    assert code == 0 and len(json.loads(out)) == 3
    code, out, _ = cli("traces", "--filter", "responsetime > 5")
    assert code == 0 and out == "no traces matching 'responsetime > 5' in the last 10 minutes\n"
    code, _, err = cli("traces", "--filter", "((")
    assert code == 2 and "InvalidRequestException" in err


def test_a_trace_is_drawn_as_a_waterfall(cli, demo):
    trace_id = demo["traces"][0].trace_id
    code, out, _ = cli("traces", trace_id)
    lines = out.splitlines()
    assert code == 0
    header = f"trace {trace_id}  600 ms  3 segments  GET http://gateway.demo/colors → 200 ok"
    assert lines[0] == header
    assert lines[1].split() == ["0", "ms", "600", "ms"]
    rows = lines[2:]
    names = [row[: row.index("█")].rstrip() for row in rows]
    assert names == [
        GATEWAY,
        f"└─ → {NODE_A}",
        f"   └─ {NODE_A}",
        f"      └─ → {NODE_B}",
        f"         └─ {NODE_B}",
    ]
    assert rows[0].endswith("500 ms  200 ok") and rows[-1].endswith("400 ms  503 fault")
    bars = [row[row.index("█") : row.rindex("█") + 1] for row in rows]
    starts = [row.index("█") for row in rows]
    assert starts == sorted(starts) and len(bars[0]) > len(bars[3])  # 500 ms vs 200 ms


def test_an_unknown_trace_says_how_to_list_them(cli):
    code, _, err = cli("traces", "1-00000000-000000000000000000000000")
    assert code == 1 and "appmesh-local traces" in err


def test_an_endpoint_nobody_serves_says_to_start_the_server():
    endpoint = f"http://127.0.0.1:{free_port()}"
    for argv in (["mesh", "describe", MESH], ["traces"]):
        done = subprocess.run(
            [sys.executable, "-m", "appmesh_api.cli", *argv, "--endpoint", endpoint],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1 and done.stdout == ""
        assert f"cannot reach {endpoint}: is appmesh-local serve running?" in done.stderr
        assert "appmesh-local serve" in done.stderr and "Traceback" not in done.stderr
