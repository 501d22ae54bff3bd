"""The event contract in Python: pydantic models that mirror the Avro schemas in `schemas/`.

The `.avsc` files are the single source of truth. This module loads them at import time and
derives from them what would otherwise drift: the taxonomy enums (`ActivityCode`,
`ActivitySubcode`, `SuppressionSubtype`) are built from the schema symbols, and the small
hand-declared enums (kept so static readers see their members) are checked against the schema
when the module is imported, so a mismatch fails loudly instead of silently.

Evolution rule (the same one the schemas state in their top-level `doc`): every enum with a
closed set of symbols ends with `UNKNOWN` and declares `"default": "UNKNOWN"`, so a reader built
before a symbol was added resolves the new symbol to `UNKNOWN` instead of failing. `UNKNOWN` is
therefore something only old readers *see*; producers never write it and the models reject it
on input. New fields are only ever added as `["null", T]` with `"default": null`, which keeps
every subject BACKWARD compatible.

Models are frozen: an event is a fact that happened, and the ledger keys writebacks on it.
Input is strict where it comes from people (JSON: unknown fields are typos and are rejected) and
tolerant where it comes from the wire (`from_avro` ignores fields added by newer producers).
Decoding with this package's schema as the reader schema is still best: Avro resolution then
maps symbols added by newer producers to `UNKNOWN`, which the models reject with a message that
says so, instead of an "unknown symbol" error that looks like bad data.
"""

from __future__ import annotations

import copy
import json
import re
import typing
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, TypeVar

import fastavro
from fastavro.schema import load_schema
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# --------------------------------------------------------------------------------------------
# Schemas, topics, subjects
# --------------------------------------------------------------------------------------------

SCHEMA_DIR: Path = Path(__file__).parent.parent / "schemas"
NAMESPACE = "com.writeback.events"

SUBSCRIBER_TOPIC = "writeback.subscriber-events"
ACTIVITY_TOPIC = "writeback.activity-events"
COMMUNITY_TOPIC = "writeback.community-list-events"
DLQ_TOPIC_PREFIX = "writeback.dlq."
DLQ_INGEST_TOPIC = DLQ_TOPIC_PREFIX + "ingest"

#: The schemas that are registered under a subject (the others are named types they use).
TOP_LEVEL_SCHEMAS: tuple[str, ...] = (
    f"{NAMESPACE}.SubscriberEvent",
    f"{NAMESPACE}.ActivityEvent",
    f"{NAMESPACE}.CommunityListEvent",
    f"{NAMESPACE}.DeadLetter",
)

_KIND_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def dead_letter_topic(crm_kind: str, prefix: str = DLQ_TOPIC_PREFIX) -> str:
    """The dead-letter topic for a CRM kind (`"ingest"` for messages that failed before fan-out).

    One topic per kind lets engineers replay one CRM's failures without touching the others.
    """
    if not _KIND_RE.match(crm_kind):
        raise ValueError(f"crm_kind {crm_kind!r} is not usable in a topic name")
    return prefix + crm_kind


def subject_for(topic: str) -> str:
    """The Schema Registry subject of a topic's values (TopicNameStrategy)."""
    return f"{topic}-value"


def full_name(name: str) -> str:
    """Qualify a short schema name ("ActivityEvent") with the contract's namespace."""
    return name if "." in name else f"{NAMESPACE}.{name}"


@cache
def _resolved(name: str) -> dict[str, Any]:
    path = SCHEMA_DIR / f"{full_name(name)}.avsc"
    if not path.is_file():
        raise KeyError(f"no schema file {path.name} in {SCHEMA_DIR}")
    # _write_hint=False returns plain Avro JSON: named types from sibling files are inlined at
    # first use (later uses refer to them by full name), and docs and x- properties are kept.
    schema = load_schema(str(path), _write_hint=False)
    assert isinstance(schema, dict), f"{path.name} is not a named record"
    return schema


def resolved_schema(name: str) -> dict[str, Any]:
    """The self-contained schema (sibling files inlined) as a fresh, mutable dict."""
    return copy.deepcopy(_resolved(name))


def schema_json(name: str) -> str:
    """The fully resolved, self-contained schema JSON to register with a Schema Registry.

    A registry knows nothing about our sibling `.avsc` files, so each subject gets the whole
    schema with every named type inlined; docs and custom properties (`x-labels`, `x-code`)
    stay in, so what is registered is the same single source of truth the code reads.
    """
    return json.dumps(_resolved(name), separators=(",", ":"))


