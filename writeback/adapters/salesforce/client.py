"""Salesforce's REST API as the adapter uses it: a client-credentials session, renewed once on
an expired session, JSON calls under /services/data/vXX.X/, SOQL with paging. Every transport
or HTTP failure leaves this module as a `CallFailed` carrying its error kind."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from writeback.adapters import calls
from writeback.adapters.base import ErrorKind
from writeback.adapters.salesforce.config import Config
from writeback.adapters.salesforce.errors import CallFailed, call_kind, scrub
from writeback.errors import ConfigError


@dataclass(frozen=True, slots=True)
class _Session:
    access_token: str
    instance_url: str


class Client:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._http = httpx.Client(
            timeout=httpx.Timeout(config.timeout_s),
            transport=calls.http_transport(
                "salesforce", limits=httpx.Limits(max_connections=4, max_keepalive_connections=4)
            ),
            headers={"Accept": "application/json"},
        )
        self._session: _Session | None = None
        self._session_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def query(self, soql: str) -> list[dict[str, Any]]:
        page = self.call("GET", "query", params={"q": soql})
        records = list(page["records"])
        while not page.get("done", True):
            page = self.call("GET", page["nextRecordsUrl"])
            records.extend(page["records"])
        return records

    def call(self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None) -> Any:
        """One authenticated REST call. `path` is relative to /services/data/vXX.X/ unless it
        starts with '/'. An expired session is renewed once and the call repeated."""
        label = f"{method} {path}"
        try:
            session = self._current_session()
            response = self._send(session, method, path, params, body)
            if response.status_code == 401:
                response = self._send(self._renew_session(session), method, path, params, body)
            _raise_for_status(response, label)
            return _json(response, label) if response.content else None
        except httpx.TimeoutException:
            raise CallFailed(
                ErrorKind.OUTAGE, "TIMEOUT", f"{label}: no answer within {self._config.timeout_s}s"
            ) from None
        except httpx.TransportError as exc:
            raise CallFailed(ErrorKind.OUTAGE, "CONNECTION_ERROR", f"{label}: {type(exc).__name__}") from None

    def _send(
        self, session: _Session, method: str, path: str, params: dict[str, str] | None, body: Any
    ) -> httpx.Response:
        prefix = "" if path.startswith("/") else f"/services/data/v{self._config.api_version}/"
        return self._http.request(
            method,
            session.instance_url + prefix + path,
            params=params,
            json=body,
            headers={"Authorization": f"Bearer {session.access_token}"},
        )

    def _current_session(self) -> _Session:
        with self._session_lock:
            if self._session is None:
                self._session = self._fetch_session()
            return self._session

    def _renew_session(self, stale: _Session) -> _Session:
        with self._session_lock:
            if self._session is None or self._session is stale:
                self._session = self._fetch_session()
            return self._session

    def _fetch_session(self) -> _Session:
        """Client-credentials grant. A refused credential is retried, not failed: it is the
        connection's problem, fixed by an operator, not a fault of any one writeback."""
        try:
            secret = self._config.client_secret.resolve()
        except ConfigError as exc:
            raise CallFailed(ErrorKind.CREDENTIALS, "SECRET_UNAVAILABLE", str(exc)) from None
        response = self._http.post(
            f"{self._config.login_url}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self._config.client_id,
                "client_secret": secret.get_secret_value(),
            },
        )
        if response.status_code in (400, 401):
            error = str(_json(response, "token").get("error") or "invalid_request")
            raise CallFailed(
                ErrorKind.CREDENTIALS,
                f"OAUTH_{error.upper()}",
                f"Salesforce refused the connection's credentials ({error})",
            )
        _raise_for_status(response, "POST token")
        data = _json(response, "token")
        return _Session(str(data["access_token"]), str(data["instance_url"]).rstrip("/"))


def _raise_for_status(response: httpx.Response, label: str) -> None:
    if response.is_success:
        return
    status = response.status_code
    code, message = _error_detail(response)
    code = code or f"HTTP_{status}"
    text = f"{label}: HTTP {status} {message}".rstrip()
    kind = call_kind(status, code)
    raise CallFailed(kind, code, text, _retry_after(response) if kind is not None else None)


def _error_detail(response: httpx.Response) -> tuple[str | None, str]:
    """Salesforce error bodies are `[{"message", "errorCode", ...}]`; OAuth's are `{"error", ...}`."""
    try:
        body = response.json()
    except ValueError:
        return None, ""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode"), scrub(str(body[0].get("message") or ""))
    if isinstance(body, dict) and "error" in body:
        return str(body["error"]).upper(), scrub(str(body.get("error_description") or ""))
    return None, ""


def _json(response: httpx.Response, label: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise CallFailed(ErrorKind.OUTAGE, "INVALID_RESPONSE", f"{label}: not JSON") from None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
