"""The FastAPI application: App Mesh's REST API plus the AWS side services on one port.

``/v20190125/...`` is App Mesh, dispatched by botocore's model; ``/_appmesh/...`` is
appmesh-local's own surface (health, xDS, the console's JSON) and ``/console`` its web
console (``appmesh_api.console``); everything else goes to the side
services (embedded moto, or ``--aws-endpoint``), routed by SigV4 credential scope.
X-Ray is answered by ``appmesh_api.xray`` (service graph, filters, sampling), which also
runs the X-Ray daemon (``--xray-daemon-port``) in the server's lifespan.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from appmesh_api import cloudformation, protocol
from appmesh_api.ads import start_ads_server
from appmesh_api.adstls import load_or_issue
from appmesh_api.changefeed import ChangeFeed
from appmesh_api.cloudformation import bridge as cloudformation_bridge
from appmesh_api.console.site import install as install_console
from appmesh_api.discovery import DiscoveryService
from appmesh_api.edge import build_side_services_app
from appmesh_api.errors import AppMeshError, InternalServerErrorException
from appmesh_api.frontdoor import limits
from appmesh_api.frontdoor.chain import Exchange, FrontDoor, Target
from appmesh_api.frontdoor.wire import Reply
from appmesh_api.identity import Caller, identify
from appmesh_api.kube.api import kube_router
from appmesh_api.kube.cloudmap import CloudMapRegistrar, ServiceInstances, desired_instances
from appmesh_api.kube.controller import KubeController
from appmesh_api.kube.convert import Cluster
from appmesh_api.kube.k8s import k8s_router
from appmesh_api.model import match_operation
from appmesh_api.peers import NUDGE_PATH, TOKEN_HEADER
from appmesh_api.ram.api import ram_target
from appmesh_api.ram.shares import Shares
from appmesh_api.service import AppMeshService
from appmesh_api.settings import Settings
from appmesh_api.sidestate import FOLDER as SIDE_STATE_FOLDER
from appmesh_api.sidestate import SideState, activate
from appmesh_api.store import MeshKey, SqliteStore, Store
from appmesh_api.xds_rest import PATH_PREFIX as XDS_PREFIX
from appmesh_api.xds_rest import XdsRestApi
from appmesh_api.xray.api import XRayService, xray_target
from appmesh_api.xray.daemon import start_embedded
from appmesh_api.xray.journal import Journal
from appmesh_api.xray.store import XRayState

log = logging.getLogger("appmesh_local.api")

API_PREFIX = "/v20190125"
DATABASE_FILE = "appmesh.sqlite3"
RAM_FILE = "ram.json"
XRAY_FILE = "xray.sqlite3"


def open_store(settings: Settings) -> Store:
    """SQLite in the data directory, unless ``--store`` names a DynamoDB table (RAM shares
    and CloudFormation stacks stay in the data directory either way)."""
    if settings.data_dir is not None:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    if settings.store is not None:
        from appmesh_api.dynamo import DynamoStore  # boto3's client only when asked for

        return DynamoStore(settings.store, create_table=settings.create_table)
    if settings.data_dir is None:
        return SqliteStore(None)
    return SqliteStore(Path(settings.data_dir) / DATABASE_FILE)


def _side_state(settings: Settings) -> SideState | None:
    """Where the embedded moto's backends are saved (None: in memory, or not embedded)."""
    if settings.data_dir is None or settings.aws_endpoint:
        return None
    return SideState(Path(settings.data_dir) / SIDE_STATE_FOLDER)


def _xray_state(settings: Settings) -> XRayState:
    """X-Ray's traces, rules and groups: in ``xray.sqlite3`` with a data directory."""
    journal = None
    if settings.data_dir is not None:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        journal = Journal(Path(settings.data_dir) / XRAY_FILE)
    return XRayState(max_bytes=settings.xray_max_bytes, journal=journal)


def _xray_summary(xray: XRayService | None) -> str:
    if xray is None:
        return "X-Ray forwarded to --aws-endpoint, nothing kept here"
    state, journal = xray.state, xray.state.journal
    if journal is None:
        return f"X-Ray stopped; {state.trace_count()} traces were in memory only (--in-memory)"
    cost = f"{journal.seconds * 1000 / journal.commits:.2f} ms" if journal.commits else "-"
    return (
        f"X-Ray stopped; {state.trace_count()} traces in {journal.path} ({journal.size()} "
        f"bytes; {journal.commits} commits this run, {cost} each)"
    )