@cache
def parsed_schema(name: str) -> Any:
    """The schema parsed by fastavro, ready for `schemaless_writer` / `schemaless_reader`."""
    return fastavro.parse_schema(resolved_schema(name))


@cache
def named_types() -> Mapping[str, Mapping[str, Any]]:
    """Every named type (records, enums) of the contract, by full name, with custom properties."""
    found: dict[str, Mapping[str, Any]] = {}
    for top in TOP_LEVEL_SCHEMAS:
        named: dict[str, Any] = {}
        fastavro.parse_schema(resolved_schema(top), named_schemas=named)
        found.update(named)
    return found


def named_type(name: str) -> Mapping[str, Any]:
    """One named type by short or full name."""
    try:
        return named_types()[full_name(name)]
    except KeyError:
        raise KeyError(f"the contract has no named type {name!r}") from None


def enum_symbols(name: str) -> tuple[str, ...]:
    """The symbols of an Avro enum, in schema order (including UNKNOWN)."""
    return tuple(named_type(name)["symbols"])


def enum_property(name: str, prop: str) -> Mapping[str, Any]:
    """A custom mapping property of an enum (`x-labels`, `x-code`, ...); empty when absent."""
    value = named_type(name).get(prop, {})
    return dict(value)


# --------------------------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------------------------

UNKNOWN = "UNKNOWN"

_E = TypeVar("_E", bound=type[StrEnum])


def _mirrors_schema(cls: _E) -> _E:
    """Fail at import when a hand-declared enum no longer matches its Avro enum.

    The small enums are declared by hand so editors and type checkers see their members; this
    check keeps that convenience from becoming a second source of truth.
    """
    declared = tuple(member.value for member in cls)
    expected = enum_symbols(cls.__name__)
    if declared != expected:
        raise RuntimeError(f"{cls.__name__} declares {declared}, the schema has {expected}")
    return cls


def _schema_enum(name: str) -> type[StrEnum]:
    """An enum built from the schema's symbols, for the taxonomy enums the seeds may grow."""
    enum = StrEnum(name, [(s, s) for s in enum_symbols(name)], module=__name__)  # type: ignore[misc]
    enum.__doc__ = named_type(name).get("doc")
    return enum


@_mirrors_schema
class Source(StrEnum):
    """Where the action happened; see the `Source` schema doc for each symbol."""

    MAILING_LINK = "MAILING_LINK"
    ADMIN = "ADMIN"
    SUBSCRIPTION_PAGE = "SUBSCRIPTION_PAGE"
    ACCOUNT_RULE = "ACCOUNT_RULE"
    CRM_SYNC = "CRM_SYNC"
    LIST_UPLOAD = "LIST_UPLOAD"
    CAMPAIGN = "CAMPAIGN"
    SCHEDULED_TASK = "SCHEDULED_TASK"
    SMS_REPLY = "SMS_REPLY"
    API = "API"
    UNKNOWN = "UNKNOWN"


@_mirrors_schema
class RecordType(StrEnum):
    """The CRM record type an integration id names (seed 002: Contact or Lead)."""

    CONTACT = "CONTACT"
    LEAD = "LEAD"
    UNKNOWN = "UNKNOWN"


@_mirrors_schema
class SubscriberAction(StrEnum):
    """The subscription change of a SubscriberEvent."""

    UNSUBSCRIBE = "UNSUBSCRIBE"
    RESUBSCRIBE = "RESUBSCRIBE"
    BAD_EMAIL = "BAD_EMAIL"
    SUBSCRIBE = "SUBSCRIBE"
    SUPPRESS = "SUPPRESS"
    UNKNOWN = "UNKNOWN"


@_mirrors_schema
class ScopeKind(StrEnum):
    """Granularity of a subscription change (seed 004)."""

    ALL_MAIL = "ALL_MAIL"
    GROUP_CATEGORY = "GROUP_CATEGORY"
    GROUP = "GROUP"
    MESSAGE_CATEGORY = "MESSAGE_CATEGORY"
    UNKNOWN = "UNKNOWN"


@_mirrors_schema
class ClickTarget(StrEnum):
    """An ordinary link or an advertisement (seed 000 writes different message names)."""

    LINK = "LINK"
    ADVERTISEMENT = "ADVERTISEMENT"
    UNKNOWN = "UNKNOWN"


