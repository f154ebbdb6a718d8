"""Envoy v3 resources compiled once per version into immutable tables (no I/O, no loop)."""
