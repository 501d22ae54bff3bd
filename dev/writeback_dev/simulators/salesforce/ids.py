"""Salesforce record ids: the 15-character form orgs show and the 18-character form they return.

The simulator has its own copy of this conversion on purpose. The adapter it checks has one too;
if the simulator borrowed the adapter's, a bug there would agree with itself and no test would
see it. The algorithm is Salesforce's public one: the 15-character id is case-sensitive; split
it into three chunks of five, read each chunk as five bits (bit i set when character i is an
uppercase letter A-Z), and append the characters those three numbers index in `A-Z0-5`.
"""

from __future__ import annotations

import string

_SUFFIX_ALPHABET = string.ascii_uppercase + "012345"  # 32 characters: one per 5-bit value


def _suffix(base: str) -> str:
    """The three checksum characters of a 15-character id."""
    chars = []
    for start in (0, 5, 10):
        index = 0
        for position, char in enumerate(base[start : start + 5]):
            if "A" <= char <= "Z":
                index += 2**position
        chars.append(_SUFFIX_ALPHABET[index])
    return "".join(chars)


def id18(value: object) -> str | None:
    """The canonical 18-character form of `value`, or None if it is not a Salesforce id.

    15 ASCII letters or digits, optionally followed by the 3-character suffix, which must match
    (compared case-insensitively, as Salesforce does for 18-character ids).
    """
    if not isinstance(value, str) or len(value) not in (15, 18):
        return None
    if not (value.isascii() and value.isalnum()):
        return None
    base = value[:15]
    suffix = _suffix(base)
    if len(value) == 18 and value[15:].upper() != suffix:
        return None
    return base + suffix
