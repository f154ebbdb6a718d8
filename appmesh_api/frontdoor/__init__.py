"""One front door for every AWS request the control plane answers.

Each request on the control-plane port runs through one short chain of handlers
(``chain.py``): bound the head and body, read the caller from the SigV4 scope, check
the region, verify the signature when asked, pick the service, dispatch, and render
any refusal in the protocol the client spoke. App Mesh, X-Ray and the side services
then share every rule instead of each front door keeping its own copy, as LocalStack's
handler chain does.
"""
