"""The EKS TLS walkthroughs' front app (``feapp/serve.py``), for a pod without iptables.

    python front_app.py PORT HOST EGRESS_PORT COLOR_HOST

Like ``feapp``: ``GET /ping`` answers 200; any other ``GET`` asks ``http://COLOR_HOST/``
with the request's ``color_header`` and answers what it got (the backend's status as an
error, 500 when the request did not get an answer at all). In the pod, App Mesh's
iptables rules send that request to the sidecar's egress port; here nothing
intercepts, so it goes to ``127.0.0.1:EGRESS_PORT`` with ``Host: COLOR_HOST``, which is
what the egress listener sees either way.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def handler(egress: int, color_host: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/ping":
                self.send_response(200)
                self.end_headers()
                return
            request = urllib.request.Request(
                f"http://127.0.0.1:{egress}/", headers={"Host": color_host}
            )
            color_header = self.headers.get("color_header")
            if color_header is not None:
                request.add_header("color_header", color_header)
            try:
                with NO_PROXY.open(request, timeout=10) as reply:
                    body = reply.read()
            except urllib.error.HTTPError as error:
                self.send_error(error.code, error.reason)
                return
            except OSError as error:
                print(f"[ERROR] {error}", flush=True)
                self.send_error(500, "Something really bad happened")
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

    return Handler


if __name__ == "__main__":
    port, host, egress, color_host = sys.argv[1:5]
    server = ThreadingHTTPServer((host, int(port)), handler(int(egress), color_host))
    print("ready", flush=True)
    server.serve_forever()
