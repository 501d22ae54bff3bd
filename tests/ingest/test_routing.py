"""Routing: which connection takes which event, on which writeback class, and why not.

Every rule cites the seed it comes from (shared/seeds/, see its README). A connection that does
not take an event drops it with a reason, which the ingest counts per (kind, reason).
"""

from __future__ import annotations

from typing import Any

import pytest
from writeback_dev.samples import (
    activity_samples,
    community_samples,
    subscriber_samples,
)

from tests.builders import CM_CRM, NF_CRM, PS_CRM, SF_CRM
from writeback.adapters.base import Route, mailing_activity
from writeback.contract.events import (
    ActivityEvent,
    Source,
    SubscriberAction,
    SubscriberEvent,
    enum_symbols,
)
from writeback.contract.taxonomy import (
    all_tracking_pairs,
    extension_subcodes,
    tracking_pair,
)
from writeback.errors import ConfigError
from writeback.ingest.incoming import from_event
from writeback.ingest.routing import Routes, route
from writeback.kafka.consumer import Consumed
from writeback.ledger.rows import MailingActivity, WritebackClass
from writeback.settings import Connection, parse_settings

SUB, ACT = WritebackClass.SUBSCRIBER, WritebackClass.ACTIVITY
NETFORUM, SALESFORCE, PERSONIFY, TRACKING, COMMUNITY = "netforum", "salesforce", "personify", "tracking", "community"
ALL_KINDS = (NETFORUM, SALESFORCE, PERSONIFY, TRACKING, COMMUNITY)
# what each kind needs in `crm` to be a valid connection (the routing rules do not read it)
CRM = {SALESFORCE: SF_CRM, TRACKING: SF_CRM, NETFORUM: NF_CRM, PERSONIFY: PS_CRM, COMMUNITY: CM_CRM}
UNSUBSCRIBE, RESUBSCRIBE, BAD_EMAIL = (
    SubscriberAction.UNSUBSCRIBE,
    SubscriberAction.RESUBSCRIBE,
    SubscriberAction.BAD_EMAIL,
)
SUBSCRIBE, SUPPRESS = SubscriberAction.SUBSCRIBE, SubscriberAction.SUPPRESS
STATUS_ACTIONS = (UNSUBSCRIBE, RESUBSCRIBE, BAD_EMAIL)

BOUNCE_SUBCODES = (
    "SoftBounce",
    "HardBounce",
    "UserNotFound",
    "MailboxFull",
    "TemporarilyUnavailable",
    "BadDomain",
    "SendFailed",
)
#: 000's mailing-activity types and the 001 subcode that carries each.
MAILING_TYPE_SUBCODE = {
    MailingActivity.SENT: "Delivered",
    MailingActivity.OPENED: "Opened",
    MailingActivity.CLICK: "Clicked",
    MailingActivity.BLOCK: "Blocked",
    MailingActivity.BOUNCE: "HardBounce",
    MailingActivity.SOCIAL_SHARING: "SocialShare",
}
EXPECTED_MAILING_ACTIVITY = {
    "Delivered": MailingActivity.SENT,
    "Opened": MailingActivity.OPENED,
    "Clicked": MailingActivity.CLICK,
    "Blocked": MailingActivity.BLOCK,
    "SocialShare": MailingActivity.SOCIAL_SHARING,
    **{subcode: MailingActivity.BOUNCE for subcode in BOUNCE_SUBCODES},
}
ALL_SUBCODES = tuple(s for s in enum_symbols("ActivitySubcode") if s != "UNKNOWN")
NOT_MAILING_ACTIVITY = tuple(s for s in ALL_SUBCODES if s not in EXPECTED_MAILING_ACTIVITY)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def connection(kind: str, **fields: Any) -> Connection:
    """One connection of an account, validated (and given its default schedules) by the settings;
    keyword arguments other than connection fields are the kind's `crm` settings."""
    crm = {**CRM.get(kind, {}), **{k: fields.pop(k) for k in list(fields) if k not in Connection.model_fields}}
    settings = parse_settings(
        {
            "accounts": [
                {
                    "id": "acct",
                    "time_zone": "America/Chicago",
                    "connections": [{"id": f"conn-{kind}", "kind": kind, "crm": crm, **fields}],
                }
            ]
        }
    )
    return settings.accounts[0].connections[0]


