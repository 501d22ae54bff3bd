"""Seed 001's Activity Code / Subcode tables are the spec; the code derives them from schemas."""

from __future__ import annotations

from collections import Counter

import pytest
from writeback_dev.samples import activity_samples, subscriber_samples

from writeback.contract.events import (
    ActivityCode,
    ActivityEvent,
    ActivitySubcode,
    SubscriberAction,
    SubscriberEvent,
    SuppressionSubtype,
    enum_property,
)
from writeback.contract.taxonomy import (
    all_tracking_pairs,
    code_of,
    extension_subcodes,
    label,
    tracking_pair,
)

# The "Activity Code | Activity Subcode" columns of the five tables in seed 001 (Message activity,
# Recipient details, Marketing Automation, Social CRM, Surveys & Events), verbatim and in the
# seed's order, each table starting with its header row.
SEED_001_TABLES = """
Activity Code | Activity Subcode |
Opened | Opened |
Sent | Delivered |
Sent | SoftBounce |
Sent | HardBounce |
Sent | UserNotFound |
Sent | MailboxFull |
Sent | TemporarilyUnavailable |
Sent | BadDomain |
Sent | InProgress |
Sent | SendFailed |
LinkClicked | Clicked |
FaxSent | FaxSuccessful |
FaxSent | FaxFailed |
SmsSent | SMSSent |
SmsSent | SMSSTOPfromPhoneNumber |
SmsSent | SMSLicenseKeyInvalid |
SmsSent | SMSPhoneNumberInvalid |
SmsSent | SMSMessageInvalid |
SmsSent | SMSScheduledTimeIsNotUTC |
SmsSent | SMSInvalidAssignedDID |
SmsSent | SMSNotFound |
SmsSent | SMSInternalError |
SmsSent | SMSServiceUnavailable |
Activity Code | Activity Subcode |
Subscribed | Subscribed |
Unsubscribed | Unsubscribed |
Suppressed | ManualSuppress |
Suppressed | ListUploadSuppress |
Suppressed | UserNotFoundSuppress |
Suppressed | SpamComplaintSuppress |
Suppressed | CampaignSuppress |
Suppressed | DomainSuppress |
Suppressed | ManageSubscription |
Suppressed | BadDomainSuppress |
Suppressed | UnsubscribedAcrossAccts |
Suppressed | SuppressedAcrossAccts |
Suppressed | Previous |
Suppressed | Detail Unavailable |
Suppressed | AutoNon-EngagedSuppress |
Suppressed | Unsub From All Link |
Suppressed | Generic Hard |
Suppressed | Generic Soft |
Suppressed | Mailbox Full |
Activity Code | Activity Subcode |
LandingPageSubmit | LandingPageSubmit |
WebsiteVisit | WebsiteVisit |
GoalSuccess | GoalSuccess |
Activity Code | Activity Subcode |
Social | FacebookComment |
Social | FacebookLike |
Social | FacebookPost |
Social | TwitterMention |
Social | TwitterReply |
Social | TwitterRetweet |
Social | TwitterTweet |
Activity Code | Activity Subcode |
Event Signup | Event Signup |
Survey Submit | Survey Submit |
"""


def seed_pairs() -> list[tuple[str, str]]:
    """The (code, subcode) rows, without each table's header row."""
    rows = [line.removesuffix(" |").split(" | ") for line in SEED_001_TABLES.strip().splitlines()]
    return [(code, subcode) for code, subcode in rows if code != "Activity Code"]


def test_seed_table_text_is_complete() -> None:
    assert len(seed_pairs()) == 54


def test_all_tracking_pairs_equal_seed_001_tables() -> None:
    pairs = all_tracking_pairs()
    assert len(pairs) == len(set(pairs)), "a pair appears twice"
    assert Counter(pairs) == Counter(seed_pairs())


def test_activity_pairs_keep_seed_order() -> None:
    """Schema order follows the seed, so reports and docs list pairs as 001 does."""
    recipient_details = {"Subscribed", "Unsubscribed", "Suppressed"}
    activity = [p for p in all_tracking_pairs() if p[0] not in recipient_details]
    assert activity == [p for p in seed_pairs() if p[0] not in recipient_details]


