"""The org's data: records per sObject, DML with per-record results, and queries.

Not thread-safe on its own: the server holds its lock around every call.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from .errors import ROLLED_BACK, RecordError
from .ids import id18
from .schema import PREFIXES, SCHEMA, FieldSpec, SObjectType
from .soql import Soql, matches, same_value, sort_rows

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def now_sf() -> str:
    """Salesforce's dateTime rendering: 2026-03-08T14:30:00.000+0000."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


@dataclass(frozen=True)
class Hang:
    seconds: float
    then_apply: bool
    method: str | None
    path_suffix: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_suffix is None or path.endswith(self.path_suffix)
        )


@dataclass(slots=True)
class Faults:
    failures: deque[tuple[int, float | None]] = field(default_factory=deque)
    hangs: list[Hang] = field(default_factory=list)
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


class Org:
    """All rows of one simulated org, insertion-ordered per object."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in SCHEMA}
        self._counter = itertools.count(1)
        # (object, text field) -> casefolded value -> rows holding it, in the order they took it;
        # built on first use and kept current by inserts and updates (a rollback drops it), so an
        # upsert reads a table once in the org's life, not once per call or twice per record
        self._by_value: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}

    def _holders(self, sobject: SObjectType, field: str, value: str) -> list[dict[str, Any]]:
        index = self._by_value.get((sobject.name, field))
        if index is None:
            index = self._by_value[(sobject.name, field)] = {}
            for row in self.tables[sobject.name].values():
                if isinstance(row.get(field), str):
                    index.setdefault(row[field].casefold(), []).append(row)
        return index.get(value.casefold(), [])

    def _indexed(self, sobject_name: str, row: dict[str, Any], changes: dict[str, Any]) -> None:
        for (name, column), index in self._by_value.items():
            if name != sobject_name or column not in changes:
                continue
            before = row.get(column)
            if isinstance(before, str) and row in index.get(before.casefold(), []):
                index[before.casefold()].remove(row)
            if isinstance(changes[column], str):
                index.setdefault(changes[column].casefold(), []).append(row)

    def new_id(self, sobject: SObjectType) -> str:
        n, digits = next(self._counter), ""
        for _ in range(9):
            n, r = divmod(n, 62)
            digits = _BASE62[r] + digits
        return id18(f"{sobject.prefix}Hs0{digits}") or ""

    def find(self, record_id: str) -> tuple[SObjectType, dict[str, Any]] | None:
        canonical = id18(record_id)
        name = PREFIXES.get(canonical[:3]) if canonical else None
        if canonical is None or name is None or canonical not in self.tables[name]:
            return None
        return SCHEMA[name], self.tables[name][canonical]

    # DML ---------------------------------------------------------------------------------------

    def save(
        self,
        op: Literal["create", "update", "upsert"],
        records: list[dict[str, Any]],
        all_or_none: bool,
        faults: Faults,
        ext_field: str | None = None,
    ) -> list[dict[str, Any]]:
        undo: list[tuple[str, str, dict[str, Any] | None]] = []
        duplicates = self._duplicate_external_ids(records, ext_field) if ext_field else set()
        results = []
        for raw in records:
            try:
                if ext_field and raw.get(ext_field) in duplicates:
                    raise RecordError(
                        "DUPLICATE_EXTERNAL_ID",
                        f"Duplicate external id specified: {raw.get(ext_field)}",
                        [ext_field],
                    )
                results.append(self._save_one(op, raw, faults, undo, ext_field))
            except RecordError as failure:
                result: dict[str, Any] = {"success": False, "errors": [failure.error]}
                if op == "update" and isinstance(raw.get("Id"), str):
                    result = {"id": raw["Id"], **result}
                results.append(result)
        if all_or_none and not all(r["success"] for r in results):
            self._by_value.clear()  # the rows restored below are copies, not the indexed ones
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
                    "errors": [dict(ROLLED_BACK)],
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
        faults: Faults,
        undo: list[tuple[str, str, dict[str, Any] | None]],
        ext_field: str | None,
    ) -> dict[str, Any]:
        sobject = SCHEMA[raw["attributes"]["type"]]
        values = self._canonical_values(sobject, raw)
        self._check_faults(sobject, values, faults)
        if op == "create":
            if "Id" in values:
                raise RecordError("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            new_id = self._insert(sobject, values, undo)
            return {"id": new_id, "success": True, "errors": []}
        if op == "update":
            record = self._target_of_update(sobject, values.pop("Id", None))
            self._update(sobject, record, values, undo)
            return {"id": record["Id"], "success": True, "errors": []}
        assert ext_field is not None
        if "Id" in values:
            raise RecordError(
                "INVALID_FIELD", "Upsert with sObject Collections takes external ids, not record ids", ["Id"]
            )
        key = values.get(ext_field)
        if key in (None, ""):
            raise RecordError("MISSING_ARGUMENT", f"{ext_field} not specified", [ext_field])
        spec = sobject.fields[ext_field]
        candidates = (
            self._holders(sobject, ext_field, key)
            if spec.kind not in ("id", "reference") and isinstance(key, str)
            else self.tables[sobject.name].values()
        )
        match = next(
            (r for r in candidates if not r["IsDeleted"] and same_value(spec, r.get(ext_field), key)),
            None,
        )
        if match is None:
            return {"id": self._insert(sobject, values, undo), "success": True, "errors": [], "created": True}
        self._update(sobject, match, values, undo)
        return {"id": match["Id"], "success": True, "errors": [], "created": False}

    @staticmethod
    def _canonical_values(sobject: SObjectType, raw: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in raw.items():
            if name == "attributes":
                continue
            canonical = sobject.canonical(name)
            if canonical is None:
                raise RecordError(
                    "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject.name}", [name]
                )
            values[canonical] = value
        return values

    @staticmethod
    def _check_faults(sobject: SObjectType, values: dict[str, Any], faults: Faults) -> None:
        if faults.lock_records > 0:
            faults.lock_records -= 1
            raise RecordError(
                "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records", []
            )
        referenced = {
            canonical
            for n, v in values.items()
            if sobject.fields[n].kind in ("id", "reference") and (canonical := id18(v)) is not None
        }
        for record_id in referenced & faults.rejected.keys():
            code, message = faults.rejected[record_id]
            raise RecordError(code, message, [])

    def _target_of_update(self, sobject: SObjectType, record_id: Any) -> dict[str, Any]:
        if not record_id:
            raise RecordError("MISSING_ARGUMENT", "Id not specified in an update call", [])
        canonical = id18(record_id)
        if canonical is None or canonical[:3] != sobject.prefix:
            raise RecordError(
                "MALFORMED_ID", f"{sobject.name} ID: id value of incorrect type: {record_id}", ["Id"]
            )
        record = self.tables[sobject.name].get(canonical)
        if record is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        if record["IsDeleted"]:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [])
        return record

    def _insert(
        self, sobject: SObjectType, values: dict[str, Any], undo: list[tuple[str, str, dict[str, Any] | None]]
    ) -> str:
        row = {name: spec.default for name, spec in sobject.fields.items()}
        row.update(self._validated(sobject, values, creating=True, own_id=None))
        missing = [n for n, spec in sobject.fields.items() if spec.required and row.get(n) in (None, "")]
        if missing:
            raise RecordError(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        now = now_sf()
        row.update(
            Id=self.new_id(sobject),
            IsDeleted=False,
            CreatedDate=now,
            LastModifiedDate=now,
            SystemModstamp=now,
        )
        record_id: str = row["Id"]
        self._indexed(sobject.name, row, row)
        self.tables[sobject.name][record_id] = row
        undo.append((sobject.name, record_id, None))
        return record_id

    def _update(
        self,
        sobject: SObjectType,
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
            raise RecordError(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(emptied)}]", emptied
            )
        undo.append((sobject.name, record["Id"], dict(record)))
        self._indexed(sobject.name, record, changes)
        now = now_sf()
        record.update(changes, LastModifiedDate=now, SystemModstamp=now)

    def _validated(
        self, sobject: SObjectType, values: dict[str, Any], *, creating: bool, own_id: str | None
    ) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        for name, value in values.items():
            spec = sobject.fields[name]
            if not (spec.createable if creating else spec.updateable):
                raise RecordError(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {name}. Please check the security settings of this field.",
                    [name],
                )
            clean[name] = self._validated_value(sobject, name, spec, value, own_id)
        return clean

    def _validated_value(
        self, sobject: SObjectType, name: str, spec: FieldSpec, value: Any, own_id: str | None
    ) -> Any:
        if value is None:
            return None
        if spec.kind == "boolean":
            if not isinstance(value, bool):
                raise RecordError(
                    "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{name}: value not of required type: {value}", [name]
                )
            return value
        if spec.kind == "date":
            try:
                return date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise RecordError(
                    "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{name}: value not of required type: {value}", [name]
                ) from None
        if spec.kind == "reference":
            return self._reference(name, spec, value)
        text = str(value)
        if spec.length is not None and len(text) > spec.length:
            raise RecordError(
                "STRING_TOO_LONG", f"{name}: data value too large (max length={spec.length})", [name]
            )
        if spec.unique and text:
            clash = next(
                (
                    r
                    for r in self._holders(sobject, name, text)
                    if r["Id"] != own_id
                    and isinstance(r.get(name), str)
                    and r[name].casefold() == text.casefold()
                ),
                None,
            )
            if clash is not None:
                raise RecordError(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {name} duplicates value on record with id: {clash['Id']}",
                    [],
                )
        return text

    def _reference(self, name: str, spec: FieldSpec, value: Any) -> str:
        canonical = id18(value) if isinstance(value, str) else None
        if canonical is None:
            raise RecordError("MALFORMED_ID", f"{name}: id value of incorrect type: {value}", [name])
        target_type = PREFIXES.get(canonical[:3])
        if target_type not in spec.references:
            raise RecordError(
                "FIELD_INTEGRITY_EXCEPTION", f"{name}: id value of incorrect type: {value}", [name]
            )
        target = self.tables[target_type].get(canonical)
        if target is None:
            raise RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name])
        if target["IsDeleted"]:
            raise RecordError("ENTITY_IS_DELETED", "entity is deleted", [name])
        return canonical

    # reads -------------------------------------------------------------------------------------

    def query(self, soql: Soql) -> list[dict[str, Any]]:
        rows = [
            r
            for r in self.tables[soql.sobject.name].values()
            if not r["IsDeleted"] and all(matches(soql.sobject, r, c) for c in soql.where)
        ]
        rows = sort_rows(soql.sobject, rows, soql.order_by)
        return rows[: soql.limit] if soql.limit is not None else rows
