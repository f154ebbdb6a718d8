"""envoy_bootstrap: pure translation from App Mesh resources to Envoy v3 configuration.

- ``envoy_bootstrap.translate.translate(snapshot, node)``: one mesh snapshot and one
  proxy identity in, the listeners, route configurations, clusters, endpoints and
  secrets of that proxy out.
- ``build_bootstrap(env, xds_endpoint)``: the Envoy bootstrap the App Mesh image built
  from its environment, pointed at our xDS endpoint.
- ``envoy_bootstrap.validate``: parse our output with Envoy's protobuf types (kept out
  of this namespace because it loads every Envoy proto module).
No I/O happens here, and neither the control plane nor the proxy is imported.

The names load on first use (PEP 562): the sidecar imports ``envoy_bootstrap.bootstrap``
and ``envoy_types`` only, and importing the package must not load the translator too.
(``translate`` is the submodule; the function is ``envoy_bootstrap.translate.translate``.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envoy_bootstrap.bootstrap import build_bootstrap
    from envoy_bootstrap.snapshot import MeshSnapshot, NodeIdentity
    from envoy_bootstrap.translate import EnvoyResources, ResourceNotFound

_HOMES = {
    "build_bootstrap": "bootstrap",
    "MeshSnapshot": "snapshot",
    "NodeIdentity": "snapshot",
    "EnvoyResources": "translate",
    "ResourceNotFound": "translate",
}

__all__ = [
    "EnvoyResources",
    "MeshSnapshot",
    "NodeIdentity",
    "ResourceNotFound",
    "build_bootstrap",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'envoy_bootstrap' has no attribute {name!r}")
    return getattr(importlib.import_module(f"envoy_bootstrap.{home}"), name)
