"""How the CLI shows a sync and the target groups: tables for people, JSON for scripts. Group
names are the community's list names, which operators chose; no member or address is shown."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich.table import Table

from writeback.adapters.community.groups import Group
from writeback.adapters.community.mapping import CAUSES, FOLDER
from writeback.adapters.community.sync import SyncReport

_CAUSE_TITLES = {
    "unsubscribed": "unsubscribed",
    "invalid_email": "invalid email",
    "duplicate_email": "duplicate email",
    "no_remote_id": "no Remote ID",
}


def sync_table(report: SyncReport) -> Table:
    table = Table(title=f"{report.connection_id}: {FOLDER}", title_justify="left")
    for column in ("target group", "community members", "subscribers", *(_CAUSE_TITLES[str(c)] for c in CAUSES), "added", "removed"):
        table.add_column(column, justify="left" if column == "target group" else "right")
    for group in report.groups:
        table.add_row(
            group.group_name, str(group.members), str(group.subscribers),
            *(str(group.causes[str(c)]) for c in CAUSES), str(group.added), str(group.removed),
        )  # fmt: skip
    return table


def sync_summary(report: SyncReport) -> str:
    made = f'folder "{FOLDER}" created; ' if report.folder_created else ""
    return f"{made}{len(report.groups)} target groups synced, {report.published} membership events published"


def groups_table(groups: list[Group]) -> Table:
    table = Table(title=FOLDER, title_justify="left")
    for column in ("connection", "target group", "list", "last sync", "members", "subscribers", "status", "action"):
        table.add_column(column, justify="right" if column in ("members", "subscribers") else "left")
    for g in groups:
        status = g.status if g.in_community else f"{g.status}, not in community"
        table.add_row(
            g.connection_id, g.group_name, g.list_name,
            g.last_synced_at.strftime("%Y-%m-%d %H:%M:%S UTC") if g.last_synced_at else "-",
            "-" if g.members is None else str(g.members), "-" if g.subscribers is None else str(g.subscribers),
            status + (f" (last error: {g.last_error})" if g.last_error else ""), g.action,
        )  # fmt: skip
    return table


def group_json(g: Group) -> dict[str, Any]:
    return {**asdict(g), "folder": FOLDER, "status": g.status, "action": g.action}


def sync_json(report: SyncReport) -> dict[str, Any]:
    return asdict(report)