@_mirrors_schema
class MembershipChange(StrEnum):
    """Joined or left a community list."""

    ADDED = "ADDED"
    REMOVED = "REMOVED"
    UNKNOWN = "UNKNOWN"


@_mirrors_schema
class ErrorClass(StrEnum):
    """Why a dead letter gave up; tells whether a replay can succeed as is."""

    TRANSIENT_EXHAUSTED = "TRANSIENT_EXHAUSTED"
    PERMANENT = "PERMANENT"
    POISON = "POISON"
    UNKNOWN = "UNKNOWN"


ActivityCode = _schema_enum("ActivityCode")
ActivitySubcode = _schema_enum("ActivitySubcode")
SuppressionSubtype = _schema_enum("SuppressionSubtype")

#: Each activity subcode's one code, from the schema's `x-code` map.
SUBCODE_CODE: Mapping[str, str] = enum_property("ActivitySubcode", "x-code")

# Looked up by name so that renaming one of these symbols in the schema fails at import.
_SOCIAL_SHARE = ActivitySubcode["SocialShare"]
#: Which codes each optional detail of an ActivityEvent may accompany.
_DETAIL_CODES: Mapping[str, tuple[StrEnum, ...]] = {
    "open": (ActivityCode["Opened"],),
    "click": (ActivityCode["LinkClicked"],),
    "social": (ActivityCode["Social"],),
    "name": (ActivityCode["EventSignup"], ActivityCode["SurveySubmit"]),
}
_SCOPED_ACTIONS = frozenset(
    {SubscriberAction.UNSUBSCRIBE, SubscriberAction.SUBSCRIBE, SubscriberAction.RESUBSCRIBE}
)


# --------------------------------------------------------------------------------------------
# Field validators
# --------------------------------------------------------------------------------------------

_EMAIL_RE = re.compile(r"^[^@\s\x00]+@[^@\s.\x00]+(\.[^@\s.\x00]+)+$")


def _symbol_of(enum: type[StrEnum]) -> BeforeValidator:
    """Accept an enum's symbols except UNKNOWN, with an error that lists the valid ones.

    UNKNOWN exists only so that old readers can decode symbols added after them; accepting it
    on input would let a producer publish an event no CRM can act on.
    """
    valid = [member.value for member in enum if member.value != UNKNOWN]

    def check(value: Any) -> Any:
        if isinstance(value, enum) and value != UNKNOWN:
            return value
        if value == UNKNOWN:
            raise ValueError(
                "UNKNOWN is what an old reader sees for a symbol added after it was built; "
                "it is not valid input"
            )
        if not isinstance(value, str):
            raise ValueError(
                f"must be a string naming a {enum.__name__}, got {type(value).__name__}"
            )
        if value not in valid:
            expected = ", ".join(valid)
            raise ValueError(f"unknown {enum.__name__} {value!r}; expected one of {expected}")
        return value

    return BeforeValidator(check)


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(value: Any) -> str:
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value  # already what str(uuid.UUID(value)) gives: ingest's usual case, at a tenth of the cost
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"must be a UUID string, got {type(value).__name__}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid UUID") from None


def _utc_millis(value: datetime) -> datetime:
    """Aware UTC, truncated to milliseconds: exactly what timestamp-millis carries on the wire,
    so a model equals itself after an Avro round trip."""
    if value.tzinfo is UTC and not value.microsecond % 1000:
        return value  # as decoded from timestamp-millis: nothing to convert
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "naive timestamp (no time zone) is ambiguous; give an offset, e.g. 2026-03-08T14:30:00Z"
        )
    utc = value.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond - utc.microsecond % 1000)


def plausible_email(value: str) -> str:
    # Deliberately loose: CRMs and the platform decide deliverability; this only catches data
    # that is not an address at all (and never echoes the address, which is PII).
    if len(value) > 254 or not _EMAIL_RE.match(value):
        raise ValueError("not a plausible email address (expected local@domain.tld)")
    return value


