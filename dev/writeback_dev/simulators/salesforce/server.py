"""The simulator: one org behind Salesforce's REST endpoints, on a uvicorn server on loopback.

State is guarded by one lock: handlers run on the server's thread, tests read from theirs. See the
package docstring for what is modelled.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from writeback_dev.simulators.loopback import LoopbackServer

from .errors import STATUS_ERRORS, ApiError
from .ids import id18
from .org import Faults, Hang, Org
from .schema import SCHEMA, SObjectType
from .soql import SoqlParser, field_of

MAX_RECORDS = 200
MAX_CHUNKS = 10
QUERY_PAGE = 2000
API_LIMIT = 15000  # DailyApiRequests of a Developer Edition org
NOT_FOUND = "The requested resource does not exist"
# The message is Salesforce's (Apex reports it as System.TypeException for a DML list that
# switches sObject type too often). The whole-request 400 and its error code are this
# simulator's model: no public source shows the REST API's wire shape for it.
TOO_MANY_CHUNKS = (
    "INVALID_BATCH_REQUEST",
    "Cannot have more than 10 chunks in a single operation. Please rearrange the data to reduce chunking.",
)
ORG_ID = id18("00D5g00000SIMOR") or ""
USER_ID = id18("0055g00000SIMUS") or ""


def _json_body(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON") from None


def _shaped(sobject: SObjectType, row: dict[str, Any], fields: list[str], version: str) -> dict[str, Any]:
    """A record as the REST API renders it: attributes first, then the asked-for fields."""
    attributes = {
        "type": sobject.name,
        "url": f"/services/data/v{version}/sobjects/{sobject.name}/{row['Id']}",
    }
    return {"attributes": attributes, **{name: row.get(name) for name in fields}}


def _chunks(records: list[dict[str, Any]]) -> int:
    """How many runs of consecutive records of one type: Salesforce processes each as a chunk."""
    types = [r["attributes"]["type"] for r in records]
    return sum(1 for i, t in enumerate(types) if i == 0 or t != types[i - 1])


def _record_error(result: dict[str, Any]) -> ApiError:
    """A single-record call that fails answers 400 with the record's error as an error array."""
    error = result["errors"][0]
    return ApiError(400, error["statusCode"], error["message"], fields=error["fields"])


def _not_an_external_id(name: str) -> ApiError:
    message = f"Provided external ID field does not exist or is not accessible: {name}"
    return ApiError(404, "NOT_FOUND", message)


@dataclass(frozen=True, slots=True)
class SimRequest:
    """One request the simulator answered (records: how many a collection body carried)."""

    method: str
    path: str
    status: int
    records: int = 0