def with_mailing_activity(kind: str, *types: MailingActivity) -> Connection:
    return connection(kind, writebacks={"mailing_activity": [str(t) for t in types]})


def subscriber(action: SubscriberAction, **changes: Any) -> SubscriberEvent:
    """The sample event of an action (re-validated with `changes`)."""
    sample = next(e for e in subscriber_samples() if e.action == action)
    return SubscriberEvent.model_validate({**sample.model_dump(), **changes})


def activity(subcode: str) -> ActivityEvent:
    return next(e for e in activity_samples() if e.subcode == subcode)


def taken(wb_class: WritebackClass) -> Route:
    return Route(wb_class)


def dropped(reason: str) -> Route:
    return Route(None, reason)


def sample_id(event: Any) -> str:
    if isinstance(event, SubscriberEvent):
        return f"{event.action}" + (f"-{event.suppression}" if event.suppression else "") + (
            f"-{event.scope.kind}" if event.scope else ""
        )
    if isinstance(event, ActivityEvent):
        return f"{event.subcode}" + (f"-{event.click.target}" if event.click else "")
    return f"community-{event.change}"


SUBSCRIBER_SAMPLES = subscriber_samples()
ACTIVITY_SAMPLES = activity_samples()
COMMUNITY_SAMPLES = community_samples()
ALL_SAMPLES = [*SUBSCRIBER_SAMPLES, *ACTIVITY_SAMPLES, *COMMUNITY_SAMPLES]
NON_COMMUNITY_SAMPLES = [*SUBSCRIBER_SAMPLES, *ACTIVITY_SAMPLES]


# ---------------------------------------------------------------------------------------------
# Route itself
# ---------------------------------------------------------------------------------------------


def test_a_route_with_a_class_is_taken_and_one_without_is_not():
    assert Route(SUB).taken and Route(SUB).reason is None
    assert not Route(None, "why").taken


# ---------------------------------------------------------------------------------------------
# Disabled connections
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("event", ALL_SAMPLES, ids=sample_id)
def test_a_disabled_connection_drops_every_event(kind, event):
    """Ingest fans out only to enabled connections (DESIGN "Flow" 1); status events included."""
    assert route(event, connection(kind, enabled=False)) == dropped("connection_disabled")


# ---------------------------------------------------------------------------------------------
# Subscriber status: netFORUM (000) and Salesforce (002)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [NETFORUM, SALESFORCE])
@pytest.mark.parametrize("action", STATUS_ACTIONS)
def test_subscriber_status_goes_to_netforum_and_salesforce_as_subscriber_class(kind, action):
    """000: "Subscriber status - include Unsubscribe (Date), Unsubscribe Reason (if provided), Bad
    Email Status, and Resubscribe (Date)." 002: "an unsubscribe may be sent with the reason
    'Bad Email'", so Salesforce takes bad email too."""
    assert route(subscriber(action), connection(kind)) == taken(SUB)


@pytest.mark.parametrize("kind", [NETFORUM, SALESFORCE])
@pytest.mark.parametrize("action", STATUS_ACTIONS)
def test_subscriber_status_is_taken_even_with_every_mailing_activity_unchecked(kind, action):
    """000: "Unsubscribe, Resubscribe, and Bad Email writebacks cannot be deactivated." 002:
    unchecking mailing activity "does not disable the unsubscribe and resubscribe writebacks"."""
    assert route(subscriber(action), with_mailing_activity(kind)) == taken(SUB)


@pytest.mark.parametrize("kind", [NETFORUM, SALESFORCE])
@pytest.mark.parametrize("action", [SUBSCRIBE, SUPPRESS])
def test_subscribe_and_suppress_are_not_netforum_or_salesforce_writebacks(kind, action):
    """000 and 002 list only unsubscribe, resubscribe and bad email as subscriber writebacks."""
    assert route(subscriber(action), connection(kind)) == dropped("not_for_kind")


