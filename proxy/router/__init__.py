"""The router filter: one HTTP request routed to a cluster, its attempts, retries and headers."""
