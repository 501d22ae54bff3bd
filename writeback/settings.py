"""Writeback Settings: accounts, their CRM connections, which writebacks are on and when.

Loaded from TOML or YAML, validated with errors that name the field, and stored in the ledger
database so every instance of the service works from the same settings.

Rules from the seeds that validation enforces rather than silently fixes:
- unsubscribe, resubscribe and bad email writebacks cannot be turned off (000, 002), neither
  for a connection nor for a mailing: a per-mailing exclusion drops that mailing's optional
  activity only;
- each connection kind declares its defaults, the optional types it offers and the slowest
  subscriber cadence its seed allows (`writeback.adapters.<kind>`);
- subscriber status is never manual, for any kind, and never slower than its kind's cadence;
- credentials are referenced ({env = "NAME"} or {file = "/path"}), never written inline, at
  any depth of `crm`, and no URL there carries user info.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from writeback import schedules
from writeback.adapters import registry
from writeback.adapters.base import Kind
from writeback.contract.events import MailingId
from writeback.errors import ConfigError
from writeback.ledger import Ledger
from writeback.ledger.rows import MailingActivity, WritebackClass
from writeback.schedules import Schedule, TimeZoneName
from writeback.secrets import SecretRef

_MODEL = ConfigDict(frozen=True, extra="forbid")


class EnabledWritebacks(BaseModel):
    """The Writeback Settings checkboxes, and the mailings whose activity is not written back
    (000: "many writebacks can be disabled if they are not needed for a particular mailing")."""

    model_config = _MODEL
    unsubscribe: bool = True
    resubscribe: bool = True
    bad_email: bool = True
    mailing_activity: frozenset[MailingActivity] | None = None  # None: the kind's default
    excluded_mailings: frozenset[MailingId] = frozenset()  # their activity is dropped at ingest

    @field_serializer("excluded_mailings")
    def _sorted(self, value: frozenset[str]) -> list[str]:
        """Sorted, so stored settings and `settings show --json` do not change order run to run."""
        return sorted(value)

    @field_validator("unsubscribe", "resubscribe", "bad_email")
    @classmethod
    def _always_on(cls, value: bool, info: Any) -> bool:
        if not value:
            raise ValueError(
                f"{info.field_name} writebacks cannot be turned off "
                "(unsubscribe, resubscribe and bad email are always written back)"
            )
        return value


class Connection(BaseModel):
    """One CRM connection. What its kind means (which writebacks, schedules and `crm` settings
    it has) comes from the kind's declaration in `writeback.adapters`."""

    model_config = _MODEL
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    kind: str
    enabled: bool = True
    writebacks: EnabledWritebacks = EnabledWritebacks()
    schedules: dict[WritebackClass, Schedule] = Field(default_factory=dict)
    crm: dict[str, Any] = Field(default_factory=dict)
    _config: BaseModel | None = PrivateAttr(None)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in registry.KINDS:
            raise ValueError(f"unknown connection kind {value!r}; one of {', '.join(map(repr, sorted(registry.KINDS)))}")
        return value

    @field_validator("crm")
    @classmethod
    def _credentials_by_reference(cls, crm: dict[str, Any]) -> dict[str, Any]:
        """Every inline credential is refused, each at its own path, so none reaches the ledger."""
        _refuse("crm", list(_inline_credentials(crm, ())))
        return crm

    @field_validator("schedules")
    @classmethod
    def _subscriber_status_on_schedule(
        cls, value: dict[WritebackClass, Schedule], info: ValidationInfo
    ) -> dict[WritebackClass, Schedule]:
        """Unsubscribes are the CAN-SPAM writeback that cannot be turned off (000, 002): a manual
        schedule would turn them off in effect, and a slower one would break a seed's cadence."""
        schedule = value.get(WritebackClass.SUBSCRIBER)
        kind = registry.KINDS.get(info.data.get("kind") or "")
        if schedule is None or kind is None:
            return value
        cadence = schedules.cadence(schedule)
        if cadence is None:
            reason = (
                "subscriber status cannot be manual: unsubscribes, resubscribes and bad emails "
                "must go out on a schedule (000, 002)"
            )
        elif kind.subscriber_cadence is not None and cadence > kind.subscriber_cadence[0]:
            required, seed = kind.subscriber_cadence
            reason = (
                f"{kind.name} subscriber status goes out at least every {_span(required)} "
                f"(seed {seed}); this schedule fires every {_span(cadence)}"
            )
        else:
            return value
        _refuse("schedules", [((str(WritebackClass.SUBSCRIBER),), reason)])
        return value

    @model_validator(mode="after")
    def _kind_rules(self) -> Connection:
        allowed = self.offered_mailing_activity()
        chosen = self.writebacks.mailing_activity
        if chosen is not None and not chosen <= allowed:
            extra = ", ".join(sorted(chosen - allowed))
            raise ValueError(
                f"writebacks.mailing_activity: {extra} not available for {self.kind} connections"
                + (f" (choose from {', '.join(sorted(allowed))})" if allowed else "")
            )
        if self.writebacks.excluded_mailings and not allowed:
            reason = f"{self.kind} connections write no optional mailing activity, so there is nothing to exclude per mailing"
            _refuse("writebacks", [(("writebacks", "excluded_mailings"), reason)])
        try:
            self._config = self.kind_of().config.model_validate(self.crm)
        except ValidationError as exc:
            _refuse("crm", [(("crm", *map(str, e["loc"])), e["msg"].removeprefix("Value error, ")) for e in exc.errors()])
        return self

    def kind_of(self) -> Kind:
        return registry.KINDS[self.kind]

    @property
    def config(self) -> Any:
        """The kind's settings model, validated from `crm` (secrets still as references)."""
        return self._config

    def offered_mailing_activity(self) -> frozenset[MailingActivity]:
        return self.kind_of().mailing_activity

    def mailing_activity(self) -> frozenset[MailingActivity]:
        """The optional types switched on: as chosen, else the kind's defaults."""
        if self.writebacks.mailing_activity is not None:
            return self.writebacks.mailing_activity
        kind = self.kind_of()
        return kind.mailing_activity if kind.mailing_activity_on is None else kind.mailing_activity_on

    def schedule(self, wb_class: WritebackClass) -> Schedule:
        return self.schedules[wb_class]

    def secret(self, key: str) -> SecretStr:
        return SecretRef.model_validate(self.crm[key]).resolve()


