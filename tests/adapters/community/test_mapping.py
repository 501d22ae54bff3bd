"""Which List Builder lists become target groups and under which name, and how a list's members
reconcile with the group's subscribers (seed 003)."""

from __future__ import annotations

import pytest

from writeback.adapters.community.client import Member
from writeback.adapters.community.mapping import (
    Standing,
    normal_email,
    reconcile,
    target_group_name,
)


@pytest.mark.parametrize(
    ("list_name", "group"),
    [
        ("Informz Has Started Discussion Thread", "Has Started Discussion Thread"),  # 003's example
        ("Informz Welcome New Members", "Welcome New Members"),
        ("Informz  Two Spaces ", "Two Spaces"),
        ("Informz\tTabbed", "Tabbed"),
        ("Informz Informz Twice", "Informz Twice"),  # the prefix is removed once
        # near-misses: not "begin with the text Informz" followed by a name
        ("informz lowercase prefix", None),
        ("INFORMZ Shouting", None),
        (" Informz Leading Space", None),
        ("InformzX No Space", None),
        ("Informz-Dashed", None),
        ("Informz", None),
        ("Informz   ", None),
        ("Board Members", None),
        ("My Informz List", None),
    ],
)
def test_only_names_beginning_with_the_word_informz_become_target_groups(list_name, group):
    assert target_group_name(list_name) == group


@pytest.mark.parametrize(
    ("email", "normal"),
    [
        ("ada@example.org", "ada@example.org"),
        (" ADA@Example.org ", "ada@example.org"),
        ("katherine.johnson@", None),
        ("dorothy vaughan at example.org", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("two@@example.org", None),
    ],
)
def test_addresses_are_trimmed_and_case_folded_or_refused(email, normal):
    assert normal_email(email) == normal


def member(key: str | None, email: str | None, contact: str | None = None) -> Member:
    return Member(contact or f"c-{key}-{email}", key, email)


def test_every_member_is_a_subscriber_or_counted_under_one_cause():
    members = [
        member("R-1", "ada@example.org"),
        member("R-2", "grace@example.org"),
        member("R-3", "alan@example.org"),  # unsubscribed in the platform
        member("R-4", "grace@example.org"),  # duplicate of R-2
        member("R-5", " ADA@Example.org "),  # duplicate of R-1, other case and spaces
        member("R-6", "katherine.johnson@"),  # malformed
        member("R-7", None),  # no address
        member(None, "annie@example.org"),  # no Legacy Contact Key: nothing to match on
        member("R-8", "bounced@example.org"),  # marked bad in the platform
    ]
    statuses = {"R-3": "unsubscribed", "bounced@example.org": "bad_email"}
    result = reconcile(members, lambda key, email: statuses.get(key) or statuses.get(email or ""))
    assert result.members == 9
    assert result.subscribers == 2
    assert result.causes() == {"no_remote_id": 1, "invalid_email": 3, "duplicate_email": 2, "unsubscribed": 1}
    assert result.members == result.subscribers + sum(result.causes().values())
    assert {k: p.standing for k, p in result.placed.items()} == {
        "R-1": Standing.SUBSCRIBER, "R-2": Standing.SUBSCRIBER, "R-3": Standing.UNSUBSCRIBED,
        "R-4": Standing.DUPLICATE_EMAIL, "R-5": Standing.DUPLICATE_EMAIL, "R-6": Standing.INVALID_EMAIL,
        "R-7": Standing.INVALID_EMAIL, "R-8": Standing.INVALID_EMAIL,
    }  # fmt: skip


def test_the_first_member_in_remote_id_order_keeps_a_shared_address():
    """Whichever order the community pages members in, the same member is the subscriber."""
    members = [member("R-9", "pat@example.org"), member("R-2", "PAT@example.org")]
    for ordering in (members, members[::-1]):
        placed = reconcile(ordering, lambda *_: None).placed
        assert placed["R-2"].standing is Standing.SUBSCRIBER
        assert placed["R-9"].standing is Standing.DUPLICATE_EMAIL


def test_two_contacts_with_one_remote_id_are_one_membership():
    result = reconcile([member("R-1", "a@example.org", "c1"), member("R-1", "b@example.org", "c2")], lambda *_: None)
    assert list(result.placed) == ["R-1"]
    assert result.subscribers == 1 and result.counts[Standing.DUPLICATE_EMAIL] == 1