@pytest.mark.parametrize("kind", [NETFORUM, SALESFORCE])
@pytest.mark.parametrize(
    "event",
    [e for e in SUBSCRIBER_SAMPLES if e.action == SUPPRESS],
    ids=sample_id,
)
def test_no_suppression_subtype_reaches_netforum_or_salesforce(kind, event):
    assert route(event, connection(kind)) == dropped("not_for_kind")


# ---------------------------------------------------------------------------------------------
# Changes that came from the CRM are not written back to it
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [NETFORUM, SALESFORCE])
@pytest.mark.parametrize("action", STATUS_ACTIONS)
def test_status_change_from_the_crm_sync_is_not_written_back(kind, action):
    """000: "If the unsubscribe occurs in netFORUM Enterprise ... Thrive Marketing Professional
    is updated during the next sync." 002: "If a Contact/Lead was unsubscribed in Salesforce ...
    Informz is updated during the next sync." Echoing it back would loop."""
    event = subscriber(action, source=Source.CRM_SYNC)
    assert route(event, connection(kind)) == dropped("originated_in_crm")


@pytest.mark.parametrize("action", [UNSUBSCRIBE, RESUBSCRIBE, SUBSCRIBE])
def test_subscription_change_from_the_crm_sync_is_not_written_back_to_personify(action):
    event = subscriber(action, source=Source.CRM_SYNC)
    assert route(event, connection(PERSONIFY)) == dropped("originated_in_crm")


PLATFORM_SOURCES = [s for s in Source if s not in (Source.CRM_SYNC, Source.UNKNOWN)]


@pytest.mark.parametrize("kind", [NETFORUM, SALESFORCE, PERSONIFY])
@pytest.mark.parametrize("source", PLATFORM_SOURCES)
def test_unsubscribe_from_any_platform_source_is_written_back(kind, source):
    """000: unsubscribes "that come from a mailing or from the ... administrator" are queued."""
    assert route(subscriber(UNSUBSCRIBE, source=source), connection(kind)) == taken(SUB)


# ---------------------------------------------------------------------------------------------
# Mailing activity: Salesforce (002)
# ---------------------------------------------------------------------------------------------


def test_salesforce_writes_sent_by_default():
    """002: "By default, the Sent writeback is available (checked)". Sent = Sent/Delivered (001)."""
    assert route(activity("Delivered"), connection(SALESFORCE)) == taken(ACT)


def test_salesforce_drops_opened_by_default():
    """002: only Sent is checked by default; Opened must be switched on."""
    assert route(activity("Opened"), connection(SALESFORCE)) == dropped("activity_type_disabled")


def test_salesforce_writes_opened_when_enabled():
    """002: "this integration supports a Mailing Activity writeback for both Sent and Opened"."""
    sf = with_mailing_activity(SALESFORCE, MailingActivity.SENT, MailingActivity.OPENED)
    assert route(activity("Opened"), sf) == taken(ACT)
    assert route(activity("Delivered"), sf) == taken(ACT)


def test_salesforce_with_mailing_activity_unchecked_drops_sent():
    """002: "mailing activity writebacks can be disabled by unchecking the Enable Mailing
    Activity Writeback checkbox"."""
    sf = with_mailing_activity(SALESFORCE)
    assert route(activity("Delivered"), sf) == dropped("activity_type_disabled")
    assert route(activity("Opened"), sf) == dropped("activity_type_disabled")


@pytest.mark.parametrize(
    "subcode", ["Clicked", "Blocked", "SocialShare", *BOUNCE_SUBCODES]
)
@pytest.mark.parametrize(
    "enabled",
    [(), (MailingActivity.SENT,), (MailingActivity.SENT, MailingActivity.OPENED)],
    ids=["none", "sent", "sent+opened"],
)
def test_salesforce_has_no_other_mailing_activity_type(subcode, enabled):
    """002: "this integration supports a Mailing Activity writeback for both Sent and Opened
    mailings" -- clicks, blocks, bounces and shares are not a Salesforce type at all (settings
    reject enabling them), so they are "not_for_kind", not "activity_type_disabled"."""
    sf = with_mailing_activity(SALESFORCE, *enabled)
    assert route(activity(subcode), sf) == dropped("not_for_kind")


