"""``appmesh-local up --example colorapp``: the first thing a new user runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from tests.conftest import free_port, make_client, start_server

UP = [sys.executable, "-m", "appmesh_api.cli", "up", "--example", "colorapp"]
MESH = "appmesh-local-colorapp"


def start_up(*args: str) -> tuple[subprocess.Popen, str, list[str]]:
    """Run ``up`` until it prints the curl to try; returns the process, that URL and output."""
    up = subprocess.Popen([*UP, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = up.stdout.readline()
        if not line:
            up.kill()
            raise AssertionError("up exited early:\n" + "".join(lines))
        lines.append(line)
        found = re.search(r"curl (http://127\.0\.0\.1:\d+/color)\b", line)
        if found:
            return up, found.group(1), lines
    up.kill()
    raise AssertionError("up never printed its curl:\n" + "".join(lines))


def stop_up(up: subprocess.Popen) -> str:
    up.send_signal(signal.SIGINT)
    output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "stopped." in output
    return output


def colors(url: str, count: int) -> list[dict]:
    answers = []
    for _ in range(count):
        with urllib.request.urlopen(url, timeout=10) as reply:
            answers.append(json.loads(reply.read()))
    return answers


def test_up_runs_the_colorapp_traced_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    up, url, lines = start_up("--port", str(port))
    try:
        answers = colors(url, 30)
        assert {a["color"] for a in answers} == {"white", "blue", "black"}, answers
        xray = make_client(f"http://127.0.0.1:{port}", "xray", "123456789012")
        deadline = time.monotonic() + 20
        traces = []
        while len(traces) < 30 and time.monotonic() < deadline:
            now = time.time()
            summaries = xray.get_trace_summaries(StartTime=now - 300, EndTime=now + 60)
            traces = summaries["TraceSummaries"]
            time.sleep(0.3)
        # Every request is traced (the demo samples 100%), gateway to teller in one trace.
        assert len(traces) >= 30, f"{len(traces)} traces for 30 requests"
        trace = xray.batch_get_traces(TraceIds=[traces[0]["Id"]])["Traces"][0]
        names = {json.loads(s["Document"])["name"] for s in trace["Segments"]}
        assert any("colorgateway" in n for n in names) and any("colorteller" in n for n in names)
    finally:
        output = stop_up(up)
    children = subprocess.run(
        ["pgrep", "-f", f"appmesh_api.cli serve --port {port}"], capture_output=True, text=True
    )
    assert children.stdout.strip() == "", "the control plane outlived up"
    assert "starting the control plane" in "".join(lines), output


def test_the_gateway_reports_its_recent_answers_and_clears_on_request(tmp_path):
    up, url, _ = start_up("--port", str(free_port()))
    try:
        urllib.request.urlopen(f"{url}/clear", timeout=10).read()
        first = colors(url, 1)[0]
        assert first["stats"] == {first["color"]: 1.0}
        last = colors(url, 60)[-1]
        # A window of the last 50 answers: the fractions are of 50, not of 61.
        assert round(sum(last["stats"].values()), 1) == 1.0
        assert all(abs(v * 50 - round(v * 50)) < 1e-6 for v in last["stats"].values()), last
    finally:
        stop_up(up)


def test_up_next_to_a_running_serve_reuses_it_and_leaves_it_as_found(tmp_path):
    control = start_server(tmp_path)
    try:
        up, url, lines = start_up("--port", str(control.port))
        try:
            assert colors(url, 1)[0]["color"] in {"white", "blue", "black"}
        finally:
            output = stop_up(up)
        said = "".join(lines)
        assert "using the appmesh-local already running" in said, said
        assert "starting the control plane" not in said
        assert control.process.poll() is None, "up stopped the control plane it borrowed"
        appmesh = make_client(control.endpoint, "appmesh", "123456789012")
        names = [m["meshName"] for m in appmesh.list_meshes()["meshes"]]
        assert MESH not in names, output
    finally:
        control.stop()


def test_up_with_three_replicas_survives_a_kill_9_of_the_first(tmp_path):
    port = free_port()
    up, url, lines = start_up("--port", str(port), "--replicas", "3")
    output = "".join(lines)
    pids = [
        int(pid) for pid in re.findall(r"replica \d: http://127\.0\.0\.1:\d+ \(pid (\d+)\)", output)
    ]
    try:
        assert len(pids) == 3, output
        assert {a["color"] for a in colors(url, 30)} == {"white", "blue", "black"}
        os.kill(pids[0], signal.SIGKILL)
        # The gateway and tellers' sidecars move to replica 2 and keep every request served.
        answers = colors(url, 60)
        assert len(answers) == 60
        third = make_client(
            re.search(r"replica 3: (http://\S+)", output).group(1), "appmesh", "123456789012"
        )
        nodes = third.list_virtual_nodes(meshName=MESH)["virtualNodes"]
        assert len(nodes) == 4
    finally:
        stopped = stop_up(up)
    for pid in pids[1:]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            raise AssertionError(f"replica pid {pid} outlived up:\n{stopped}")
