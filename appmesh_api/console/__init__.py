"""The web console at ``/console``: a mesh's resources, its live service map, traces and
connected proxies, in a browser.

Served by the control plane itself so there is nothing more to start: plain HTML, CSS and
JavaScript modules from ``static/`` (no build step, nothing fetched from the internet; graphs
are SVG drawn by the page), fed by small JSON endpoints under ``/_appmesh/console/api`` that
read the server's state directly (``api``). ``site.install`` wires both into the app.
"""
