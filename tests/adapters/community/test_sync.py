"""A sync against the community simulator, the ledger (SQLite and PostgreSQL) and the real broker:
"Informz" lists become target groups in the "Online Community" folder, members matched on Legacy
Contact Key, each membership change published once, counts reconciled, all or nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from tests.adapters.community.conftest import (
    ACCOUNT,
    CONNECTION,
    T0,
    Setup,
    community_settings,
)
from writeback.adapters.base import ErrorKind
from writeback.adapters.community import groups
from writeback.adapters.community.sync import SyncError, refresh, sync
from writeback.contract.events import MembershipChange, SubscriberEvent, parse_event
from writeback.errors import PublishError
from writeback.ingest.consume import Ingest
from writeback.kafka.consumer import Consumed
from writeback.kafka.dead_letters import DeadLetterSink
from writeback.settings import apply

pytestmark = pytest.mark.kafka

DISCUSSION, WELCOME = "Has Started Discussion Thread", "Welcome New Members"
ADDED, REMOVED = MembershipChange.ADDED, MembershipChange.REMOVED


def by_name(s: Setup) -> dict[str, groups.Group]:
    return {g.group_name: g for g in groups.groups(s.ledger, CONNECTION)}


def remote_ids(s: Setup, list_key: str) -> set[str]:
    return set(groups.memberships(s.ledger, CONNECTION, list_key))


def changes(events) -> list[tuple[str, str, str]]:
    return sorted((e.list_id, e.legacy_contact_key, str(e.change)) for e in events)


def test_the_first_sync_creates_the_folder_and_a_target_group_per_informz_list(setup, community, published):
    seed = community.seed_reconciliation()
    lists = seed["lists"]
    assert groups.folder(setup.ledger, CONNECTION) is None

    report = sync(setup.ledger, setup.publish, setup.account, setup.connection, T0)

    assert report.folder_created
    assert groups.folder(setup.ledger, CONNECTION) == "Online Community"
    found = by_name(setup)
    assert set(found) == {DISCUSSION, WELCOME}  # lowercase, leading-space, InformzX and Board lists are not groups
    assert found[DISCUSSION].list_key == lists["Informz Has Started Discussion Thread"]
    assert found[DISCUSSION].list_name == "Informz Has Started Discussion Thread"
    assert all(g.last_synced_at == T0 and g.status == "synced" and g.action == "Resync Now" for g in found.values())
    # members are the community's, matched on Legacy Contact Key (annie has none)
    discussion = {c["LegacyContactKey"] for c in community.members(lists["Informz Has Started Discussion Thread"])} - {None}
    assert remote_ids(setup, found[DISCUSSION].list_key) == discussion == {f"R-100{i}" for i in range(1, 9)}
    assert remote_ids(setup, found[WELCOME].list_key) == {"R-1001", "R-1002"}
    events = published(setup.topic, expected=10)
    assert changes(events) == sorted(
        [(found[DISCUSSION].list_key, key, "ADDED") for key in discussion]
        + [(found[WELCOME].list_key, key, "ADDED") for key in ("R-1001", "R-1002")]
    )
    assert {e.account_id for e in events} == {ACCOUNT}
    assert {e.list_name for e in events} == {"Informz Has Started Discussion Thread", "Informz Welcome New Members"}
    emails = {e.legacy_contact_key: e.email for e in events}
    assert emails["R-1006"] == "katherine.johnson@"  # carried as the community has it
    assert not sync(setup.ledger, setup.publish, setup.account, setup.connection, T0 + timedelta(minutes=1)).folder_created


def test_a_resync_with_nothing_changed_publishes_nothing(setup, community, published):
    community.seed_reconciliation()
    first = sync(setup.ledger, setup.publish, setup.account, setup.connection, T0)
    before = {g.list_key: groups.memberships(setup.ledger, CONNECTION, g.list_key) for g in groups.groups(setup.ledger)}

    again = sync(setup.ledger, setup.publish, setup.account, setup.connection, T0 + timedelta(hours=1))

    assert first.published == 10 and again.published == 0
    assert all(g.added == 0 and g.removed == 0 for g in again.groups)
    assert len(published(setup.topic, timeout=8)) == 10  # the broker holds the first sync's events only
    assert {g.list_key: groups.memberships(setup.ledger, CONNECTION, g.list_key) for g in groups.groups(setup.ledger)} == before
    assert all(g.last_synced_at == T0 + timedelta(hours=1) for g in groups.groups(setup.ledger))


def test_additions_and_removals_propagate_once(setup, community, published):
    seed = community.seed_reconciliation()
    key = seed["lists"]["Informz Welcome New Members"]
    sync(setup.ledger, setup.publish, setup.account, setup.connection, T0)
    community.add_member(key, seed["contacts"]["alan"])
    community.remove_member(key, seed["contacts"]["grace"])
    joiner = community.add_contact("Edsger", "Dijkstra", "edsger@example.org", legacy_contact_key="R-2001")
    community.add_member(key, joiner)

    second = sync(setup.ledger, setup.publish, setup.account, setup.connection, T0 + timedelta(minutes=5))
    third = sync(setup.ledger, setup.publish, setup.account, setup.connection, T0 + timedelta(minutes=10))

    welcome = {g.group_name: g for g in second.groups}[WELCOME]
    assert (welcome.added, welcome.removed, second.published, third.published) == (2, 1, 3, 0)
    assert remote_ids(setup, key) == {"R-1001", "R-1003", "R-2001"}
    events = published(setup.topic, expected=13)
    assert len(events) == 13
    later = [e for e in events if e.list_id == key and not (e.change is ADDED and e.legacy_contact_key in ("R-1001", "R-1002"))]
    assert changes(later) == sorted([(key, "R-1003", "ADDED"), (key, "R-2001", "ADDED"), (key, "R-1002", "REMOVED")])
    assert len({e.event_id for e in events}) == 13


def _ingest_subscriber_events(setup: Setup, serde, publisher, events: list[SubscriberEvent]) -> None:
    """Through ingest, as serve does: the community connection keeps the platform's subscriber state."""
    ingest = Ingest(setup.ledger, serde, {"subs": SubscriberEvent}, lambda: setup.settings, DeadLetterSink(publisher))
    records = [Consumed("subs", 0, i, e.key().encode(), serde.serialize(e, "subs")) for i, e in enumerate(events)]
    ingest.handle(records)


