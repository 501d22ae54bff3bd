"""The simulator: one netFORUM database behind xWeb's SOAP endpoint, on a uvicorn server on loopback.

State is guarded by one lock: handlers run on the server's thread, tests read from theirs. See the
package docstring for what is modelled.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from writeback_dev.simulators.loopback import LoopbackServer

from . import errors as E
from . import soap, wsdl
from .errors import XWebError
from .store import (
    OBJECTS,
    Database,
    Row,
    new_key,
    object_name,
    parse_guid,
    render_value,
)

ENDPOINT_PATH = "/xweb/secure/netFORUMXML.asmx"
DEFAULT_USER = "sim-xweb"
DEFAULT_PASSWORD = "sim-xweb-password"

_UNAVAILABLE = (
    "<!DOCTYPE html><html><head><title>Service Unavailable</title></head>"
    "<body><h2>Service Unavailable</h2><hr><p>HTTP Error 503. The service is unavailable.</p></body></html>"
)


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One SOAP request as the simulator answered it. `fault` is the detail code of a soap:Fault;
    `objects` counts the oNode objects of an insert or update."""

    operation: str | None
    user: str | None
    status: int
    fault: str | None = None
    objects: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class _Context:
    operation: str | None = None
    user: str | None = None
    status: int = 200
    fault: str | None = None
    objects: int = 0


@dataclass(slots=True)
class _Session:
    user: str
    expires_at: float
    current: str = ""


@dataclass(slots=True)
class _Token:
    session: _Session
    superseded_at: float | None = None


@dataclass(frozen=True, slots=True)
class _RecordRule:
    column: str
    value: str
    message: str
    object: str | None


@dataclass(slots=True)
class _Faults:
    outages: deque[int] = field(default_factory=deque)
    delays: deque[float] = field(default_factory=deque)
    record_rules: list[_RecordRule] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "fail_next": list(self.outages),
            "slow_next": list(self.delays),
            "fail_record": [asdict(r) for r in self.record_rules],
        }