def _restore_side_services(state: SideState | None, stacks: bool) -> None:
    """Bring back moto's backends (side-service calls wait until then), then the stacks."""
    if state is not None:
        try:
            restored = state.restore()
            log.info("side services ready; %d backends restored from %s", restored, state.folder)
        finally:
            state.ready.set()
    if stacks:
        cloudformation.install()


def _side_state_summary(settings: Settings, state: SideState | None) -> str:
    if settings.aws_endpoint:
        return f"forwarded to {settings.aws_endpoint}, nothing kept here"
    if state is None:
        return "their state was in memory only (--in-memory)"
    return state.summary()


def error_body(error: AppMeshError) -> bytes:
    return json.dumps({"message": error.message}).encode()


_WRITES = ("Create", "Update", "Delete", "Tag", "Untag")


_NAME_PARAMS = (
    "meshName",
    "virtualRouterName",
    "virtualGatewayName",
    "virtualNodeName",
    "virtualServiceName",
    "routeName",
    "gatewayRouteName",
)


def _describe_target(params: dict) -> str:
    """``mesh/demo/virtualNode/blue``-style words for a log line (or the ARN for tagging)."""
    parts = [f"{key.removesuffix('Name')}/{params[key]}" for key in _NAME_PARAMS if key in params]
    return "/".join(parts) or str(params.get("resourceArn", "-"))


class AppMeshApi:
    """App Mesh's REST API, answered in-process for the front door (``/v20190125/...``).

    Calls skip FastAPI's per-request routing and Request/Response objects (about half
    the server's CPU per call); the front door has already bounded the body and read the
    caller.
    """

    def __init__(self, service: AppMeshService) -> None:
        self.service = service

    def answer(self, exchange: Exchange) -> Reply:
        query = dict(parse_qsl(exchange.query))
        caller = exchange.caller or Caller("", "")
        status, extra, payload = self.handle(
            exchange.method, exchange.raw_path, query, exchange.body, caller
        )
        headers = [
            (b"content-type", b"application/json"),
            *((name.encode(), value.encode()) for name, value in extra.items()),
        ]
        return status, headers, payload

    def handle(
        self, method: str, path: str, query: dict[str, str], body: bytes, caller: Caller
    ) -> tuple[int, dict[str, str], bytes]:
        """Parse, run and serialize one operation, mapping every failure to an AWS error.

        Runs without awaiting, so the whole read-check-write is atomic on the event loop.
        """
        request_id = str(uuid.uuid4())
        found = match_operation(method, path)
        if found is None:
            message = f"No App Mesh operation serves {method} {path}"
            return (
                404,
                {"x-amzn-ErrorType": "UnknownOperationException", "x-amzn-RequestId": request_id},
                json.dumps({"message": message}).encode(),
            )
        operation, labels = found
        try:
            params = protocol.parse_request(operation, labels, query, body)
            result = self.service.call(operation.name, params, caller)
            payload = protocol.serialize_output(operation, result)
        except AppMeshError as error:
            log.info("%s -> %s: %s", operation.name, error.code, error.message)
            return self._error(error, request_id)
        except Exception:
            log.exception("%s failed unexpectedly", operation.name)
            return self._error(
                InternalServerErrorException(
                    "The request failed inside appmesh-local. See the server log for the traceback."
                ),
                request_id,
            )
        if operation.name.startswith(_WRITES):
            log.info(
                "%s %s by account %s", operation.name, _describe_target(params), caller.account
            )
        else:
            log.debug("%s -> 200", operation.name)
        return 200, {"x-amzn-RequestId": request_id}, payload

    @staticmethod
    def _error(error: AppMeshError, request_id: str) -> tuple[int, dict[str, str], bytes]:
        headers = {"x-amzn-ErrorType": error.code, "x-amzn-RequestId": request_id}
        return error.status_code, headers, error_body(error)


async def _sweep_proxies(discovery: DiscoveryService, every: float = 10.0) -> None:
    """Forget proxies that stopped asking for config, so their endpoints disappear."""
    while True:
        await asyncio.sleep(every)
        discovery.expire()


