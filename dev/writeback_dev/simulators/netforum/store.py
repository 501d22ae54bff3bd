"""The simulated netFORUM database: customers, their emails and their messaging activity, the
columns xWeb exposes for them, the small GetQuery grammar, and facade validation.

Pure data and rules, no HTTP and no XML: the server turns `XWebError`s into soap:Faults. Callers
hold the simulator's lock.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from . import errors as E
from .errors import XWebError

Kind = Literal["guid", "text", "flag", "datetime"]
Row = dict[str, Any]
Reject = Callable[[str, Row], None]


@dataclass(frozen=True, slots=True)
class Column:
    kind: Kind = "text"
    length: int | None = None
    insert: bool = True
    update: bool = True


def _key(kind: Kind = "guid") -> Column:
    return Column(kind, insert=False, update=False)


# Lengths are our choice (netFORUM's column widths are not public); they make over-long values fault
# as SQL Server would, instead of being silently stored.
INDIVIDUAL: dict[str, Column] = {
    "cst_key": _key(),
    "ind_cst_key": _key(),
    "ind_first_name": Column("text", 50),
    "ind_last_name": Column("text", 50),
    "cst_no_email_flag": Column("flag"),
    "cst_eml_key": _key(),
    "eml_key": _key(),
    "eml_address": Column("text", 100),
    "eml_invalid_flag": Column("flag"),
    "eml_invalid_reason": Column("text", 255),
    "cst_add_date": _key("datetime"),
    "cst_change_date": _key("datetime"),
}
EMAIL: dict[str, Column] = {
    "eml_key": _key(),
    "eml_cst_key": _key(),
    "eml_address": Column("text", 100),
    "eml_invalid_flag": Column("flag"),
    "eml_invalid_reason": Column("text", 255),
    "eml_add_date": _key("datetime"),
    "eml_change_date": _key("datetime"),
}
MESSAGING_ACTIVITY: dict[str, Column] = {
    "cma_key": _key(),
    "cma_cst_key": Column("guid", update=False),
    "cma_eml_key": Column("guid"),
    "cma_eml_address": Column("text", 100),
    "cma_activity_date": Column("datetime"),
    "cma_activity_code": Column("text", 50),
    "cma_activity_subcode": Column("text", 50),
    "cma_message_id": Column("text", 50),
    "cma_message_name": Column("text", 255),
    "cma_recipient_id": Column("text", 50),
    "cma_activity_id": Column("text", 50),
    "cma_delete_flag": Column("flag", insert=False),
    "cma_add_date": _key("datetime"),
    "cma_add_user": _key("text"),
    "cma_change_date": _key("datetime"),
    "cma_change_user": _key("text"),
}
OBJECTS: dict[str, dict[str, Column]] = {
    "Individual": INDIVIDUAL,
    "Email": EMAIL,
    "CustomerMessagingActivity": MESSAGING_ACTIVITY,
}
FACADES = ("Individual", "CustomerMessagingActivity")
KEYS = {"Individual": "cst_key", "Email": "eml_key", "CustomerMessagingActivity": "cma_key"}


def object_name(name: str | None, *, facade: bool = False) -> str:
    """The canonical spelling of an object name (xWeb's lookup is case-insensitive)."""
    wanted = (name or "").strip().casefold()
    pool = FACADES if facade else tuple(OBJECTS)
    found = next((n for n in pool if n.casefold() == wanted), None)
    if found is None:
        raise XWebError(E.INVALID_OBJECT_NAME, f"Object '{name}' is not available to this xWeb user.")
    return found


# -- values -----------------------------------------------------------------------------------------

_GUID = re.compile(r"\{?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}?")
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?: (\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?)?")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?)?")
_FLAGS = {"1": True, "0": False, "true": True, "false": False}


def new_key() -> str:
    return str(uuid.uuid4())


def parse_guid(text: str) -> str | None:
    match = _GUID.fullmatch(text.strip())
    return match.group(1).lower() if match else None


def parse_date(text: str) -> datetime | None:
    """`MM/DD/YYYY[ HH:MM[:SS[.fff]]]` (xWeb's examples) or `YYYY-MM-DD[THH:MM:SS[.fff]]`; no
    offsets, since netFORUM dates are the site's local time."""
    text = text.strip()
    if match := _US_DATE.fullmatch(text):
        month, day, year, hour, minute, second, fraction = match.groups()
    elif match := _ISO_DATE.fullmatch(text):
        year, month, day, hour, minute, second, fraction = match.groups()
    else:
        return None
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro
        )
    except ValueError:
        return None