class FaultSpec(BaseModel):
    """The body of `POST /__sim/faults`: a fault method's name and its arguments."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["fail_next", "slow_next", "expire_tokens", "fail_record", "advance_clock", "clear_faults"]
    count: int = Field(1, ge=1)
    status: int = Field(503, ge=400, le=599)
    seconds: float = Field(1.0, ge=0)
    column: str | None = None
    value: str | None = None
    message: str = "Record rejected by a netFORUM business rule."
    object: str | None = None


class NetforumSim:
    """xWeb on loopback. Start it, point a SOAP client at `wsdl_url`, seed and inspect from tests."""

    def __init__(
        self,
        *,
        user: str = DEFAULT_USER,
        password: str = DEFAULT_PASSWORD,
        host: str = "127.0.0.1",
        port: int = 0,
        token_timeout: float = 20 * 60,
        token_grace: float = 30.0,
        token_expiration: Literal["absolute", "sliding"] = "absolute",
        fault_limit_per_day: int = 100,
        login_lockout: int = 25,
        max_insert_objects: int = 100,
    ) -> None:
        self.user, self.password = user, password
        self.host = host
        self.token_timeout, self.token_grace, self.token_expiration = (
            token_timeout,
            token_grace,
            token_expiration,
        )
        self.fault_limit_per_day, self.login_lockout = fault_limit_per_day, login_lockout
        self.max_insert_objects = max_insert_objects
        self._users = {user: password}
        self._lock = threading.Lock()
        self._fresh_state()
        self._handlers: dict[str, Callable[[soap.Call, _Context], etree._Element]] = {
            "GetQuery": self._get_query,
            "GetFacadeObject": self._get_facade_object,
            "InsertFacadeObject": self._insert_facade_object,
            "UpdateFacadeObject": self._update_facade_object,
        }
        self.app = Starlette(routes=self._routes())
        self._loop = LoopbackServer(self.app, host, port, "netforum simulator")

    def _fresh_state(self) -> None:
        self._db = Database()
        self._faults = _Faults()
        self._tokens: dict[str, _Token] = {}
        self._fault_counts: dict[tuple[str, date], int] = {}
        self._failed_logins: dict[str, int] = {}
        self._credentials_locked: set[str] = set()
        self._fault_locked: set[str] = set()
        self._log: list[SimRequest] = []
        self._in_flight = 0
        self._clock_offset = 0.0

    # lifecycle ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._loop.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return self.url + ENDPOINT_PATH

    @property
    def wsdl_url(self) -> str:
        return self.endpoint + "?WSDL"

    def start(self, timeout: float = 10.0) -> NetforumSim:
        self._loop.start(timeout)
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread (the `python -m` entry point)."""
        self._loop.serve_forever()

    def stop(self) -> None:
        self._loop.stop()

    def __enter__(self) -> NetforumSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # seeding -----------------------------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """Another xWeb user; each has its own fault count and lockouts."""
        with self._lock:
            self._users[name] = password

    def add_individual(
        self, first: str | None, last: str, email: str | None = None, *, no_email: bool = False
    ) -> str:
        """A new Individual (co_customer + co_individual) with `email` as its primary co_email;
        returns its cst_key."""
        if not last:
            raise ValueError("an Individual needs a last name")
        with self._lock:
            cst_key = self._db.add_individual(first, last, email, self._now_dt())
            self._db.customers[cst_key]["cst_no_email_flag"] = no_email
            return cst_key

    def add_email(self, cst_key: str, address: str, *, primary: bool = False) -> str:
        with self._lock:
            guid = parse_guid(cst_key)
            if guid not in self._db.customers:
                raise KeyError(cst_key)
            return self._db.add_email(guid, address, self._now_dt(), primary=primary)

    # inspection --------------------------------------------------------------------------------

    def individual(self, cst_key: str) -> Row | None:
        """The Individual's names, do-not-email flag and primary email with its bad-email status."""
        with self._lock:
            return self._db.individual(parse_guid(cst_key) or cst_key)

    def individuals(self) -> list[Row]:
        with self._lock:
            return self._db.rows("Individual")

    def correspondence(self, cst_key: str, *, include_deleted: bool = False) -> list[Row]:
        """The Messaging Activity list of the Individual's Correspondence tab: soft-deleted rows
        left out, oldest activity date first."""
        with self._lock:
            return self._db.correspondence(cst_key, include_deleted=include_deleted)

    def activities(self, *, include_deleted: bool = False) -> list[Row]:
        with self._lock:
            return [
                row
                for key in self._db.activities
                if (row := self._db.activity(key, include_deleted=include_deleted)) is not None
            ]

    @property
    def request_log(self) -> list[SimRequest]:
        with self._lock:
            return list(self._log)

    def calls(self, operation: str) -> list[SimRequest]:
        return [r for r in self.request_log if r.operation == operation]

    @property
    def in_flight(self) -> int:
        """SOAP requests being handled now (held ones included)."""
        with self._lock:
            return self._in_flight

    def fault_count(self, user: str | None = None) -> int:
        """Faults counted today (UTC, simulator clock) against MethodsFaultLimitPerDay for `user`."""
        with self._lock:
            return self._fault_counts.get((user or self.user, self._today()), 0)

    def lockout(self, user: str | None = None) -> str | None:
        """ "credentials" after too many failed logins, "fault_limit" past MethodsFaultLimitPerDay."""
        name = user or self.user
        with self._lock:
            if name in self._credentials_locked:
                return "credentials"
            return "fault_limit" if name in self._fault_locked else None

    def state(self) -> dict[str, Any]:
        with self._lock:
            today = self._today()
            return _jsonable(
                {
                    "individuals": self._db.rows("Individual"),
                    "activities": [self._db.activity(k, include_deleted=True) for k in self._db.activities],
                    "faults": self._faults.describe(),
                    "fault_counts": {u: n for (u, d), n in self._fault_counts.items() if d == today},
                    "fault_limit_per_day": self.fault_limit_per_day,
                    "locked": {
                        "credentials": sorted(self._credentials_locked),
                        "fault_limit": sorted(self._fault_locked),
                    },
                    "sessions": len(
                        {id(t.session) for t in self._tokens.values() if t.session.expires_at > self._now()}
                    ),
                    "requests": len(self._log),
                    "in_flight": self._in_flight,
                    "clock_offset": self._clock_offset,
                }
            )

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no request is being handled (a slow one finishes after its client gave up)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._in_flight == 0:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("the simulator is still handling requests")
            time.sleep(0.02)

    # administration ----------------------------------------------------------------------------

    def unlock(self, user: str | None = None) -> None:
        """What a netFORUM administrator does: lift both lockouts and zero today's fault count."""
        name = user or self.user
        with self._lock:
            self._credentials_locked.discard(name)
            self._fault_locked.discard(name)
            self._failed_logins.pop(name, None)
            self._fault_counts.pop((name, self._today()), None)

    def reset(self) -> None:
        """No data, sessions, faults, counts, locks or log; the clock back to real time. The
        configuration (users, limits, timeouts) stays."""
        with self._lock:
            self._fresh_state()

    # faults ------------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """The next `count` SOAP requests get an HTTP error page (IIS's 503 by default), no envelope."""
        with self._lock:
            self._faults.outages.extend([status] * count)

    def slow_next(self, count: int = 1, seconds: float = 1.0) -> None:
        """Hold the next `count` SOAP requests for `seconds`, then carry them out and answer them
        normally, also when the client gave up or was killed meanwhile (the answer is lost, the
        write is not)."""
        with self._lock:
            self._faults.delays.extend([seconds] * count)

    def expire_tokens(self) -> None:
        """Every session ends now: the next call with any token gets TokenExpired."""
        with self._lock:
            now = self._now()
            for token in self._tokens.values():
                token.session.expires_at = min(token.session.expires_at, now)

    def fail_record(
        self,
        column: str,
        value: str,
        message: str = "Record rejected by a netFORUM business rule.",
        obj: str | None = None,
    ) -> None:
        """Every inserted or updated object whose `column` equals `value` faults RecordRejected."""
        with self._lock:
            self._faults.record_rules.append(_RecordRule(column, value, message, obj))

    def advance_clock(self, seconds: float) -> None:
        """Move the simulator's clock forward: token timeouts and the fault day follow it."""
        with self._lock:
            self._clock_offset += seconds

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = _Faults()

    def apply_fault(self, spec: FaultSpec) -> None:
        if spec.kind == "fail_record" and (spec.column is None or spec.value is None):
            raise ValueError("fail_record needs column and value")
        actions: dict[str, Callable[[], None]] = {
            "fail_next": lambda: self.fail_next(spec.count, spec.status),
            "slow_next": lambda: self.slow_next(spec.count, spec.seconds),
            "expire_tokens": self.expire_tokens,
            "fail_record": lambda: self.fail_record(
                spec.column or "", spec.value or "", spec.message, spec.object
            ),
            "advance_clock": lambda: self.advance_clock(spec.seconds),
            "clear_faults": self.clear_faults,
        }
        actions[spec.kind]()

    # clock -------------------------------------------------------------------------------------

    def _now(self) -> float:
        return time.time() + self._clock_offset

    def _now_dt(self) -> datetime:
        return datetime.fromtimestamp(self._now(), UTC).replace(tzinfo=None)

    def _today(self) -> date:
        return self._now_dt().date()

    # xWeb: authentication, tokens and the fault limit (callers hold the lock) -------------------

    def _authenticate(self, call: soap.Call, ctx: _Context) -> tuple[str, str]:
        name, password = call.param("userName") or "", call.param("password") or ""
        ctx.user = name if name in self._users else None
        if ctx.user:
            self._refuse_if_over_limit(name)
        if name in self._credentials_locked:
            raise XWebError(E.CREDENTIALS_LOCKED_OUT, "Credentials Locked Out")
        expected = self._users.get(name)
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            self._failed_logins[name] = self._failed_logins.get(name, 0) + 1
            if self._failed_logins[name] >= self.login_lockout:
                self._credentials_locked.add(name)
            raise XWebError(E.INVALID_CREDENTIALS, "Invalid user name or password.")
        self._failed_logins.pop(name, None)
        session = _Session(name, self._now() + self.token_timeout)
        return soap.NS, self._issue(session)

    def _authorize(self, token: str | None, ctx: _Context) -> _Session:
        if not token:
            raise XWebError(E.INVALID_TOKEN, "No AuthorizationToken header: call Authenticate first.")
        found = self._tokens.get(token)
        if found is None:
            raise XWebError(E.INVALID_TOKEN, "Invalid token.")
        session, now = found.session, self._now()
        ctx.user = session.user
        self._refuse_if_over_limit(session.user)
        if session.expires_at <= now:
            raise XWebError(E.TOKEN_EXPIRED, "Token has expired: call Authenticate for a new one.")
        if found.superseded_at is not None and now - found.superseded_at > self.token_grace:
            raise XWebError(E.INVALID_TOKEN, "Token has been superseded: use the token of the last response.")
        return session

    def _issue(self, session: _Session) -> str:
        """A successful call's next token; the one it replaces stays valid for `token_grace`."""
        now = self._now()
        previous = self._tokens.get(session.current)
        if previous is not None and previous.superseded_at is None:
            previous.superseded_at = now
        token = new_key()
        self._tokens[token] = _Token(session)
        session.current = token
        if self.token_expiration == "sliding":
            session.expires_at = now + self.token_timeout
        return token

    def _refuse_if_over_limit(self, user: str) -> None:
        if user in self._fault_locked:
            raise XWebError(
                E.FAULT_LIMIT_EXCEEDED,
                f"xWeb user '{user}' has reached MethodsFaultLimitPerDay ({self.fault_limit_per_day}) "
                "and is refused until an administrator resets it.",
            )

    def _count(self, user: str | None, error: XWebError) -> None:
        if user not in self._users or not error.counts:
            return
        key = (user, self._today())
        self._fault_counts[key] = self._fault_counts.get(key, 0) + 1
        if self._fault_counts[key] >= self.fault_limit_per_day:
            self._fault_locked.add(user)

    # xWeb: methods (callers hold the lock) -----------------------------------------------------

    def _get_query(self, call: soap.Call, ctx: _Context) -> etree._Element:
        obj = object_name(_required(call, "szObjectName"))
        names, rows = self._db.query(
            obj, call.param("szColumnList"), call.param("szWhereClause"), call.param("szOrderBy")
        )
        return soap.rows_node(obj, names, rows)

    def _get_facade_object(self, call: soap.Call, ctx: _Context) -> etree._Element:
        obj = object_name(_required(call, "szObjectName"), facade=True)
        row = self._db.get(obj, _required(call, "szObjectKey"))
        return soap.rows_node(obj, list(OBJECTS[obj]), [row])

    def _insert_facade_object(self, call: soap.Call, ctx: _Context) -> etree._Element:
        obj = object_name(_required(call, "szObjectName"), facade=True)
        objects = soap.node_objects(obj, call.node("oNode"))
        ctx.objects = len(objects)
        if len(objects) > self.max_insert_objects:
            raise XWebError(
                E.TOO_MANY_OBJECTS, f"At most {self.max_insert_objects} objects per InsertFacadeObject call."
            )
        rows = self._db.insert(obj, objects, self._now_dt(), ctx.user or "", self._reject)
        return soap.rows_node(obj, list(OBJECTS[obj]), rows)

    def _update_facade_object(self, call: soap.Call, ctx: _Context) -> etree._Element:
        obj = object_name(_required(call, "szObjectName"), facade=True)
        key = _required(call, "szObjectKey")
        objects = soap.node_objects(obj, call.node("oNode"))
        ctx.objects = len(objects)
        if len(objects) != 1:
            raise XWebError(E.INVALID_NODE, "UpdateFacadeObject takes exactly one object.")
        row = self._db.update(obj, key, objects[0], self._now_dt(), ctx.user or "", self._reject)
        return soap.rows_node(obj, list(OBJECTS[obj]), [row])

    def _reject(self, obj: str, row: Row) -> None:
        for rule in self._faults.record_rules:
            text = render_value(row.get(rule.column))
            if (rule.object in (None, obj)) and text is not None and text.casefold() == rule.value.casefold():
                raise XWebError(E.RECORD_REJECTED, rule.message)

    # HTTP --------------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        return [
            Route("/__sim/state", self._sim_state, methods=["GET"]),
            Route("/__sim/faults", self._sim_faults, methods=["POST", "DELETE"]),
            Route("/__sim/reset", self._sim_reset, methods=["POST"]),
            Route("/__sim/unlock", self._sim_unlock, methods=["POST"]),
            Route("/__sim/individuals", self._sim_add_individual, methods=["POST"]),
            Route("/__sim/individuals/{cst_key}", self._sim_individual, methods=["GET"]),
            Route("/{path:path}", self._xweb, methods=["GET", "POST"]),
        ]

    async def _xweb(self, request: Request) -> Response:
        """IIS paths are case-insensitive: `netForumXML.asmx` reaches the service too."""
        if "/" + request.path_params["path"].lower() != ENDPOINT_PATH.lower():
            return HTMLResponse("<h2>404 - File or directory not found.</h2>", 404)
        if request.method == "POST":
            return await self._soap(request)
        if any(k.lower() == "wsdl" for k in request.query_params):
            location = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
            return Response(wsdl.build(location), media_type=soap.CONTENT_TYPE)
        return HTMLResponse(f"<h1>{wsdl.SERVICE}</h1><p>Operations: {', '.join(wsdl.OPERATIONS)}</p>")

    async def _soap(self, request: Request) -> Response:
        started = time.perf_counter()
        action = request.headers.get("soapaction")
        ctx = _Context(operation=(action or "").strip('"').rpartition("/")[2] or None)
        with self._lock:
            self._in_flight += 1
        try:
            # read before any hold: a held request is then carried out when the hold ends whether
            # or not its client is still there, as IIS finishes a request whose client went away
            body = await request.body()
            status = await self._injected()
            if status is not None:
                ctx.status = status
                return HTMLResponse(_UNAVAILABLE, status)
            ctx.status, payload = self._dispatch(body, action, ctx)
            return Response(payload, ctx.status, media_type=soap.CONTENT_TYPE)
        finally:
            entry = SimRequest(
                ctx.operation, ctx.user, ctx.status, ctx.fault, ctx.objects, time.perf_counter() - started
            )
            with self._lock:
                self._log.append(entry)
                self._in_flight -= 1

    async def _injected(self) -> int | None:
        with self._lock:
            delay = self._faults.delays.popleft() if self._faults.delays else None
            status = self._faults.outages.popleft() if self._faults.outages else None
        if delay:
            await asyncio.sleep(delay)
        return status

    def _dispatch(self, payload: bytes, action: str | None, ctx: _Context) -> tuple[int, bytes]:
        try:
            call = soap.parse_request(payload, action, wsdl.OPERATIONS)
            ctx.operation = call.operation
            with self._lock:
                if call.operation == "Authenticate":
                    result, token = self._authenticate(call, ctx)
                else:
                    session = self._authorize(call.token, ctx)
                    result, token = self._handlers[call.operation](call, ctx), self._issue(session)
            return 200, soap.response(call.operation, result, token)
        except XWebError as error:
            with self._lock:
                self._count(ctx.user, error)
            ctx.fault = error.code
            return 500, soap.fault(error, ctx.operation)

    async def _sim_state(self, _request: Request) -> Response:
        return JSONResponse(self.state())

    async def _sim_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_faults()
        else:
            try:
                self.apply_fault(FaultSpec.model_validate_json(await request.body()))
            except (ValidationError, ValueError) as error:
                return JSONResponse({"error": str(error)}, 400)
        with self._lock:
            return JSONResponse({"faults": self._faults.describe()})

    async def _sim_reset(self, _request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})

    async def _sim_unlock(self, request: Request) -> Response:
        body = await _json_object(request)
        if body is None:
            return JSONResponse({"error": "a JSON object is required"}, 400)
        self.unlock(body.get("user"))
        return JSONResponse({"unlocked": body.get("user") or self.user})

    async def _sim_add_individual(self, request: Request) -> Response:
        body = await _json_object(request)
        if body is None or not isinstance(body.get("last_name"), str) or not body["last_name"]:
            return JSONResponse({"error": 'send {"first_name", "last_name", "email", "no_email"}'}, 400)
        cst_key = self.add_individual(
            body.get("first_name"), body["last_name"], body.get("email"), no_email=bool(body.get("no_email"))
        )
        return JSONResponse({"cst_key": cst_key}, 201)

    async def _sim_individual(self, request: Request) -> Response:
        cst_key = request.path_params["cst_key"]
        individual = self.individual(cst_key)
        if individual is None:
            return JSONResponse({"error": "no such individual"}, 404)
        return JSONResponse(
            _jsonable({"individual": individual, "correspondence": self.correspondence(cst_key)})
        )


def _required(call: soap.Call, name: str) -> str:
    value = call.param(name)
    if not value:
        raise XWebError(E.MISSING_PARAMETER, f"{name} is required.")
    return value


async def _json_object(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return render_value(value)
    return value
