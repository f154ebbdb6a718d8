"""appmesh_api: the App Mesh control plane (REST API, store, change feed, side services)."""