def parse_value(name: str, column: Column, text: str | None) -> Any:
    """A field's text from an oNode as the typed value stored; an empty element is NULL."""
    if text is None or text == "":
        return None
    if column.kind == "guid":
        if (guid := parse_guid(text)) is None:
            raise XWebError(E.INVALID_FIELD_VALUE, f"{name}: '{text}' is not a valid uniqueidentifier.")
        return guid
    if column.kind == "flag":
        if (flag := _FLAGS.get(text.strip().lower())) is None:
            raise XWebError(E.INVALID_FIELD_VALUE, f"{name}: '{text}' is not a valid flag (use 0 or 1).")
        return flag
    if column.kind == "datetime":
        if (when := parse_date(text)) is None:
            raise XWebError(
                E.INVALID_DATE_FORMAT,
                f"{name}: '{text}' is not a valid date (use MM/DD/YYYY HH:MM:SS.fff or YYYY-MM-DDTHH:MM:SS).",
            )
        return when
    if column.length is not None and len(text) > column.length:
        raise XWebError(
            E.STRING_TOO_LONG,
            f"{name}: String or binary data would be truncated ({len(text)} > {column.length} characters).",
        )
    return text


def render_value(value: Any) -> str | None:
    """How a stored value is written into result XML; dates as ISO 8601 with milliseconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    return str(value)


# -- GetQuery ---------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+)|(?P<op>=|\(|\)|,)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True, slots=True)
class Condition:
    column: str
    op: Literal["=", "IN", "IS NULL", "IS NOT NULL"]
    values: tuple[Any, ...] = ()

    def matches(self, row: Row) -> bool:
        actual = row.get(self.column)
        if self.op == "IS NULL":
            return actual is None
        if self.op == "IS NOT NULL":
            return actual is not None
        return actual is not None and any(_same(actual, wanted) for wanted in self.values)


def _same(actual: Any, wanted: Any) -> bool:
    """SQL Server's default collation: text compares case-insensitively."""
    if isinstance(actual, str) and isinstance(wanted, str):
        return actual.casefold() == wanted.casefold()
    return bool(actual == wanted)


class WhereParser:
    """`col = 'v'`, `col IN ('a', 'b')`, `col IS [NOT] NULL`, joined with AND. Literals are quoted
    strings ('' escapes a quote) or integers. Anything else is a fault, as a syntax error in the SQL
    xWeb builds would be."""

    def __init__(self, columns: dict[str, Column], text: str) -> None:
        self._columns, self._tokens, self._pos = columns, _tokenize(text), 0

    def parse(self) -> list[Condition]:
        if not self._tokens:
            return []
        conditions = [self._condition()]
        while self._accept("word", "AND"):
            conditions.append(self._condition())
        if self._pos < len(self._tokens):
            raise _syntax(self._tokens[self._pos][1])
        return conditions

    def _condition(self) -> Condition:
        name = column_of(self._columns, self._take("word"))
        if self._accept("op", "="):
            return Condition(name, "=", (self._literal(name),))
        if self._accept("word", "IN"):
            self._take("op", "(")
            values = [self._literal(name)]
            while self._accept("op", ","):
                values.append(self._literal(name))
            self._take("op", ")")
            return Condition(name, "IN", tuple(values))
        if self._accept("word", "IS"):
            negated = self._accept("word", "NOT")
            self._take("word", "NULL")
            return Condition(name, "IS NOT NULL" if negated else "IS NULL")
        raise _syntax(self._peek()[1])

    def _literal(self, name: str) -> Any:
        kind, text = self._peek()
        if kind not in ("string", "number"):
            raise _syntax(text)
        self._pos += 1
        value = text[1:-1].replace("''", "'") if kind == "string" else text
        return _coerce(self._columns[name], value)

    def _peek(self) -> tuple[str, str]:
        if self._pos >= len(self._tokens):
            raise XWebError(E.INVALID_WHERE_CLAUSE, "Incorrect syntax near the end of the WHERE clause.")
        return self._tokens[self._pos]

    def _accept(self, kind: str, value: str) -> bool:
        if self._pos < len(self._tokens):
            k, v = self._tokens[self._pos]
            if k == kind and v.upper() == value:
                self._pos += 1
                return True
        return False

    def _take(self, kind: str, value: str | None = None) -> str:
        k, v = self._peek()
        if k != kind or (value is not None and v.upper() != value):
            raise _syntax(v)
        self._pos += 1
        return v


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos, text = 0, (text or "").rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise _syntax(text[pos : pos + 20].strip())
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


def _syntax(near: str) -> XWebError:
    return XWebError(E.INVALID_WHERE_CLAUSE, f"Incorrect syntax near '{near}'.")