# No NUL characters in any text: PostgreSQL can store none (in a column or in JSON), and a row
# it refuses would be retried forever. Checked by pydantic-core's own regex, not in Python.
_NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, Field(pattern=_NO_NUL)]
NonEmptyStr = Annotated[str, Field(min_length=1, pattern=_NO_NUL)]
# Ids the ledger stores in bounded columns (writeback/ledger/tables.py): longer values are
# contract breaches, set aside at ingest, not rows a database would refuse forever.
ID_MAX = 64  # account, mailing and connection ids
RECIPIENT_ID_MAX = 320
AccountId = Annotated[str, Field(min_length=1, max_length=ID_MAX, pattern=_NO_NUL)]
MailingId = Annotated[str, Field(min_length=1, max_length=ID_MAX, pattern=_NO_NUL)]
RecipientId = Annotated[str, Field(min_length=1, max_length=RECIPIENT_ID_MAX, pattern=_NO_NUL)]
EventId = Annotated[str, BeforeValidator(canonical_uuid)]
UtcTimestamp = Annotated[datetime, AfterValidator(_utc_millis)]
Email = Annotated[str, AfterValidator(plausible_email)]
Int32 = Annotated[int, Field(ge=0, le=2**31 - 1)]
Int64 = Annotated[int, Field(ge=0, le=2**63 - 1)]
KnownSource = Annotated[Source, _symbol_of(Source)]
KnownRecordType = Annotated[RecordType, _symbol_of(RecordType)]
KnownSubscriberAction = Annotated[SubscriberAction, _symbol_of(SubscriberAction)]
KnownScopeKind = Annotated[ScopeKind, _symbol_of(ScopeKind)]
KnownClickTarget = Annotated[ClickTarget, _symbol_of(ClickTarget)]
KnownMembershipChange = Annotated[MembershipChange, _symbol_of(MembershipChange)]
KnownErrorClass = Annotated[ErrorClass, _symbol_of(ErrorClass)]
# The taxonomy enums are built at run time, which static checkers cannot follow.
KnownActivityCode = Annotated[ActivityCode, _symbol_of(ActivityCode)]  # type: ignore
KnownActivitySubcode = Annotated[ActivitySubcode, _symbol_of(ActivitySubcode)]  # type: ignore
KnownSuppressionSubtype = Annotated[SuppressionSubtype, _symbol_of(SuppressionSubtype)]  # type: ignore

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def _avro_value(value: Any) -> Any:
    """Plain values fastavro writes: enum symbols as str, arrays as lists."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dict):
        return {k: _avro_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_avro_value(v) for v in value]
    return value


class _AvroRecord(BaseModel):
    """A top-level record: knows its schema and converts to and from fastavro's dicts."""

    model_config = _FROZEN
    schema_name: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        """The dict fastavro writes with `parsed_schema(self.schema_name)`."""
        result: dict[str, Any] = _avro_value(self.model_dump())
        return result

    @classmethod
    def from_avro(cls, record: Mapping[str, Any]) -> Self:
        """Build from a decoded Avro record.

        Fields this model does not know are dropped, at every level: a record decoded with the
        writer's schema may come from a newer producer that added optional fields, and BACKWARD
        compatibility means old consumers ignore them. (JSON input stays strict: there an
        unknown field is a typo.) Symbols this model does not know are still rejected.
        """
        return cls.model_validate(known_fields(cls, record))

    @classmethod
    def knows_every_field_of(cls, writer: Mapping[str, Any]) -> bool:
        """Whether records written with `writer` (a parsed Avro record schema) carry only
        fields this model knows, at every level: such records can skip `from_avro`'s
        filtering and be validated as they are, which ingest does for every event."""
        return _knows_fields(cls, writer, {})