def subscriber(action: str, *, integration_id: str | None = None, email: str | None = None, minutes: int = 0) -> SubscriberEvent:
    import uuid

    recipient = {k: v for k, v in (("integration_id", integration_id), ("email", email)) if v}
    event = parse_event(
        {"type": "subscriber", "event_id": str(uuid.uuid4()), "account_id": ACCOUNT,
         "occurred_at": (T0 - timedelta(days=1, minutes=-minutes)).isoformat(), "source": "MAILING_LINK",
         "recipient": recipient, "action": action}
    )  # fmt: skip
    assert isinstance(event, SubscriberEvent)
    return event


def test_reconciled_counts_are_exact_for_unsubscribed_invalid_and_duplicate_members(setup, community, serde, publisher):
    seed = community.seed_reconciliation()
    _ingest_subscriber_events(
        setup,
        serde,
        publisher,
        [
            subscriber("UNSUBSCRIBE", integration_id="R-1003"),  # alan, by Remote ID
            subscriber("UNSUBSCRIBE", email="GRACE@example.org"),  # grace, by address: then resubscribed
            subscriber("RESUBSCRIBE", email="grace@example.org", minutes=5),
            subscriber("BAD_EMAIL", integration_id="R-1001", email="ada@example.org"),  # ada bounced
        ],
    )

    report = sync(setup.ledger, setup.publish, setup.account, setup.connection, T0, group=DISCUSSION)

    [discussion] = report.groups
    assert discussion.list_key == seed["lists"]["Informz Has Started Discussion Thread"]
    assert discussion.members == 9
    assert discussion.subscribers == 1  # grace
    # ada's address bounced: her second contact (same address, other case) is invalid too, not a duplicate
    assert discussion.causes == {"no_remote_id": 1, "invalid_email": 5, "duplicate_email": 1, "unsubscribed": 1}
    stored = by_name(setup)[DISCUSSION]
    assert (stored.members, stored.subscribers, stored.reconciliation) == (9, 1, discussion.causes)
    standings = {k: v[1] for k, v in groups.memberships(setup.ledger, CONNECTION, discussion.list_key).items()}
    assert standings == {
        "R-1001": "invalid_email", "R-1002": "subscriber", "R-1003": "unsubscribed", "R-1004": "duplicate_email",
        "R-1005": "invalid_email", "R-1006": "invalid_email", "R-1007": "invalid_email", "R-1008": "invalid_email",
    }  # fmt: skip
    sample = REGISTRY.get_sample_value
    assert sample("writeback_community_members", {"connection": CONNECTION}) == 9
    assert sample("writeback_community_subscribers", {"connection": CONNECTION}) == 1
    for cause, count in discussion.causes.items():
        assert sample("writeback_community_unreconciled_members", {"connection": CONNECTION, "cause": cause}) == count


