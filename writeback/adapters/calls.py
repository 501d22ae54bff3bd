"""CRM requests as SREs see them: latency and answers, observed once at each transport the
adapters use (httpx, requests under zeep, SQLAlchemy engines), labelled by the kind that calls.

Measured below the adapters' own error mapping, so a request counts once whatever the adapter
later makes of it; the CRM's own codes (limits, faults) are the flush outcomes' `error_code`.
Labels are the kind, the status class and a code from a closed set (HTTP_<status>, an exception
type): never a URL, a query or a value.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import requests
import sqlalchemy as sa
from requests.adapters import HTTPAdapter

from writeback import metrics


def _answered(kind: str, started: float, status: int) -> None:
    metrics.CRM_REQUEST_SECONDS.labels(kind).observe(time.perf_counter() - started)
    code = "" if 200 <= status < 400 else f"HTTP_{status}"
    metrics.CRM_RESPONSES.labels(kind, f"{status // 100}xx", code).inc()


def _no_answer(kind: str, started: float, exc: BaseException) -> None:
    metrics.CRM_REQUEST_SECONDS.labels(kind).observe(time.perf_counter() - started)
    metrics.CRM_RESPONSES.labels(kind, "error", type(exc).__name__).inc()


class ObservedTransport(httpx.BaseTransport):
    """An httpx transport that times and counts every request it carries."""

    def __init__(self, kind: str, inner: httpx.BaseTransport | None = None) -> None:
        self.kind = kind
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = self.inner.handle_request(request)
        except Exception as exc:
            _no_answer(self.kind, started, exc)
            raise
        _answered(self.kind, started, response.status_code)
        return response

    def close(self) -> None:
        self.inner.close()


def http_transport(kind: str, **options: Any) -> ObservedTransport:
    """For `httpx.Client(transport=...)`; `options` go to `httpx.HTTPTransport` (e.g. limits)."""
    return ObservedTransport(kind, httpx.HTTPTransport(**options))


class _ObservedHTTPAdapter(HTTPAdapter):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        started = time.perf_counter()
        try:
            response = super().send(request, *args, **kwargs)
        except Exception as exc:
            _no_answer(self.kind, started, exc)
            raise
        _answered(self.kind, started, response.status_code)
        return response


def observe_session(session: requests.Session, kind: str) -> requests.Session:
    """Mount the observing adapter on a requests session (zeep's transport uses one)."""
    adapter = _ObservedHTTPAdapter(kind)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def observe_engine(engine: sa.Engine, kind: str) -> sa.Engine:
    """Time each SQL statement a CRM database runs; a driver error counts as `error`."""

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _start(conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: bool) -> None:
        conn.info.setdefault("writeback_started", []).append(time.perf_counter())

    @sa.event.listens_for(engine, "after_cursor_execute")
    def _done(conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: bool) -> None:
        started = conn.info["writeback_started"].pop()
        metrics.CRM_REQUEST_SECONDS.labels(kind).observe(time.perf_counter() - started)
        metrics.CRM_RESPONSES.labels(kind, "ok", "").inc()

    @sa.event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        stack = context.connection.info.get("writeback_started") if context.connection is not None else None
        started = stack.pop() if stack else time.perf_counter()
        _no_answer(kind, started, context.original_exception)

    return engine