def known_fields(model: type[BaseModel], record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a decoded record that `model` knows, at every level (see `from_avro`)."""
    known = {}
    for name, nested in _field_models(model):
        if name in record:
            value = record[name]
            # a record decoded by fastavro is a dict: no need for the general Mapping check
            if nested is not None and value is not None:
                value = known_fields(nested, value) if type(value) is dict else _known_value(nested, value)
            known[name] = value
    return known


@cache
def _field_models(model: type[BaseModel]) -> tuple[tuple[str, type[BaseModel] | None], ...]:
    """Each field of a model with the record model inside its annotation (None for plain
    values): the same for every record, so worked out once per model, not once per event."""
    return tuple((name, _nested_model(info.annotation)) for name, info in model.model_fields.items())


def _knows_fields(model: type[BaseModel], record: Mapping[str, Any], named: dict[Any, Any]) -> bool:
    name = record.get("name", "")
    if named.get((model, name)):  # checked, or being checked further up (a recursive schema)
        return True
    named[name] = record
    named[(model, name)] = True
    fields = dict(_field_models(model))
    for field in record.get("fields", ()):
        if field["name"] not in fields:
            return False
        nested = fields[field["name"]]
        for inner in _records_in(field["type"], named):
            if inner is None or nested is None or not _knows_fields(nested, inner, named):
                return False
    return True


_AVRO_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


def _records_in(schema: Any, named: dict[Any, Any]) -> Iterator[Mapping[str, Any] | None]:
    """The record schemas a field's type can hold (None for a name that cannot be resolved)."""
    if isinstance(schema, str):
        if schema in _AVRO_PRIMITIVES:
            return
        if schema not in named:
            yield None
            return
        schema = named[schema]
    if isinstance(schema, list):
        for member in schema:
            yield from _records_in(member, named)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            yield schema
        elif kind == "array":
            yield from _records_in(schema.get("items"), named)
        elif kind == "map":
            yield from _records_in(schema.get("values"), named)
        elif kind in ("enum", "fixed"):
            named[schema["name"]] = schema


def _known_value(nested: type[BaseModel] | None, value: Any) -> Any:
    if nested is None:
        return value
    if isinstance(value, Mapping):
        return known_fields(nested, value)
    if isinstance(value, (list, tuple)):
        return [_known_value(nested, item) for item in value]
    return value


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The record model inside an annotation like `Recipient | None` or `tuple[X, ...]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------------------------
# Nested records
# --------------------------------------------------------------------------------------------


class Recipient(BaseModel):
    """Who an event is about, as the CRMs identify people."""

    model_config = _FROZEN
    email: Email | None = None
    integration_id: RecipientId | None = None
    record_type: KnownRecordType | None = None

    @model_validator(mode="after")
    def _identifiable(self) -> Self:
        if self.email is None and self.integration_id is None:
            raise ValueError(
                "needs at least one of email and integration_id "
                "(no CRM can match a recipient without either)"
            )
        return self

    def key(self) -> str:
        """The part of the Kafka key that keeps one recipient's events in one partition."""
        if self.integration_id is not None:
            return self.integration_id
        assert self.email is not None  # guaranteed by _identifiable
        return self.email.lower()


class SubscriptionScope(BaseModel):
    """The part of the mail a subscription change applies to (seed 004)."""

    model_config = _FROZEN
    kind: KnownScopeKind
    id: NonEmptyStr | None = None
    name: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _id_matches_kind(self) -> Self:
        if self.kind == ScopeKind.ALL_MAIL and (self.id is not None or self.name is not None):
            raise ValueError("kind ALL_MAIL takes no id or name")
        if self.kind != ScopeKind.ALL_MAIL and self.id is None:
            what = self.kind.lower().replace("_", " ")
            raise ValueError(f"kind {self.kind} needs id, the {what}'s identifier")
        return self


class Mailing(BaseModel):
    """The mailing an activity happened in."""

    model_config = _FROZEN
    mailing_id: MailingId
    name: NonEmptyStr
    send_date: UtcTimestamp


class OpenDetails(BaseModel):
    """Device, client and country of an open (seed 000's Open message name)."""

    model_config = _FROZEN
    device: NonEmptyStr | None = None
    client: NonEmptyStr | None = None
    country: NonEmptyStr | None = None


class Click(BaseModel):
    """What was clicked: a link or an advertisement."""

    model_config = _FROZEN
    url: NonEmptyStr
    target: KnownClickTarget


class SocialDetails(BaseModel):
    """The social network of a Social activity."""

    model_config = _FROZEN
    network: NonEmptyStr


class OriginalRecord(BaseModel):
    """A Kafka record exactly as consumed, so replay can re-decode it."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64"
    )
    topic: NonEmptyStr
    partition: Int32
    offset: Int64
    key: bytes | None = None
    value: bytes
    value_sha256: str | None = None  # set when the value was too large to carry: see `omitted`
    value_size: int | None = Field(None, ge=0, le=2**63 - 1)

    @property
    def omitted(self) -> bool:
        """The value is not carried; it stays readable on its topic at this position."""
        return self.value_sha256 is not None


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


class _Event(_AvroRecord):
    """Fields and behaviour every event shares (three subclasses)."""

    topic: ClassVar[str]
    event_type: ClassVar[str]

    event_id: EventId
    account_id: AccountId
    occurred_at: UtcTimestamp

    def key(self) -> str:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with the `"type"` discriminator `parse_event` reads (nulls left out)."""
        return {"type": self.event_type, **self.model_dump(mode="json", exclude_none=True)}


class _RecipientEvent(_Event):
    """An event about one recipient (subscriber and activity events)."""

    source: KnownSource
    recipient: Recipient

    def key(self) -> str:
        """Kafka key `"<account_id>:<recipient key>"`, so one recipient's events stay in order."""
        return f"{self.account_id}:{self.recipient.key()}"


class SubscriberEvent(_RecipientEvent):
    """A change in a recipient's subscription status."""

    topic: ClassVar[str] = SUBSCRIBER_TOPIC
    schema_name: ClassVar[str] = f"{NAMESPACE}.SubscriberEvent"
    event_type: ClassVar[str] = "subscriber"

    action: KnownSubscriberAction
    reason: NonEmptyStr | None = None
    suppression: KnownSuppressionSubtype | None = Field(default=None, validate_default=True)
    scope: SubscriptionScope | None = None
    crm_connection_id: AccountId | None = None  # same shape as the settings' connection ids

    @field_validator("suppression")
    @classmethod
    def _suppression_iff_suppress(cls, value: StrEnum | None, info: ValidationInfo) -> Any:
        action = info.data.get("action")
        if action == SubscriberAction.SUPPRESS and value is None:
            raise ValueError("required when action is SUPPRESS")
        if action is not None and action != SubscriberAction.SUPPRESS and value is not None:
            raise ValueError(f"only with action SUPPRESS, not {action}")
        return value

    @field_validator("scope")
    @classmethod
    def _scope_for_subscriptions(cls, value: SubscriptionScope | None, info: ValidationInfo) -> Any:
        action = info.data.get("action")
        if value is not None and action is not None and action not in _SCOPED_ACTIONS:
            raise ValueError(f"only with UNSUBSCRIBE, SUBSCRIBE or RESUBSCRIBE, not {action}")
        return value


class ActivityEvent(_RecipientEvent):
    """One piece of recipient activity, classified by the 001 Activity Code / Subcode."""

    topic: ClassVar[str] = ACTIVITY_TOPIC
    schema_name: ClassVar[str] = f"{NAMESPACE}.ActivityEvent"
    event_type: ClassVar[str] = "activity"

    code: KnownActivityCode
    subcode: KnownActivitySubcode
    mailing: Mailing | None = None
    open: OpenDetails | None = None
    click: Click | None = None
    social: SocialDetails | None = Field(default=None, validate_default=True)
    name: NonEmptyStr | None = Field(default=None, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _default_code(cls, data: Any) -> Any:
        """The code is implied by the subcode, so producers may leave it out."""
        if isinstance(data, Mapping) and "code" not in data:
            implied = SUBCODE_CODE.get(str(data.get("subcode")))
            if implied is not None:
                return {**data, "code": implied}
        return data

    @field_validator("subcode")
    @classmethod
    def _subcode_in_code(cls, subcode: StrEnum, info: ValidationInfo) -> Any:
        code = info.data.get("code")
        if code is not None and SUBCODE_CODE[subcode] != code:
            raise ValueError(
                f"subcode {subcode} belongs to code {SUBCODE_CODE[subcode]}, not {code}"
            )
        return subcode

    @field_validator("open", "click", "social", "name")
    @classmethod
    def _details_fit_code(cls, value: Any, info: ValidationInfo) -> Any:
        code, subcode = info.data.get("code"), info.data.get("subcode")
        field = str(info.field_name)
        allowed = _DETAIL_CODES[field]
        if value is not None and code is not None and code not in allowed:
            raise ValueError(f"only with code {' or '.join(allowed)}, not {code}")
        if value is None and field == "name" and code in allowed:
            raise ValueError(f"required for code {code} (the survey or event name)")
        if value is None and field == "social" and subcode == _SOCIAL_SHARE:
            raise ValueError("required for SocialShare (the network it was shared on)")
        return value


class CommunityListEvent(_Event):
    """A member added to or removed from a community List Builder list (seed 003, inbound).

    `email` is carried unvalidated on purpose: malformed addresses are one of the reasons a
    sync reports for differing member counts, so they must reach the sync, not be dropped here.
    """

    topic: ClassVar[str] = COMMUNITY_TOPIC
    schema_name: ClassVar[str] = f"{NAMESPACE}.CommunityListEvent"
    event_type: ClassVar[str] = "community"

    list_id: NonEmptyStr
    list_name: NonEmptyStr
    change: KnownMembershipChange
    legacy_contact_key: RecipientId
    email: Text | None = None

    def key(self) -> str:
        """Kafka key `"<account_id>:<legacy_contact_key>"` (Legacy Contact Key = Remote ID)."""
        return f"{self.account_id}:{self.legacy_contact_key}"


class DeadLetter(_AvroRecord):
    """A writeback or ingested message that failed for good, with the original record(s)."""

    schema_name: ClassVar[str] = f"{NAMESPACE}.DeadLetter"

    writeback_id: NonEmptyStr | None = None
    connection_id: NonEmptyStr | None = None
    account_id: NonEmptyStr | None = None
    crm_kind: Annotated[str, Field(pattern=_KIND_RE.pattern)]
    error_class: KnownErrorClass
    error_code: NonEmptyStr
    error_message: str
    attempts: Int32
    first_failure_at: UtcTimestamp
    last_failure_at: UtcTimestamp
    replay_count: Int32 = 0
    original: tuple[OriginalRecord, ...]

    @property
    def topic(self) -> str:
        """The dead-letter topic this record belongs on."""
        return dead_letter_topic(self.crm_kind)

    def key(self) -> str:
        """The writeback id, so every dead letter of one writeback (replays included) stays in
        one partition; an ingest dead letter is keyed by where its record came from."""
        if self.writeback_id is not None:
            return self.writeback_id
        first = self.original[0] if self.original else None
        return f"{first.topic}:{first.partition}:{first.offset}" if first else "unknown"

    @field_validator("last_failure_at")
    @classmethod
    def _failures_in_order(cls, value: datetime, info: ValidationInfo) -> datetime:
        first = info.data.get("first_failure_at")
        if first is not None and value < first:
            raise ValueError("earlier than first_failure_at")
        return value


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------

Event = SubscriberEvent | ActivityEvent | CommunityListEvent

#: topic -> model of the values on that topic.
MODELS_BY_TOPIC: Mapping[str, type[Event]] = {
    model.topic: model for model in (SubscriberEvent, ActivityEvent, CommunityListEvent)
}
#: JSON `"type"` discriminator -> model.
MODELS_BY_TYPE: Mapping[str, type[Event]] = {model.event_type: model for model in MODELS_BY_TOPIC.values()}


def parse_event(data: Mapping[str, Any], topic: str | None = None) -> Event:
    """Validate one event from JSON-like data.

    The model is chosen by the `"type"` field ("subscriber" | "activity" | "community") or, when
    that is absent, by `topic`; when both are given they must agree, because a subscriber event
    published to the activity topic would be silently mis-decoded downstream.
    Raises `ValueError` (pydantic's `ValidationError` is one) naming the field and the reason.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"event: expected a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    by_topic = MODELS_BY_TOPIC.get(topic) if topic is not None else None
    if topic is not None and by_topic is None:
        raise ValueError(
            f"topic: {topic!r} is not an event topic; expected one of {_list(MODELS_BY_TOPIC)}"
        )
    if kind is None:
        if by_topic is None:
            raise ValueError(f"type: missing; give one of {_list(MODELS_BY_TYPE)} or a topic")
        model = by_topic
    else:
        if not isinstance(kind, str) or kind not in MODELS_BY_TYPE:
            raise ValueError(
                f"type: unknown event type {kind!r}; expected one of {_list(MODELS_BY_TYPE)}"
            )
        model = MODELS_BY_TYPE[kind]
        if by_topic is not None and by_topic is not model:
            raise ValueError(f"type: {kind!r} events do not belong on topic {topic!r}")
    return model.model_validate({k: v for k, v in data.items() if k != "type"})


def _list(names: Iterable[str]) -> str:
    return ", ".join(names)


def validation_summary(error: ValidationError) -> str:
    """One line per problem, `field.path: reason`, without the offending input values.

    `str(ValidationError)` echoes inputs (emails are PII), so use this for logs, CLI output and
    dead-letter `error_message`.
    """
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "event"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "string_pattern_mismatch" and problem.get("ctx", {}).get("pattern") == _NO_NUL:
            message = "must not contain NUL characters"
        lines.append(f"{where}: {message}")
    return "\n".join(lines)
