"""One hand-built mesh that uses every feature of the App Mesh API at least once."""

from __future__ import annotations

from .mesh_factory import Mesh, dns, gateway_route, http_route, listener, millis, seconds

FILE_CERT = {"file": {"certificateChain": "/c.pem", "privateKey": "/k.pem"}}
ACM_CERT = "arn:aws:acm:us-east-1:111122223333:certificate/c1"
PCA = "arn:aws:acm-pca:us-east-1:111122223333:certificate-authority/p1"
CERTIFICATES = {
    ACM_CERT: {"certificate": "L", "certificateChain": "C", "privateKey": "K"},
    PCA: {"certificate": "CA"},
}

CHECK = {
    "healthyThreshold": 2,
    "unhealthyThreshold": 3,
    "intervalMillis": 5000,
    "timeoutMillis": 2000,
}
DETECTION = {
    "maxServerErrors": 3,
    "interval": seconds(5),
    "baseEjectionDuration": millis(500),
    "maxEjectionPercent": 20,
}
STRICT_ACM_MTLS = {
    "mode": "STRICT",
    "certificate": {"acm": {"certificateArn": ACM_CERT}},
    "validation": {
        "trust": {"sds": {"secretName": "ca"}},
        "subjectAlternativeNames": {"match": {"exact": ["client.local"]}},
    },
}
PERMISSIVE_SDS = {
    "mode": "PERMISSIVE",
    "certificate": {"sds": {"secretName": "cert"}},
    "validation": {"trust": {"file": {"certificateChain": "/ca.pem"}}},
}
ACM_POLICY = {
    "tls": {
        "enforce": True,
        "ports": [8443],
        "certificate": FILE_CERT,
        "validation": {
            "trust": {"acm": {"certificateAuthorityArns": [PCA]}},
            "subjectAlternativeNames": {"match": {"exact": ["spiffe://td/x"]}},
        },
    }
}
LAX_DEFAULTS = {
    "clientPolicy": {
        "tls": {
            "enforce": False,
            "validation": {"trust": {"file": {"certificateChain": "/ca.pem"}}},
        }
    }
}
JSON_LOG = {
    "accessLog": {
        "file": {
            "path": "/dev/stdout",
            "format": {"json": [{"key": "code", "value": "%RESPONSE_CODE%"}]},
        }
    }
}
TEXT_LOG = {"accessLog": {"file": {"path": "/dev/stdout", "format": {"text": "%START_TIME%"}}}}
HEADERS = [
    {"name": "a", "match": {"exact": "1"}},
    {"name": "b", "invert": True, "match": {"prefix": "p"}},
    {"name": "c", "match": {"suffix": "s"}},
    {"name": "d", "match": {"regex": "r.*"}},
    {"name": "e", "match": {"range": {"start": 1, "end": 10}}},
    {"name": "f"},
]
HTTP_MATCH = {
    "prefix": "/api/",
    "method": "GET",
    "scheme": "http",
    "headers": HEADERS,
    "queryParameters": [{"name": "q", "match": {"exact": "1"}}, {"name": "flag"}],
    "port": 80,
}
RETRY = {
    "maxRetries": 3,
    "perRetryTimeout": millis(250),
    "httpRetryEvents": ["server-error", "gateway-error", "client-error", "stream-error"],
    "tcpRetryEvents": ["connection-error"],
}
GRPC_RETRY = {
    **RETRY,
    "grpcRetryEvents": [
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    ],
}
NO_TIMEOUT = {"perRequest": seconds(0), "idle": millis(100)}
GRPC_MATCH = {
    "serviceName": "pkg.Svc",
    "methodName": "Get",
    "metadata": [{"name": "m", "match": {"range": {"start": 0, "end": 5}}}],
}


def kitchen_sink(egress: str = "DROP_ALL", ip_preference: str | None = None) -> Mesh:
    mesh = Mesh(egress, ip_preference)
    _client(mesh)
    _targets(mesh)
    _routers(mesh)
    _gateway(mesh)
    return mesh


def _client(mesh: Mesh) -> None:
    tls_backend = {
        "virtualService": {"virtualServiceName": "tls.local", "clientPolicy": ACM_POLICY}
    }
    mesh.node(
        "client",
        listener(
            8080,
            connectionPool={"http": {"maxConnections": 5, "maxPendingRequests": 5}},
            timeout={"http": NO_TIMEOUT},
        ),
        listener(8081, "http2", connectionPool={"http2": {"maxRequests": 5}}, tls=PERMISSIVE_SDS),
        listener(8082, "grpc", connectionPool={"grpc": {"maxRequests": 5}}, tls=STRICT_ACM_MTLS),
        listener(
            8083,
            "tcp",
            connectionPool={"tcp": {"maxConnections": 5}},
            timeout={"tcp": {"idle": seconds(1)}},
        ),
        backends=["web.local", "rpc.local", "db.local", "cm.local", tls_backend],
        backendDefaults=LAX_DEFAULTS,
        logging=JSON_LOG,
    )


