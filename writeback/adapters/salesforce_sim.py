"""A protocol-faithful Salesforce REST simulator that runs as a real HTTP server on loopback.

Shapes, status codes and error codes are Salesforce's own, so a client that works here works
against an org. What it models:

- OAuth 2.0 client-credentials flow, `POST /services/oauth2/token` (form-encoded). Errors as an
  org gives them: unknown client `invalid_client_id`, wrong secret `invalid_client`, no run-as
  user `invalid_grant`, any other grant `unsupported_grant_type`.
- sObject Collections under `/services/data/vXX.X/`: create `POST composite/sobjects`, update
  `PATCH composite/sobjects`, upsert `PATCH composite/sobjects/{SObject}/{ExternalIdField}` (v46+),
  retrieve `GET composite/sobjects/{SObject}?ids=&fields=` (null for unknown or deleted ids). At
  most 200 records a call, else 400 `EXCEEDED_ID_LIMIT` ("record limit reached. cannot submit more
  than 200 records into this call", the code orgs return). Per-record SaveResults; with
  `allOrNone` one failure rolls everything back and the rest report `ALL_OR_NONE_OPERATION_ROLLED_BACK`.
- SOQL `GET query?q=` and `GET query/{cursor}` for exactly these shapes:
  `SELECT f[, f…] FROM Obj [WHERE c [AND c…]] [LIMIT n]`, with c one of `F = v`, `F != v`,
  `F IN (v, …)`, `F LIKE 'pattern'` and v a quoted string, number, true, false or null. Text
  compares case-insensitively, ids in 15 or 18 characters; long text areas cannot be filtered;
  deleted rows are left out (as `query`, unlike `queryAll`); pages hold 2,000 rows.
- Objects: Contact (003) and Lead (00Q) with Email and HasOptedOutOfEmail; classic Note (002;
  ParentId, Title, Body — the "Notes & Attachments" list seed 002 names); Task (00T) with WhoId and
  the custom fields Activity_Group__c, Activity__c and Writeback_Id__c (external id, unique).
- Errors: 401 `INVALID_SESSION_ID`; per record `UNABLE_TO_LOCK_ROW`, `INVALID_CROSS_REFERENCE_KEY`,
  `ENTITY_IS_DELETED`, `MALFORMED_ID`, `FIELD_INTEGRITY_EXCEPTION`, `DUPLICATE_VALUE`,
  `DUPLICATE_EXTERNAL_ID`, `REQUIRED_FIELD_MISSING`, `STRING_TOO_LONG`, `INVALID_FIELD`.

Test hooks: fault injection in-process (`fail_next`, `throttle_next`, `hang_next`, `expire_tokens`,
`reject_id`, `lock_next_records`, `revoke_client_credentials`) and over HTTP (`POST /__sim/faults`
with `{"kind": <method name>, ...its arguments}`, `DELETE /__sim/faults`); inspection with
`records`, `record`, `notes_for`, `tasks_for`, `request_log` and `GET /__sim/state`; seeding with
`add_contact`, `add_lead`, `delete` (also `POST /__sim/records/{SObject}`, `DELETE /__sim/records/{id}`).
Faults apply to data API requests (`/services/data/…`), not to the token endpoint.

Run standalone: `python -m writeback.adapters.salesforce_sim --port 8600`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import parse_qs

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from writeback.adapters.salesforce import id18

MAX_RECORDS = 200
QUERY_PAGE = 2000
ORG_ID = id18("00D5g00000SIMOR") or ""
USER_ID = id18("0055g00000SIMUS") or ""

# -- schema ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    kind: str = "string"  # string | textarea | boolean | date | datetime | id | reference | picklist
    length: int | None = None
    required: bool = False
    default: Any = None
    references: tuple[str, ...] = ()
    external_id: bool = False
    unique: bool = False
    createable: bool = True
    updateable: bool = True


@dataclass(frozen=True, slots=True)
class _SObject:
    name: str
    prefix: str
    fields: dict[str, _Field]

    def canonical(self, name: str) -> str | None:
        """Field names are case-insensitive in Salesforce; return the declared spelling."""
        return next((f for f in self.fields if f.lower() == name.lower()), None)


_SYSTEM_FIELDS = {
    "Id": _Field("id", createable=False, updateable=False),
    "IsDeleted": _Field("boolean", default=False, createable=False, updateable=False),
    "CreatedDate": _Field("datetime", createable=False, updateable=False),
    "LastModifiedDate": _Field("datetime", createable=False, updateable=False),
    "SystemModstamp": _Field("datetime", createable=False, updateable=False),
}
_WHO = ("Contact", "Lead")
_PERSON_FIELDS = {
    "FirstName": _Field(length=40),
    "LastName": _Field(length=80, required=True),
    "Email": _Field(length=80),
    "HasOptedOutOfEmail": _Field("boolean", default=False),
}
SCHEMA: dict[str, _SObject] = {
    "Contact": _SObject("Contact", "003", {**_SYSTEM_FIELDS, **_PERSON_FIELDS}),
    "Lead": _SObject(
        "Lead",
        "00Q",
        {
            **_SYSTEM_FIELDS,
            **_PERSON_FIELDS,
            "Company": _Field(length=255, required=True),
            "Status": _Field("picklist", length=255, default="Open - Not Contacted"),
        },
    ),
    "Note": _SObject(
        "Note",
        "002",
        {
            **_SYSTEM_FIELDS,
            "ParentId": _Field("reference", required=True, references=_WHO, updateable=False),
            "Title": _Field(length=80, required=True),
            "Body": _Field("textarea", length=32000),
            "IsPrivate": _Field("boolean", default=False),
        },
    ),
    "Task": _SObject(
        "Task",
        "00T",
        {
            **_SYSTEM_FIELDS,
            "WhoId": _Field("reference", references=_WHO),
            "Subject": _Field(length=255),
            "ActivityDate": _Field("date"),
            "Status": _Field("picklist", length=255, required=True, default="Not Started"),
            "Priority": _Field("picklist", length=40, required=True, default="Normal"),
            "Type": _Field("picklist", length=40),
            "Description": _Field("textarea", length=32000),
            "Activity_Group__c": _Field(length=255),
            "Activity__c": _Field(length=255),
            "Writeback_Id__c": _Field(length=255, external_id=True, unique=True),
        },
    ),
}
_PREFIXES = {obj.prefix: name for name, obj in SCHEMA.items()}
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# -- errors ---------------------------------------------------------------------------------------


class _ApiError(Exception):
    """A whole request fails: Salesforce answers `[{"message", "errorCode"[, "fields"]}]`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields, self.headers = fields, headers or {}

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            error["fields"] = self.fields
        return JSONResponse([error], self.status, headers=self.headers)