class FaultSpec(BaseModel):
    """Body of `POST /__sim/faults`: `kind` names a fault method, the rest are its arguments."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[
        "fail_next",
        "throttle_next",
        "hang_next",
        "expire_tokens",
        "reject_id",
        "lock_next_records",
        "revoke_client_credentials",
        "clear_faults",
    ]
    count: int = Field(1, ge=1)
    status: int | None = Field(None, ge=400, le=599)
    retry_after: float | None = Field(None, ge=0)
    seconds: float | None = Field(None, gt=0)
    then_apply: bool = True
    method: str | None = None
    path_suffix: str | None = None
    id: str | None = None
    error_code: str | None = None
    message: str | None = None


class SalesforceSim:
    """The simulator: one org, one server. Start it, point a client at `login_url`, inspect.

    State is guarded by one lock: handlers run on the server's thread, tests read from theirs.
    """

    def __init__(
        self,
        *,
        client_id: str = "sim-client-id",
        client_secret: str = "sim-client-secret",
        host: str = "127.0.0.1",
        port: int = 0,
        api_limit: int = API_LIMIT,
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.host = host
        self.query_page_size = QUERY_PAGE
        self.api_limit = api_limit
        self._api_calls = 0
        self._lock = threading.Lock()
        self._org = Org()
        self._faults = Faults()
        self._tokens: set[str] = set()
        self._cursors: dict[str, list[dict[str, Any]]] = {}
        self._log: list[SimRequest] = []
        self._in_flight = 0
        self.app = Starlette(
            routes=self._routes(),
            exception_handlers={HTTPException: self._http_error},  # type: ignore[dict-item]
        )
        # Salesforce answers `query/` as it answers `query`; Starlette would redirect instead.
        self.app.router.redirect_slashes = False
        self._loop = LoopbackServer(self.app, host, port, "salesforce simulator")

    # lifecycle ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._loop.port

    @property
    def login_url(self) -> str:
        """Both the login host and the instance: the token response points back here."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> SalesforceSim:
        self._loop.start(timeout)
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread (the `python -m` entry point)."""
        self._loop.serve_forever()

    def stop(self) -> None:
        self._loop.stop()

    def __enter__(self) -> SalesforceSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # seeding and inspection --------------------------------------------------------------------

    def add_contact(self, last_name: str = "Contact", email: str | None = None, **fields: Any) -> str:
        return self._seed("Contact", {"LastName": last_name, "Email": email, **fields})

    def add_lead(
        self, last_name: str = "Lead", company: str = "Company", email: str | None = None, **fields: Any
    ) -> str:
        return self._seed("Lead", {"LastName": last_name, "Company": company, "Email": email, **fields})

    def delete(self, record_id: str) -> None:
        """Move a record to the recycle bin: IsDeleted, invisible to queries, refused by DML."""
        with self._lock:
            found = self._org.find(record_id)
            if found is None:
                raise KeyError(record_id)
            found[1]["IsDeleted"] = True

    def records(self, sobject: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(r) for r in self._org.tables[sobject].values() if include_deleted or not r["IsDeleted"]
            ]

    def record(self, record_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._org.find(record_id)
            return dict(found[1]) if found else None

    def notes_for(self, parent_id: str) -> list[dict[str, Any]]:
        """The parent's live notes in creation order."""
        return [n for n in self.records("Note") if n["ParentId"] == id18(parent_id)]

    def tasks_for(self, who_id: str) -> list[dict[str, Any]]:
        return [t for t in self.records("Task") if t["WhoId"] == id18(who_id)]

    @property
    def api_usage(self) -> tuple[int, int]:
        """(calls counted today, the org's daily limit): what `Sforce-Limit-Info` reports."""
        with self._lock:
            return self._api_calls, self.api_limit

    @property
    def request_log(self) -> list[SimRequest]:
        with self._lock:
            return list(self._log)

    def calls(self, method: str, path_suffix: str) -> list[SimRequest]:
        """Data API requests with this method whose path ends with `path_suffix`."""
        return [r for r in self.request_log if r.method == method and r.path.endswith(path_suffix)]

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "records": {
                    name: [dict(r) for r in rows.values()] for name, rows in self._org.tables.items()
                },
                "faults": self._faults.describe(),
                "tokens": len(self._tokens),
                "requests": len(self._log),
                "api_usage": {"used": self._api_calls, "limit": self.api_limit},
                "in_flight": self._in_flight,
            }

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no request is being handled (a hung one finishes after its client gave up)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._in_flight == 0:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("the simulator is still handling requests")
            time.sleep(0.02)

    def reset(self) -> None:
        """Empty org, no tokens, no faults, empty log: a fresh simulator on the same port."""
        with self._lock:
            self._org = Org()
            self._faults = Faults()
            self._tokens.clear()
            self._cursors.clear()
            self._log.clear()
            self._api_calls = 0
        self.query_page_size = QUERY_PAGE

    def _seed(self, sobject: str, values: dict[str, Any]) -> str:
        raw = {"attributes": {"type": sobject}, **{k: v for k, v in values.items() if v is not None}}
        with self._lock:
            result = self._org.save("create", [raw], True, Faults())[0]
        if not result["success"]:
            raise ValueError(result["errors"][0]["message"])
        return str(result["id"])

    # faults ------------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 503, retry_after: float | None = None) -> None:
        """The next `count` data requests answer `status` (5xx, or 403/429 throttling)."""
        with self._lock:
            self._faults.failures.extend([(status, retry_after)] * count)

    def throttle_next(self, count: int = 1, retry_after: float | None = 1.0, status: int = 429) -> None:
        """429 (or 403 REQUEST_LIMIT_EXCEEDED) with Retry-After for the next `count` requests."""
        if status not in (403, 429):
            raise ValueError("throttling answers 403 or 429")
        self.fail_next(count, status, retry_after)

    def hang_next(
        self,
        count: int = 1,
        seconds: float = 5.0,
        then_apply: bool = True,
        method: str | None = None,
        path_suffix: str | None = None,
    ) -> None:
        """Hold the next `count` requests (those matching `method` and `path_suffix`, if given)
        for `seconds`. With `then_apply` the request is then processed, as Salesforce does after
        a client has given up waiting; without, it answers 503."""
        with self._lock:
            self._faults.hangs.extend([Hang(seconds, then_apply, method, path_suffix)] * count)

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def reject_id(
        self,
        record_id: str,
        error_code: str = "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        message: str = "Record rejected by a validation rule",
    ) -> None:
        """Every record that is, or references, `record_id` fails with this error from now on."""
        canonical = id18(record_id)
        if canonical is None:
            raise ValueError("not a Salesforce id")
        with self._lock:
            self._faults.rejected[canonical] = (error_code, message)

    def lock_next_records(self, count: int = 1) -> None:
        """The next `count` records written fail with UNABLE_TO_LOCK_ROW."""
        with self._lock:
            self._faults.lock_records += count

    def revoke_client_credentials(self) -> None:
        """The connected app loses its run-as user: the token endpoint answers invalid_grant."""
        with self._lock:
            self._faults.client_credentials = False

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = Faults()

    def apply_fault(self, spec: FaultSpec) -> None:
        actions: dict[str, Callable[[], None]] = {
            "fail_next": lambda: self.fail_next(spec.count, spec.status or 503, spec.retry_after),
            "throttle_next": lambda: self.throttle_next(
                spec.count, spec.retry_after if spec.retry_after is not None else 1.0, spec.status or 429
            ),
            "hang_next": lambda: self.hang_next(
                spec.count, spec.seconds or 5.0, spec.then_apply, spec.method, spec.path_suffix
            ),
            "expire_tokens": self.expire_tokens,
            "reject_id": lambda: self.reject_id(
                spec.id or "",
                spec.error_code or "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                spec.message or "Record rejected by a validation rule",
            ),
            "lock_next_records": lambda: self.lock_next_records(spec.count),
            "revoke_client_credentials": self.revoke_client_credentials,
            "clear_faults": self.clear_faults,
        }
        actions[spec.kind]()

    # routes ------------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        data = "/services/data/v{version}"

        def api(path: str, handler: Callable[[Request, Any], Any], methods: list[str]) -> list[Route]:
            """A data API resource, with and without a trailing slash, as Salesforce accepts both."""
            endpoint = self._api(handler)
            return [Route(f"{data}/{path}", endpoint, methods=methods) for path in (path, f"{path}/")]

        return [
            Route("/services/oauth2/token", self._token, methods=["POST"]),
            *api("composite/sobjects", self._collection, ["POST", "PATCH"]),
            *api("composite/sobjects/{sobject}", self._retrieve, ["GET"]),
            *api("composite/sobjects/{sobject}/{ext_field}", self._upsert, ["PATCH"]),
            *api("sobjects/{sobject}", self._sobject_create, ["POST"]),
            *api("sobjects/{sobject}/{record_id}", self._sobject_row, ["GET", "PATCH", "DELETE"]),
            *api("sobjects/{sobject}/{ext_field}/{ext_value:path}", self._sobject_by_ext, ["GET", "PATCH"]),
            *api("query", self._query, ["GET"]),
            *api("query/{cursor}", self._query_more, ["GET"]),
            *api("limits", self._limits, ["GET"]),
            Route("/__sim/state", self._sim_state, methods=["GET"]),
            Route("/__sim/faults", self._sim_faults, methods=["POST", "DELETE"]),
            Route("/__sim/reset", self._sim_reset, methods=["POST"]),
            Route("/__sim/records/{sobject}", self._sim_add, methods=["POST"]),
            Route("/__sim/records/{sobject}/{record_id}", self._sim_delete, methods=["DELETE"]),
        ]

    async def _token(self, request: Request) -> Response:
        response = await self._grant(request)
        with self._lock:
            self._log.append(SimRequest(request.method, request.url.path, response.status_code))
        return response

    async def _grant(self, request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}

        def refuse(error: str, description: str) -> JSONResponse:
            return JSONResponse({"error": error, "error_description": description}, 400)

        if form.get("grant_type") != "client_credentials":
            return refuse("unsupported_grant_type", "grant type not supported")
        credentials = self._client_credentials(request, form)
        if credentials is None:
            return refuse("invalid_client", "invalid client credentials")
        client_id, client_secret = credentials
        if client_id != self.client_id:
            return refuse("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(client_secret.encode(), self.client_secret.encode()):
            return refuse("invalid_client", "invalid client credentials")
        with self._lock:
            if not self._faults.client_credentials:
                return refuse("invalid_grant", "no client credentials user enabled")
            token = f"{ORG_ID}!{secrets.token_urlsafe(48)}"
            self._tokens.add(token)
        base = f"{request.url.scheme}://{request.url.netloc}"
        issued_at = str(int(time.time() * 1000))
        identity = f"{base}/id/{ORG_ID}/{USER_ID}"
        digest = hmac.new(
            self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
        ).digest()
        return JSONResponse(
            {
                "access_token": token,
                "signature": base64.b64encode(digest).decode(),
                "scope": "api",
                "instance_url": base,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
            }
        )

    @staticmethod
    def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str] | None:
        """The client id and secret, from an HTTP Basic Authorization header (what simple-salesforce
        sends) or else from the form fields (client_secret_post); None for a malformed header.
        RFC 6749 (2.3.1) form-encodes both before Base64; raw values are accepted too, since
        simple-salesforce does not encode and Salesforce's consumer keys need no encoding."""
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return form.get("client_id", ""), form.get("client_secret", "")
        try:
            client_id, colon, client_secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return None
        if not colon:
            return None
        if "%" in client_id + client_secret or "+" in client_id + client_secret:
            client_id, client_secret = unquote_plus(client_id), unquote_plus(client_secret)
        return client_id, client_secret

    def _api(self, handler: Callable[[Request, Any], Any]) -> Callable[[Request], Any]:
        """Wraps a data API handler: log, faults, session check, version, errors as Salesforce."""

        async def endpoint(request: Request) -> Response:
            with self._lock:
                self._in_flight += 1
            response: Response = JSONResponse(
                [{"message": "simulator bug", "errorCode": "UNKNOWN_EXCEPTION"}], 500
            )
            records = 0
            try:
                parsed = _json_body(await request.body())
                if isinstance(parsed, dict) and isinstance(parsed.get("records"), list):
                    records = len(parsed["records"])
                await self._inject_faults(request)
                response = self._authorized(request, handler, parsed)
            except ApiError as error:
                response = error.response()
            finally:
                usage = getattr(request.state, "api_usage", None)
                if usage is not None:
                    response.headers["Sforce-Limit-Info"] = f"api-usage={usage[0]}/{usage[1]}"
                with self._lock:
                    self._log.append(
                        SimRequest(request.method, request.url.path, response.status_code, records)
                    )
                    self._in_flight -= 1
            return response

        return endpoint

    async def _inject_faults(self, request: Request) -> None:
        with self._lock:
            hangs = self._faults.hangs
            hang = next((h for h in hangs if h.matches(request.method, request.url.path)), None)
            if hang is not None:
                hangs.remove(hang)
        if hang is not None:
            await asyncio.sleep(hang.seconds)
            if not hang.then_apply:
                raise ApiError(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable")
        with self._lock:
            failure = self._faults.failures.popleft() if self._faults.failures else None
        if failure is None:
            return
        status, retry_after = failure
        code, message = STATUS_ERRORS.get(status, ("UNKNOWN_EXCEPTION", "An unexpected error occurred."))
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        raise ApiError(status, code, message, headers=headers)

    def _authorized(self, request: Request, handler: Callable[[Request, Any], Any], parsed: Any) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            valid = scheme.lower() in ("bearer", "oauth") and token in self._tokens
        if not valid:
            raise ApiError(
                401, "INVALID_SESSION_ID", "Session expired or invalid", headers={"WWW-Authenticate": "Token"}
            )
        with self._lock:
            self._api_calls += 1
            request.state.api_usage = (self._api_calls, self.api_limit)
        version = request.path_params["version"]
        if not re.fullmatch(r"\d{2,3}\.0", version) or float(version) < 42.0:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        result = handler(request, parsed)
        return result if isinstance(result, Response) else JSONResponse(result)

    # data API handlers (synchronous, under the lock) -------------------------------------------

    def _collection(self, request: Request, body: Any) -> Any:
        records, all_or_none = self._collection_body(body)
        op: Literal["create", "update"] = "create" if request.method == "POST" else "update"
        for raw in records:
            type_name = (raw.get("attributes") or {}).get("type") if isinstance(raw, dict) else None
            if type_name not in SCHEMA:
                raise ApiError(400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
        if _chunks(records) > MAX_CHUNKS:
            raise ApiError(400, *TOO_MANY_CHUNKS)
        with self._lock:
            return self._org.save(op, records, all_or_none, self._faults)

    def _upsert(self, request: Request, body: Any) -> Any:
        sobject = self._sobject(request.path_params["sobject"])
        if float(request.path_params["version"]) < 46.0:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        ext_field = sobject.canonical(request.path_params["ext_field"])
        if ext_field is None or not sobject.fields[ext_field].external_id:
            raise ApiError(
                400,
                "INVALID_FIELD",
                f"Field name provided, {request.path_params['ext_field']} is not an External ID "
                f"or indexed field for {sobject.name}",
            )
        records, all_or_none = self._collection_body(body)
        for raw in records:
            if not isinstance(raw, dict) or (raw.get("attributes") or {}).get("type") != sobject.name:
                raise ApiError(
                    400, "INVALID_TYPE", f"The list can contain objects only of type {sobject.name}"
                )
        with self._lock:
            return self._org.save("upsert", records, all_or_none, self._faults, ext_field)

    def _retrieve(self, request: Request, _body: Any) -> Any:
        sobject = self._sobject(request.path_params["sobject"])
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        names = [n for n in request.query_params.get("fields", "").split(",") if n]
        if not ids or not names:
            raise ApiError(400, "MISSING_ARGUMENT", "ids and fields are required")
        if len(ids) > MAX_RECORDS:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        fields = [field_of(sobject, n) for n in names]
        version = request.path_params["version"]
        results: list[dict[str, Any] | None] = []
        with self._lock:
            for record_id in ids:
                found = self._org.find(record_id)
                live = found is not None and found[0] is sobject and not found[1]["IsDeleted"]
                results.append(_shaped(sobject, found[1], fields, version) if live and found else None)
        return results

    def _sobject_create(self, request: Request, body: Any) -> Any:
        """`POST sobjects/{SObject}/`: 201 with `{"id", "success", "errors"}`, or the record's
        error as a 400 error array."""
        sobject = self._sobject(request.path_params["sobject"])
        raw = {**self._fields_body(body), "attributes": {"type": sobject.name}}
        with self._lock:
            result = self._org.save("create", [raw], True, self._faults)[0]
        if not result["success"]:
            raise _record_error(result)
        return JSONResponse(result, 201)

    def _sobject_row(self, request: Request, body: Any) -> Any:
        """`sobjects/{SObject}/{id}`: GET the record (all fields, or `?fields=`), PATCH it (204),
        DELETE it to the recycle bin (204). Unknown ids 404 NOT_FOUND, deleted ones 404
        ENTITY_IS_DELETED; a segment that is no id reads as an external id field name, as in an org."""
        sobject = self._sobject(request.path_params["sobject"])
        segment = request.path_params["record_id"]
        record_id = id18(segment)
        if record_id is None:
            raise _not_an_external_id(segment)
        fields = self._fields_param(sobject, request)
        values = self._fields_body(body) if request.method == "PATCH" else {}
        with self._lock:
            record = self._org.tables[sobject.name].get(record_id)
            if record is None:
                raise ApiError(404, "NOT_FOUND", NOT_FOUND)
            if record["IsDeleted"]:
                raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", fields=[])
            if request.method == "GET":
                return _shaped(sobject, record, fields, request.path_params["version"])
            if request.method == "DELETE":
                record["IsDeleted"] = True
                return Response(status_code=204)
            raw = {**values, "attributes": {"type": sobject.name}, "Id": record_id}
            result = self._org.save("update", [raw], True, self._faults)[0]
        if not result["success"]:
            raise _record_error(result)
        return Response(status_code=204)

    def _sobject_by_ext(self, request: Request, body: Any) -> Any:
        """`sobjects/{SObject}/{ExternalIdField}/{value}`: GET the matching record; PATCH upserts.
        A new record answers 201, an updated one 200 with the result body from API version 46.0
        (204 without a body before), the result carrying `created` from 46.0 as well."""
        sobject = self._sobject(request.path_params["sobject"])
        name, value = request.path_params["ext_field"], request.path_params["ext_value"]
        ext_field = sobject.canonical(name)
        if ext_field is None or not sobject.fields[ext_field].external_id or not value:
            raise _not_an_external_id(name)
        version = request.path_params["version"]
        if request.method == "GET":
            fields = self._fields_param(sobject, request)
            with self._lock:
                match = next(
                    (
                        r
                        for r in self._org.tables[sobject.name].values()
                        if not r["IsDeleted"] and r.get(ext_field) is not None
                        and r[ext_field].casefold() == value.casefold()
                    ),
                    None,
                )
                if match is None:
                    raise ApiError(404, "NOT_FOUND", NOT_FOUND)
                return _shaped(sobject, match, fields, version)
        raw = {**self._fields_body(body), "attributes": {"type": sobject.name}, ext_field: value}
        with self._lock:
            result = self._org.save("upsert", [raw], True, self._faults, ext_field)[0]
        if not result["success"]:
            raise _record_error(result)
        created = result.pop("created")
        if float(version) >= 46.0:
            result["created"] = created
        elif not created:
            return Response(status_code=204)
        return JSONResponse(result, 201 if created else 200)

    def _limits(self, _request: Request, _body: Any) -> Any:
        """`GET limits/`: the org's limits, DailyApiRequests counting the calls made so far."""
        with self._lock:
            used = self._api_calls
        return {
            "DailyApiRequests": {"Max": self.api_limit, "Remaining": max(self.api_limit - used, 0)},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DataStorageMB": {"Max": 5, "Remaining": 5},
            "FileStorageMB": {"Max": 20, "Remaining": 20},
            "SingleEmail": {"Max": 15, "Remaining": 15},
        }

    @staticmethod
    def _fields_body(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object of field values")
        return body

    @staticmethod
    def _fields_param(sobject: SObjectType, request: Request) -> list[str]:
        names = [n for n in request.query_params.get("fields", "").split(",") if n]
        return [field_of(sobject, n) for n in names] if names else list(sobject.fields)

    def _query(self, request: Request, _body: Any) -> Any:
        text = request.query_params.get("q")
        if not text:
            raise ApiError(400, "MALFORMED_QUERY", "unexpected end of query")
        soql = SoqlParser(text).parse()
        with self._lock:
            if soql.count:
                return {"totalSize": len(self._org.query(soql)), "done": True, "records": []}
            rows = [
                _shaped(soql.sobject, r, soql.fields, request.path_params["version"])
                for r in self._org.query(soql)
            ]
            return self._page(f"01g{secrets.token_hex(8)}", rows, 0, request.path_params["version"])

    def _query_more(self, request: Request, _body: Any) -> Any:
        locator, _, offset = request.path_params["cursor"].rpartition("-")
        with self._lock:
            rows = self._cursors.pop(request.path_params["cursor"], None)
            if rows is None or not offset.isdigit():
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            return self._page(locator, rows, int(offset), request.path_params["version"])

    def _page(self, locator: str, rows: list[dict[str, Any]], offset: int, version: str) -> dict[str, Any]:
        """Rows from `offset`, one page; the rest wait behind `<locator>-<next offset>`, the
        shape of Salesforce's nextRecordsUrl."""
        end = offset + self.query_page_size
        page: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows), "records": rows[offset:end]}
        if end < len(rows):
            cursor = f"{locator}-{end}"
            self._cursors[cursor] = rows
            page["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor}"
        return page

    @staticmethod
    def _collection_body(body: Any) -> tuple[list[dict[str, Any]], bool]:
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise ApiError(400, "JSON_PARSER_ERROR", "records: a list of sObjects is required")
        if len(body["records"]) > MAX_RECORDS:
            raise ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        return body["records"], bool(body.get("allOrNone", False))

    @staticmethod
    def _sobject(name: str) -> SObjectType:
        sobject = SCHEMA.get(name)
        if sobject is None:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return sobject

    async def _http_error(self, request: Request, error: Exception) -> Response:
        """Routing errors in Salesforce's shape (a JSON error array), not Starlette's plain text."""
        assert isinstance(error, HTTPException)
        if error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "")
            return ApiError(
                405,
                "METHOD_NOT_ALLOWED",
                f"HTTP Method '{request.method}' not allowed. Allowed are {allowed.replace(', ', ',')}",
                headers={"Allow": allowed},
            ).response()
        if error.status_code == 404:
            return ApiError(404, "NOT_FOUND", NOT_FOUND).response()
        return JSONResponse([{"message": error.detail, "errorCode": "UNKNOWN_EXCEPTION"}], error.status_code)

    # /__sim ------------------------------------------------------------------------------------

    async def _sim_state(self, _request: Request) -> Response:
        return JSONResponse(self.state())

    async def _sim_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear_faults()
            return JSONResponse({"faults": self.state()["faults"]})
        try:
            spec = FaultSpec.model_validate_json(await request.body())
            self.apply_fault(spec)
        except (ValidationError, ValueError) as error:
            return JSONResponse({"error": str(error)}, 400)
        return JSONResponse({"faults": self.state()["faults"]})

    async def _sim_reset(self, _request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})

    async def _sim_add(self, request: Request) -> Response:
        sobject = request.path_params["sobject"]
        try:
            values = json.loads(await request.body() or b"{}")
            if sobject not in ("Contact", "Lead") or not isinstance(values, dict):
                raise ValueError("seed Contact or Lead with a JSON object of fields")
            return JSONResponse({"id": self._seed(sobject, values)}, 201)
        except ValueError as error:
            return JSONResponse({"error": str(error)}, 400)

    async def _sim_delete(self, request: Request) -> Response:
        try:
            self.delete(request.path_params["record_id"])
        except KeyError:
            return JSONResponse({"error": "no such record"}, 404)
        return Response(status_code=204)