def _span(period: timedelta) -> str:
    minutes = int(period.total_seconds()) // 60
    for unit, size in (("day", 1440), ("hour", 60), ("minute", 1)):
        if minutes % size == 0:
            count = minutes // size
            return f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return str(period)  # unreachable: every cadence is whole minutes


_SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "pass", "passphrase", "passcode",
        "secret", "secrets", "token", "tokens", "key", "keys", "credential", "credentials",
        "apikey", "authtoken", "accesstoken", "refreshtoken", "clientsecret", "privatekey",
        "secretkey", "accesskey",
    }
)  # fmt: skip
_ABOUT_A_SECRET = frozenset({"url", "uri", "endpoint", "field", "name", "id", "type", "header"})
_NAME_SEGMENT = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_INLINE = (
    "looks like a credential, so it must be referenced as {env = \"NAME\"} or "
    "{file = \"/path\"}, not written inline (rename it if it is not a credential)"
)
_USER_INFO = (
    "a URL with user info (user:password@) is refused; give the user as its own setting and "
    "reference the password as {env = \"NAME\"} or {file = \"/path\"}"
)
_REDACTED = "[redacted]"


def names_a_secret(name: str) -> bool:
    """Whether a settings key names a credential. The name is split into segments at `_`, `-`,
    `.`, digits and camelCase (`clientSecret`, `APIKey`, `private-key`); it names one when any
    segment is a secret word (password, passwd, pwd, secret, token, key, credential, apikey...),
    unless its last segment says it is about a secret rather than one (`token_url`,
    `key_field`, `secret_name`). Whole segments only, so `monkey` and `username` are not; a
    false positive is renamed, while a missed credential would be stored in plain text."""
    segments = [s.lower() for s in _NAME_SEGMENT.findall(name)]
    return bool(segments) and segments[-1] not in _ABOUT_A_SECRET and not _SECRET_WORDS.isdisjoint(segments)


_Problem = tuple[tuple[str | int, ...], str]  # (location under the field, reason)


