"""The SOQL the simulator understands: a small recursive-descent parser and row matching.

Anything outside the shapes the package docstring lists is `MALFORMED_QUERY`, as an org would
say for a real syntax error, so a client that leans on an unsupported feature finds out here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ApiError
from .ids import id18
from .schema import SCHEMA, FieldSpec, SObjectType

_SOQL_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.)*')|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<op>!=|=|\(|\)|,)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str  # "=" | "!=" | "IN" | "LIKE"
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Ordering:
    field: str
    descending: bool = False
    nulls_last: bool = False  # SOQL sorts nulls first unless told NULLS LAST, in either direction


@dataclass(frozen=True, slots=True)
class Soql:
    fields: list[str]
    sobject: SObjectType
    where: list[Condition]
    limit: int | None
    order_by: tuple[Ordering, ...] = ()
    count: bool = False  # SELECT COUNT(): totalSize only, no records


class SoqlParser:
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
    def _malformed(message: str) -> ApiError:
        return ApiError(400, "MALFORMED_QUERY", message)

    def parse(self) -> Soql:
        self._keyword("SELECT")
        count = self._count()
        names: list[str] = []
        if not count:
            names.append(self._word())
            while self._accept("op", ","):
                names.append(self._word())
        self._keyword("FROM")
        type_name = self._word()
        sobject = SCHEMA.get(next((n for n in SCHEMA if n.lower() == type_name.lower()), ""))
        if sobject is None:
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
        where: list[Condition] = []
        if self._accept("word", "WHERE"):
            where.append(self._condition(sobject))
            while self._accept("word", "AND"):
                where.append(self._condition(sobject))
        order_by: list[Ordering] = []
        if self._accept("word", "ORDER"):
            if count:
                raise self._malformed("ORDER BY not allowed in a COUNT() query")
            self._keyword("BY")
            order_by.append(self._ordering(sobject))
            while self._accept("op", ","):
                order_by.append(self._ordering(sobject))
        limit = None
        if self._accept("word", "LIMIT"):
            limit = int(self._take("number"))
        if self._pos != len(self._tokens):
            raise self._malformed(f"unexpected token: '{self._tokens[self._pos][1]}'")
        return Soql([field_of(sobject, n) for n in names], sobject, where, limit, tuple(order_by), count)

    def _count(self) -> bool:
        """`COUNT()` as the whole select list (the record-count form, not `COUNT(field)`)."""
        kind, value = self._peek()
        if kind != "word" or value.upper() != "COUNT":
            return False
        if self._pos + 1 >= len(self._tokens) or self._tokens[self._pos + 1] != ("op", "("):
            return False  # a field that happens to be called Count
        self._pos += 2
        self._take("op", ")")
        return True

    def _ordering(self, sobject: SObjectType) -> Ordering:
        name = field_of(sobject, self._word())
        if sobject.fields[name].kind == "textarea":
            raise ApiError(400, "INVALID_FIELD", f"field '{name}' can not be sorted in a query call")
        descending = self._accept("word", "DESC")
        if not descending:
            self._accept("word", "ASC")
        nulls_last = False
        if self._accept("word", "NULLS"):
            if self._accept("word", "LAST"):
                nulls_last = True
            else:
                self._keyword("FIRST")
        return Ordering(name, descending, nulls_last)

    def _condition(self, sobject: SObjectType) -> Condition:
        name = field_of(sobject, self._word())
        if sobject.fields[name].kind == "textarea":
            raise ApiError(400, "INVALID_FIELD", f"field '{name}' can not be filtered in a query call")
        if self._accept("op", "="):
            return Condition(name, "=", (self._literal(),))
        if self._accept("op", "!="):
            return Condition(name, "!=", (self._literal(),))
        if self._accept("word", "LIKE"):
            return Condition(name, "LIKE", (_unquote(self._take("string")),))
        self._keyword("IN")
        self._take("op", "(")
        values = [self._literal()]
        while self._accept("op", ","):
            values.append(self._literal())
        self._take("op", ")")
        return Condition(name, "IN", tuple(values))

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


def field_of(sobject: SObjectType, name: str) -> str:
    canonical = sobject.canonical(name)
    if canonical is None:
        raise ApiError(
            400,
            "INVALID_FIELD",
            f"No such column '{name}' on entity '{sobject.name}'. If you are attempting to use a "
            "custom field, be sure to append the '__c' after the custom field name.",
        )
    return canonical


def _like(pattern: str) -> re.Pattern[str]:
    parts = (".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def same_value(spec: FieldSpec, actual: Any, wanted: Any) -> bool:
    if spec.kind in ("id", "reference"):
        return actual is not None and isinstance(wanted, str) and id18(wanted) == actual
    if isinstance(actual, str) and isinstance(wanted, str):
        return actual.casefold() == wanted.casefold()
    return bool(actual == wanted)


def sort_rows(
    sobject: SObjectType, rows: list[dict[str, Any]], order_by: tuple[Ordering, ...]
) -> list[dict[str, Any]]:
    """Rows in ORDER BY order: text compared case-insensitively (ids as they are), nulls first
    unless NULLS LAST. Stable sorts from the last key to the first, so ties fall to later keys
    and then to insertion order."""
    ordered = list(rows)
    for key in reversed(order_by):
        fold = sobject.fields[key.field].kind not in ("id", "reference")
        present = [r for r in ordered if r.get(key.field) is not None]
        missing = [r for r in ordered if r.get(key.field) is None]
        present.sort(
            key=lambda r: r[key.field].casefold() if fold and isinstance(r[key.field], str) else r[key.field],
            reverse=key.descending,
        )
        ordered = present + missing if key.nulls_last else missing + present
    return ordered


def matches(sobject: SObjectType, record: dict[str, Any], cond: Condition) -> bool:
    spec, actual = sobject.fields[cond.field], record.get(cond.field)
    if cond.op == "LIKE":
        return actual is not None and bool(_like(cond.values[0]).fullmatch(str(actual)))
    hit = any(same_value(spec, actual, wanted) for wanted in cond.values)
    return hit if cond.op in ("=", "IN") else not hit
