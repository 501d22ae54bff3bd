"""The simulated org's metadata: which sObjects exist, their key prefixes and their fields.

Only what the writeback adapters touch (Contact, Lead, Note, Task) with Salesforce's own field
names, lengths and rules, so a write the simulator accepts is one an org accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldSpec:
    kind: str = "string"  # string | textarea | boolean | date | datetime | id | reference | picklist
    length: int | None = None
    required: bool = False
    default: Any = None
    references: tuple[str, ...] = ()
    external_id: bool = False
    unique: bool = False
    createable: bool = True
    updateable: bool = True


@dataclass(frozen=True, slots=True)
class SObjectType:
    name: str
    prefix: str
    fields: dict[str, FieldSpec]

    def canonical(self, name: str) -> str | None:
        """Field names are case-insensitive in Salesforce; return the declared spelling."""
        return next((f for f in self.fields if f.lower() == name.lower()), None)


_SYSTEM_FIELDS = {
    "Id": FieldSpec("id", createable=False, updateable=False),
    "IsDeleted": FieldSpec("boolean", default=False, createable=False, updateable=False),
    "CreatedDate": FieldSpec("datetime", createable=False, updateable=False),
    "LastModifiedDate": FieldSpec("datetime", createable=False, updateable=False),
    "SystemModstamp": FieldSpec("datetime", createable=False, updateable=False),
}
_WHO = ("Contact", "Lead")
_PERSON_FIELDS = {
    "FirstName": FieldSpec(length=40),
    "LastName": FieldSpec(length=80, required=True),
    "Email": FieldSpec(length=80),
    "HasOptedOutOfEmail": FieldSpec("boolean", default=False),
}
SCHEMA: dict[str, SObjectType] = {
    "Contact": SObjectType("Contact", "003", {**_SYSTEM_FIELDS, **_PERSON_FIELDS}),
    "Lead": SObjectType(
        "Lead",
        "00Q",
        {
            **_SYSTEM_FIELDS,
            **_PERSON_FIELDS,
            "Company": FieldSpec(length=255, required=True),
            "Status": FieldSpec("picklist", length=255, default="Open - Not Contacted"),
        },
    ),
    "Note": SObjectType(
        "Note",
        "002",
        {
            **_SYSTEM_FIELDS,
            "ParentId": FieldSpec("reference", required=True, references=_WHO, updateable=False),
            "Title": FieldSpec(length=80, required=True),
            "Body": FieldSpec("textarea", length=32000),
            "IsPrivate": FieldSpec("boolean", default=False),
        },
    ),
    "Task": SObjectType(
        "Task",
        "00T",
        {
            **_SYSTEM_FIELDS,
            "WhoId": FieldSpec("reference", references=_WHO),
            "Subject": FieldSpec(length=255),
            "ActivityDate": FieldSpec("date"),
            "Status": FieldSpec("picklist", length=255, required=True, default="Not Started"),
            "Priority": FieldSpec("picklist", length=40, required=True, default="Normal"),
            "Type": FieldSpec("picklist", length=40),
            "Description": FieldSpec("textarea", length=32000),
            "Activity_Group__c": FieldSpec(length=255),
            "Activity__c": FieldSpec(length=255),
            "Writeback_Id__c": FieldSpec(length=255, external_id=True, unique=True),
        },
    ),
}
PREFIXES = {obj.prefix: name for name, obj in SCHEMA.items()}
