"""The platform's calls into `serve` (on its HTTP port, beside /metrics):

- `POST /community/on-send` `{"connection": C, "group": NAME}`: sync the group now; answers
  200 with the sync's report once it is applied and its events acknowledged, or the error
  (401-like credential problems and outages as 502, unknown connection or group as 404, an
  inactive connection as 409) with `{"error": code, "message": ...}`;
- `POST /community/campaigns/start` `{"connection", "campaign", "groups": [NAME, ...]}` and
  `POST /community/campaigns/stop` `{"connection", "campaign"}`.

Messages name connections, groups and codes, never members or addresses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from writeback.adapters.base import ErrorKind
from writeback.adapters.community import triggers
from writeback.adapters.community.client import Client
from writeback.adapters.community.sync import OpenClient, Publish, SyncError
from writeback.errors import WritebackError
from writeback.ledger import Ledger
from writeback.settings import Settings

PREFIX = "/community/"
_STATUS = {
    "UnknownConnection": "404 Not Found",
    "UnknownGroup": "404 Not Found",
    "ListNotFound": "404 Not Found",
    "NotCommunity": "409 Conflict",
    "Inactive": "409 Conflict",
}
_BY_KIND = {ErrorKind.OUTAGE: "502 Bad Gateway", ErrorKind.CREDENTIALS: "502 Bad Gateway", ErrorKind.THROTTLED: "503 Service Unavailable"}


def app(
    ledger: Ledger,
    settings: Callable[[], Settings],
    publish: Publish,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    open_client: OpenClient = Client,
) -> Callable[..., Iterable[bytes]]:
    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, "405 Method Not Allowed", {"error": "MethodNotAllowed", "message": "POST only"})
        body = _body(environ)
        if body is None:
            return _answer(start_response, "400 Bad Request", {"error": "InvalidBody", "message": "send a JSON object"})
        try:
            if path == PREFIX + "on-send":
                report = triggers.on_send(
                    ledger, settings(), publish, _field(body, "connection"), _field(body, "group"), clock(),
                    open_client=open_client,
                )  # fmt: skip
                return _answer(start_response, "200 OK", asdict(report))
            if path == PREFIX + "campaigns/start":
                groups = body.get("groups")
                if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                    raise _Invalid("groups", "a list of target group names")
                keys = triggers.start_campaign(
                    ledger, settings(), _field(body, "connection"), _field(body, "campaign"), groups, clock()
                )
                return _answer(start_response, "200 OK", {"campaign": body["campaign"], "groups": len(keys)})
            if path == PREFIX + "campaigns/stop":
                stopped = triggers.stop_campaign(ledger, settings(), _field(body, "connection"), _field(body, "campaign"))
                return _answer(start_response, "200 OK", {"campaign": body["campaign"], "stopped": stopped > 0})
        except _Invalid as exc:
            return _answer(start_response, "400 Bad Request", {"error": "InvalidField", "message": str(exc)})
        except SyncError as exc:
            status = _STATUS.get(exc.code) or _BY_KIND.get(exc.kind, "422 Unprocessable Entity")
            return _answer(start_response, status, {"error": exc.code, "message": str(exc)})
        except WritebackError as exc:  # the broker did not take the events: the sync is applied, they wait
            return _answer(start_response, "503 Service Unavailable", {"error": type(exc).__name__, "message": str(exc)})
        return _answer(start_response, "404 Not Found", {"error": "NotFound", "message": "no such endpoint"})

    return handle


class _Invalid(ValueError):
    def __init__(self, name: str, what: str) -> None:
        super().__init__(f"{name}: {what}")


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(name, "required, a non-empty string")
    return value


def _body(environ: dict[str, Any]) -> dict[str, Any] | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        data = json.loads(environ["wsgi.input"].read(length) or b"{}")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _answer(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    start_response(status, [("Content-Type", "application/json")])
    return [json.dumps(body, default=str).encode() + b"\n"]