NO_REPLICAS = "this server has no replicas: it keeps its state in SQLite, not --store dynamodb://"
BAD_NUDGE = f"a nudge must carry this replica's token ({TOKEN_HEADER}), as its table item lists it"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; state (store, change feed, service) lives on ``app.state``."""
    settings = settings or Settings()
    store = open_store(settings)
    feed = ChangeFeed(store.sequence)
    shares = Shares(Path(settings.data_dir) / RAM_FILE if settings.data_dir else None)
    service = AppMeshService(store, feed, settings, shares)
    side_state = _side_state(settings)
    activate(side_state)
    side_services = build_side_services_app(
        settings.aws_endpoint, cloudformation.install, side_state
    )
    # X-Ray is answered by appmesh-local itself, unless side services go to --aws-endpoint.
    xray = None if settings.aws_endpoint else XRayService(_xray_state(settings))

    # Issued (or read) now, so a bad --xds-tls-cert fails `serve` before it listens.
    ads_certificate = load_or_issue(settings) if settings.xds_tls_port else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        where = settings.store or settings.data_dir or "memory (--in-memory)"
        log.info("App Mesh API ready; state in %s", where)
        # Stacks of the embedded CloudFormation write through this service, on this loop.
        cloudformation_bridge.bind(service, asyncio.get_running_loop())
        restoring = None
        data_dir = None if settings.aws_endpoint else settings.data_dir
        stacks = data_dir is not None and cloudformation.has_saved_stacks(data_dir)
        if side_state is not None or stacks:
            # Side-service state, then the stacks of the last run (which adopt its moto
            # resources), now rather than at the first call; side-service calls wait.
            restoring = asyncio.get_running_loop().run_in_executor(
                None, _restore_side_services, side_state, stacks
            )
        sweeper = asyncio.create_task(_sweep_proxies(app.state.discovery))
        cloudmap = asyncio.create_task(app.state.discovery.cloudmap.run(feed.publish))
        acm = asyncio.create_task(app.state.discovery.certificates.run(feed.publish))
        follow = getattr(store, "follow", None)  # replicas: the other replicas' writes
        follower = asyncio.create_task(follow(feed.publish)) if follow else None
        peering = getattr(store, "start_peering", None)  # replicas: nudged by their peers
        if peering is not None:
            peering(settings.replica_url or settings.self_endpoint)
        proxies = asyncio.create_task(app.state.discovery.follow_proxies())
        ads = None
        if settings.xds_port or settings.xds_tls_port:
            ads = await start_ads_server(app.state.discovery, settings, ads_certificate)
        xray_daemon = None
        if settings.xray_daemon_port:
            xray_daemon = await start_embedded(settings, xray)
        yield
        if restoring is not None and not restoring.done():
            restoring.cancel()
        sweeper.cancel()
        cloudmap.cancel()
        acm.cancel()
        if follower is not None:
            follower.cancel()
        proxies.cancel()
        if ads is not None:
            await ads.stop(grace=1)
            log.info("xDS gRPC server on %s:%s stopped", settings.xds_host, settings.xds_port)
        if xray_daemon is not None:
            await xray_daemon.stop()
            log.info("X-Ray daemon stopped")
        closer = getattr(side_services, "aclose", None)
        if closer is not None:
            await closer()
        log.info("side services stopped; %s", _side_state_summary(settings, side_state))
        log.info("%s", _xray_summary(xray))
        if xray is not None and xray.state.journal is not None:
            xray.state.journal.close()
        cloudformation_bridge.unbind(service)
        activate(None)
        store.close()
        log.info("App Mesh API stopped; state in %s", where)

    app = FastAPI(
        title="appmesh-local",
        description="AWS App Mesh API, served locally",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry looks up the global providers (environment
        # variables) on every request, 7% of a woken long-poll's CPU in a profile of
        # 1,000 watchers; appmesh-local traces with X-Ray, never with it.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url="/_appmesh/docs",
        openapi_url="/_appmesh/openapi.json",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.ads_certificate = ads_certificate
    app.state.store = store
    app.state.feed = feed
    app.state.service = service
    app.state.xray = xray

    @app.get("/_appmesh/health")
    async def health() -> dict:
        side = settings.aws_endpoint or "embedded moto"
        daemon = settings.xray_daemon_port and (
            f"{settings.xray_daemon_host}:{settings.xray_daemon_port}"
        )
        return {
            "status": "running",
            "appmesh": "available",
            "side_services": side,
            "xray_daemon": daemon or None,  # where sidecars send segments (up reads it)
        }

    @app.get("/_appmesh/ads-ca.pem")
    async def ads_ca() -> Response:
        """The CA a task trusts to reach gRPC ADS over TLS (``--xds-tls-port``)."""
        if ads_certificate is None or ads_certificate.ca_pem is None:
            reason = (
                "gRPC ADS over TLS is off; start serve with --xds-tls-port PORT"
                if ads_certificate is None
                else "the ADS certificate was given with --xds-tls-cert: trust its issuer"
            )
            return JSONResponse({"message": reason}, status_code=404)
        return Response(ads_certificate.ca_pem, media_type="application/x-pem-file")

    @app.get("/_appmesh/meshes/{mesh_name}/version")
    async def mesh_version(
        request: Request,
        mesh_name: str,
        meshOwner: str | None = None,  # App Mesh's own parameter name
        region: str | None = None,
        after: int | None = None,
        wait: float = 0,
    ) -> dict:
        """The change feed: a mesh's version, optionally long-polled until it passes ``after``.

        Every committed write to a mesh moves its version forward; tools and proxies
        wait here instead of polling the API.
        """
        caller = identify(request.headers.get("authorization"), settings)
        mesh = MeshKey(region or caller.region, meshOwner or caller.account, mesh_name)
        version = feed.version(mesh)
        if after is not None and wait > 0:
            version = await feed.wait(mesh, after, min(wait, 60.0))
        return {"meshName": mesh_name, "meshOwner": mesh.mesh_owner, "version": version}

    discovery = DiscoveryService(store, feed, settings)
    app.state.discovery = discovery

    @app.post(NUDGE_PATH)
    async def nudge(request: Request) -> Response:
        """A peer replica committed a write: apply the change items the body carries, or
        read them from the table now (appmesh_api.peers). Only a caller holding this
        replica's token (kept in the shared table) may ask."""
        accept = getattr(store, "accept_nudge", None)
        if accept is None:
            return JSONResponse({"message": NO_REPLICAS}, status_code=404)
        if not accept(request.headers.get(TOKEN_HEADER), await request.body()):
            return JSONResponse({"message": BAD_NUDGE}, status_code=403)
        return Response(status_code=204)

    @app.get("/_appmesh/proxies")
    async def proxies(request: Request) -> dict:
        """The caller's connected proxies: ingress addresses and accepted config versions.

        Only proxies of meshes the caller's account owns: the account comes from the
        request's credential scope (unsigned: the default account), never a parameter.
        """
        caller = identify(request.headers.get("authorization"), settings)
        mine = (s for s in discovery.registry.all() if s.mesh.mesh_owner == caller.account)
        return {"proxies": [state.as_json() for state in mine]}

    registrar = CloudMapRegistrar(settings.side_services_endpoint, settings.internal_secret)

    registered: dict[tuple[str, str], set[tuple[str, str]]] = {}

    def register_pods(account: str, region: str, cluster: Cluster) -> None:
        """Pods of awsCloudMap nodes into Cloud Map, off the event loop that serves it.
        A service registered before and no longer wanted (its node was deleted) is
        emptied of the pods' instances."""
        wanted = desired_instances(cluster)
        keys = {(entry.namespace, entry.service) for entry in wanted}
        before = registered.get((account, region), set())
        wanted += [ServiceInstances(ns, svc, {}) for ns, svc in sorted(before - keys)]
        registered[(account, region)] = keys
        if wanted:
            asyncio.get_running_loop().run_in_executor(
                None, registrar.sync, account, region, wanted
            )

    app.state.kube = KubeController(store, AppMeshApi(service).handle, register_pods)
    app.include_router(kube_router(app.state.kube, settings))
    app.include_router(k8s_router(app.state.kube))
    install_console(app)
    app.mount("/", side_services)
    xds = XdsRestApi(discovery, settings)  # /v3/discovery:<type>, served by the door itself
    targets = _targets(service, xds, xray, shares)
    app.add_middleware(FrontDoor, targets=targets, settings=settings)
    return app