def test_a_vanished_list_leaves_the_group_intact_and_the_next_sync_completes_it(setup, community, published):
    seed = community.seed_reconciliation()
    key = seed["lists"]["Informz Has Started Discussion Thread"]
    sync(setup.ledger, setup.publish, setup.account, setup.connection, T0)
    before = groups.memberships(setup.ledger, CONNECTION, key)
    community.remove_member(key, seed["contacts"]["alan"])
    community.vanish_list(key, after_pages=1)  # page size 3: deleted after the first of three pages

    with pytest.raises(SyncError) as failed:
        sync(setup.ledger, setup.publish, setup.account, setup.connection, T0 + timedelta(hours=1))

    assert failed.value.code == "ListNotFound"
    assert "target groups unchanged" in str(failed.value) and "list is no longer in the community" in str(failed.value)
    assert [c.status for c in community.calls("ListBuilder/GetListMembers")][-2:] == [200, 404]
    assert groups.memberships(setup.ledger, CONNECTION, key) == before
    group = by_name(setup)[DISCUSSION]
    assert group.last_synced_at == T0 and group.last_error is not None and "ListNotFound" in group.last_error
    assert len(published(setup.topic, timeout=8)) == 10  # nothing of the failed sync

    # the Super Admin restores the list (same key): the next sync completes the change
    members = [c for label, c in seed["contacts"].items() if label != "alan"]
    community.add_list("Informz Has Started Discussion Thread", members, list_key=key)
    report = sync(setup.ledger, setup.publish, setup.account, setup.connection, T0 + timedelta(hours=2))
    assert report.published == 1
    assert remote_ids(setup, key) == set(before) - {"R-1003"}
    assert by_name(setup)[DISCUSSION].last_error is None
    events = published(setup.topic, expected=11)
    assert len(events) == 11 and [(e.list_id, e.legacy_contact_key, e.change) for e in events if e.change is REMOVED] == [
        (key, "R-1003", REMOVED)
    ]


def test_a_list_gone_for_good_keeps_its_group_as_it_was_and_other_groups_sync(setup, community):
    seed = community.seed_reconciliation()
    gone = seed["lists"]["Informz Has Started Discussion Thread"]
    welcome = seed["lists"]["Informz Welcome New Members"]
    sync(setup.ledger, setup.publish, setup.account, setup.connection, T0)
    before = groups.memberships(setup.ledger, CONNECTION, gone)
    community.remove_list(gone)
    community.remove_member(welcome, seed["contacts"]["grace"])

    report = sync(setup.ledger, setup.publish, setup.account, setup.connection, T0 + timedelta(hours=1))

    assert [g.group_name for g in report.groups] == [WELCOME]
    assert remote_ids(setup, welcome) == {"R-1001"}
    assert groups.memberships(setup.ledger, CONNECTION, gone) == before
    assert not by_name(setup)[DISCUSSION].in_community
    with pytest.raises(SyncError) as failed:
        sync(setup.ledger, setup.publish, setup.account, setup.connection, T0 + timedelta(hours=2), group=DISCUSSION)
    assert failed.value.code == "ListNotFound" and repr(DISCUSSION) in str(failed.value)
    kept = by_name(setup)[DISCUSSION]
    assert kept.last_error is not None and kept.last_error.startswith("ListNotFound")
    assert groups.memberships(setup.ledger, CONNECTION, gone) == before


