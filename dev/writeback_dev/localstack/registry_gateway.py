"""The local schema registry as hosted registries are reached: over https, with basic auth.

Apicurio Registry 2.x only authenticates through an OpenID Connect server, so this gateway
stands in front of it: TLS with the caller's certificate, HTTP basic auth checked against one
user, every other request forwarded unchanged. Tests use it to prove the registry client's TLS
and credentials settings against a real server.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from types import TracebackType

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from writeback_dev.simulators.loopback import LoopbackServer

_HOP_BY_HOP = {"host", "authorization", "content-length", "connection", "transfer-encoding", "accept-encoding"}


class RegistryGateway:
    def __init__(self, upstream: str, username: str, password: str, cert: Path, key: Path, host: str = "localhost") -> None:
        self.upstream = upstream.rstrip("/")
        self._expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.refused = 0  # requests without the right credentials
        self._client = httpx.Client(timeout=30)
        app = Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST", "PUT", "DELETE"])])
        self._server = LoopbackServer(app, host, 0, "registry gateway", tls=(str(cert), str(key)))

    @property
    def url(self) -> str:
        return self._server.url

    async def _forward(self, request: Request) -> Response:
        if not secrets.compare_digest(request.headers.get("authorization", ""), self._expected):
            self.refused += 1
            return JSONResponse({"error_code": 401, "message": "Unauthorized"}, status_code=401)
        upstream = self._client.request(
            request.method,
            f"{self.upstream}/{request.path_params['path']}",
            params=request.query_params.multi_items(),
            content=await request.body(),
            headers={k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP},
        )
        return Response(upstream.content, upstream.status_code, media_type=upstream.headers.get("content-type"))

    def start(self) -> RegistryGateway:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._client.close()

    def __enter__(self) -> RegistryGateway:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