def _targets(mesh: Mesh) -> None:
    web_dns = dns("web.apps.local", responseType="ENDPOINTS", ipPreference="IPv4_ONLY")
    cloud_map = {
        "awsCloudMap": {
            "namespaceName": "apps.local",
            "serviceName": "cm",
            "attributes": [{"key": "k", "value": "v"}],
        }
    }
    rpc_tls = {"mode": "STRICT", "certificate": {"acm": {"certificateArn": ACM_CERT}}}
    web_check = {**CHECK, "protocol": "http", "path": "/p"}
    (
        mesh.node(
            "web",
            listener(80, healthCheck=web_check, outlierDetection=DETECTION),
            discovery=web_dns,
        )
        .node("web2", listener(81, "http2", healthCheck={**CHECK, "protocol": "http2"}))
        .node("rpc", listener(9090, "grpc", healthCheck={**CHECK, "protocol": "grpc"}, tls=rpc_tls))
        .node(
            "db",
            listener(5432, "tcp", healthCheck={**CHECK, "protocol": "tcp"}),
            discovery=dns("db.local", responseType="LOADBALANCER"),
        )
        .node(
            "cm",
            listener(8443, tls={"mode": "STRICT", "certificate": FILE_CERT}),
            discovery=cloud_map,
        )
        .node("none", listener(7000), discovery={})
    )


def _routers(mesh: Mesh) -> None:
    (
        mesh.router("web-router", 80, (81, "http2"))
        .route(
            "web-router",
            "api",
            http_route(
                HTTP_MATCH,
                ("web", 3),
                ("web2", 0, 81),
                retryPolicy=RETRY,
                timeout=NO_TIMEOUT,
                priority=1,
            ),
        )
        .route(
            "web-router",
            "regex",
            http_route({"path": {"regex": "/v[0-9]/.*"}, "port": 80}, ("web", 1)),
        )
        .route(
            "web-router", "exact", http_route({"path": {"exact": "/x"}, "port": 80}, ("none", 1))
        )
        .route(
            "web-router",
            "h2",
            http_route(
                {"prefix": "/", "port": 81}, ("web2", 1), kind="http2Route", retryPolicy=RETRY
            ),
        )
        .route("web-router", "zero", http_route({"prefix": "/zero", "port": 80}, ("web", 0)))
        .router("rpc-router", (9090, "grpc"))
        .route(
            "rpc-router",
            "g",
            http_route(
                GRPC_MATCH,
                ("rpc", 1),
                kind="grpcRoute",
                retryPolicy=GRPC_RETRY,
                timeout={"perRequest": seconds(30)},
            ),
        )
        .router("db-router", (5432, "tcp"))
        .route(
            "db-router",
            "t",
            http_route({"port": 5432}, ("db", 1), kind="tcpRoute", timeout={"idle": seconds(9)}),
        )
        .service("web.local", router="web-router")
        .service("rpc.local", router="rpc-router")
        .service("db.local", router="db-router")
        .service("cm.local", node="cm")
        .service("tls.local", node="cm")
        .service("orphan.local")
    )


def _gateway(mesh: Mesh) -> None:
    strict_mtls = {
        "mode": "STRICT",
        "certificate": FILE_CERT,
        "validation": {"trust": {"sds": {"secretName": "ca"}}},
    }
    mesh.gateway(
        "gw",
        listener(
            8088,
            connectionPool={"http": {"maxConnections": 5}},
            healthCheck={**CHECK, "protocol": "http", "path": "/hc"},
            tls=strict_mtls,
        ),
        listener(8089, "http2", connectionPool={"http2": {"maxRequests": 4}}),
        listener(
            8090,
            "grpc",
            healthCheck={**CHECK, "protocol": "grpc"},
            tls={"mode": "PERMISSIVE", "certificate": {"acm": {"certificateArn": ACM_CERT}}},
        ),
        backendDefaults={"clientPolicy": ACM_POLICY},
        logging=TEXT_LOG,
    )
    keep_host = {"hostname": {"defaultTargetHostname": "DISABLED"}}
    prefix_match = {
        "prefix": "/web/",
        "hostname": {"exact": "www.example.com"},
        "headers": HEADERS,
        "method": "POST",
        "queryParameters": [{"name": "q"}],
    }
    grpc_match = {
        "serviceName": "pkg.Svc",
        "hostname": {"exact": "rpc.example.com"},
        "metadata": [{"name": "t", "invert": True, "match": {"exact": "x"}}],
        "port": 8090,
    }
    routes = {
        "prefix": gateway_route(prefix_match, "web.local", port=80),
        "value": gateway_route(
            {"prefix": "/v/", "hostname": {"suffix": ".example.com"}},
            "web.local",
            rewrite={"prefix": {"value": "/api/"}, **keep_host},
            priority=3,
        ),
        "keep": gateway_route(
            {"prefix": "/keep/"}, "web.local", rewrite={"prefix": {"defaultPrefix": "DISABLED"}}
        ),
        "exact": gateway_route(
            {"path": {"exact": "/e"}}, "cm.local", rewrite={"path": {"exact": "/f"}}
        ),
        "regex": gateway_route(
            {"path": {"regex": "/r.*"}},
            "cm.local",
            rewrite={"path": {"exact": "/g"}, "hostname": {"defaultTargetHostname": "ENABLED"}},
        ),
        "h2": gateway_route({"prefix": "/", "port": 8089}, "web.local", kind="http2Route", port=81),
        "grpc": gateway_route(grpc_match, "rpc.local", kind="grpcRoute", rewrite=keep_host),
    }
    for name, spec in routes.items():
        mesh.gateway_route("gw", name, spec)
