"""The simulator: one community's contacts and List Builder lists behind a v2.0-style REST API, on a
uvicorn server on loopback.

State is guarded by one lock: handlers run on the server's thread, tests read from theirs. See the
package docstring for what is modelled and which choices are ours.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from writeback_dev.simulators.loopback import LoopbackServer

from .store import LIST_TYPE, Store, parse_guid

API_PREFIX = "/api/v2.0"
DEFAULT_IAM_KEY = "5f0c6a8e-2b1d-4c57-9e3a-7d4b1c2e9f60"
DEFAULT_PASSWORD = "sim-community-password"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

DENIED = "Authorization has been denied for this request."
_UNAVAILABLE = (
    "<!DOCTYPE html><html><head><title>Service Unavailable</title></head>"
    "<body><h2>Service Unavailable</h2><hr><p>HTTP Error 503. The service is unavailable.</p></body></html>"
)


class ApiError(Exception):
    """A refused API call: a JSON body `{"Message": ..., "Code": ...}` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> JSONResponse:
        return JSONResponse({"Message": self.message, "Code": self.code}, self.status)


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One API request as the simulator answered it (the `/__sim` API is not logged). `endpoint` is
    the canonical name ("ListBuilder/GetListMembers") or None for an unknown path; `code` is the
    error body's Code, "Unavailable" for an injected outage."""

    method: str
    path: str
    endpoint: str | None
    status: int
    code: str | None = None
    list_key: str | None = None
    start: int | None = None
    end: int | None = None
    items: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class _Context:
    endpoint: str | None = None
    status: int = 200
    code: str | None = None
    list_key: str | None = None
    start: int | None = None
    end: int | None = None
    items: int = 0


@dataclass(slots=True)
class _Faults:
    outages: deque[int] = field(default_factory=deque)
    delays: deque[float] = field(default_factory=deque)
    revoked: bool = False
    vanishing: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "fail_next": list(self.outages),
            "slow_next": list(self.delays),
            "credentials_revoked": self.revoked,
            "vanish_list": dict(self.vanishing),
        }


