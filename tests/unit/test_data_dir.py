"""The default data directory, also for a user with no home (an ECS task's ``user``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from appmesh_api.settings import default_data_dir


def test_a_user_without_a_home_gets_a_directory_of_their_own_in_tmp(monkeypatch):
    monkeypatch.delenv("APPMESH_LOCAL_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    expected = Path(tempfile.gettempdir()) / f"appmesh-local-{os.getuid()}"
    assert default_data_dir() == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"APPMESH_LOCAL_DATA_DIR": "/srv/mesh"}, Path("/srv/mesh")),
        ({"XDG_DATA_HOME": "/data"}, Path("/data/appmesh-local")),
    ],
)
def test_the_environment_names_the_directory(monkeypatch, env, expected):
    monkeypatch.delenv("APPMESH_LOCAL_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert default_data_dir() == expected