class _RecordError(Exception):
    """One record fails inside a collection call; its SaveResult carries the error."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.error = {"statusCode": code, "message": message, "fields": fields or []}


_STATUS_ERRORS = {
    403: ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    429: ("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."),
    500: (
        "UNKNOWN_EXCEPTION",
        "An unexpected error occurred. Please include this ErrorId if you contact support: "
        "1386416522-31893 (-1289743937)",
    ),
    502: ("SERVER_UNAVAILABLE", "Bad Gateway"),
    503: ("SERVER_UNAVAILABLE", "Server temporarily unavailable"),
    504: ("SERVER_UNAVAILABLE", "Gateway Timeout"),
}
_ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was using AllOrNone header",
    "fields": [],
}


def _now_sf() -> str:
    """Salesforce's dateTime rendering: 2026-03-08T14:30:00.000+0000."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


# -- SOQL -----------------------------------------------------------------------------------------

_SOQL_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<op>!=|=|\(|\)|,)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True, slots=True)
class _Condition:
    field: str
    op: str  # "=" | "!=" | "IN" | "LIKE"
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Soql:
    fields: list[str]
    sobject: _SObject
    where: list[_Condition]
    limit: int | None


class _SoqlParser:
    """Recursive descent over the few SOQL shapes the module docstring lists; anything else
    is `MALFORMED_QUERY`, as an org would say for a real syntax error."""

    def __init__(self, text: str) -> None:
        self._tokens: list[tuple[str, str]] = []
        pos, text = 0, text.rstrip()
        while pos < len(text):
            match = _SOQL_TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise self._malformed(f"unexpected token: '{text[pos : pos + 20]}'")
            kind = match.lastgroup or ""
            self._tokens.append((kind, match.group(kind)))
            pos = match.end()
        self._pos = 0

    @staticmethod
    def _malformed(message: str) -> _ApiError:
        return _ApiError(400, "MALFORMED_QUERY", message)

    def parse(self) -> _Soql:
        self._keyword("SELECT")
        names = [self._word()]
        while self._accept("op", ","):
            names.append(self._word())
        self._keyword("FROM")
        type_name = self._word()
        sobject = SCHEMA.get(next((n for n in SCHEMA if n.lower() == type_name.lower()), ""))
        if sobject is None:
            raise _ApiError(400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
        where: list[_Condition] = []
        if self._accept("word", "WHERE"):
            where.append(self._condition(sobject))
            while self._accept("word", "AND"):
                where.append(self._condition(sobject))
        limit = None
        if self._accept("word", "LIMIT"):
            limit = int(self._take("number"))
        if self._pos != len(self._tokens):
            raise self._malformed(f"unexpected token: '{self._tokens[self._pos][1]}'")
        return _Soql([_field_of(sobject, n) for n in names], sobject, where, limit)

    def _condition(self, sobject: _SObject) -> _Condition:
        name = _field_of(sobject, self._word())
        if sobject.fields[name].kind == "textarea":
            raise _ApiError(400, "INVALID_FIELD", f"field '{name}' can not be filtered in a query call")
        if self._accept("op", "="):
            return _Condition(name, "=", (self._literal(),))
        if self._accept("op", "!="):
            return _Condition(name, "!=", (self._literal(),))
        if self._accept("word", "LIKE"):
            return _Condition(name, "LIKE", (_unquote(self._take("string")),))
        self._keyword("IN")
        self._take("op", "(")
        values = [self._literal()]
        while self._accept("op", ","):
            values.append(self._literal())
        self._take("op", ")")
        return _Condition(name, "IN", tuple(values))

    def _literal(self) -> Any:
        kind, value = self._peek()
        self._pos += 1
        if kind == "string":
            return _unquote(value)
        if kind == "number":
            return float(value) if "." in value else int(value)
        if kind == "word" and value.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value.lower()]
        raise self._malformed(f"unexpected token: '{value}'")

    def _peek(self) -> tuple[str, str]:
        if self._pos >= len(self._tokens):
            raise self._malformed("unexpected end of query")
        return self._tokens[self._pos]

    def _accept(self, kind: str, value: str) -> bool:
        if self._pos < len(self._tokens):
            k, v = self._tokens[self._pos]
            if k == kind and v.upper() == value.upper():
                self._pos += 1
                return True
        return False

    def _take(self, kind: str, value: str | None = None) -> str:
        k, v = self._peek()
        if k != kind or (value is not None and v != value):
            raise self._malformed(f"unexpected token: '{v}'")
        self._pos += 1
        return v

    def _keyword(self, word: str) -> None:
        if not self._accept("word", word):
            raise self._malformed(f"expecting '{word}', found '{self._peek()[1]}'")

    def _word(self) -> str:
        return self._take("word")


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), literal[1:-1])