def _coerce(column: Column, text: str) -> Any:
    """A WHERE literal converted to the column's type, failing as SQL Server's conversion does."""
    if column.kind == "guid":
        if (guid := parse_guid(text)) is None:
            raise XWebError(
                E.INVALID_WHERE_CLAUSE,
                "Conversion failed when converting from a character string to uniqueidentifier.",
            )
        return guid
    if column.kind == "flag":
        if (flag := _FLAGS.get(text.strip().lower())) is None:
            raise XWebError(E.INVALID_WHERE_CLAUSE, f"Conversion failed when converting '{text}' to bit.")
        return flag
    if column.kind == "datetime":
        if (when := parse_date(text)) is None:
            raise XWebError(
                E.INVALID_WHERE_CLAUSE,
                "Conversion failed when converting date and/or time from character string.",
            )
        return when
    return text


def column_of(columns: dict[str, Column], name: str) -> str:
    canonical = next((c for c in columns if c.casefold() == name.strip().casefold()), None)
    if canonical is None:
        raise XWebError(E.INVALID_COLUMN, f"Invalid column name '{name.strip()}'.")
    return canonical


def parse_column_list(columns: dict[str, Column], text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",")]
    if any(n == "*" or n.endswith(".*") for n in names):
        raise XWebError(E.INVALID_COLUMN_LIST, "'*' is not a valid szColumnList; name the columns to return.")
    if not any(names):
        raise XWebError(E.INVALID_COLUMN_LIST, "szColumnList is required.")
    if not all(names):
        raise XWebError(E.INVALID_COLUMN_LIST, "szColumnList has an empty column name.")
    return [column_of(columns, n) for n in names]


def parse_order_by(columns: dict[str, Column], text: str | None) -> list[tuple[str, bool]]:
    """`col [ASC|DESC][, ...]` as (column, descending) pairs."""
    order: list[tuple[str, bool]] = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part and not (text or "").strip():
            continue
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
            raise XWebError(E.INVALID_ORDER_BY, f"Incorrect syntax in szOrderBy near '{part}'.")
        order.append((column_of(columns, words[0]), len(words) == 2 and words[1].upper() == "DESC"))
    return order


def sort_rows(rows: list[Row], order: list[tuple[str, bool]]) -> list[Row]:
    """Stable multi-key sort with SQL Server's NULLs-first ascending order."""
    for name, descending in reversed(order):
        rows.sort(key=lambda row: _sort_key(row.get(name)), reverse=descending)
    return rows


def _sort_key(value: Any) -> tuple[bool, Any]:
    if value is None:
        return (False, "")
    return (True, value.casefold() if isinstance(value, str) else value)


# -- the database -----------------------------------------------------------------------------------


