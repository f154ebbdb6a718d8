"""``appmesh-local up --example mtls``: the mTLS demo runs and its printed commands show
what they say: HTTPS through the front, mutual TLS between the sidecars (handshakes in
the admin's ssl stats), plaintext and certificate-less clients refused by the backend."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port

UP = [sys.executable, "-m", "appmesh_api.cli", "up", "--example", "mtls"]


def run(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)


def stat(output: str, suffix: str) -> int:
    """The one stat ending in ``suffix`` among ``name: value`` lines."""
    values = [int(v) for n, v in re.findall(r"^(\S+): (\d+)$", output, re.M) if n.endswith(suffix)]
    assert len(values) == 1, (suffix, output)
    return values[0]


def backend_port(front_stats: str) -> str:
    """The port of the front's cluster to the backend (its name ends in it)."""
    found = re.search(r"_backend_http_(\d+)\.ssl\.handshake", front_stats)
    assert found, front_stats
    return found.group(1)


def test_up_mtls_encrypts_refuses_plaintext_and_strangers_and_stops_cleanly():
    up = subprocess.Popen(
        [*UP, "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    commands: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while len(commands) < 5 and time.monotonic() < deadline:
            line = up.stdout.readline()
            assert line, "up exited early:\n" + "".join(lines)
            lines.append(line)
            if line.startswith("  curl "):
                commands.append(line.strip())
        assert len(commands) == 5, "".join(lines)
        assert "first answer: green" in "".join(lines)
        call, front_stats, backend_stats, plaintext, no_cert = commands
        folder = Path(re.search(r"--cacert (\S+)/ca.pem", call).group(1))
        assert folder.is_dir()

        front_port = re.search(r"https://localhost:(\d+)/", call).group(1)
        front_listener = f"listener.127.0.0.1_{front_port}.ssl.handshake"
        before = stat(run(front_stats).stdout, front_listener)
        for _ in range(2):
            answer = run(call)
            assert answer.returncode == 0 and json.loads(answer.stdout)["color"] == "green", answer
        front = run(front_stats).stdout
        assert stat(front, front_listener) == before + 2  # each curl: a handshake with the front
        assert stat(front, "_backend_http_" + backend_port(front) + ".ssl.handshake") >= 1

        backend = run(backend_stats).stdout
        assert stat(backend, ".ssl.handshake") >= 1  # the front's mTLS connection
        assert "ssl.versions.TLSv1" in backend
        refused = stat(backend, ".ssl.fail_verify_no_cert")
        errors = stat(backend, ".ssl.connection_error")

        assert run(plaintext).returncode != 0  # STRICT: no plaintext
        backend = run(backend_stats).stdout
        assert stat(backend, ".ssl.connection_error") == errors + 1
        assert stat(backend, ".ssl.fail_verify_no_cert") == refused
        assert run(no_cert).returncode != 0  # mTLS: no certificate, no entry
        backend = run(backend_stats).stdout
        assert stat(backend, ".ssl.fail_verify_no_cert") == refused + 1
        assert stat(backend, ".ssl.connection_error") == errors + 1
    finally:
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0 and "stopped." in output, output
    assert not folder.exists()  # the certificates went with the demo