@pytest.mark.parametrize("subcode", NOT_MAILING_ACTIVITY)
def test_salesforce_drops_activity_that_is_not_mailing_activity(subcode):
    """SMS, fax, marketing automation, social CRM, surveys and events are 001 tracking, not 002."""
    assert route(activity(subcode), connection(SALESFORCE)) == dropped("not_for_kind")


# ---------------------------------------------------------------------------------------------
# Mailing activity: netFORUM (000)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subcode", list(EXPECTED_MAILING_ACTIVITY))
def test_netforum_writes_every_mailing_activity_type_by_default(subcode):
    """000: "Mailing activity - include Sent Date, Opened Date, Click (Date and Link), Block,
    Bounce, and Social Sharing." (netFORUM offers all six; none is unchecked by default.)"""
    assert route(activity(subcode), connection(NETFORUM)) == taken(ACT)


def test_netforum_writes_clicks_on_links_and_on_advertisements():
    """000: "Message Name (Clicked Link)" and "Message Name (Clicked Ad)"."""
    clicks = [e for e in ACTIVITY_SAMPLES if e.subcode == "Clicked"]
    assert {str(e.click.target) for e in clicks} == {"LINK", "ADVERTISEMENT"}
    for event in clicks:
        assert route(event, connection(NETFORUM)) == taken(ACT)


@pytest.mark.parametrize("enabled_type", list(MailingActivity))
@pytest.mark.parametrize("event_type", list(MailingActivity))
def test_netforum_writes_a_mailing_activity_type_only_when_checked(enabled_type, event_type):
    """000: "To stop a writeback from occurring (i.e., deactivate the writeback), uncheck the
    corresponding checkbox on the Writeback Settings page.\""""
    nf = with_mailing_activity(NETFORUM, enabled_type)
    expected = taken(ACT) if event_type == enabled_type else dropped("activity_type_disabled")
    assert route(activity(MAILING_TYPE_SUBCODE[event_type]), nf) == expected


@pytest.mark.parametrize("subcode", BOUNCE_SUBCODES)
def test_netforum_bounce_checkbox_covers_every_bounce_subcode(subcode):
    bounce_only = with_mailing_activity(NETFORUM, MailingActivity.BOUNCE)
    sent_only = with_mailing_activity(NETFORUM, MailingActivity.SENT)
    assert route(activity(subcode), bounce_only) == taken(ACT)
    assert route(activity(subcode), sent_only) == dropped("activity_type_disabled")


def test_netforum_with_mailing_activity_unchecked_drops_all_of_it():
    """000: "NOTE: Mailing activity writebacks are optional.\""""
    nf = with_mailing_activity(NETFORUM)
    for subcode in EXPECTED_MAILING_ACTIVITY:
        assert route(activity(subcode), nf) == dropped("activity_type_disabled")


@pytest.mark.parametrize("subcode", NOT_MAILING_ACTIVITY)
def test_netforum_drops_activity_that_is_not_mailing_activity(subcode):
    """000's mailing activity is Sent, Open, Click, Block, Bounce, Social Sharing; the rest of
    001 (InProgress, SMS, fax, automation, social CRM, surveys, events) is not."""
    assert route(activity(subcode), connection(NETFORUM)) == dropped("not_for_kind")


# Per-mailing exclusion (000: "many writebacks can be disabled if they are not needed for a
# particular mailing")
# ---------------------------------------------------------------------------------------------

EXCLUDED, OTHER = "m-excluded", "m-other"


def in_mailing(event: ActivityEvent, mailing_id: str) -> ActivityEvent:
    assert event.mailing is not None
    return event.model_copy(update={"mailing": event.mailing.model_copy(update={"mailing_id": mailing_id})})