def _field_of(sobject: _SObject, name: str) -> str:
    canonical = sobject.canonical(name)
    if canonical is None:
        raise _ApiError(
            400,
            "INVALID_FIELD",
            f"No such column '{name}' on entity '{sobject.name}'. If you are attempting to use a "
            "custom field, be sure to append the '__c' after the custom field name.",
        )
    return canonical


def _like(pattern: str) -> re.Pattern[str]:
    parts = (".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _same(spec: _Field, actual: Any, wanted: Any) -> bool:
    if spec.kind in ("id", "reference"):
        return actual is not None and isinstance(wanted, str) and id18(wanted) == actual
    if isinstance(actual, str) and isinstance(wanted, str):
        return actual.casefold() == wanted.casefold()
    return bool(actual == wanted)


def _matches(sobject: _SObject, record: dict[str, Any], cond: _Condition) -> bool:
    spec, actual = sobject.fields[cond.field], record.get(cond.field)
    if cond.op == "LIKE":
        return actual is not None and bool(_like(cond.values[0]).fullmatch(str(actual)))
    hit = any(_same(spec, actual, wanted) for wanted in cond.values)
    return hit if cond.op in ("=", "IN") else not hit


# -- the org: records, DML and queries (callers hold the lock) ------------------------------------


@dataclass(frozen=True)
class _Hang:
    seconds: float
    then_apply: bool
    method: str | None
    path_suffix: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_suffix is None or path.endswith(self.path_suffix)
        )


