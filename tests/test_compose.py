"""localstack-compose.yml and the Dockerfile name only things that exist.

Docker is not available here, so the file cannot be run; this checks that what it
asks appmesh-local to do is a command line appmesh-local accepts.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from appmesh_api.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_the_compose_command_is_a_valid_appmesh_local_command_line():
    compose = yaml.safe_load((ROOT / "localstack-compose.yml").read_text())
    service = compose["services"]["appmesh-local"]
    args = build_parser().parse_args(service["command"])
    assert args.command == "serve"
    assert args.aws_endpoint == "http://localstack:4566"
    assert args.host == "0.0.0.0" and args.port == 4567
    published = {entry.split(":")[0] for entry in service["ports"]}
    assert {"4567", str(args.xds_port)} <= published


def test_the_dockerfile_default_command_parses_and_copies_every_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd_line = next(line for line in dockerfile.splitlines() if line.startswith("CMD"))
    command = [part.strip(' "') for part in cmd_line[4:].strip("[] ").split(",")]
    assert build_parser().parse_args(command).command == "serve"
    for package in ("appmesh_api", "awssigv4", "envoy_bootstrap", "proxy"):
        assert f"COPY {package} {package}" in dockerfile
