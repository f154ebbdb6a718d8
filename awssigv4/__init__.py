"""awssigv4: AWS Signature Version 4's canonical form, shared by who signs and who verifies.

The control plane verifies SigV4 (``appmesh_api/frontdoor/signatures.py``) and the sidecar
signs its xDS requests with it (``proxy/xds_auth.py``); both must build the canonical
request byte for byte as botocore does, so that one builder serves both. It is neither App
Mesh's nor Envoy's, so it sits beside the three packages and imports none of them (nor
botocore, whose import the sidecar cannot afford: docs/benchmarks.md).
"""