def excluding(kind: str, *mailings: str, **writebacks: Any) -> Connection:
    return connection(kind, writebacks={"excluded_mailings": list(mailings), **writebacks})


@pytest.mark.parametrize("subcode", list(EXPECTED_MAILING_ACTIVITY))
def test_netforum_drops_every_optional_type_of_an_excluded_mailing_and_keeps_other_mailings(subcode):
    nf = excluding(NETFORUM, EXCLUDED)
    assert route(in_mailing(activity(subcode), EXCLUDED), nf) == dropped("mailing_excluded")
    assert route(in_mailing(activity(subcode), OTHER), nf) == taken(ACT)


def test_salesforce_drops_sent_and_opened_of_an_excluded_mailing():
    sf = excluding(SALESFORCE, EXCLUDED, mailing_activity=["sent", "opened"])
    for subcode in ("Delivered", "Opened"):
        assert route(in_mailing(activity(subcode), EXCLUDED), sf) == dropped("mailing_excluded")
        assert route(in_mailing(activity(subcode), OTHER), sf) == taken(ACT)


@pytest.mark.parametrize("kind", [NETFORUM, SALESFORCE])
@pytest.mark.parametrize("action", STATUS_ACTIONS)
def test_subscriber_status_is_never_excluded_with_a_mailing(kind, action):
    """Unsubscribe, resubscribe and bad email cannot be deactivated (000), not even per mailing."""
    assert route(subscriber(action), excluding(kind, EXCLUDED, "mlg-58213")) == taken(SUB)


def test_an_excluded_mailing_of_a_type_that_is_off_or_not_offered_keeps_the_reason_it_had():
    nf = excluding(NETFORUM, EXCLUDED, mailing_activity=["sent"])
    assert route(in_mailing(activity("Opened"), EXCLUDED), nf) == dropped("activity_type_disabled")
    assert route(in_mailing(activity("InProgress"), EXCLUDED), nf) == dropped("not_for_kind")


@pytest.mark.parametrize("kind", [PERSONIFY, COMMUNITY, TRACKING])
def test_excluding_a_mailing_is_refused_where_no_optional_mailing_activity_is_written(kind):
    with pytest.raises(ConfigError, match=r"writebacks.excluded_mailings: .* nothing to exclude per mailing"):
        excluding(kind, EXCLUDED)


@pytest.mark.parametrize("bad", ["", "x" * 65, "m\x00"])
def test_an_excluded_mailing_id_must_be_a_mailing_id(bad):
    with pytest.raises(ConfigError, match=r"connections\[conn-netforum\].writebacks.excluded_mailings"):
        excluding(NETFORUM, bad)


def test_excluded_mailings_are_stored_sorted_and_read_back():
    nf = excluding(NETFORUM, "m-b", "m-a", "m-b")
    assert nf.writebacks.excluded_mailings == {"m-a", "m-b"}
    assert nf.model_dump(mode="json")["writebacks"]["excluded_mailings"] == ["m-a", "m-b"]
    assert Connection.model_validate(nf.model_dump(mode="json")) == nf


# ---------------------------------------------------------------------------------------------
# mailing_activity(): 001 subcode -> 000 mailing-activity type
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subcode", BOUNCE_SUBCODES)
def test_every_bounce_subcode_is_bounce_activity(subcode):
    """001 "Sent" rows SoftBounce ... SendFailed are each 000's "Bounce"."""
    assert mailing_activity(activity(subcode)) is MailingActivity.BOUNCE


@pytest.mark.parametrize(
    ("subcode", "expected"),
    [(s, t) for s, t in EXPECTED_MAILING_ACTIVITY.items() if t is not MailingActivity.BOUNCE],
)
def test_mailing_activity_of_sent_opened_clicked_blocked_and_shared(subcode, expected):
    """000: "Subcode | Type of mailing activity interaction (e.g., Sent, Open, Click)"; 001
    "Sent | Delivered" is the sent writeback."""
    assert mailing_activity(activity(subcode)) is expected


