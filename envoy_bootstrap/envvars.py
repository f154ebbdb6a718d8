"""Reading the App Mesh Envoy image's environment the way its agent did.

The agent (amazon-ecs-service-connect-agent, ``envoy_bootstrap/env``) trims values,
treats empty as unset, parses booleans with Go's ``strconv.ParseBool`` and refuses to
start on a value it cannot parse; we raise ``ValueError`` in the same cases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


@dataclass(frozen=True)
class Env:
    values: Mapping[str, str]

    def get(self, key: str) -> str:
        return str(self.values.get(key, "")).strip()

    def first(self, *keys: str) -> str:
        """The first of ``keys`` that is set, else ``""``."""
        return next((value for value in map(self.get, keys) if value), "")

    def or_(self, key: str, default: str) -> str:
        return self.get(key) or default

    def integer(self, key: str, default: int) -> int:
        value = self.get(key)
        if not value:
            return default
        try:
            return int(value, 10)
        except ValueError:
            raise ValueError(
                f'{key} environment variable ("{value}") must be an integer value.'
            ) from None

    def truthy(self, key: str, default: bool = False) -> bool:
        value = self.get(key)
        if not value:
            return default
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise ValueError(f'{key} environment variable ("{value}") must be a boolean value.')


@dataclass(frozen=True)
class MeshResource:
    """The mesh resource a node id names: ``[arn:...:]mesh/<mesh>/<type>/<name>``."""

    mesh: str
    type: str
    name: str

    @property
    def snake_type(self) -> str:
        """``virtualNode`` -> ``virtual_node``, for the ``appmesh.<type>`` stats tag."""
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in self.type).lstrip("_")

    @property
    def upper_camel_type(self) -> str:
        """``virtualNode`` -> ``VirtualNode``, the metrics extension's dimension name."""
        return self.type[:1].upper() + self.type[1:]


def mesh_resource(node_id: str) -> MeshResource:
    """Split a node id on ``/``; the agent needs at least four parts."""
    parts = node_id.split("/")
    if len(parts) < 4:
        raise ValueError(f"Unrecognized resource name format: {node_id}")
    return MeshResource(parts[1], parts[2], parts[3])
