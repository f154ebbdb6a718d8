"""proxy: the data-plane sidecar, configured by Envoy v3 resources over xDS."""
