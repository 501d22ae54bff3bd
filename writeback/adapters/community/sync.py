"""The sync job (seed 003): List Builder lists → target groups in the "Online Community" folder,
members matched on Legacy Contact Key = Remote ID, changes published as community list events.

One sync of a connection: read every list (GetLists), keep those the prefix rule takes, read the
members of each group being synced (all pages), then apply it all in one ledger transaction and
publish the events it queued. Everything the community says is read before anything is written,
so bad credentials, a community that is down or a list that vanishes between pages end the sync
with a clear error and leave every target group as it was; the next sync starts from that state
and completes it. A membership change is an event once: it is queued in the same transaction
that records it, and only a change against the stored group makes one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from writeback import metrics
from writeback.adapters.base import ErrorKind
from writeback.adapters.community import groups as store
from writeback.adapters.community.client import Client, CommunityList
from writeback.adapters.community.config import Config
from writeback.adapters.community.errors import CommunityError, ListVanished
from writeback.adapters.community.mapping import (
    CAUSES,
    Standing,
    reconcile,
    target_group_name,
)
from writeback.contract.events import CommunityListEvent, MembershipChange
from writeback.errors import ConfigError, PublishError, WritebackError
from writeback.kafka.producer import Publisher
from writeback.ledger import Ledger
from writeback.settings import Account, Connection, Settings

log = logging.getLogger("writeback.community")

Publish = Callable[[Sequence[CommunityListEvent]], None]  # publishes and waits for the broker's acks
OpenClient = Callable[[Config], Client]
_NAMESPACE = uuid.UUID("2d6c1f0e-6b8a-4d2f-9a51-3c0e7b9d4a10")
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


class SyncError(WritebackError):
    """Why a sync did not happen; no target group was changed."""

    def __init__(self, connection_id: str, code: str, message: str, kind: ErrorKind = ErrorKind.REJECTED) -> None:
        super().__init__(f"{connection_id}: {code}: {message}")
        self.connection_id, self.code, self.message, self.kind = connection_id, code, message, kind


@dataclass(frozen=True, slots=True)
class GroupReport:
    list_key: str
    group_name: str
    members: int
    subscribers: int
    causes: dict[str, int]
    added: int
    removed: int


@dataclass(frozen=True, slots=True)
class SyncReport:
    connection_id: str
    folder_created: bool
    groups: list[GroupReport] = field(default_factory=list)
    published: int = 0


def community_connection(settings: Settings, connection_id: str) -> tuple[Account, Connection]:
    for account in settings.accounts:
        for connection in account.connections:
            if connection.id == connection_id:
                if connection.kind != "community":
                    raise SyncError(connection_id, "NotCommunity", f"connection is of kind {connection.kind!r}, not community")
                return account, connection
    raise SyncError(connection_id, "UnknownConnection", "no such connection in the stored settings")


def community_connections(settings: Settings) -> list[tuple[Account, Connection]]:
    return [(a, c) for a in settings.accounts for c in a.connections if c.kind == "community"]


def discover(client: Client) -> list[store.Discovered]:
    """The lists meant for the platform, as target groups (the prefix rule in mapping.py)."""
    found = []
    for item in client.lists():
        name = target_group_name(item.name)
        if name is not None:
            found.append(store.Discovered(item.key, item.name, name))
    return found


def refresh(
    ledger: Ledger, connection: Connection, now: datetime, *, open_client: OpenClient = Client
) -> list[store.Group]:
    """003's "Refresh Target Group List": the groups List Builder shows now, recorded (and the
    folder made, the first time); no members are read."""
    config = _active(connection)
    try:
        with open_client(config) as client:
            discovered = discover(client)
    except (CommunityError, ConfigError) as exc:
        raise _failed(connection.id, exc) from None
    with store.begin(ledger, connection.id, discovered, now):
        pass
    return store.groups(ledger, connection.id)


def sync(
    ledger: Ledger,
    publish: Publish,
    account: Account,
    connection: Connection,
    now: datetime,
    *,
    group: str | None = None,
    list_keys: Iterable[str] | None = None,
    open_client: OpenClient = Client,
) -> SyncReport:
    """Sync one connection's target groups: all of them, the one named `group` (its name in the
    platform or the list's name), or those in `list_keys`."""
    with _lock(connection.id):
        config = _active(connection)
        leftover = drain(ledger, connection.id, publish)  # a sync killed before its events were acknowledged
        wanted: list[store.Discovered] = []
        try:
            with open_client(config) as client:
                discovered = discover(client)
                wanted = _choose(ledger, connection.id, discovered, group, list_keys)
                members = {d.list_key: client.members(d.list_key) for d in wanted}
        except (CommunityError, ConfigError) as exc:
            error = _failed(connection.id, exc)
            store.record_error(ledger, connection.id, [d.list_key for d in wanted], f"{error.code}: {error.message}")
            metrics.COMMUNITY_SYNCS.labels(connection.id, "failed").inc()
            raise error from None
        identities = {i for ms in members.values() for m in ms for i in (m.legacy_contact_key, (m.email or "").strip().casefold()) if i}
        statuses = store.platform_statuses(ledger, connection.id, identities)

        def platform_status(remote_id: str, email: str | None) -> str | None:
            found = [statuses[i] for i in (remote_id, email) if i and i in statuses]
            for status in ("bad_email", "unsubscribed"):
                if status in found:
                    return status
            return None

        reports = []
        sync_id = uuid.uuid4().hex
        transaction = store.begin(ledger, connection.id, discovered, now)
        with transaction as apply:
            for d in wanted:
                result = reconcile(members[d.list_key], platform_status)
                placed = {key: (p.email, str(p.standing)) for key, p in result.placed.items()}
                before = apply.memberships(d.list_key)
                added = [key for key in placed if key not in before]
                removed = [key for key in before if key not in placed]
                apply.replace(
                    store.GroupChange(d.list_key, result.members, result.subscribers, result.causes(), placed), before
                )
                for change, keys, source in ((MembershipChange.ADDED, added, placed), (MembershipChange.REMOVED, removed, before)):
                    for key in keys:
                        event = CommunityListEvent(
                            event_id=str(uuid.uuid5(_NAMESPACE, f"{connection.id}|{d.list_key}|{key}|{change}|{sync_id}")),
                            account_id=account.id,
                            occurred_at=now,
                            list_id=d.list_key,
                            list_name=d.list_name,
                            change=change,
                            legacy_contact_key=key,
                            email=source[key][0],
                        )
                        apply.queue(event.event_id, event.model_dump(mode="json"))
                reports.append(
                    GroupReport(d.list_key, d.group_name, result.members, result.subscribers, result.causes(), len(added), len(removed))
                )
        published = leftover + drain(ledger, connection.id, publish)
        metrics.COMMUNITY_SYNCS.labels(connection.id, "completed").inc()
        export_counts(ledger, connection.id)
        log.info(
            "community sync of %s: %d groups, %d membership events published",
            connection.id, len(reports), published,
        )  # fmt: skip
        return SyncReport(connection.id, transaction.folder_created, reports, published)