@pytest.mark.parametrize(
    ("fault", "code", "kind"),
    [
        (lambda sim: sim.revoke_credentials(), "InvalidCredentials", ErrorKind.CREDENTIALS),
        (lambda sim: sim.fail_next(50), "HTTP503", ErrorKind.OUTAGE),
        (lambda sim: sim.slow_next(1, seconds=2.0), "Timeout", ErrorKind.OUTAGE),
    ],
    ids=["bad-credentials", "down", "slow"],
)
def test_bad_credentials_or_a_community_down_or_too_slow_change_nothing(setup, community, published, fault, code, kind):
    seed = community.seed_reconciliation()
    key = seed["lists"]["Informz Welcome New Members"]
    connection = community_settings(community, page_size=3, timeout_s=0.5).accounts[0].connections[0]
    sync(setup.ledger, setup.publish, setup.account, connection, T0)
    community.add_member(key, seed["contacts"]["alan"])
    fault(community)

    with pytest.raises(SyncError) as failed:
        sync(setup.ledger, setup.publish, setup.account, connection, T0 + timedelta(hours=1))

    assert (failed.value.code, failed.value.kind) == (code, kind)
    assert "target groups unchanged" in str(failed.value)
    assert community.password not in str(failed.value) and community.iam_key not in str(failed.value)
    assert remote_ids(setup, key) == {"R-1001", "R-1002"}
    assert by_name(setup)[WELCOME].last_synced_at == T0
    community.wait_idle()
    community.clear_faults()
    community.restore_credentials()
    assert sync(setup.ledger, setup.publish, setup.account, connection, T0 + timedelta(hours=2)).published == 1
    assert remote_ids(setup, key) == {"R-1001", "R-1002", "R-1003"}
    assert len(published(setup.topic, expected=11)) == 11


def test_a_slow_community_within_the_timeout_still_syncs(setup, community):
    community.seed_reconciliation()
    community.slow_next(3, seconds=0.3)
    assert sync(setup.ledger, setup.publish, setup.account, setup.connection, T0).published == 10


def test_events_the_broker_did_not_take_wait_and_go_out_once(setup, community, published):
    seed = community.seed_reconciliation()

    def broker_down(_events) -> None:
        raise PublishError("0 of 10 acknowledged")

    with pytest.raises(PublishError):
        sync(setup.ledger, broker_down, setup.account, setup.connection, T0)
    key = seed["lists"]["Informz Welcome New Members"]
    assert remote_ids(setup, key) == {"R-1001", "R-1002"}  # the sync is applied; its events wait

    report = sync(setup.ledger, setup.publish, setup.account, setup.connection, T0 + timedelta(minutes=1))

    assert report.published == 10  # the waiting events, and no change of its own
    assert all(g.added == 0 and g.removed == 0 for g in report.groups)
    assert len(published(setup.topic, timeout=8)) == 10


def test_one_group_by_name_and_refresh_without_members(setup, community):
    seed = community.seed_reconciliation()
    groups_found = refresh(setup.ledger, setup.connection, T0)
    assert {g.group_name: (g.status, g.action, g.members) for g in groups_found} == {
        DISCUSSION: ("never synced", "Sync Target Group Now", None),
        WELCOME: ("never synced", "Sync Target Group Now", None),
    }
    assert community.calls("ListBuilder/GetListMembers") == []
    assert groups.folder(setup.ledger, CONNECTION) == "Online Community"

    report = sync(setup.ledger, setup.publish, setup.account, setup.connection, T0, group=WELCOME)

    assert [g.group_name for g in report.groups] == [WELCOME]
    assert {c.list_key for c in community.calls("ListBuilder/GetListMembers")} == {seed["lists"]["Informz Welcome New Members"]}
    assert {g.group_name: g.action for g in groups.groups(setup.ledger)} == {DISCUSSION: "Sync Target Group Now", WELCOME: "Resync Now"}
    with pytest.raises(SyncError, match="no target group named 'Nope'"):
        sync(setup.ledger, setup.publish, setup.account, setup.connection, T0, group="Nope")


def test_an_inactive_connection_is_not_synced(setup, community, ledger):
    community.seed_reconciliation()
    settings = community_settings(community, active=False)
    apply(ledger, settings, T0)
    with pytest.raises(SyncError) as failed:
        sync(ledger, setup.publish, settings.accounts[0], settings.accounts[0].connections[0], T0)
    assert failed.value.code == "Inactive"
    assert community.request_log == []
    assert groups.folder(ledger, CONNECTION) is None
