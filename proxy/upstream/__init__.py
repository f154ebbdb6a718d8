"""Upstream: live clusters, hosts and their connection pools, health checks, outlier detection."""
