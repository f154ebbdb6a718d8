"""envoy_bootstrap: pure translation from App Mesh resources to Envoy v3 configuration."""
