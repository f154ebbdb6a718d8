"""``appmesh-local up --example grpc``: the gRPC demo runs, its printed commands work."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time

from tests.conftest import free_port

UP = [sys.executable, "-m", "appmesh_api.cli", "up", "--example", "grpc"]


def test_up_grpc_routes_by_metadata_and_stops_cleanly():
    port = free_port()
    up = subprocess.Popen(
        [*UP, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    commands: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while len(commands) < 2 and time.monotonic() < deadline:
            line = up.stdout.readline()
            assert line, "up exited early:\n" + "".join(lines)
            lines.append(line)
            if "appmesh_api.examples.grpc_app call" in line:
                commands.append(line.strip())
        assert len(commands) == 2, "".join(lines)
        assert "first answer: red" in "".join(lines)
        for command, expected in ((commands[0], "red (team -)"), (commands[1], "blue (team blue)")):
            argv = shlex.split(command)
            argv[0] = sys.executable
            ran = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            assert ran.returncode == 0 and ran.stdout.strip() == expected, ran
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0 and "stopped." in output, output