def test_in_progress_is_not_yet_sent():
    """001: InProgress is "messages that are still in the process of delivering"."""
    assert mailing_activity(activity("InProgress")) is None


@pytest.mark.parametrize("subcode", NOT_MAILING_ACTIVITY)
def test_non_mailing_subcodes_have_no_mailing_activity_type(subcode):
    assert mailing_activity(activity(subcode)) is None


def test_every_mailing_activity_type_has_a_subcode():
    """Each 000 checkbox can actually be exercised by some event."""
    assert set(EXPECTED_MAILING_ACTIVITY.values()) == set(MailingActivity)


# ---------------------------------------------------------------------------------------------
# Tracking (001)
# ---------------------------------------------------------------------------------------------


def _tracked_001_samples() -> list[SubscriberEvent | ActivityEvent]:
    extensions = extension_subcodes()
    return [
        e
        for e in NON_COMMUNITY_SAMPLES
        if tracking_pair(e) is not None
        and not (isinstance(e, ActivityEvent) and str(e.subcode) in extensions)
    ]


def test_samples_cover_every_001_tracking_pair():
    """Guard for the next test: every row of 001's tables has a sample event."""
    assert {tracking_pair(e) for e in _tracked_001_samples()} == set(all_tracking_pairs())


@pytest.mark.parametrize("event", _tracked_001_samples(), ids=sample_id)
def test_tracking_takes_every_001_code_subcode_pair(event):
    """001: "Tracking information will display in an integrated product" for every Activity
    Code / Activity Subcode row; recipient-detail rows (Subscribed, Unsubscribed, Suppressed)
    are subscriber events, the rest activity."""
    expected = SUB if isinstance(event, SubscriberEvent) else ACT
    assert route(event, connection(TRACKING)) == taken(expected)


@pytest.mark.parametrize("action", [RESUBSCRIBE, BAD_EMAIL])
def test_tracking_drops_resubscribe_and_bad_email_which_have_no_001_pair(action):
    """001's "Recipient details" table has Subscribed, Unsubscribed and Suppressed rows only."""
    assert route(subscriber(action), connection(TRACKING)) == dropped("no_tracking_pair")


@pytest.mark.parametrize("event", NON_COMMUNITY_SAMPLES, ids=sample_id)
def test_tracking_disabled_drops_everything(event):
    """001: tracking displays only if "tracking is enabled in the Settings > Integrations >
    Integration Management tab"."""
    tracking_off = connection(TRACKING, tracking_enabled=False)
    assert route(event, tracking_off) == dropped("tracking_disabled")


def test_tracking_ignores_the_mailing_activity_checkboxes():
    """001 pushes every pair; 000's per-type checkboxes are a netFORUM/Salesforce setting."""
    for subcode in ("Opened", "Clicked", "HardBounce"):
        assert route(activity(subcode), connection(TRACKING)) == taken(ACT)


# ---------------------------------------------------------------------------------------------
# Personify (004)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [e for e in SUBSCRIBER_SAMPLES if e.action in (UNSUBSCRIBE, RESUBSCRIBE, SUBSCRIBE)],
    ids=sample_id,
)
def test_personify_takes_subscription_changes_at_every_scope(event):
    """004: "The following subscription types can be mapped back to Personify: Unsubscribe to
    Group Categories or Group; Unsubscribe to Message Categories"; "Subscribe and Unsubscribe
    tracking is enabled in Tools > Personify Management"."""
    assert route(event, connection(PERSONIFY)) == taken(SUB)


@pytest.mark.parametrize("mode", ["activity", "opt_in", "both"])
def test_personify_takes_unsubscribes_in_every_write_mode(mode):
    """004: written as CUS_ACTIVITY records, as the CUS_OPT_IN flag, or both."""
    assert route(subscriber(UNSUBSCRIBE), connection(PERSONIFY, personify_mode=mode)) == taken(SUB)


@pytest.mark.parametrize(
    "event",
    [e for e in SUBSCRIBER_SAMPLES if e.action in (BAD_EMAIL, SUPPRESS)],
    ids=sample_id,
)
def test_personify_drops_bad_email_and_suppressions(event):
    """004 writes subscription activity (subscribe/unsubscribe) only."""
    assert route(event, connection(PERSONIFY)) == dropped("not_for_kind")


