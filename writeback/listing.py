"""What the operator commands print: the writeback list, one writeback, and the stored settings.

Plain functions from ledger rows (the dicts `Ledger.list` and `Ledger.get` return) and settings
models to rich renderables, text and JSON; the CLI only opens the ledger and prints their result.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from writeback.ledger.rows import Status, WritebackClass
from writeback.schedules import (
    DailySchedule,
    EveryNDaysSchedule,
    HourlySchedule,
    IntervalSchedule,
    ManualSchedule,
    Schedule,
    WeeklySchedule,
)
from writeback.settings import Connection, Settings

ERROR_MESSAGE_WIDTH = 60
STATUS_STYLES = {
    Status.PENDING.value: "yellow",
    Status.IN_FLIGHT.value: "cyan",
    Status.COMPLETED.value: "green",
    Status.FAILED.value: "bold red",
}

# (column heading, row key) in the order `writeback list` shows them
LIST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("account", "account_id"),
    ("connection", "connection_id"),
    ("class", "wb_class"),
    ("event type", "event_type"),
    ("recipient_key", "recipient_key"),
    ("occurred_at", "occurred_at"),
    ("status", "status"),
    ("attempts", "attempts"),
    ("error code", "error_code"),
    ("error message", "error_message"),
    ("updated_at", "updated_at"),
)


# the writeback list ---------------------------------------------------------------------------


def row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ledger row as JSON-ready data: datetimes as ISO-8601 with their UTC offset."""
    return {key: _jsonable(value) for key, value in row.items()}


def rows_json(rows: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps([row_json(r) for r in rows], indent=2)


def rows_table(rows: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(show_lines=False, header_style="bold")
    for heading, key in LIST_COLUMNS:
        table.add_column(
            heading,
            no_wrap=key in ("id", "recipient_key", "occurred_at", "updated_at"),
            justify="right" if key == "attempts" else "left",
        )
    for row in rows:
        cells = []
        for _, key in LIST_COLUMNS:
            value = row.get(key)
            text = truncate(value, ERROR_MESSAGE_WIDTH) if key == "error_message" else cell(value)
            # Text, not markup: error messages and keys may hold "[...]"
            cells.append(Text(text, style=STATUS_STYLES.get(text, "") if key == "status" else ""))
        table.add_row(*cells)
    return table


def row_detail(row: Mapping[str, Any]) -> str:
    """Every field of one writeback, then its payload pretty-printed (`writeback show`)."""
    fields = {k: v for k, v in row.items() if k != "payload"}
    width = max(len(k) for k in fields)
    indent = "\n" + " " * (width + 2)  # multi-line values (CRM error bodies) stay in their column
    lines = [
        f"{key.ljust(width)}  {indent.join((cell(value) or '-').splitlines())}"
        for key, value in fields.items()
    ]
    lines.append("payload:")
    lines.append(json.dumps(_jsonable(row.get("payload")), indent=2, sort_keys=True))
    return "\n".join(lines)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def truncate(value: Any, width: int) -> str:
    text = " ".join(cell(value).split())  # one line: stack traces and CRM bodies span several
    return text if len(text) <= width else text[: width - 1] + "…"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# settings -------------------------------------------------------------------------------------


def describe_schedule(schedule: Schedule) -> str:
    if isinstance(schedule, IntervalSchedule):
        return f"every {schedule.minutes} minutes"
    if isinstance(schedule, ManualSchedule):
        return "manual (writeback send-activity)"
    if isinstance(schedule, HourlySchedule):
        return f"hourly at :{schedule.minute:02d} ({schedule.tz})"
    at = schedule.at.strftime("%H:%M")
    if isinstance(schedule, DailySchedule):
        return f"daily at {at} ({schedule.tz})"
    if isinstance(schedule, WeeklySchedule):
        return f"weekly on {schedule.day} at {at} ({schedule.tz})"
    assert isinstance(schedule, EveryNDaysSchedule)
    return f"every {schedule.days} days at {at} from {schedule.anchor} ({schedule.tz})"


def mailing_activity(connection: Connection) -> str:
    """The optional types that are on, and the mailings excluded from them."""
    types = ", ".join(sorted(connection.mailing_activity())) or "-"
    excluded = sorted(connection.writebacks.excluded_mailings)
    return f"{types} (not for mailings {', '.join(excluded)})" if excluded else types


def settings_summary(settings: Settings) -> str:
    """Accounts, connections per kind, and each connection's schedules, as readable lines."""
    connections = [c for a in settings.accounts for c in a.connections]
    kinds = Counter(str(c.kind) for c in connections)
    per_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
    lines = [
        f"{_plural(len(settings.accounts), 'account')}, "
        f"{_plural(len(connections), 'connection')}" + (f" ({per_kind})" if per_kind else "")
    ]
    for account in settings.accounts:
        name = f" {account.name!r}" if account.name else ""
        lines.append(f"account {account.id}{name} ({account.time_zone})")
        for connection in account.connections:
            state = "enabled" if connection.enabled else "disabled"
            lines.append(f"  connection {connection.id}: {connection.kind}, {state}")
            lines.append(f"    mailing activity: {mailing_activity(connection)}")
            for wb_class in WritebackClass:
                if wb_class in connection.schedules:
                    schedule = describe_schedule(connection.schedule(wb_class))
                    lines.append(f"    {wb_class} schedule: {schedule}")
    return "\n".join(lines)


def settings_table(settings: Settings) -> Table:
    table = Table(header_style="bold")
    for heading in ("account", "time zone", "connection", "kind", "enabled", "mailing activity"):
        table.add_column(heading)
    for wb_class in WritebackClass:
        table.add_column(f"{wb_class} schedule")
    for account in settings.accounts:
        if not account.connections:
            table.add_row(account.id, account.time_zone, "-", "", "", "", *("" for _ in WritebackClass))
        for connection in account.connections:
            table.add_row(
                account.id,
                account.time_zone,
                connection.id,
                str(connection.kind),
                "yes" if connection.enabled else Text("no", style="red"),
                mailing_activity(connection),
                *(
                    describe_schedule(connection.schedule(c)) if c in connection.schedules else "-"
                    for c in WritebackClass
                ),
            )
    return table


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