class Database:
    """co_customer/co_individual (one dict per Individual), co_email and the messaging activity
    table, each keyed by GUID and kept in insertion order."""

    def __init__(self) -> None:
        self.customers: dict[str, Row] = {}
        self.emails: dict[str, Row] = {}
        self.activities: dict[str, Row] = {}
        self._seq = itertools.count(1)

    # seeding ------------------------------------------------------------------------------------

    def add_individual(self, first: str | None, last: str, email: str | None, now: datetime) -> str:
        cst_key = new_key()
        self.customers[cst_key] = {
            "cst_key": cst_key,
            "ind_first_name": first,
            "ind_last_name": last,
            "cst_no_email_flag": False,
            "cst_eml_key": None,
            "cst_add_date": now,
            "cst_change_date": None,
        }
        if email:
            self.add_email(cst_key, email, now, primary=True)
        return cst_key

    def add_email(self, cst_key: str, address: str, now: datetime, *, primary: bool = False) -> str:
        customer = self.customers[cst_key]
        eml_key = new_key()
        self.emails[eml_key] = {
            "eml_key": eml_key,
            "eml_cst_key": cst_key,
            "eml_address": address,
            "eml_invalid_flag": False,
            "eml_invalid_reason": None,
            "eml_add_date": now,
            "eml_change_date": None,
        }
        if primary or customer["cst_eml_key"] is None:
            customer["cst_eml_key"] = eml_key
        return eml_key

    # views --------------------------------------------------------------------------------------

    def individual(self, cst_key: str) -> Row | None:
        """The Individual as GetQuery and the facade show it: customer plus its primary email."""
        customer = self.customers.get(cst_key)
        if customer is None:
            return None
        email = self.emails.get(customer["cst_eml_key"] or "") or {}
        return {
            "cst_key": cst_key,
            "ind_cst_key": cst_key,
            "ind_first_name": customer["ind_first_name"],
            "ind_last_name": customer["ind_last_name"],
            "cst_no_email_flag": customer["cst_no_email_flag"],
            "cst_eml_key": customer["cst_eml_key"],
            "eml_key": email.get("eml_key"),
            "eml_address": email.get("eml_address"),
            "eml_invalid_flag": email.get("eml_invalid_flag"),
            "eml_invalid_reason": email.get("eml_invalid_reason"),
            "cst_add_date": customer["cst_add_date"],
            "cst_change_date": customer["cst_change_date"],
        }

    def activity(self, cma_key: str, *, include_deleted: bool = False) -> Row | None:
        row = self.activities.get(cma_key)
        if row is None or (row["cma_delete_flag"] and not include_deleted):
            return None
        return {k: v for k, v in row.items() if not k.startswith("_")}

    def rows(self, obj: str) -> list[Row]:
        """Every live row of an object, insertion-ordered; soft-deleted activity is left out."""
        if obj == "Individual":
            return [row for key in self.customers if (row := self.individual(key)) is not None]
        if obj == "Email":
            return [dict(row) for row in self.emails.values()]
        return [row for key in self.activities if (row := self.activity(key)) is not None]

    def get(self, obj: str, key: str) -> Row:
        guid = parse_guid(key or "")
        row = None
        if guid is not None:
            row = self.individual(guid) if obj == "Individual" else self.activity(guid)
        if row is None:
            raise XWebError(E.RECORD_NOT_FOUND, f"No {obj} record with key '{key}'.")
        return row

    def query(
        self, obj: str, column_list: str | None, where: str | None, order_by: str | None
    ) -> tuple[list[str], list[Row]]:
        columns = OBJECTS[obj]
        names = parse_column_list(columns, column_list)
        conditions = WhereParser(columns, where or "").parse()
        order = parse_order_by(columns, order_by)
        rows = [r for r in self.rows(obj) if all(c.matches(r) for c in conditions)]
        return names, [{n: r.get(n) for n in names} for r in sort_rows(rows, order)]

    # facade writes --------------------------------------------------------------------------------

    def insert(
        self, obj: str, objects: list[list[tuple[str, str | None]]], now: datetime, user: str, reject: Reject
    ) -> list[Row]:
        """All or nothing: every object is validated before any is stored, as one transaction."""
        prepared = []
        for index, fields in enumerate(objects, start=1):
            try:
                values = _typed(obj, fields, current=None)
                prepared.append(
                    self._prepare_individual(values)
                    if obj == "Individual"
                    else self._prepare_activity(values)
                )
                reject(obj, prepared[-1])
            except XWebError as error:
                raise _numbered(error, obj, index, len(objects)) from None
        return [
            self._store_individual(v, now) if obj == "Individual" else self._store_activity(v, now, user)
            for v in prepared
        ]

    def update(
        self,
        obj: str,
        key: str,
        fields: list[tuple[str, str | None]],
        now: datetime,
        user: str,
        reject: Reject,
    ) -> Row:
        current = self.get(obj, key)
        values = _typed(obj, fields, current=current)
        merged = {**current, **values}
        if obj == "Individual":
            self._check_individual(merged)
        else:
            self._check_activity(merged)
        reject(obj, merged)
        if obj == "Individual":
            return self._apply_individual(current["cst_key"], values, now)
        return self._apply_activity(current["cma_key"], values, now, user)

    def _prepare_individual(self, values: Row) -> Row:
        self._check_individual(values)
        return values

    def _check_individual(self, values: Row) -> None:
        if not values.get("ind_last_name"):
            raise XWebError(E.REQUIRED_FIELD_MISSING, "ind_last_name is required.")
        has_flags = values.get("eml_invalid_flag") is not None or values.get("eml_invalid_reason") is not None
        if has_flags and not values.get("eml_address"):
            raise XWebError(
                E.INVALID_FIELD_VALUE,
                "eml_invalid_flag/eml_invalid_reason need a primary email (eml_address).",
            )

    def _store_individual(self, values: Row, now: datetime) -> Row:
        cst_key = self.add_individual(values.get("ind_first_name"), values["ind_last_name"], None, now)
        return self._apply_individual(cst_key, values, now, stamp=False)

    def _apply_individual(self, cst_key: str, values: Row, now: datetime, *, stamp: bool = True) -> Row:
        customer = self.customers[cst_key]
        for name in ("ind_first_name", "ind_last_name", "cst_no_email_flag"):
            if name in values:
                customer[name] = bool(values[name]) if name == "cst_no_email_flag" else values[name]
        email_values = {k: v for k, v in values.items() if k.startswith("eml_")}
        if email_values:
            if customer["cst_eml_key"] is None and email_values.get("eml_address"):
                self.add_email(cst_key, email_values["eml_address"], now, primary=True)
            email = self.emails[customer["cst_eml_key"]]
            for name, value in email_values.items():
                email[name] = bool(value) if name == "eml_invalid_flag" else value
            if stamp:
                email["eml_change_date"] = now
        if stamp:
            customer["cst_change_date"] = now
        return self.individual(cst_key) or {}

    def _prepare_activity(self, values: Row) -> Row:
        self._check_activity(values)
        if values.get("cma_eml_key") is None:
            address = (values.get("cma_eml_address") or "").casefold()
            values["cma_eml_key"] = next(
                (
                    k
                    for k, e in self.emails.items()
                    if e["eml_cst_key"] == values["cma_cst_key"]
                    and (e["eml_address"] or "").casefold() == address
                ),
                None,
            )
        return values

    def _check_activity(self, values: Row) -> None:
        for name in ("cma_cst_key", "cma_activity_date"):
            if values.get(name) is None:
                raise XWebError(E.REQUIRED_FIELD_MISSING, f"{name} is required.")
        if values.get("cma_eml_key") is None and not values.get("cma_eml_address"):
            raise XWebError(E.REQUIRED_FIELD_MISSING, "cma_eml_key or cma_eml_address is required.")
        if values["cma_cst_key"] not in self.customers:
            raise XWebError(
                E.INVALID_CUSTOMER_KEY, f"cma_cst_key '{values['cma_cst_key']}' does not match a customer."
            )
        eml_key = values.get("cma_eml_key")
        if eml_key is not None:
            email = self.emails.get(eml_key)
            if email is None or email["eml_cst_key"] != values["cma_cst_key"]:
                raise XWebError(
                    E.INVALID_FIELD_VALUE,
                    f"cma_eml_key '{eml_key}' is not an email of customer '{values['cma_cst_key']}'.",
                )
            if not values.get("cma_eml_address"):
                values["cma_eml_address"] = email["eml_address"]

    def _store_activity(self, values: Row, now: datetime, user: str) -> Row:
        cma_key = new_key()
        row: Row = {name: None for name in MESSAGING_ACTIVITY}
        row.update(values)
        row.update(
            cma_key=cma_key, cma_delete_flag=False, cma_add_date=now, cma_add_user=user, _seq=next(self._seq)
        )
        self.activities[cma_key] = row
        return self.activity(cma_key) or {}

    def _apply_activity(self, cma_key: str, values: Row, now: datetime, user: str) -> Row:
        row = self.activities[cma_key]
        row.update(values)
        row.update(cma_change_date=now, cma_change_user=user)
        return self.activity(cma_key, include_deleted=True) or {}

    def correspondence(self, cst_key: str, *, include_deleted: bool = False) -> list[Row]:
        """The Individual's Messaging Activity list on the Correspondence tab: oldest first."""
        guid = parse_guid(cst_key) or cst_key
        rows = [
            r
            for r in self.activities.values()
            if r["cma_cst_key"] == guid and (include_deleted or not r["cma_delete_flag"])
        ]
        rows.sort(key=lambda r: (r["cma_activity_date"], r["_seq"]))
        return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


def _typed(obj: str, fields: Iterable[tuple[str, str | None]], *, current: Row | None) -> Row:
    """An oNode object's fields checked against the facade and converted to stored values."""
    columns, values = OBJECTS[obj], {}
    for raw_name, text in fields:
        name = next((c for c in columns if c.casefold() == raw_name.casefold()), None)
        if name is None:
            raise XWebError(E.INVALID_COLUMN, f"Invalid column name '{raw_name}' for object {obj}.")
        if name in values:
            raise XWebError(E.INVALID_NODE, f"{name} appears more than once.")
        value = parse_value(name, columns[name], text)
        writable = columns[name].insert if current is None else columns[name].update
        if not writable and (current is None or value != current.get(name)):
            raise XWebError(
                E.READ_ONLY_COLUMN,
                f"{name} cannot be set by {'Insert' if current is None else 'Update'}FacadeObject.",
            )
        if writable:
            values[name] = value
    return values


def _numbered(error: XWebError, obj: str, index: int, total: int) -> XWebError:
    """Which object of a multi-object oNode failed: the whole call is rolled back either way."""
    if total == 1:
        return error
    return XWebError(
        error.code, f"{obj}Object {index} of {total}: {error.message}", faultcode=error.faultcode
    )