def drain(ledger: Ledger, connection_id: str, publish: Publish) -> int:
    """Publish the events a committed sync queued, then forget them. A kill after the broker's
    acknowledgement and before the delete publishes them again with the same event ids, which
    consumers de-duplicate on."""
    pending = store.outbox(ledger, connection_id)
    if not pending:
        return 0
    events = [CommunityListEvent.model_validate(payload) for _, payload in pending]
    publish(events)
    store.delivered(ledger, [event_id for event_id, _ in pending])
    for event in events:
        metrics.COMMUNITY_CHANGES.labels(connection_id, str(event.change).lower()).inc()
    return len(events)


def export_counts(ledger: Ledger, connection_id: str) -> None:
    """The connection's target groups at their last syncs, summed: members, subscribers and a
    number per cause of the difference."""
    synced = [g for g in store.groups(ledger, connection_id) if g.last_synced_at is not None]
    metrics.COMMUNITY_MEMBERS.labels(connection_id).set(sum(g.members or 0 for g in synced))
    metrics.COMMUNITY_SUBSCRIBERS.labels(connection_id).set(sum(g.subscribers or 0 for g in synced))
    for cause in CAUSES:
        metrics.COMMUNITY_UNRECONCILED.labels(connection_id, str(cause)).set(
            sum((g.reconciliation or {}).get(str(cause), 0) for g in synced)
        )


