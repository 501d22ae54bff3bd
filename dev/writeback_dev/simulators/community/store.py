"""The community's data: contacts and List Builder lists. Not thread-safe: the server holds its lock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

LIST_TYPE = "CustomUserList"


def parse_guid(value: str | None) -> str | None:
    """A GUID in canonical lower-case form (braces allowed, as .NET accepts them), else None."""
    if not value:
        return None
    try:
        return str(uuid.UUID(value.strip().strip("{}")))
    except ValueError:
        return None


def render_time(moment: datetime) -> str:
    """UTC with milliseconds and a Z: our rendering of UpdatedOn."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Contact:
    contact_key: str
    first_name: str | None
    last_name: str | None
    email: str | None
    legacy_contact_key: str | None

    def json(self) -> dict[str, Any]:
        return {
            "ContactKey": self.contact_key,
            "LegacyContactKey": self.legacy_contact_key,
            "FirstName": self.first_name,
            "LastName": self.last_name,
            "EmailAddress": self.email,
        }

    def order(self) -> tuple[str, str, str]:
        """LastName, FirstName order (as the API's GetCommunityMembers), ContactKey breaks ties."""
        return ((self.last_name or "").casefold(), (self.first_name or "").casefold(), self.contact_key)


@dataclass(slots=True)
class CustomList:
    list_key: str
    name: str
    list_type: str
    created: int
    updated_on: datetime
    members: set[str] = field(default_factory=set)

    def json(self) -> dict[str, Any]:
        return {
            "ListKey": self.list_key,
            "ListName": self.name,
            "ListType": self.list_type,
            "MemberCount": len(self.members),
            "UpdatedOn": render_time(self.updated_on),
        }


class Store:
    def __init__(self) -> None:
        self.contacts: dict[str, Contact] = {}
        self.lists: dict[str, CustomList] = {}
        self._created = 0
        self._last_time = datetime.min.replace(tzinfo=UTC)

    def _stamp(self) -> datetime:
        """Now, but strictly after the previous stamp (millisecond rendering included): a list
        changed twice shows two different UpdatedOn values."""
        now = datetime.now(UTC)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        self._last_time = max(now, self._last_time + timedelta(milliseconds=1))
        return self._last_time

    # contacts ----------------------------------------------------------------------------------

    def add_contact(
        self,
        first_name: str | None,
        last_name: str | None,
        email: str | None,
        legacy_contact_key: str | None,
        contact_key: str | None,
    ) -> str:
        key = parse_guid(contact_key) if contact_key else str(uuid.uuid4())
        if key is None:
            raise ValueError(f"ContactKey {contact_key!r} is not a GUID")
        if key in self.contacts:
            raise ValueError(f"contact {key} exists")
        self.contacts[key] = Contact(key, first_name, last_name, email, legacy_contact_key)
        return key

    def contact(self, contact_key: str) -> Contact:
        key = parse_guid(contact_key)
        if key is None or key not in self.contacts:
            raise KeyError(contact_key)
        return self.contacts[key]

    def sorted_contacts(self, keys: set[str] | None = None) -> list[Contact]:
        chosen = self.contacts.values() if keys is None else (self.contacts[k] for k in keys)
        return sorted(chosen, key=Contact.order)

    # lists -------------------------------------------------------------------------------------

    def add_list(self, name: str, members: list[str], list_type: str, list_key: str | None) -> str:
        key = parse_guid(list_key) if list_key else str(uuid.uuid4())
        if key is None:
            raise ValueError(f"ListKey {list_key!r} is not a GUID")
        if key in self.lists:
            raise ValueError(f"list {key} exists")
        member_keys = {self.contact(m).contact_key for m in members}
        self._created += 1
        self.lists[key] = CustomList(key, name, list_type, self._created, self._stamp(), member_keys)
        return key

    def list(self, list_key: str) -> CustomList:
        key = parse_guid(list_key)
        if key is None or key not in self.lists:
            raise KeyError(list_key)
        return self.lists[key]

    def sorted_lists(self) -> list[CustomList]:
        """Creation order: a later list appears after the ones a client has already paged past."""
        return sorted(self.lists.values(), key=lambda item: item.created)

    def add_member(self, list_key: str, contact_key: str) -> bool:
        found, key = self.list(list_key), self.contact(contact_key).contact_key
        if key in found.members:
            return False
        found.members.add(key)
        found.updated_on = self._stamp()
        return True

    def remove_member(self, list_key: str, contact_key: str) -> bool:
        found, key = self.list(list_key), parse_guid(contact_key)
        if key not in found.members:
            return False
        found.members.discard(key)
        found.updated_on = self._stamp()
        return True

    def rename_list(self, list_key: str, name: str) -> None:
        found = self.list(list_key)
        found.name = name
        found.updated_on = self._stamp()

    def remove_list(self, list_key: str) -> None:
        del self.lists[self.list(list_key).list_key]