class FaultSpec(BaseModel):
    """The body of `POST /__sim/faults`: a fault method's name and its arguments."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[
        "fail_next", "slow_next", "revoke_credentials", "restore_credentials", "vanish_list", "clear_faults"
    ]
    count: int = Field(1, ge=1)
    status: int = Field(503, ge=400, le=599)
    seconds: float = Field(1.0, ge=0)
    list_key: str | None = None
    after_pages: int = Field(1, ge=1)


class CommunitySim:
    """The community's REST API on loopback. Start it, send `headers` with every call, seed and
    inspect from tests."""

    def __init__(
        self,
        *,
        iam_key: str = DEFAULT_IAM_KEY,
        password: str = DEFAULT_PASSWORD,
        host: str = "127.0.0.1",
        port: int = 0,
        max_page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        if parse_guid(iam_key) is None:
            raise ValueError("the HLIAMKey is a GUID")
        self.iam_key, self.password = iam_key, password
        self.host = host
        self.max_page_size = max_page_size
        self._lock = threading.Lock()
        self._fresh_state()
        self._endpoints: dict[str, tuple[str, Callable[[dict[str, str], _Context], Any]]] = {
            f"{API_PREFIX}/{name}".lower(): (name, handler)
            for name, handler in (
                ("Contacts/GetContacts", self._get_contacts),
                ("Contacts/GetContact", self._get_contact),
                ("ListBuilder/GetLists", self._get_lists),
                ("ListBuilder/GetListMembers", self._get_list_members),
            )
        }
        self.app = Starlette(routes=self._routes())
        self._loop = LoopbackServer(self.app, host, port, "community simulator")

    def _fresh_state(self) -> None:
        self._store = Store()
        self._faults = _Faults()
        self._log: list[SimRequest] = []
        self._in_flight = 0

    # lifecycle ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._loop.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """The base every endpoint path is relative to: `{api_url}/ListBuilder/GetLists`."""
        return self.url + API_PREFIX

    @property
    def headers(self) -> dict[str, str]:
        """The credential headers a client sends with every call."""
        return {"HLIAMKey": self.iam_key, "HLPassword": self.password}

    def start(self, timeout: float = 10.0) -> CommunitySim:
        self._loop.start(timeout)
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread (the `python -m` entry point)."""
        self._loop.serve_forever()

    def stop(self) -> None:
        self._loop.stop()

    def __enter__(self) -> CommunitySim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # seeding -----------------------------------------------------------------------------------

    def add_contact(
        self,
        first_name: str | None,
        last_name: str | None,
        email: str | None = None,
        *,
        legacy_contact_key: str | None = None,
        contact_key: str | None = None,
    ) -> str:
        """A community member; returns its ContactKey. The email is stored as given: malformed
        addresses and duplicates are allowed, as in a real community."""
        with self._lock:
            return self._store.add_contact(first_name, last_name, email, legacy_contact_key, contact_key)

    def add_list(
        self,
        name: str,
        members: Iterable[str] = (),
        *,
        list_type: str = LIST_TYPE,
        list_key: str | None = None,
    ) -> str:
        """A List Builder list of existing contacts (by ContactKey); returns its ListKey. The name
        is stored exactly as given."""
        with self._lock:
            return self._store.add_list(name, list(members), list_type, list_key)

    def add_member(self, list_key: str, contact_key: str) -> bool:
        """False if the contact was already a member."""
        with self._lock:
            return self._store.add_member(list_key, contact_key)

    def remove_member(self, list_key: str, contact_key: str) -> bool:
        """False if the contact was not a member."""
        with self._lock:
            return self._store.remove_member(list_key, contact_key)

    def rename_list(self, list_key: str, name: str) -> None:
        with self._lock:
            self._store.rename_list(list_key, name)

    def remove_list(self, list_key: str) -> None:
        with self._lock:
            self._store.remove_list(list_key)

    def seed_reconciliation(self) -> dict[str, dict[str, str]]:
        """A fixed community for count-reconciliation and prefix tests; returns the keys by name.

        Contacts (LegacyContactKey = the marketing platform's Remote ID): `ada`, `grace`, `alan`
        with clean addresses; `grace_dup` has grace's exact address and `ada_case` ada's address
        in other case with surrounding spaces; `katherine` ("katherine.johnson@") and `dorothy`
        ("dorothy vaughan at example.org") are malformed; `mary` has no address; `annie` has no
        LegacyContactKey. Lists: "Informz Has Started Discussion Thread" (all nine),
        "Informz Welcome New Members" (ada, grace), "informz lowercase prefix" (ada),
        " Informz Leading Space" (grace), "InformzX No Space" (alan), "Board Members" (ada, alan).
        """
        people = {
            "ada": ("Ada", "Lovelace", "ada@example.org", "R-1001"),
            "grace": ("Grace", "Hopper", "grace@example.org", "R-1002"),
            "alan": ("Alan", "Turing", "alan@example.org", "R-1003"),
            "grace_dup": ("Grace", "Murray", "grace@example.org", "R-1004"),
            "ada_case": ("Augusta", "King", " ADA@Example.org ", "R-1005"),
            "katherine": ("Katherine", "Johnson", "katherine.johnson@", "R-1006"),
            "dorothy": ("Dorothy", "Vaughan", "dorothy vaughan at example.org", "R-1007"),
            "mary": ("Mary", "Jackson", None, "R-1008"),
            "annie": ("Annie", "Easley", "annie@example.org", None),
        }
        contacts = {
            label: self.add_contact(first, last, email, legacy_contact_key=legacy)
            for label, (first, last, email, legacy) in people.items()
        }
        c = contacts
        lists = {
            name: self.add_list(name, members)
            for name, members in (
                ("Informz Has Started Discussion Thread", list(c.values())),
                ("Informz Welcome New Members", [c["ada"], c["grace"]]),
                ("informz lowercase prefix", [c["ada"]]),
                (" Informz Leading Space", [c["grace"]]),
                ("InformzX No Space", [c["alan"]]),
                ("Board Members", [c["ada"], c["alan"]]),
            )
        }
        return {"contacts": contacts, "lists": lists}

    # inspection --------------------------------------------------------------------------------

    def contact(self, contact_key: str) -> dict[str, Any] | None:
        with self._lock:
            try:
                return self._store.contact(contact_key).json()
            except KeyError:
                return None

    def contacts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [c.json() for c in self._store.sorted_contacts()]

    def lists(self) -> list[dict[str, Any]]:
        """Every list as GetLists renders it, in creation order."""
        with self._lock:
            return [item.json() for item in self._store.sorted_lists()]

    def members(self, list_key: str) -> list[dict[str, Any]]:
        """The list's contacts in GetListMembers order; KeyError if there is no such list."""
        with self._lock:
            return [c.json() for c in self._store.sorted_contacts(self._store.list(list_key).members)]

    @property
    def request_log(self) -> list[SimRequest]:
        with self._lock:
            return list(self._log)

    def calls(self, endpoint: str) -> list[SimRequest]:
        return [r for r in self.request_log if r.endpoint == endpoint]

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "contacts": [c.json() for c in self._store.sorted_contacts()],
                "lists": [
                    {**item.json(), "Members": sorted(item.members)} for item in self._store.sorted_lists()
                ],
                "faults": self._faults.describe(),
                "requests": len(self._log),
                "in_flight": self._in_flight,
            }

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

    def reset(self) -> None:
        """No contacts, lists, faults or log; the configured credentials work again."""
        with self._lock:
            self._fresh_state()

    # faults ------------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 503) -> None:
        """The next `count` API requests get an HTTP error page (IIS's 503 by default), no JSON,
        before credentials are checked: the community is down."""
        with self._lock:
            self._faults.outages.extend([status] * count)

    def slow_next(self, count: int = 1, seconds: float = 1.0) -> None:
        """Hold the next `count` API requests for `seconds`, then answer them normally."""
        with self._lock:
            self._faults.delays.extend([seconds] * count)

    def revoke_credentials(self) -> None:
        """The configured HLIAMKey/HLPassword stop working (401) until `restore_credentials`."""
        with self._lock:
            self._faults.revoked = True

    def restore_credentials(self) -> None:
        with self._lock:
            self._faults.revoked = False

    def vanish_list(self, list_key: str, after_pages: int = 1) -> None:
        """After `after_pages` more successful GetListMembers pages of the list, the list is
        deleted: later pages answer 404 ListNotFound and GetLists no longer shows it."""
        with self._lock:
            key = self._store.list(list_key).list_key
            self._faults.vanishing[key] = after_pages

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = _Faults()

    def apply_fault(self, spec: FaultSpec) -> None:
        if spec.kind == "vanish_list" and spec.list_key is None:
            raise ValueError("vanish_list needs list_key")
        actions: dict[str, Callable[[], None]] = {
            "fail_next": lambda: self.fail_next(spec.count, spec.status),
            "slow_next": lambda: self.slow_next(spec.count, spec.seconds),
            "revoke_credentials": self.revoke_credentials,
            "restore_credentials": self.restore_credentials,
            "vanish_list": lambda: self.vanish_list(spec.list_key or "", spec.after_pages),
            "clear_faults": self.clear_faults,
        }
        actions[spec.kind]()

    # the API (callers hold the lock) -----------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        key, password = request.headers.get("hliamkey"), request.headers.get("hlpassword")
        if not key or password is None:
            raise ApiError(401, "MissingCredentials", DENIED)
        good = parse_guid(key) == parse_guid(self.iam_key) and hmac.compare_digest(
            password.encode(), self.password.encode()
        )
        if not good or self._faults.revoked:
            raise ApiError(401, "InvalidCredentials", DENIED)

    def _range(self, query: dict[str, str], ctx: _Context) -> tuple[int, int]:
        """1-based inclusive record range; StartRecord defaults to 1, EndRecord to StartRecord + 49."""
        try:
            start = int(query.get("startrecord") or 1)
            end = int(query["endrecord"]) if query.get("endrecord") else start + DEFAULT_PAGE_SIZE - 1
        except ValueError:
            raise ApiError(400, "InvalidRange", "StartRecord and EndRecord must be integers.") from None
        ctx.start, ctx.end = start, end
        if start < 1:
            raise ApiError(400, "InvalidRange", "StartRecord must be 1 or more.")
        if end < start:
            raise ApiError(400, "InvalidRange", "EndRecord must not be less than StartRecord.")
        if end - start + 1 > self.max_page_size:
            raise ApiError(400, "InvalidRange", f"At most {self.max_page_size} records per request.")
        return start, end

    def _page(self, rows: list[dict[str, Any]], query: dict[str, str], ctx: _Context) -> dict[str, Any]:
        start, end = self._range(query, ctx)
        items = rows[start - 1 : end]
        ctx.items = len(items)
        return {"TotalCount": len(rows), "StartRecord": start, "EndRecord": end, "Items": items}

    def _get_contacts(self, query: dict[str, str], ctx: _Context) -> Any:
        return self._page([c.json() for c in self._store.sorted_contacts()], query, ctx)

    def _get_contact(self, query: dict[str, str], ctx: _Context) -> Any:
        key = _guid_param(query, "contactKey")
        try:
            return self._store.contact(key).json()
        except KeyError:
            raise ApiError(404, "ContactNotFound", f"No contact with ContactKey {key}.") from None

    def _get_lists(self, query: dict[str, str], ctx: _Context) -> Any:
        return self._page([item.json() for item in self._store.sorted_lists()], query, ctx)

    def _get_list_members(self, query: dict[str, str], ctx: _Context) -> Any:
        key = ctx.list_key = _guid_param(query, "listKey")
        try:
            found = self._store.list(key)
        except KeyError:
            raise ApiError(404, "ListNotFound", f"No list with ListKey {key}.") from None
        page = self._page([c.json() for c in self._store.sorted_contacts(found.members)], query, ctx)
        if key in self._faults.vanishing:
            self._faults.vanishing[key] -= 1
            if self._faults.vanishing[key] <= 0:
                del self._faults.vanishing[key]
                self._store.remove_list(key)
        return page

    # HTTP --------------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        return [
            Route("/__sim/state", self._sim_state, methods=["GET"]),
            Route("/__sim/faults", self._sim_faults, methods=["POST", "DELETE"]),
            Route("/__sim/reset", self._sim_reset, methods=["POST"]),
            Route("/__sim/seed", self._sim_seed, methods=["POST"]),
            Route("/__sim/contacts", self._sim_add_contact, methods=["POST"]),
            Route("/__sim/lists", self._sim_add_list, methods=["POST"]),
            Route("/__sim/lists/{list_key}", self._sim_list, methods=["GET", "PATCH", "DELETE"]),
            Route("/__sim/lists/{list_key}/members", self._sim_add_member, methods=["POST"]),
            Route(
                "/__sim/lists/{list_key}/members/{contact_key}", self._sim_remove_member, methods=["DELETE"]
            ),
            Route("/{path:path}", self._api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ]

    async def _api(self, request: Request) -> Response:
        """Paths and query parameter names are case-insensitive, as on IIS and ASP.NET Web API."""
        started = time.perf_counter()
        path = "/" + request.path_params["path"]
        found = self._endpoints.get(path.lower().rstrip("/"))
        ctx = _Context(endpoint=found[0] if found else None)
        with self._lock:
            self._in_flight += 1
        try:
            response = await self._answer(request, path, found, ctx)
            ctx.status = response.status_code
            return response
        finally:
            entry = SimRequest(
                request.method,
                path,
                ctx.endpoint,
                ctx.status,
                ctx.code,
                ctx.list_key,
                ctx.start,
                ctx.end,
                ctx.items,
                time.perf_counter() - started,
            )
            with self._lock:
                self._log.append(entry)
                self._in_flight -= 1

    async def _answer(
        self,
        request: Request,
        path: str,
        found: tuple[str, Callable[[dict[str, str], _Context], Any]] | None,
        ctx: _Context,
    ) -> Response:
        with self._lock:
            delay = self._faults.delays.popleft() if self._faults.delays else None
            outage = self._faults.outages.popleft() if self._faults.outages else None
        if delay:
            await asyncio.sleep(delay)
        if outage is not None:
            ctx.code = "Unavailable"
            return HTMLResponse(_UNAVAILABLE, outage)
        try:
            if found is None:
                raise ApiError(
                    404, "NotFound", f"No HTTP resource was found that matches the request URI '{path}'."
                )
            if request.method != "GET":
                raise ApiError(
                    405,
                    "MethodNotAllowed",
                    f"The requested resource does not support http method '{request.method}'.",
                )
            query = {k.lower(): v for k, v in request.query_params.items()}
            with self._lock:
                self._authorize(request)
                return JSONResponse(found[1](query, ctx))
        except ApiError as error:
            ctx.code = error.code
            return error.response()

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
            except KeyError as error:
                return JSONResponse({"error": f"no such list: {error}"}, 404)
        with self._lock:
            return JSONResponse({"faults": self._faults.describe()})

    async def _sim_reset(self, _request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})

    async def _sim_seed(self, _request: Request) -> Response:
        return JSONResponse(self.seed_reconciliation(), 201)

    async def _sim_add_contact(self, request: Request) -> Response:
        body = await _json_object(request)
        if body is None:
            return JSONResponse(
                {"error": 'send {"first_name", "last_name", "email", "legacy_contact_key"}'}, 400
            )
        try:
            key = self.add_contact(
                body.get("first_name"),
                body.get("last_name"),
                body.get("email"),
                legacy_contact_key=body.get("legacy_contact_key"),
                contact_key=body.get("contact_key"),
            )
        except ValueError as error:
            return JSONResponse({"error": str(error)}, 400)
        return JSONResponse({"ContactKey": key}, 201)

    async def _sim_add_list(self, request: Request) -> Response:
        body = await _json_object(request)
        if body is None or not isinstance(body.get("name"), str):
            return JSONResponse({"error": 'send {"name", "members": [ContactKey, ...]}'}, 400)
        try:
            key = self.add_list(
                body["name"],
                body.get("members") or [],
                list_type=body.get("list_type") or LIST_TYPE,
                list_key=body.get("list_key"),
            )
        except ValueError as error:
            return JSONResponse({"error": str(error)}, 400)
        except KeyError as error:
            return JSONResponse({"error": f"no such contact: {error}"}, 404)
        return JSONResponse({"ListKey": key}, 201)

    async def _sim_list(self, request: Request) -> Response:
        key = request.path_params["list_key"]
        try:
            if request.method == "PATCH":
                body = await _json_object(request)
                if body is None or not isinstance(body.get("name"), str):
                    return JSONResponse({"error": 'send {"name"}'}, 400)
                self.rename_list(key, body["name"])
            elif request.method == "DELETE":
                self.remove_list(key)
                return JSONResponse({"removed": key})
            with self._lock:
                found = self._store.list(key)
                return JSONResponse({**found.json(), "Members": sorted(found.members)})
        except KeyError:
            return JSONResponse({"error": "no such list"}, 404)

    async def _sim_add_member(self, request: Request) -> Response:
        body = await _json_object(request)
        if body is None or not isinstance(body.get("contact_key"), str):
            return JSONResponse({"error": 'send {"contact_key"}'}, 400)
        try:
            added = self.add_member(request.path_params["list_key"], body["contact_key"])
        except KeyError as error:
            return JSONResponse({"error": f"no such list or contact: {error}"}, 404)
        return JSONResponse({"added": added})

    async def _sim_remove_member(self, request: Request) -> Response:
        try:
            removed = self.remove_member(request.path_params["list_key"], request.path_params["contact_key"])
        except KeyError:
            return JSONResponse({"error": "no such list"}, 404)
        return JSONResponse({"removed": removed})


def _guid_param(query: dict[str, str], name: str) -> str:
    raw = query.get(name.lower())
    if not raw:
        raise ApiError(400, "MissingParameter", f"{name} is required.")
    key = parse_guid(raw)
    if key is None:
        raise ApiError(400, "InvalidParameter", f"{name} must be a GUID.")
    return key


async def _json_object(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