def _inline_credentials(node: Any, path: tuple[str | int, ...]) -> Iterator[_Problem]:
    """(path, reason) for every credential written inline under `node`, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*path, str(key))
            if names_a_secret(str(key)):
                if not (value is None or isinstance(value, bool) or _is_reference(value)):
                    yield here, _INLINE
            else:
                yield from _inline_credentials(value, here)
    elif isinstance(node, list | tuple):
        for index, item in enumerate(node):
            yield from _inline_credentials(item, (*path, index))
    elif isinstance(node, str) and _has_user_info(node):
        yield path, _USER_INFO


def _is_reference(value: Any) -> bool:
    try:
        SecretRef.model_validate(value)
    except ValidationError:
        return False
    return True


def _has_user_info(value: str) -> bool:
    """A URL with `user@` or `user:password@` in its authority, also one nested in another
    scheme (`jdbc:postgresql://user:pw@host/db`). A string that cannot be parsed as a URL but
    could hold one is refused too: failing closed is the point."""
    try:
        parts = urlsplit(value.strip())
        if parts.username is not None:
            return True
    except ValueError:
        return "@" in value and "://" in value
    return bool(parts.scheme) and not parts.netloc and "://" in parts.path and _has_user_info(parts.path)


def _refuse(title: str, problems: list[_Problem]) -> None:
    """Raise one error per problem at its own location under the field being validated (pydantic
    prefixes the field's location), so `describe` names the exact field; the input is redacted
    because it may be the credential itself."""
    if problems:
        raise ValidationError.from_exception_data(
            title,
            [
                InitErrorDetails(type=PydanticCustomError("settings", reason), loc=loc, input=_REDACTED)
                for loc, reason in problems
            ],
        )


class Account(BaseModel):
    model_config = _MODEL
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    name: str = ""
    time_zone: TimeZoneName
    connections: tuple[Connection, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _schedules_in_account_zone(cls, data: Any) -> Any:
        """Fill each connection's schedules: kind defaults, and the account's zone by default."""
        if not isinstance(data, dict) or not isinstance(data.get("connections"), list):
            return data
        tz = data.get("time_zone")
        filled = []
        for raw in data["connections"]:
            if not isinstance(raw, dict) or not isinstance(tz, str):
                filled.append(raw)
                continue
            given = raw.get("schedules") or {}
            merged: dict[str, Any] = {}
            try:
                defaults = registry.KINDS[raw["kind"]].schedules(tz)
                merged.update({str(k): v.model_dump(mode="json") for k, v in defaults.items()})
            except (KeyError, TypeError, ValueError):
                pass  # unknown kind or zone: the field validators report it
            for key, schedule in given.items() if isinstance(given, dict) else ():
                if isinstance(schedule, dict) and schedule.get("kind") not in (None, "interval", "manual"):
                    schedule = {"tz": tz, **schedule}
                merged[key] = schedule
            filled.append({**raw, "schedules": merged})
        return {**data, "connections": filled}

    @model_validator(mode="after")
    def _unique_connection_ids(self) -> Account:
        ids = [c.id for c in self.connections]
        if len(ids) != len(set(ids)):
            raise ValueError("connections: connection ids must be unique")
        return self


class Settings(BaseModel):
    model_config = _MODEL
    accounts: tuple[Account, ...] = ()

    @model_validator(mode="after")
    def _globally_unique_connections(self) -> Settings:
        ids = [c.id for a in self.accounts for c in a.connections]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"connection ids must be unique across accounts: {', '.join(dupes)}")
        return self

    def account(self, account_id: str) -> Account | None:
        return next((a for a in self.accounts if a.id == account_id), None)

    def connection(self, connection_id: str) -> tuple[Account, Connection] | None:
        for account in self.accounts:
            for connection in account.connections:
                if connection.id == connection_id:
                    return account, connection
        return None


def parse_settings(data: Any) -> Settings:
    """Validate settings data; every problem is reported as `location: reason` lines."""
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, data)) from None


def describe(exc: ValidationError, data: Any = None) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        where = _location(error["loc"], data)
        lines.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def _location(loc: tuple[Any, ...], data: Any) -> str:
    """Name list items by their id ("accounts[acme].connections[acme-sf].kind") when possible."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list | tuple) and part < len(node) else None
            label = item.get("id") if isinstance(item, dict) else None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{label or part}]"]
            node = item
            continue
        # discriminated unions and type-tag entries add a location part that is not a field
        if isinstance(node, dict) and part not in node and parts and str(part) in _UNION_TAGS:
            continue
        parts.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


_UNION_TAGS = {"interval", "manual", "hourly", "daily", "weekly", "every_n_days"}


def load_settings(path: Path) -> Settings:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from None
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {exc}") from None
    return parse_settings(data or {})


def apply(ledger: Ledger, settings: Settings, now: datetime) -> None:
    """Store settings for every instance; accounts and connections not in them are removed."""
    ledger.replace_settings(
        [
            {"id": a.id, "name": a.name, "time_zone": a.time_zone, "updated_at": now}
            for a in settings.accounts
        ],
        [
            {
                "id": c.id,
                "account_id": a.id,
                "kind": c.kind,
                "enabled": c.enabled,
                "settings": c.model_dump(mode="json"),
                "updated_at": now,
            }
            for a in settings.accounts
            for c in a.connections
        ],
    )


def with_excluded_mailing(settings: Settings, connection_id: str, mailing_id: str, excluded: bool) -> Settings:
    """The settings with one mailing added to (or removed from) a connection's exclusions,
    validated again as a whole, so the result is what `apply` would accept from a file."""
    data = settings.model_dump(mode="json")
    for account in data["accounts"]:
        for connection in account["connections"]:
            if connection["id"] == connection_id:
                current = set(connection["writebacks"]["excluded_mailings"])
                changed = current | {mailing_id} if excluded else current - {mailing_id}
                connection["writebacks"]["excluded_mailings"] = sorted(changed)
    return parse_settings(data)


def stored(ledger: Ledger) -> Settings:
    accounts, connections = ledger.settings_rows()
    return parse_settings(
        {
            "accounts": [
                {
                    "id": a["id"],
                    "name": a["name"],
                    "time_zone": a["time_zone"],
                    "connections": [c["settings"] for c in connections if c["account_id"] == a["id"]],
                }
                for a in accounts
            ]
        }
    )



class StoredSettings:
    """The settings all instances share, re-read from the database at most every `ttl`, so
    `writeback settings apply` reaches running instances without a restart."""

    def __init__(self, ledger: Ledger, ttl: timedelta = timedelta(seconds=5)) -> None:
        self.ledger = ledger
        self.ttl = ttl
        self._settings: Settings | None = None
        self._read_at: datetime | None = None

    def __call__(self) -> Settings:
        now = datetime.now(UTC)
        if self._settings is None or self._read_at is None or now - self._read_at >= self.ttl:
            self._settings = stored(self.ledger)
            self._read_at = now
        return self._settings
