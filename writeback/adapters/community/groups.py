"""Target groups in the ledger: the folder, groups, memberships, the outbox of membership events
and running campaigns (tables in `writeback/ledger/tables.py`, migration 0005).

A sync's whole change to one connection is one transaction (`apply`): memberships, the group's
counts and the events that describe the change commit together or not at all. The events wait
in the outbox until the broker acknowledges them, so a kill between commit and publish loses
none: the next sync (or on-send, or the hourly pass) publishes them first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from writeback.ledger import Ledger
from writeback.ledger.tables import (
    community_campaigns,
    community_folders,
    community_groups,
    community_memberships,
    community_outbox,
    subscriber_state,
)


@dataclass(frozen=True, slots=True)
class Group:
    connection_id: str
    list_key: str
    list_name: str
    group_name: str
    in_community: bool
    last_synced_at: datetime | None
    members: int | None
    subscribers: int | None
    reconciliation: dict[str, int] | None
    last_error: str | None

    @property
    def status(self) -> str:
        """003's Info panel: a group never synced offers "Sync Target Group Now", else "Resync Now"."""
        return "never synced" if self.last_synced_at is None else "synced"

    @property
    def action(self) -> str:
        return "Sync Target Group Now" if self.last_synced_at is None else "Resync Now"


def _group(row: Any) -> Group:
    return Group(
        row.connection_id, row.list_key, row.list_name, row.group_name, row.in_community,
        row.last_synced_at, row.members, row.subscribers, row.reconciliation, row.last_error,
    )  # fmt: skip


def groups(ledger: Ledger, connection_id: str | None = None) -> list[Group]:
    query = sa.select(community_groups).order_by(community_groups.c.connection_id, community_groups.c.group_name)
    if connection_id is not None:
        query = query.where(community_groups.c.connection_id == connection_id)
    with ledger.engine.connect() as conn:
        return [_group(row) for row in conn.execute(query)]


def folder(ledger: Ledger, connection_id: str) -> str | None:
    with ledger.engine.connect() as conn:
        return conn.execute(
            sa.select(community_folders.c.name).where(community_folders.c.connection_id == connection_id)
        ).scalar_one_or_none()


def memberships(ledger: Ledger, connection_id: str, list_key: str) -> dict[str, tuple[str | None, str]]:
    """Legacy Contact Key → (email, standing) of one group."""
    with ledger.engine.connect() as conn:
        return _memberships(conn, connection_id, list_key)


def _memberships(conn: sa.Connection, connection_id: str, list_key: str) -> dict[str, tuple[str | None, str]]:
    m = community_memberships.c
    rows = conn.execute(
        sa.select(m.legacy_contact_key, m.email, m.standing).where(m.connection_id == connection_id, m.list_key == list_key)
    )
    return {row.legacy_contact_key: (row.email, row.standing) for row in rows}


def platform_statuses(ledger: Ledger, connection_id: str, identities: Iterable[str]) -> dict[str, str]:
    """The subscriber status ingest keeps for this connection (from the platform's subscriber
    events), by identity: a Remote ID or a lower-cased address."""
    wanted = sorted(set(identities))
    found: dict[str, str] = {}
    s = subscriber_state.c
    with ledger.engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            for row in conn.execute(
                sa.select(s.identity, s.status).where(s.connection_id == connection_id, s.identity.in_(chunk))
            ):
                found[row.identity] = row.status
    return found


@dataclass(frozen=True, slots=True)
class Discovered:
    list_key: str
    list_name: str
    group_name: str


@dataclass(frozen=True, slots=True)
class GroupChange:
    """One group's new state from a sync, and the events describing how it changed."""

    list_key: str
    members: int
    subscribers: int
    reconciliation: dict[str, int]
    placed: dict[str, tuple[str | None, str]]  # Legacy Contact Key → (email, standing)


class Apply:
    """Inside `apply`'s transaction: read a group's memberships, write its new state, queue events."""

    def __init__(self, conn: sa.Connection, connection_id: str, now: datetime) -> None:
        self.conn, self.connection_id, self.now = conn, connection_id, now
        self._seq = 0

    def memberships(self, list_key: str) -> dict[str, tuple[str | None, str]]:
        return _memberships(self.conn, self.connection_id, list_key)

    def replace(self, change: GroupChange, before: dict[str, tuple[str | None, str]]) -> None:
        m = community_memberships.c
        gone = [key for key in before if key not in change.placed]
        for start in range(0, len(gone), 500):
            self.conn.execute(
                sa.delete(community_memberships).where(
                    m.connection_id == self.connection_id,
                    m.list_key == change.list_key,
                    m.legacy_contact_key.in_(gone[start : start + 500]),
                )
            )
        new = [
            {"connection_id": self.connection_id, "list_key": change.list_key, "legacy_contact_key": key,
             "email": email, "standing": standing}
            for key, (email, standing) in change.placed.items() if key not in before
        ]  # fmt: skip
        if new:
            self.conn.execute(sa.insert(community_memberships), new)
        for key, value in change.placed.items():
            if key in before and before[key] != value:
                self.conn.execute(
                    sa.update(community_memberships)
                    .where(m.connection_id == self.connection_id, m.list_key == change.list_key, m.legacy_contact_key == key)
                    .values(email=value[0], standing=value[1])
                )
        g = community_groups.c
        self.conn.execute(
            sa.update(community_groups)
            .where(g.connection_id == self.connection_id, g.list_key == change.list_key)
            .values(
                last_synced_at=self.now,
                members=change.members,
                subscribers=change.subscribers,
                reconciliation=change.reconciliation,
                last_error=None,
            )
        )

    def queue(self, event_id: str, payload: dict[str, Any]) -> None:
        self._seq += 1
        self.conn.execute(
            sa.insert(community_outbox).values(
                event_id=event_id, connection_id=self.connection_id, seq=self._seq, payload=payload, created_at=self.now
            )
        )


