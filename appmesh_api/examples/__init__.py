"""Example meshes for ``appmesh-local up``: small apps and the App Mesh resources around them."""
