"""What a List Builder list means to the marketing platform (seed 003): which lists become
target groups and under which name, and how a list's members become a group's subscribers.

The "Informz" prefix rule. 003: "Each list must begin with the text Informz", and "Informz is
removed from the name" ("Informz Has Started Discussion Thread" → "Has Started Discussion
Thread"). We read it literally and as a word:
- the name must start with exactly `Informz` (that case, no leading space) followed by
  whitespace, and something must be left after it; the group's name is the rest, trimmed;
- "informz …" (other case) and " Informz …" (leading space) do not begin with the text Informz,
  so they are not target groups: a Super Admin who meant them sees them missing and renames them,
  as 003's troubleshooting asks ("Does the list name begin with the text Informz?"), instead of
  us guessing;
- "InformzX …" is not the word Informz: removing the prefix would leave "X …", a name nobody
  chose; "Informz" alone would leave no name at all.

Reconciliation. 003's troubleshooting names three reasons community and platform counts differ:
members unsubscribed in the platform, malformed or invalid addresses, duplicate addresses in the
community. Each member gets one standing, checked in this order: no Legacy Contact Key (nothing
to match on: Legacy Contact Key = Remote ID), invalid email (missing, malformed, or marked bad
in the platform), duplicate email (the address, trimmed and case-folded, of a member met earlier
in Legacy Contact Key order), unsubscribed in the platform; otherwise subscriber. So
members = subscribers + the sum of the causes, exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from email_validator import EmailNotValidError, validate_email

from writeback.adapters.community.client import Member

PREFIX = "Informz"
FOLDER = "Online Community"
_INFORMZ = re.compile(rf"^{PREFIX}\s+(?P<rest>\S.*)$", re.DOTALL)


def target_group_name(list_name: str) -> str | None:
    """The target group a list becomes, or None when it is not meant for the platform."""
    found = _INFORMZ.match(list_name)
    return found.group("rest").strip() if found else None


class Standing(StrEnum):
    """Why a member is, or is not, a subscriber of the target group."""

    SUBSCRIBER = "subscriber"
    UNSUBSCRIBED = "unsubscribed"  # 003's causes first, in its order
    INVALID_EMAIL = "invalid_email"
    DUPLICATE_EMAIL = "duplicate_email"
    NO_REMOTE_ID = "no_remote_id"  # ours: nothing to match on


CAUSES = tuple(s for s in Standing if s is not Standing.SUBSCRIBER)


@dataclass(frozen=True, slots=True)
class Placed:
    """A member with a Legacy Contact Key: one membership of the target group."""

    legacy_contact_key: str
    email: str | None
    standing: Standing


@dataclass(slots=True)
class Reconciliation:
    members: int = 0  # community members of the list
    counts: dict[Standing, int] = field(default_factory=lambda: dict.fromkeys(Standing, 0))
    placed: dict[str, Placed] = field(default_factory=dict)  # by Legacy Contact Key

    @property
    def subscribers(self) -> int:
        return self.counts[Standing.SUBSCRIBER]

    def causes(self) -> dict[str, int]:
        return {str(cause): self.counts[cause] for cause in CAUSES}


def normal_email(email: str | None) -> str | None:
    """The address as the platform keys subscribers, or None when it is not an address."""
    if email is None or not email.strip():
        return None
    try:
        validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError:
        return None
    return email.strip().casefold()


# platform standing of a member by its identities (Remote ID, address): "unsubscribed", "bad_email" or None
PlatformStatus = Callable[[str, str | None], str | None]


def reconcile(members: Iterable[Member], platform_status: PlatformStatus) -> Reconciliation:
    result = Reconciliation()
    members = list(members)
    result.members = len(members)
    seen_emails: set[str] = set()
    ordered = sorted(members, key=lambda m: (m.legacy_contact_key is None, m.legacy_contact_key or "", m.contact_key))
    for member in ordered:
        key = member.legacy_contact_key.strip() if member.legacy_contact_key else ""
        if not key or key in result.placed:
            # nothing to match on, or a second contact with the same Remote ID (one subscriber)
            result.counts[Standing.NO_REMOTE_ID if not key else Standing.DUPLICATE_EMAIL] += 1
            continue
        email = normal_email(member.email)
        status = platform_status(key, email)
        if email is None or status == "bad_email":
            standing = Standing.INVALID_EMAIL
        elif email in seen_emails:
            standing = Standing.DUPLICATE_EMAIL
        elif status == "unsubscribed":
            standing = Standing.UNSUBSCRIBED
        else:
            standing = Standing.SUBSCRIBER
        if email is not None:
            seen_emails.add(email)
        result.counts[standing] += 1
        result.placed[key] = Placed(key, member.email, standing)
    return result