def begin(ledger: Ledger, connection_id: str, discovered: Sequence[Discovered], now: datetime) -> Any:
    """Open the transaction a sync applies in: the folder made on the first one (003: "A new
    folder, Online Community, is automatically created on the initial sync operation"), locked
    so two syncs of one connection apply one after the other; the groups List Builder shows
    recorded, and those it no longer shows marked, never emptied."""
    return _Transaction(ledger, connection_id, discovered, now)


class _Transaction:
    def __init__(self, ledger: Ledger, connection_id: str, discovered: Sequence[Discovered], now: datetime) -> None:
        self.ledger, self.connection_id, self.discovered, self.now = ledger, connection_id, discovered, now
        self.folder_created = False

    def __enter__(self) -> Apply:
        from writeback.adapters.community.mapping import FOLDER

        self._ctx = self.ledger.engine.begin()
        conn = self._ctx.__enter__()
        f = community_folders.c
        locked = conn.execute(
            sa.update(community_folders).where(f.connection_id == self.connection_id).values(name=f.name)
        ).rowcount
        if not locked:
            conn.execute(sa.insert(community_folders).values(connection_id=self.connection_id, name=FOLDER, created_at=self.now))
            self.folder_created = True
        record_groups(conn, self.connection_id, self.discovered, self.now)
        return Apply(conn, self.connection_id, self.now)

    def __exit__(self, *exc: Any) -> None:
        self._ctx.__exit__(*exc)


def record_groups(conn: sa.Connection, connection_id: str, discovered: Sequence[Discovered], now: datetime) -> None:
    g = community_groups.c
    known = {
        row.list_key: row
        for row in conn.execute(sa.select(community_groups).where(g.connection_id == connection_id))
    }
    shown = {d.list_key for d in discovered}
    for d in discovered:
        row = known.get(d.list_key)
        if row is None:
            conn.execute(
                sa.insert(community_groups).values(
                    connection_id=connection_id, list_key=d.list_key, list_name=d.list_name,
                    group_name=d.group_name, in_community=True, discovered_at=now,
                )
            )  # fmt: skip
        elif (row.list_name, row.group_name, row.in_community) != (d.list_name, d.group_name, True):
            conn.execute(
                sa.update(community_groups)
                .where(g.connection_id == connection_id, g.list_key == d.list_key)
                .values(list_name=d.list_name, group_name=d.group_name, in_community=True)
            )
    gone = [key for key, row in known.items() if key not in shown and row.in_community]
    if gone:
        conn.execute(
            sa.update(community_groups)
            .where(g.connection_id == connection_id, g.list_key.in_(gone))
            .values(in_community=False)
        )


def record_error(ledger: Ledger, connection_id: str, list_keys: Iterable[str], message: str) -> None:
    """A failed sync's reason on the groups it was for; their memberships stay as they were."""
    keys = list(list_keys)
    if not keys:
        return
    g = community_groups.c
    with ledger.engine.begin() as conn:
        conn.execute(
            sa.update(community_groups)
            .where(g.connection_id == connection_id, g.list_key.in_(keys))
            .values(last_error=message[:1000])
        )


def outbox(ledger: Ledger, connection_id: str) -> list[tuple[str, dict[str, Any]]]:
    o = community_outbox.c
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.select(o.event_id, o.payload).where(o.connection_id == connection_id).order_by(o.created_at, o.seq)
        )
        return [(row.event_id, row.payload) for row in rows]


def delivered(ledger: Ledger, event_ids: Sequence[str]) -> None:
    with ledger.engine.begin() as conn:
        for start in range(0, len(event_ids), 500):
            conn.execute(sa.delete(community_outbox).where(community_outbox.c.event_id.in_(event_ids[start : start + 500])))


# campaigns -----------------------------------------------------------------------------------


def start_campaign(ledger: Ledger, connection_id: str, campaign_id: str, list_keys: Iterable[str], now: datetime) -> None:
    c = community_campaigns.c
    with ledger.engine.begin() as conn:
        running = set(
            conn.execute(
                sa.select(c.list_key).where(c.connection_id == connection_id, c.campaign_id == campaign_id)
            ).scalars()
        )
        rows = [
            {"connection_id": connection_id, "campaign_id": campaign_id, "list_key": key, "started_at": now}
            for key in sorted(set(list_keys) - running)
        ]
        if rows:
            conn.execute(sa.insert(community_campaigns), rows)


def stop_campaign(ledger: Ledger, connection_id: str, campaign_id: str) -> int:
    c = community_campaigns.c
    with ledger.engine.begin() as conn:
        return conn.execute(
            sa.delete(community_campaigns).where(c.connection_id == connection_id, c.campaign_id == campaign_id)
        ).rowcount


def campaign_groups(ledger: Ledger) -> dict[str, set[str]]:
    """Connection → the list keys of groups some running campaign uses."""
    found: dict[str, set[str]] = {}
    with ledger.engine.connect() as conn:
        for row in conn.execute(sa.select(community_campaigns.c.connection_id, community_campaigns.c.list_key)):
            found.setdefault(row.connection_id, set()).add(row.list_key)
    return found
