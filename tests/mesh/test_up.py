"""``appmesh-local up --example colorapp``: the first thing a new user runs."""

from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

from tests.conftest import free_port


def test_up_runs_the_colorapp_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "appmesh_api.cli", "up", "--example", "colorapp"]
    up = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        url = None
        while url is None and time.monotonic() < deadline:
            line = up.stdout.readline()
            assert line, "up exited early:\n" + "".join(lines)
            lines.append(line)
            found = re.search(r"curl (http://127\.0\.0\.1:\d+/color)\b", line)
            url = found.group(1) if found else None
        assert url, "".join(lines)
        seen = collections.Counter()
        for _ in range(30):
            with urllib.request.urlopen(url, timeout=10) as reply:
                seen[json.loads(reply.read())["color"]] += 1
        assert set(seen) == {"white", "blue", "black"}, seen
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "stopped." in output
    children = subprocess.run(
        ["pgrep", "-f", f"appmesh_api.cli serve --port {port}"], capture_output=True, text=True
    )
    assert children.stdout.strip() == "", "the control plane outlived up"
