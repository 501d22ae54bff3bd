"""Seed 001's tracking taxonomy (Activity Code / Activity Subcode), read from the schemas.

The tracking product writes every activity as a pair of exact labels. No label lives in this
module: the Avro enums carry them
(`x-labels` for seed text that is not a valid Avro name, `x-code` for the subcode -> code map,
`x-tracking-code` for subscriber actions, `x-extensions` for pairs that seed 000 needs but 001
does not list), so a new subcode is a schema change and nothing here has to follow it.

001's "Recipient details" rows are subscription changes, so they arrive as `SubscriberEvent`s,
not activity events: SUBSCRIBE is Subscribed/Subscribed, UNSUBSCRIBE is
Unsubscribed/Unsubscribed (for those two the subcode repeats the code, as in 001), and SUPPRESS is
Suppressed/<the suppression subtype's label>.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

from writeback.contract.events import (
    UNKNOWN,
    ActivityCode,
    ActivityEvent,
    SubscriberAction,
    SubscriberEvent,
    enum_property,
    enum_symbols,
)

TrackingPair = tuple[str, str]


@cache
def _labels(enum_name: str) -> Mapping[str, str]:
    labels = enum_property(enum_name, "x-labels")
    return {symbol: labels.get(symbol, symbol) for symbol in enum_symbols(enum_name)}


def label(enum_name: str, symbol: str) -> str:
    """The exact seed text of an enum symbol (the symbol itself unless `x-labels` says otherwise).

    CRMs match on this text, so it must be the seed's, spaces and hyphens included.
    """
    try:
        return _labels(enum_name)[symbol]
    except KeyError:
        raise KeyError(f"{enum_name} has no symbol {symbol!r}") from None


def code_of(subcode: str) -> ActivityCode:  # type: ignore[valid-type]
    """The one Activity Code a subcode belongs to (the schema's `x-code`)."""
    return ActivityCode(enum_property("ActivitySubcode", "x-code")[subcode])


@cache
def extension_subcodes() -> frozenset[str]:
    """Subcodes seed 000's mailing activity needs that seed 001 does not list.

    The tracking integration may choose not to write them, since its CRMs only know 001's pairs.
    """
    return frozenset(enum_property("ActivitySubcode", "x-extensions"))


def tracking_pair(event: ActivityEvent | SubscriberEvent) -> TrackingPair | None:
    """The (Activity Code, Activity Subcode) labels 001's tracking writes for an event.

    Returns None for RESUBSCRIBE and BAD_EMAIL: 001 has no row for them (a resubscribe is
    written back only where the unsubscribe happened, and a bad address shows up in 001 as
    bounce activity and, eventually, a suppression), so tracking writes nothing for them.
    """
    if isinstance(event, ActivityEvent):
        return (label("ActivityCode", event.code), label("ActivitySubcode", event.subcode))
    code = enum_property("SubscriberAction", "x-tracking-code").get(event.action)
    if code is None:
        return None
    if event.action == SubscriberAction.SUPPRESS:
        assert event.suppression is not None  # SubscriberEvent requires it for SUPPRESS
        return (code, label("SuppressionSubtype", event.suppression))
    return (code, code)


def all_tracking_pairs(*, include_extensions: bool = False) -> tuple[TrackingPair, ...]:
    """Every pair tracking can write, in schema order: activity pairs, then Recipient details.

    Seed 000's extension pairs (Blocked, SocialShare) are left out unless asked for, so that by
    default the result is exactly 001's tables.
    """
    extensions = set() if include_extensions else extension_subcodes()
    activity = tuple(
        (label("ActivityCode", code_of(subcode)), label("ActivitySubcode", subcode))
        for subcode in _known("ActivitySubcode")
        if subcode not in extensions
    )
    return activity + _recipient_detail_pairs()


def _recipient_detail_pairs() -> tuple[TrackingPair, ...]:
    codes = enum_property("SubscriberAction", "x-tracking-code")
    pairs: list[TrackingPair] = []
    for action in _known("SubscriberAction"):
        if action not in codes:
            continue
        if action == SubscriberAction.SUPPRESS:
            pairs.extend(
                (codes[action], label("SuppressionSubtype", subtype))
                for subtype in _known("SuppressionSubtype")
            )
        else:
            pairs.append((codes[action], codes[action]))
    return tuple(pairs)


def _known(enum_name: str) -> list[str]:
    return [symbol for symbol in enum_symbols(enum_name) if symbol != UNKNOWN]
