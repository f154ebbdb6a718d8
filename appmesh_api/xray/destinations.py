"""Where the X-Ray daemon sends what it receives: the in-process store, or any X-Ray URL.

- ``LocalDestination``: the daemon inside ``appmesh-local serve`` hands batches straight to
  the server's X-Ray service, as the daemon's own account and region;
- ``HttpDestination``: PutTraceSegments and the sampling calls go over HTTP, SigV4-signed
  for ``xray``, to appmesh-local (the standalone daemon's default), real AWS, LocalStack or
  any X-Ray-compatible URL. Real AWS gets credentials from botocore's default chain; other
  endpoints get ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` when set, else the default
  account as access key (appmesh-local reads the account from it), so no IMDS lookup ever
  delays a local setup.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from appmesh_api.settings import DEFAULT_ACCOUNT, DEFAULT_REGION, Settings
from appmesh_api.xray.api import Reply, XRayService

_PASSED_HEADERS = ("content-type", "x-amzn-errortype", "x-amzn-requestid")


class Destination(Protocol):
    """Where segments and sampling calls go."""

    async def call(self, path: str, body: bytes) -> Reply: ...

    async def close(self) -> None: ...


async def put_segments(destination: Destination, documents: list[str]) -> list[dict[str, Any]]:
    """PutTraceSegments; returns UnprocessedTraceSegments (raises on a failed call)."""
    body = json.dumps({"TraceSegmentDocuments": documents}).encode()
    status, _headers, payload = await destination.call("/TraceSegments", body)
    if status != 200:
        raise RuntimeError(f"PutTraceSegments answered {status}: {payload[:200]!r}")
    return json.loads(payload or b"{}").get("UnprocessedTraceSegments") or []


def environment_region(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def local_account(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """The daemon's account, read from its access key the way appmesh-local reads callers'."""
    env = os.environ if environ is None else environ
    key = env.get("AWS_ACCESS_KEY_ID", "")
    if key.isdigit() and len(key) == 12:
        return key
    return settings.accounts.get(key, settings.default_account)


class LocalDestination:
    """The X-Ray service of this very process."""

    def __init__(self, service: XRayService, account: str, region: str) -> None:
        self.service, self.account, self.region = service, account, region

    async def call(self, path: str, body: bytes) -> Reply:
        return self.service.handle(self.account, self.region, "POST", path, body)

    async def close(self) -> None:
        return None


class HttpDestination:
    """An X-Ray endpoint over HTTP, every request SigV4-signed for ``xray``."""

    def __init__(self, endpoint: str, region: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.region = region
        self._credentials: Any = None
        self._session: aiohttp.ClientSession | None = None

    def _resolve_credentials(self) -> Any:
        """Credentials for signing (blocking: botocore's chain may do I/O)."""
        if (urlsplit(self.endpoint).hostname or "").endswith("amazonaws.com"):
            found = botocore.session.get_session().get_credentials()
            if found is None:
                raise RuntimeError("no AWS credentials found by botocore's default chain")
            return found
        key = os.environ.get("AWS_ACCESS_KEY_ID") or DEFAULT_ACCOUNT
        return Credentials(key, os.environ.get("AWS_SECRET_ACCESS_KEY") or "local")

    async def _signed(self, path: str, body: bytes) -> dict[str, str]:
        if self._credentials is None:
            self._credentials = await asyncio.to_thread(self._resolve_credentials)
        headers = {"Content-Type": "application/json"}
        request = AWSRequest(method="POST", url=self.endpoint + path, data=body, headers=headers)
        frozen = self._credentials.get_frozen_credentials()
        SigV4Auth(frozen, "xray", self.region).add_auth(request)
        return dict(request.headers.items())

    async def call(self, path: str, body: bytes) -> Reply:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=30, sock_connect=5)
            self._session = aiohttp.ClientSession(timeout=timeout)
        headers = await self._signed(path, body)
        async with self._session.post(self.endpoint + path, data=body, headers=headers) as resp:
            payload = await resp.read()
            kept = {k: v for k, v in resp.headers.items() if k.lower() in _PASSED_HEADERS}
            return resp.status, kept, payload

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