def _choose(
    ledger: Ledger,
    connection_id: str,
    discovered: list[store.Discovered],
    group: str | None,
    list_keys: Iterable[str] | None,
) -> list[store.Discovered]:
    """The groups to sync; an error when one asked for is not in List Builder (any more), with
    the error recorded on the stored groups it concerns."""
    if group is None and list_keys is None:
        return discovered
    keys = set(list_keys or ())
    chosen = [d for d in discovered if d.list_key in keys or group in (d.group_name, d.list_name)]
    missing = keys - {d.list_key for d in chosen}
    known = {g.list_key: g for g in store.groups(ledger, connection_id)}
    if group is not None and not chosen:
        stored = [g for g in known.values() if group in (g.group_name, g.list_name)]
        missing |= {g.list_key for g in stored}
        if not stored:
            raise CommunityError(ErrorKind.REJECTED, "UnknownGroup", f"no target group named {group!r} in the community's lists")
    if missing:
        names = sorted(known[k].group_name if k in known else k for k in missing)
        store.record_error(
            ledger, connection_id, missing, "ListNotFound: List Builder no longer has the list; the group is kept as it was"
        )
        raise ListVanished(
            ErrorKind.REJECTED, "ListNotFound",
            f"List Builder no longer has the list of target group(s) {', '.join(map(repr, names))}; kept as they were",
        )  # fmt: skip
    return chosen


def _active(connection: Connection) -> Config:
    config = connection.config
    if not isinstance(config, Config):
        raise SyncError(connection.id, "NotCommunity", f"connection is of kind {connection.kind!r}, not community")
    if not connection.enabled or not config.active:
        raise SyncError(connection.id, "Inactive", "the connection is not active (enabled = false or crm.active = false); nothing synced")
    return config


def _failed(connection_id: str, exc: CommunityError | ConfigError) -> SyncError:
    if isinstance(exc, ConfigError):  # a credential reference that does not resolve
        exc = CommunityError(ErrorKind.CREDENTIALS, "CredentialsUnavailable", str(exc))
    return SyncError(connection_id, exc.code, f"sync not applied, target groups unchanged: {exc.message}", exc.kind)


def _lock(connection_id: str) -> threading.Lock:
    """One sync of a connection at a time in this process (on-send and the hourly pass may
    meet); the ledger transaction orders syncs across processes."""
    with _locks_guard:
        return _locks.setdefault(connection_id, threading.Lock())


__all__ = [
    "CommunityList", "GroupReport", "Publish", "Standing", "SyncError", "SyncReport",
    "community_connection", "community_connections", "discover", "drain", "kafka_publish", "refresh",
    "resolve_groups", "sync",
]  # fmt: skip


def kafka_publish(publisher: Publisher, topic: str) -> Publish:
    """Publish to the community topic and wait for the acknowledgements (a sync forgets its
    queued events only once the broker has them). Each call counts its own failures: `serve`
    shares one publisher between on-send requests and the hourly pass."""

    def send(events: Sequence[CommunityListEvent]) -> None:
        failed: list[object] = []
        for event in events:
            publisher.publish(event, topic=topic, on_delivery=lambda _e, error: error and failed.append(error))
        publisher.flush()
        if failed:
            raise PublishError(f"{len(failed)} of {len(events)} community list events not acknowledged")

    return send


def resolve_groups(ledger: Ledger, connection_id: str, names: Iterable[str]) -> list[str]:
    """List keys of stored target groups by their names (or their lists' names)."""
    known = store.groups(ledger, connection_id)
    keys = []
    for name in names:
        found = [g.list_key for g in known if name in (g.group_name, g.list_name)]
        if not found:
            raise SyncError(
                connection_id, "UnknownGroup",
                f"no target group named {name!r}; run `writeback community refresh --connection {connection_id}` first",
            )  # fmt: skip
        keys += found
    return keys