@pytest.mark.parametrize("event", ACTIVITY_SAMPLES, ids=sample_id)
def test_personify_takes_no_activity(event):
    """004 is "subscription data" only: no mailing activity."""
    assert route(event, connection(PERSONIFY)) == dropped("not_for_kind")


# ---------------------------------------------------------------------------------------------
# Community (003)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", COMMUNITY_SAMPLES, ids=sample_id)
def test_community_connection_routes_no_list_membership_change_outbound(event):
    """003 is inbound: the community sync produces these events (writeback/adapters/community),
    so a community connection never stores one as a writeback to send anywhere."""
    assert route(event, connection(COMMUNITY)) == dropped("produced_by_sync")


@pytest.mark.parametrize("event", NON_COMMUNITY_SAMPLES, ids=sample_id)
def test_community_connection_drops_subscriber_and_activity_events(event):
    """003 is inbound list sync only; it writes nothing back."""
    assert route(event, connection(COMMUNITY)) == dropped("not_for_kind")


@pytest.mark.parametrize("kind", [NETFORUM, SALESFORCE, PERSONIFY, TRACKING])
@pytest.mark.parametrize("event", COMMUNITY_SAMPLES, ids=sample_id)
def test_other_kinds_drop_community_list_events(kind, event):
    assert route(event, connection(kind)) == dropped("not_for_kind")


# ---------------------------------------------------------------------------------------------
# Remembered routes (what ingest uses)
# ---------------------------------------------------------------------------------------------

VARIED_CONNECTIONS = [
    *(connection(kind) for kind in ALL_KINDS),
    *(connection(kind, enabled=False) for kind in ALL_KINDS),
    with_mailing_activity(SALESFORCE, MailingActivity.SENT, MailingActivity.OPENED),
    with_mailing_activity(NETFORUM),
    connection(TRACKING, tracking_enabled=False),
    excluding(NETFORUM, "mlg-58213"),
    excluding(SALESFORCE, "mlg-58213", mailing_activity=["sent", "opened"]),
]
CRM_SYNC_SAMPLES = [subscriber(action, source=Source.CRM_SYNC) for action in STATUS_ACTIONS]


def test_remembered_routes_decide_every_sample_as_route_does_whatever_the_order():
    """The memo key must capture everything `route` reads: later events hit entries made by
    earlier, different events. (Connection ids are unique within one settings snapshot, which
    a Routes serves, so each connection gets its own here.)"""
    other_mailing = [in_mailing(e, OTHER) for e in ACTIVITY_SAMPLES if e.mailing is not None]
    events = [*ALL_SAMPLES, *CRM_SYNC_SAMPLES, *other_mailing]
    for conn in VARIED_CONNECTIONS:
        for events_in_order in (events, list(reversed(events))):
            routes = Routes()
            for event in events_in_order:
                decoded = from_event(Consumed(event.topic, 0, 0, None, None), event)
                assert routes.route(decoded, conn) == route(event, conn), (sample_id(event), conn.kind)


def test_an_event_whose_route_is_not_remembered_is_checked_against_the_whole_contract_first():
    """The model is built when a route is decided, so an event that breaks the contract is set
    aside at ingest rather than remembered; an event routed from memory is checked at flush."""
    from writeback.errors import InvalidEvent

    sent = next(e for e in ACTIVITY_SAMPLES if e.mailing is not None)
    conn = connection(TRACKING)
    broken = from_event(Consumed(sent.topic, 0, 0, None, None), sent)
    broken._event = None
    broken.data["code"] = "Opened" if sent.code != "Opened" else "Sent"  # does not fit the subcode
    routes = Routes()

    with pytest.raises(InvalidEvent, match="subcode"):
        routes.route(broken, conn)
    valid = from_event(Consumed(sent.topic, 0, 1, None, None), sent)
    assert routes.route(valid, conn) == route(sent, conn)