_LOCAL_PREFIXES = ("/_appmesh/", "/console")


def _targets(
    service: AppMeshService, xds_api: XdsRestApi, xray: XRayService | None, shares: Shares
) -> list[Target]:
    """The services behind the front door, most specific first."""
    appmesh = Target(
        "appmesh",
        limits.APPMESH_BODY_LIMIT,
        lambda exchange: exchange.scope["path"].startswith(API_PREFIX + "/"),
        answer=AppMeshApi(service).answer,
    )
    xds = Target(
        "xds",
        limits.LOCAL_BODY_LIMIT,
        lambda exchange: exchange.scope["path"].startswith(XDS_PREFIX),
        serve=xds_api.serve,
        status_body=True,
    )
    local = Target(
        "appmesh-local",
        limits.LOCAL_BODY_LIMIT,
        lambda exchange: exchange.scope["path"].startswith(_LOCAL_PREFIXES),
        signed=False,
        signed_if_present=True,  # the console and /_appmesh/proxies scope by the signer
    )
    side = Target("side-services", limits.SIDE_SERVICE_BODY_LIMIT, lambda _exchange: True)
    if xray is None:
        return [appmesh, ram_target(shares), xds, local, side]
    return [appmesh, ram_target(shares), xray_target(xray), xds, local, side]