@dataclass(slots=True)
class _Faults:
    failures: deque[tuple[int, float | None]] = field(default_factory=deque)
    hangs: list[_Hang] = field(default_factory=list)
    lock_records: int = 0
    rejected: dict[str, tuple[str, str]] = field(default_factory=dict)
    client_credentials: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "failures": [{"status": s, "retry_after": r} for s, r in self.failures],
            "hangs": [vars(h) for h in self.hangs],
            "lock_next_records": self.lock_records,
            "rejected_ids": sorted(self.rejected),
            "client_credentials": self.client_credentials,
        }


class _Org:
    """All rows of one simulated org, insertion-ordered per object."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in SCHEMA}
        self._counter = itertools.count(1)

    def new_id(self, sobject: _SObject) -> str:
        n, digits = next(self._counter), ""
        for _ in range(9):
            n, r = divmod(n, 62)
            digits = _BASE62[r] + digits
        return id18(f"{sobject.prefix}Hs0{digits}") or ""

    def find(self, record_id: str) -> tuple[_SObject, dict[str, Any]] | None:
        canonical = id18(record_id)
        name = _PREFIXES.get(canonical[:3]) if canonical else None
        if canonical is None or name is None or canonical not in self.tables[name]:
            return None
        return SCHEMA[name], self.tables[name][canonical]

    # DML ---------------------------------------------------------------------------------------

    def save(
        self,
        op: Literal["create", "update", "upsert"],
        records: list[dict[str, Any]],
        all_or_none: bool,
        faults: _Faults,
        ext_field: str | None = None,
    ) -> list[dict[str, Any]]:
        undo: list[tuple[str, str, dict[str, Any] | None]] = []
        duplicates = self._duplicate_external_ids(records, ext_field) if ext_field else set()
        results = []
        for raw in records:
            try:
                if ext_field and raw.get(ext_field) in duplicates:
                    raise _RecordError(
                        "DUPLICATE_EXTERNAL_ID",
                        f"Duplicate external id specified: {raw.get(ext_field)}",
                        [ext_field],
                    )
                results.append(self._save_one(op, raw, faults, undo, ext_field))
            except _RecordError as failure:
                result: dict[str, Any] = {"success": False, "errors": [failure.error]}
                if op == "update" and isinstance(raw.get("Id"), str):
                    result = {"id": raw["Id"], **result}
                results.append(result)
        if all_or_none and not all(r["success"] for r in results):
            for type_name, record_id, before in reversed(undo):
                if before is None:
                    self.tables[type_name].pop(record_id, None)
                else:
                    self.tables[type_name][record_id] = before
            results = [
                r
                if not r["success"]
                else {
                    **({"id": r["id"]} if op == "update" else {}),
                    "success": False,
                    "errors": [dict(_ROLLED_BACK)],
                }
                for r in results
            ]
        return results

    @staticmethod
    def _duplicate_external_ids(records: list[dict[str, Any]], ext_field: str) -> set[Any]:
        seen: set[Any] = set()
        dupes: set[Any] = set()
        for raw in records:
            value = raw.get(ext_field)
            if value is not None:
                (dupes if value in seen else seen).add(value)
        return dupes

    def _save_one(
        self,
        op: str,
        raw: dict[str, Any],
        faults: _Faults,
        undo: list[tuple[str, str, dict[str, Any] | None]],
        ext_field: str | None,
    ) -> dict[str, Any]:
        sobject = SCHEMA[raw["attributes"]["type"]]
        values = self._canonical_values(sobject, raw)
        self._check_faults(sobject, values, faults)
        if op == "create":
            if "Id" in values:
                raise _RecordError("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            new_id = self._insert(sobject, values, undo)
            return {"id": new_id, "success": True, "errors": []}
        if op == "update":
            record = self._target_of_update(sobject, values.pop("Id", None))
            self._update(sobject, record, values, undo)
            return {"id": record["Id"], "success": True, "errors": []}
        assert ext_field is not None
        if "Id" in values:
            raise _RecordError(
                "INVALID_FIELD", "Upsert with sObject Collections takes external ids, not record ids", ["Id"]
            )
        key = values.get(ext_field)
        if key in (None, ""):
            raise _RecordError("MISSING_ARGUMENT", f"{ext_field} not specified", [ext_field])
        match = next(
            (
                r
                for r in self.tables[sobject.name].values()
                if not r["IsDeleted"] and _same(sobject.fields[ext_field], r.get(ext_field), key)
            ),
            None,
        )
        if match is None:
            return {"id": self._insert(sobject, values, undo), "success": True, "errors": [], "created": True}
        self._update(sobject, match, values, undo)
        return {"id": match["Id"], "success": True, "errors": [], "created": False}

    @staticmethod
    def _canonical_values(sobject: _SObject, raw: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "attributes":
                continue
            canonical = sobject.canonical(name)
            if canonical is None:
                raise _RecordError(
                    "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject.name}", [name]
                )
            values[canonical] = value
        return values

    @staticmethod
    def _check_faults(sobject: _SObject, values: dict[str, Any], faults: _Faults) -> None:
        if faults.lock_records > 0:
            faults.lock_records -= 1
            raise _RecordError(
                "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records", []
            )
        referenced = {
            canonical
            for n, v in values.items()
            if sobject.fields[n].kind in ("id", "reference") and (canonical := id18(v)) is not None
        }
        for record_id in referenced & faults.rejected.keys():
            code, message = faults.rejected[record_id]
            raise _RecordError(code, message, [])

    def _target_of_update(self, sobject: _SObject, record_id: Any) -> dict[str, Any]:
        if not record_id:
            raise _RecordError("MISSING_ARGUMENT", "Id not specified in an update call", [])
        canonical = id18(record_id)
        if canonical is None or canonical[:3] != sobject.prefix:
            raise _RecordError(
                "MALFORMED_ID", f"{sobject.name} ID: id value of incorrect type: {record_id}", ["Id"]
            )
        record = self.tables[sobject.name].get(canonical)
        if record is None:
            raise _RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        if record["IsDeleted"]:
            raise _RecordError("ENTITY_IS_DELETED", "entity is deleted", [])
        return record

    def _insert(
        self, sobject: _SObject, values: dict[str, Any], undo: list[tuple[str, str, dict[str, Any] | None]]
    ) -> str:
        row = {name: spec.default for name, spec in sobject.fields.items()}
        row.update(self._validated(sobject, values, creating=True, own_id=None))
        missing = [n for n, spec in sobject.fields.items() if spec.required and row.get(n) in (None, "")]
        if missing:
            raise _RecordError(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        now = _now_sf()
        row.update(
            Id=self.new_id(sobject),
            IsDeleted=False,
            CreatedDate=now,
            LastModifiedDate=now,
            SystemModstamp=now,
        )
        record_id: str = row["Id"]
        self.tables[sobject.name][record_id] = row
        undo.append((sobject.name, record_id, None))
        return record_id

    def _update(
        self,
        sobject: _SObject,
        record: dict[str, Any],
        values: dict[str, Any],
        undo: list[tuple[str, str, dict[str, Any] | None]],
    ) -> None:
        changes = self._validated(sobject, values, creating=False, own_id=record["Id"])
        emptied = [
            n
            for n, spec in sobject.fields.items()
            if spec.required and n in changes and changes[n] in (None, "")
        ]
        if emptied:
            raise _RecordError(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(emptied)}]", emptied
            )
        undo.append((sobject.name, record["Id"], dict(record)))
        now = _now_sf()
        record.update(changes, LastModifiedDate=now, SystemModstamp=now)

    def _validated(
        self, sobject: _SObject, values: dict[str, Any], *, creating: bool, own_id: str | None
    ) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        for name, value in values.items():
            spec = sobject.fields[name]
            if not (spec.createable if creating else spec.updateable):
                raise _RecordError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {name}. Please check the security settings of this field.",
                    [name],
                )
            clean[name] = self._validated_value(sobject, name, spec, value, own_id)
        return clean

    def _validated_value(
        self, sobject: _SObject, name: str, spec: _Field, value: Any, own_id: str | None
    ) -> Any:
        if value is None:
            return None
        if spec.kind == "boolean":
            if not isinstance(value, bool):
                raise _RecordError(
                    "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{name}: value not of required type: {value}", [name]
                )
            return value
        if spec.kind == "date":
            try:
                return date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise _RecordError(
                    "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{name}: value not of required type: {value}", [name]
                ) from None
        if spec.kind == "reference":
            return self._reference(name, spec, value)
        text = str(value)
        if spec.length is not None and len(text) > spec.length:
            raise _RecordError(
                "STRING_TOO_LONG", f"{name}: data value too large (max length={spec.length})", [name]
            )
        if spec.unique and text:
            clash = next(
                (
                    r
                    for r in self.tables[sobject.name].values()
                    if r["Id"] != own_id
                    and isinstance(r.get(name), str)
                    and r[name].casefold() == text.casefold()
                ),
                None,
            )
            if clash is not None:
                raise _RecordError(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {name} duplicates value on record with id: {clash['Id']}",
                    [],
                )
        return text

    def _reference(self, name: str, spec: _Field, value: Any) -> str:
        canonical = id18(value) if isinstance(value, str) else None
        if canonical is None:
            raise _RecordError("MALFORMED_ID", f"{name}: id value of incorrect type: {value}", [name])
        target_type = _PREFIXES.get(canonical[:3])
        if target_type not in spec.references:
            raise _RecordError(
                "FIELD_INTEGRITY_EXCEPTION", f"{name}: id value of incorrect type: {value}", [name]
            )
        target = self.tables[target_type].get(canonical)
        if target is None:
            raise _RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name])
        if target["IsDeleted"]:
            raise _RecordError("ENTITY_IS_DELETED", "entity is deleted", [name])
        return canonical

    # reads -------------------------------------------------------------------------------------

    def query(self, soql: _Soql) -> list[dict[str, Any]]:
        rows = [
            r
            for r in self.tables[soql.sobject.name].values()
            if not r["IsDeleted"] and all(_matches(soql.sobject, r, c) for c in soql.where)
        ]
        return rows[: soql.limit] if soql.limit is not None else rows


def _json_body(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise _ApiError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON") from None


def _shaped(sobject: _SObject, row: dict[str, Any], fields: list[str], version: str) -> dict[str, Any]:
    """A record as the REST API renders it: attributes first, then the asked-for fields."""
    attributes = {
        "type": sobject.name,
        "url": f"/services/data/v{version}/sobjects/{sobject.name}/{row['Id']}",
    }
    return {"attributes": attributes, **{name: row.get(name) for name in fields}}


# -- HTTP -----------------------------------------------------------------------------------------


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
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.host, self._requested_port = host, port
        self.query_page_size = QUERY_PAGE
        self._lock = threading.Lock()
        self._org = _Org()
        self._faults = _Faults()
        self._tokens: set[str] = set()
        self._cursors: dict[str, list[dict[str, Any]]] = {}
        self._log: list[SimRequest] = []
        self._in_flight = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.app = Starlette(routes=self._routes())

    # lifecycle ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the simulator is not started")
        return int(self._socket.getsockname()[1])

    @property
    def login_url(self) -> str:
        """Both the login host and the instance: the token response points back here."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> SalesforceSim:
        sock = self._bind()
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="salesforce-sim", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Salesforce simulator did not start")
            time.sleep(0.01)
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread (the `python -m` entry point)."""
        sock = self._bind()
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="info", lifespan="off"))
        self._server.run(sockets=[sock])

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> SalesforceSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._socket = sock
        return sock

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
            self._org = _Org()
            self._faults = _Faults()
            self._tokens.clear()
            self._cursors.clear()
            self._log.clear()
        self.query_page_size = QUERY_PAGE

    def _seed(self, sobject: str, values: dict[str, Any]) -> str:
        raw = {"attributes": {"type": sobject}, **{k: v for k, v in values.items() if v is not None}}
        with self._lock:
            result = self._org.save("create", [raw], True, _Faults())[0]
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
            self._faults.hangs.extend([_Hang(seconds, then_apply, method, path_suffix)] * count)

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
            self._faults = _Faults()

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
        return [
            Route("/services/oauth2/token", self._token, methods=["POST"]),
            Route(f"{data}/composite/sobjects", self._api(self._collection), methods=["POST", "PATCH"]),
            Route(f"{data}/composite/sobjects/{{sobject}}", self._api(self._retrieve), methods=["GET"]),
            Route(
                f"{data}/composite/sobjects/{{sobject}}/{{ext_field}}",
                self._api(self._upsert),
                methods=["PATCH"],
            ),
            Route(f"{data}/query", self._api(self._query), methods=["GET"]),
            Route(f"{data}/query/{{cursor}}", self._api(self._query_more), methods=["GET"]),
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
        if form.get("client_id") != self.client_id:
            return refuse("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(form.get("client_secret", ""), self.client_secret):
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
            except _ApiError as error:
                response = error.response()
            finally:
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
                raise _ApiError(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable")
        with self._lock:
            failure = self._faults.failures.popleft() if self._faults.failures else None
        if failure is None:
            return
        status, retry_after = failure
        code, message = _STATUS_ERRORS.get(status, ("UNKNOWN_EXCEPTION", "An unexpected error occurred."))
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
        raise _ApiError(status, code, message, headers=headers)

    def _authorized(self, request: Request, handler: Callable[[Request, Any], Any], parsed: Any) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            valid = scheme.lower() in ("bearer", "oauth") and token in self._tokens
        if not valid:
            raise _ApiError(
                401, "INVALID_SESSION_ID", "Session expired or invalid", headers={"WWW-Authenticate": "Token"}
            )
        version = request.path_params["version"]
        if not re.fullmatch(r"\d{2,3}\.0", version) or float(version) < 42.0:
            raise _ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        result = handler(request, parsed)
        return result if isinstance(result, Response) else JSONResponse(result)

    # data API handlers (synchronous, under the lock) -------------------------------------------

    def _collection(self, request: Request, body: Any) -> Any:
        records, all_or_none = self._collection_body(body)
        op: Literal["create", "update"] = "create" if request.method == "POST" else "update"
        for raw in records:
            type_name = (raw.get("attributes") or {}).get("type") if isinstance(raw, dict) else None
            if type_name not in SCHEMA:
                raise _ApiError(400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
        with self._lock:
            return self._org.save(op, records, all_or_none, self._faults)

    def _upsert(self, request: Request, body: Any) -> Any:
        sobject = self._sobject(request.path_params["sobject"])
        if float(request.path_params["version"]) < 46.0:
            raise _ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        ext_field = sobject.canonical(request.path_params["ext_field"])
        if ext_field is None or not sobject.fields[ext_field].external_id:
            raise _ApiError(
                400,
                "INVALID_FIELD",
                f"Field name provided, {request.path_params['ext_field']} is not an External ID "
                f"or indexed field for {sobject.name}",
            )
        records, all_or_none = self._collection_body(body)
        for raw in records:
            if not isinstance(raw, dict) or (raw.get("attributes") or {}).get("type") != sobject.name:
                raise _ApiError(
                    400, "INVALID_TYPE", f"The list can contain objects only of type {sobject.name}"
                )
        with self._lock:
            return self._org.save("upsert", records, all_or_none, self._faults, ext_field)

    def _retrieve(self, request: Request, _body: Any) -> Any:
        sobject = self._sobject(request.path_params["sobject"])
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        names = [n for n in request.query_params.get("fields", "").split(",") if n]
        if not ids or not names:
            raise _ApiError(400, "MISSING_ARGUMENT", "ids and fields are required")
        if len(ids) > MAX_RECORDS:
            raise _ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        fields = [_field_of(sobject, n) for n in names]
        version = request.path_params["version"]
        results: list[dict[str, Any] | None] = []
        with self._lock:
            for record_id in ids:
                found = self._org.find(record_id)
                live = found is not None and found[0] is sobject and not found[1]["IsDeleted"]
                results.append(_shaped(sobject, found[1], fields, version) if live and found else None)
        return results

    def _query(self, request: Request, _body: Any) -> Any:
        text = request.query_params.get("q")
        if not text:
            raise _ApiError(400, "MALFORMED_QUERY", "unexpected end of query")
        soql = _SoqlParser(text).parse()
        with self._lock:
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
                raise _ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
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
            raise _ApiError(400, "JSON_PARSER_ERROR", "records: a list of sObjects is required")
        if len(body["records"]) > MAX_RECORDS:
            raise _ApiError(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        return body["records"], bool(body.get("allOrNone", False))

    @staticmethod
    def _sobject(name: str) -> _SObject:
        sobject = SCHEMA.get(name)
        if sobject is None:
            raise _ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return sobject

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Salesforce REST API simulator on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--client-id", default=os.environ.get("SALESFORCE_SIM_CLIENT_ID", "sim-client-id"))
    parser.add_argument(
        "--client-secret", default=os.environ.get("SALESFORCE_SIM_CLIENT_SECRET", "sim-client-secret")
    )
    parser.add_argument("--seed-contacts", type=int, default=0, help="create this many Contacts at start")
    args = parser.parse_args(argv)
    sim = SalesforceSim(
        client_id=args.client_id, client_secret=args.client_secret, host=args.host, port=args.port
    )
    for n in range(args.seed_contacts):
        print(sim.add_contact(last_name=f"Seeded {n}"), flush=True)
    print(f"Salesforce simulator on http://{args.host}:{args.port} (client id {args.client_id})", flush=True)
    sim.serve_forever()


if __name__ == "__main__":
    main()