def test_extensions_are_exactly_what_seed_000_adds() -> None:
    assert extension_subcodes() == {"Blocked", "SocialShare"}
    extra = set(all_tracking_pairs(include_extensions=True)) - set(all_tracking_pairs())
    assert extra == {("Blocked", "Blocked"), ("Social", "SocialShare")}


def test_every_subcode_belongs_to_exactly_one_known_code() -> None:
    x_code = enum_property("ActivitySubcode", "x-code")
    subcodes = [s for s in ActivitySubcode if s != "UNKNOWN"]
    assert sorted(x_code) == sorted(subcodes)
    assert set(x_code.values()) == {c.value for c in ActivityCode if c != "UNKNOWN"}
    for subcode in subcodes:
        assert code_of(subcode) == x_code[subcode]


def test_labels_where_seed_text_is_not_an_avro_name() -> None:
    assert label("ActivityCode", "EventSignup") == "Event Signup"
    assert label("ActivitySubcode", "SurveySubmit") == "Survey Submit"
    assert label("SuppressionSubtype", "DetailUnavailable") == "Detail Unavailable"
    assert label("SuppressionSubtype", "AutoNonEngagedSuppress") == "AutoNon-EngagedSuppress"
    assert label("SuppressionSubtype", "UnsubFromAllLink") == "Unsub From All Link"
    assert label("SuppressionSubtype", "GenericHard") == "Generic Hard"
    assert label("SuppressionSubtype", "GenericSoft") == "Generic Soft"
    # Same words, different enums: the Sent bounce keeps its own text.
    assert label("SuppressionSubtype", "MailboxFullSuppress") == "Mailbox Full"
    assert label("ActivitySubcode", "MailboxFull") == "MailboxFull"
    with pytest.raises(KeyError, match="no symbol"):
        label("ActivitySubcode", "Nope")


def test_every_activity_sample_has_its_pair() -> None:
    known = set(all_tracking_pairs(include_extensions=True))
    for event in activity_samples():
        pair = tracking_pair(event)
        assert pair in known
        assert pair == (label("ActivityCode", event.code), label("ActivitySubcode", event.subcode))


def _subscriber(action: str, suppression: str | None = None) -> SubscriberEvent:
    return next(
        e
        for e in subscriber_samples()
        if e.action == action and (suppression is None or e.suppression == suppression)
    )


def test_subscriber_pairs() -> None:
    assert tracking_pair(_subscriber("SUBSCRIBE")) == ("Subscribed", "Subscribed")
    assert tracking_pair(_subscriber("UNSUBSCRIBE")) == ("Unsubscribed", "Unsubscribed")
    assert tracking_pair(_subscriber("SUPPRESS", "DetailUnavailable")) == (
        "Suppressed",
        "Detail Unavailable",
    )
    assert tracking_pair(_subscriber("SUPPRESS", "MailboxFullSuppress")) == (
        "Suppressed",
        "Mailbox Full",
    )


@pytest.mark.parametrize("action", ["RESUBSCRIBE", "BAD_EMAIL"])
def test_actions_without_a_seed_001_row_have_no_pair(action: str) -> None:
    assert tracking_pair(_subscriber(action)) is None


def test_every_suppression_subtype_maps_into_the_seed_table() -> None:
    seed = set(seed_pairs())
    for subtype in SuppressionSubtype:
        if subtype != "UNKNOWN":
            pair = tracking_pair(_subscriber("SUPPRESS", subtype))
            assert pair in seed


def test_only_the_seed_001_actions_have_tracking_codes() -> None:
    """Guard against the taxonomy silently covering fewer (or more) actions than 001 has."""
    covered = set(enum_property("SubscriberAction", "x-tracking-code"))
    assert covered == {"SUBSCRIBE", "UNSUBSCRIBE", "SUPPRESS"}
    assert covered < {a.value for a in SubscriberAction}
    assert isinstance(activity_samples()[0], ActivityEvent)
