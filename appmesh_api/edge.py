"""The "edge": every non-App-Mesh request on the control-plane port goes to AWS side services.

A mesh needs more than the App Mesh API (Cloud Map, ACM PCA, X-Ray, CloudWatch, Logs; STS,
S3, SSM, CloudFormation for the CDK). Serving them on the same port, like LocalStack's edge
port, lets users point one ``AWS_ENDPOINT_URL`` at appmesh-local. App Mesh routes
(``/v20190125/...``) are matched first elsewhere; this ASGI app is the fallback.

Routing uses the service named in the SigV4 credential scope of the ``Authorization`` header
(``Credential=AKID/DATE/REGION/SERVICE/aws4_request``). Requests without one (presigned URLs,
unsigned calls) fall back to moto's own inference (body, target header, then S3).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import botocore.session
import yarl
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from starlette.types import ASGIApp, Receive, Scope, Send

from appmesh_api import private_ca
from appmesh_api.identity import CredentialScope, parse_credential_scope
from appmesh_api.sidestate import SideState, bucket_owners, is_write

_log = logging.getLogger(__name__)

_TWELVE_DIGITS = re.compile(r"\d{12}")
_CBOR_OP = re.compile(r"^/service/[^/]+/operation/([^/?]+)")
# RFC 9110 hop-by-hop headers, plus those aiohttp recomputes for a fully buffered body.
_HOP_BY_HOP = frozenset(
    "connection keep-alive proxy-authenticate proxy-authorization te trailer "  # noqa: SIM905
    "transfer-encoding upgrade host content-length expect".split()
)
_Headers = list[tuple[str, str]]
_RESIGN_DROP = frozenset(("authorization", "x-amz-date", "x-amz-security-token"))
_MOTO_DEFAULT_HOST = "s3.us-east-1.amazonaws.com"  # moto's DEFAULT_SERVICE_REGION


def _operation(method: str, path: str, query: str, target: str, form: bytes = b"") -> str:
    """Best-effort operation name for the log line, from what each AWS protocol exposes."""
    if target:  # awsJson: X-Amz-Target "Service_Version.Operation"
        return target.rsplit(".", 1)[-1]
    if match := _CBOR_OP.match(path):  # smithy-rpc-v2-cbor
        return match.group(1)
    # awsQuery (STS, IAM, CloudFormation): Action in the query string or the form body.
    if action := (parse_qs(query) or parse_qs(form.decode("utf-8", "replace"))).get("Action"):
        return action[0]
    return f"{method} {path}"  # rest-json/rest-xml: the route is the operation


def _peek_form(environ: dict[str, Any]) -> bytes:
    """Read a small form-encoded body and put it back (as moto's dispatcher does)."""
    length = environ.get("CONTENT_LENGTH") or ""
    form = environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded")
    if not (form and length.isdigit() and 0 < int(length) <= 1 << 20):
        return b""
    body = environ["wsgi.input"].read(int(length))
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _read_chunked_to_the_end(environ: dict[str, Any]) -> None:
    """A chunked body (``curl -T -``, any upload of unknown size) has no Content-Length,
    and werkzeug reads nothing of a body without one unless told the stream ends: moto
    stored such an S3 upload as an empty object and answered 200. The ASGI bridge's
    stream does end with the body, so say so."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        environ["wsgi.input_terminated"] = True


def _backend_app(service: str) -> Any:
    """moto's Flask app for ``service``; S3's reads a PUT's body as bytes whatever its
    Content-Type. Werkzeug parses an ``application/x-www-form-urlencoded`` body as a form,
    leaving moto's S3 an empty object, where S3 stores the bytes and keeps the type
    (``curl --data-binary`` to a presigned URL sends that type)."""
    from moto.moto_server.werkzeug_app import create_backend_app

    app = create_backend_app(service)  # type: ignore[arg-type]
    if service == "s3":
        app.request_class = _raw_put_request_class(app.request_class)
    return app


def _raw_put_request_class(base: type) -> type:
    class RawPutRequest(base):
        @property
        def data(self) -> bytes:
            if self.method == "PUT":  # cached, so a later form parse reads these bytes
                return bytes(self.get_data(parse_form_data=False))
            return bytes(super().data)

    return RawPutRequest


class _MotoEdge:
    """WSGI shim in front of moto's ``DomainDispatcherApplication``.

    It only adjusts the environ so that moto behaves as it does under ``moto_server``:
    - a leading ``data-`` is stripped from Host: botocore prefixes Cloud Map's
      DiscoverInstances endpoint with ``data-``. moto 5.2 dispatches on the credential scope,
      not on Host, but its handlers still read Host (S3 virtual-host buckets, region from
      URL), so the request should look exactly like an ordinary one;
    - ``RAW_URI`` is set from the ASGI raw path: werkzeug's dev server sets it, and moto's S3
      takes object keys from it (else keys ``a%41`` and ``x%2Fy`` turn into ``aA`` and ``x/y``);
    - a 12-digit access key id selects that account (LocalStack's convention) through moto's
      ``x-moto-account-id`` header, so tests can isolate themselves with random keys.

    With ``state`` (a data directory), a write's response is held until the backends it
    touched are saved (``sidestate``).
    """

    def __init__(
        self,
        dispatcher: Any,
        before_cloudformation: Callable[[], None] | None = None,
        state: SideState | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.before_cloudformation = before_cloudformation
        self.state = state

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.state is not None:
            self.state.ready.wait()  # the last run's state is not back yet
        host = environ.get("HTTP_HOST", "")
        if host.startswith("data-"):
            environ["HTTP_HOST"] = host[len("data-") :]
        scope = environ.get("asgi.scope") or {}
        raw_path = scope.get("raw_path")
        if raw_path and "RAW_URI" not in environ:
            query = environ.get("QUERY_STRING", "")
            raw_uri = raw_path.decode("latin1") + (f"?{query}" if query else "")
            environ["RAW_URI"] = environ["REQUEST_URI"] = raw_uri
        cred = parse_credential_scope(environ.get("HTTP_AUTHORIZATION"))
        if cred and _TWELVE_DIGITS.fullmatch(cred.access_key):
            environ.setdefault("HTTP_X_MOTO_ACCOUNT_ID", cred.access_key)
        service = cred.service if cred else "unsigned"
        if service == "cloudformation" and self.before_cloudformation is not None:
            self.before_cloudformation()
        _read_chunked_to_the_end(environ)
        path, query = environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = _operation(environ["REQUEST_METHOD"], path, query, target, _peek_form(environ))
        status: list[str] = []

        def _start(status_line: str, headers: list[Any], exc_info: Any = None) -> Any:
            status.append(status_line)
            return start_response(status_line, headers, exc_info)

        try:
            if self.state is not None and is_write(environ["REQUEST_METHOD"], operation):
                return self._saved_write(self.state, environ, _start, cred)
            return self.dispatcher(environ, _start)
        finally:
            _log.debug("side-service %s %s -> %s", service, operation, (status or ["error"])[0])

    def _saved_write(
        self,
        state: SideState,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        cred: CredentialScope | None,
    ) -> list[bytes]:
        """Run a write with its response held back until what it touched is saved."""
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api"):
            answer = self._buffered(environ)
            if path.startswith("/moto-api/reset"):
                state.forget()
            return _release(answer, start_response)
        host = self.dispatcher.infer_service_region_host(environ, path) or _MOTO_DEFAULT_HOST
        backend = self.dispatcher.get_backend_for_host(host)
        account = _moto_account(environ, cred)
        touched = state.before(backend, account, cred.region if cred else "")
        if backend == "s3":
            touched = dataclasses.replace(touched, also=bucket_owners(_bucket_names(environ)))
        with state.writing(touched):
            answer = self._buffered(environ)
        if backend == "cloudformation" and account is not None:
            state.save_account(account)
        return _release(answer, start_response)

    def _buffered(self, environ: dict[str, Any]) -> tuple[list[Any], bytes]:
        """Call moto and keep its whole answer (moto has computed it by then anyway)."""
        started: list[Any] = []
        chunks: list[bytes] = []

        def _hold(status_line: str, headers: list[Any], exc_info: Any = None) -> Any:
            started[:] = [status_line, headers, exc_info]
            return chunks.append

        iterable = self.dispatcher(environ, _hold)
        try:
            chunks.extend(iterable)
        finally:
            getattr(iterable, "close", lambda: None)()
        return started, b"".join(chunks)


def _release(answer: tuple[list[Any], bytes], start_response: Callable[..., Any]) -> list[bytes]:
    started, body = answer
    start_response(*started)
    return [body]


def _bucket_names(environ: dict[str, Any]) -> list[str]:
    """Where an S3 request may name its bucket: path-style, or the Host's first label."""
    path = environ.get("PATH_INFO", "").lstrip("/")
    host = environ.get("HTTP_HOST", "")
    return [path.split("/", 1)[0], host.split(".", 1)[0]]


def _moto_account(environ: dict[str, Any], cred: CredentialScope | None) -> str | None:
    """The account moto files this request under, as moto's ``get_current_account`` does
    (None for an unsigned request: moto may take it from the body or the query)."""
    if "MOTO_ACCOUNT_ID" in os.environ:
        return os.environ["MOTO_ACCOUNT_ID"]
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return str(environ["HTTP_X_MOTO_ACCOUNT_ID"])
    if cred is None:
        return None
    from moto.iam.models import get_account_id_from

    return str(get_account_id_from(cred.access_key))


class _Forwarder:
    """ASGI app that relays every request to another AWS-compatible endpoint.

    Method, raw path, query, headers (minus Host and hop-by-hop) and body go to
    ``endpoint``; status, headers and body stream back. Bodies are not decompressed.

    When the target host ends with ``amazonaws.com`` the request is re-signed with SigV4:
    the client signed it for *our* host (the signature covers ``Host``), so AWS would reject
    it. Credentials come from botocore's default chain (env, profile, SSO, IMDS...), service
    and region from the incoming credential scope. Unsigned or presigned requests are
    forwarded untouched, and chunk-signed uploads (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``)
    cannot be re-signed. Other targets (LocalStack, moto) get the request as sent.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.resign = (urlsplit(self.endpoint).hostname or "").endswith("amazonaws.com")
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._credentials: Any = None

    def _sign(
        self, method: str, url: str, headers: _Headers, body: bytes, cred: CredentialScope
    ) -> _Headers:
        """SigV4-sign for the real endpoint (blocking: the credential chain may do I/O)."""
        if self._credentials is None:
            self._credentials = botocore.session.get_session().get_credentials()
        if self._credentials is None:
            raise RuntimeError("no AWS credentials found by botocore's default chain")
        kept = [(k, v) for k, v in headers if k.lower() not in _RESIGN_DROP]
        request = AWSRequest(method=method, url=url, data=body, headers=dict(kept))
        sha = dict((k.lower(), v) for k, v in kept).get("x-amz-content-sha256", "")
        if sha == "STREAMING-UNSIGNED-PAYLOAD-TRAILER":  # boto3's default S3 upload framing
            request.context["checksum"] = {"request_algorithm": {"in": "trailer"}}
        signer = S3SigV4Auth if cred.service == "s3" else SigV4Auth
        frozen = self._credentials.get_frozen_credentials()
        signer(frozen, cred.service, cred.region).add_auth(request)
        return list(request.headers.items())

    async def _client(self) -> aiohttp.ClientSession:
        """One pooled aiohttp session per event loop (mounted apps get no lifespan events)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
            self._session = aiohttp.ClientSession(auto_decompress=False, timeout=timeout)
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        """Close the pooled HTTP session."""
        if self._session is not None:
            await self._session.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await self.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        buffer, more = bytearray(), True
        while more:  # buffered: SigV4 re-signing hashes the whole payload
            message = await receive()
            buffer += message.get("body", b"")
            more = message.get("more_body", False)
        body = bytes(buffer)
        headers = [
            (k.decode("latin1"), v.decode("latin1"))
            for k, v in scope["headers"]
            if k.decode("latin1").lower() not in _HOP_BY_HOP
        ]
        lower = {k.lower(): v for k, v in headers}
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin1")
        query = scope.get("query_string", b"").decode("latin1")
        url = self.endpoint + path + (f"?{query}" if query else "")
        method = scope["method"]
        cred = parse_credential_scope(lower.get("authorization"))
        form = body if lower.get("content-type", "").startswith("application/x-www-") else b""
        op = _operation(method, path, query, lower.get("x-amz-target", ""), form)
        label = f"{cred.service if cred else 'unsigned'} {op}"
        started = False
        try:
            if self.resign and cred:
                headers = await asyncio.to_thread(self._sign, method, url, headers, body, cred)
            session = await self._client()
            async with session.request(
                method,
                yarl.URL(url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            ) as resp:
                _log.debug("side-service %s -> %s (via %s)", label, resp.status, self.endpoint)
                out = [(k, v) for k, v in resp.raw_headers if k.decode().lower() not in _HOP_BY_HOP]
                if "Content-Length" in resp.headers:  # keep it: HEAD replies carry no body
                    out.append((b"content-length", resp.headers["Content-Length"].encode()))
                await send({"type": "http.response.start", "status": resp.status, "headers": out})
                started = True
                async for chunk in resp.content.iter_chunked(1 << 16):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except Exception as exc:  # aiohttp.ClientError, OSError, signing errors
            _log.warning("side-service forward %s to %s failed: %s", label, self.endpoint, exc)
            if started:  # too late for a status: cut the body short
                raise
            msg = f"appmesh-local could not reach {self.endpoint}: {exc}".encode()
            plain = [(b"content-type", b"text/plain; charset=utf-8")]
            await send({"type": "http.response.start", "status": 502, "headers": plain})
            await send({"type": "http.response.body", "body": msg})
            return
        await send({"type": "http.response.body", "body": b""})


def build_side_services_app(
    aws_endpoint: str | None = None,
    before_cloudformation: Callable[[], None] | None = None,
    state: SideState | None = None,
) -> ASGIApp:
    """Return the ASGI app serving every non-App-Mesh request on the control-plane port.

    ``aws_endpoint`` None: an embedded moto (``moto_server``'s werkzeug dispatcher, bridged
    to ASGI by a2wsgi). moto keeps its state process-wide, so several apps share it.
    ``before_cloudformation`` runs (in moto's thread) before each CloudFormation request:
    appmesh-local installs its CloudFormation layer there, on first use.
    ``state``: where the embedded moto's backends are saved after each write (None: kept in
    memory only).
    ``aws_endpoint`` set (LocalStack, another moto, or real AWS): requests are relayed there.
    """
    if aws_endpoint:
        return _Forwarder(aws_endpoint)
    from a2wsgi import WSGIMiddleware
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    private_ca.install()  # ACM private certificates signed by their ACM PCA CA

    dispatcher = DomainDispatcherApplication(_backend_app)
    moto = _MotoEdge(dispatcher, before_cloudformation, state)
    # a2wsgi's types are narrower than the protocols: its WSGI environ is a TypedDict without
    # the HTTP_* variables PEP 3333 puts there (and _MotoEdge rewrites), and its ASGI scope
    # and messages are TypedDicts where starlette's ASGIApp takes plain mappings.
    return WSGIMiddleware(moto)  # type: ignore[arg-type,return-value]
