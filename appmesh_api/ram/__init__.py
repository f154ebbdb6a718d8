"""AWS RAM, as far as App Mesh's shared meshes need it: shares, invitations, accepting.

On App Mesh another account reached a mesh only after its owner shared it with a RAM
resource share and the other account accepted the invitation. moto's RAM creates
shares but serves no invitations, so appmesh-local answers RAM itself (``shares.py``
holds the state, ``api.py`` speaks RAM's rest-json) and the App Mesh service asks it
whether a mesh is shared with a caller.
"""
