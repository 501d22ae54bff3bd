"""The HTTP endpoints SREs and orchestrators probe: /metrics, /healthz (alive), /readyz, and
the few a kind adds under a path prefix of its own (`routes`: the community's on-send sync).

A WSGI app on the standard library's server in daemon threads (one per request, so a slow
on-send sync never holds up a probe): a handful of routes do not justify a web framework in
the consumer process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

Check = Callable[[], str | None]  # None when healthy, else the reason
WsgiApp = Callable[..., Iterable[bytes]]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:  # probes every few seconds would flood the log
        pass


def app(live: Check, ready: Check, routes: Mapping[str, WsgiApp] | None = None) -> WsgiApp:
    metrics_app = make_wsgi_app()
    prefixed = routes if routes is not None else {}  # read per request: routes may join later

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            problem = (live if path == "/healthz" else ready)()
            status = "200 OK" if problem is None else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [(problem or "ok").encode() + b"\n"]
        if path == "/metrics":
            return metrics_app(environ, start_response)
        for prefix, handler in prefixed.items():
            if path.startswith(prefix):
                return handler(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return route


def serve_http(
    host: str, port: int, live: Check, ready: Check, routes: Mapping[str, WsgiApp] | None = None
) -> WSGIServer:
    server = make_server(host, port, app(live, ready, routes), server_class=_ThreadingServer, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
