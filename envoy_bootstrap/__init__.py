"""envoy_bootstrap: pure translation from App Mesh resources to Envoy v3 configuration.

- ``translate(snapshot, node)``: one mesh snapshot and one proxy identity in, the
  listeners, route configurations, clusters, endpoints and secrets of that proxy out.
- ``build_bootstrap(env, xds_endpoint)``: the Envoy bootstrap the App Mesh image built
  from its environment, pointed at our xDS endpoint.
- ``envoy_bootstrap.validate``: parse our output with Envoy's protobuf types (kept out
  of this namespace because it loads every Envoy proto module).
No I/O happens here, and neither the control plane nor the proxy is imported.
"""

from envoy_bootstrap.bootstrap import build_bootstrap
from envoy_bootstrap.snapshot import MeshSnapshot, NodeIdentity
from envoy_bootstrap.translate import EnvoyResources, ResourceNotFound, translate

__all__ = [
    "EnvoyResources",
    "MeshSnapshot",
    "NodeIdentity",
    "ResourceNotFound",
    "build_bootstrap",
    "translate",
]
