"""The `crm` settings of a Personify connection, validated with errors that name the field.

```toml
[accounts.connections.crm]
personify_mode = "both"                      # activity | opt_in | both
database_url = "mssql+pyodbc://sql01.example.org/PERSONIFY?driver=ODBC+Driver+18+for+SQL+Server"
username = "informz_writeback"
password = { env = "PERSONIFY_DB_PASSWORD" }  # or { file = "/run/secrets/personify" }
tracking_enabled = true                       # "Subscribe and Unsubscribe tracking"
[accounts.connections.crm.manage_unsubscribe] # platform scope id -> interest-area code
group_category = { "gc-7" = "NEWSLETTER" }
group = { "g-12" = "ADVOCACY" }
message_category = { "mc-3" = "EVENTS" }
```

`database_url` is a SQLAlchemy URL without user info (the settings refuse a URL carrying
credentials); the user and the password are their own settings. A site whose driver needs the
credentials inside the URL (an ODBC connection string) gives the whole URL by reference instead:
`database_url = { env = "PERSONIFY_DB_URL" }`.
"""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from writeback.contract.events import ScopeKind
from writeback.schedules import TimeZoneName
from writeback.secrets import SecretRef

__all__ = ["Config", "ManageUnsubscribe", "Mode"]

CODE_WIDTH = 24  # Personify's code columns


class Mode(StrEnum):
    """Seed 004: subscription activity as CUS_ACTIVITY records, as the CUS_OPT_IN flag, or both."""

    ACTIVITY = "activity"
    OPT_IN = "opt_in"
    BOTH = "both"

    @property
    def writes_opt_in(self) -> bool:
        return self is not Mode.ACTIVITY

    @property
    def writes_activity(self) -> bool:
        return self is not Mode.OPT_IN


Code = str


class ManageUnsubscribe(BaseModel):
    """Seed 004's "Manage Unsubscribe": which interest area each of the platform's group
    categories, groups and message categories stands for (by the scope's id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    group_category: dict[str, Code] = Field(default_factory=dict)
    group: dict[str, Code] = Field(default_factory=dict)
    message_category: dict[str, Code] = Field(default_factory=dict)

    @field_validator("group_category", "group", "message_category")
    @classmethod
    def _codes(cls, value: dict[str, Code]) -> dict[str, Code]:
        for scope_id, code in value.items():
            if not scope_id.strip():
                raise ValueError("a scope id must not be empty")
            if not code.strip() or len(code) > CODE_WIDTH:
                raise ValueError(f"{scope_id}: an interest-area code of 1 to {CODE_WIDTH} characters")
        return value

    def code_of(self, kind: ScopeKind, scope_id: str) -> Code | None:
        table = {
            ScopeKind.GROUP_CATEGORY: self.group_category,
            ScopeKind.GROUP: self.group,
            ScopeKind.MESSAGE_CATEGORY: self.message_category,
        }.get(kind, {})
        return table.get(scope_id)

    def all_codes(self) -> tuple[Code, ...]:
        """Every managed interest area, once, in a stable order: what "all mail" stands for."""
        codes = [*self.group_category.values(), *self.group.values(), *self.message_category.values()]
        return tuple(sorted(set(codes)))

    @property
    def empty(self) -> bool:
        return not (self.group_category or self.group or self.message_category)


class Config(BaseModel):
    """One Personify database and how subscription changes are written to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    personify_mode: Mode = Field(
        Mode.ACTIVITY,
        description="activity (CUS_ACTIVITY records), opt_in (the CUS_OPT_IN interest-area flag) or both. "
        "Defaults to activity, the one mode that needs no Manage Unsubscribe mapping.",
    )
    database_url: str | SecretRef = Field(
        description="SQLAlchemy URL without credentials (mssql+pyodbc://host/db?driver=...), or the whole "
        "URL by reference."
    )
    username: str | None = Field(None, min_length=1, max_length=128)
    password: SecretRef | None = Field(None, description='{env = "NAME"} or {file = "/path"}, never the password.')
    db_schema: str | None = Field("dbo", description="Personify's schema; ignored where the dialect has none.")
    tracking_enabled: bool = Field(True, description='"Subscribe and Unsubscribe tracking" (seed 004).')
    manage_unsubscribe: ManageUnsubscribe | None = Field(
        None, description="Scope ids to interest-area codes; required for opt_in and both."
    )
    unsubscribe_activity_code: Code = Field("UNSUBSCRIBE", min_length=1, max_length=CODE_WIDTH)
    subscribe_activity_code: Code = Field("SUBSCRIBE", min_length=1, max_length=CODE_WIDTH)
    opt_out_reason_code: Code | None = Field(None, min_length=1, max_length=CODE_WIDTH)
    added_by: str = Field("WRITEBACK", min_length=1, max_length=30, description="ADDED_BY/MODIFIED_BY.")
    time_zone: TimeZoneName | None = Field(None, description="The site's zone; defaults to the account's.")
    timeout_s: float = Field(30.0, gt=0, le=600, description="Longest wait to connect.")

    @field_validator("database_url")
    @classmethod
    def _a_url(cls, value: str | SecretRef) -> str | SecretRef:
        if isinstance(value, SecretRef):
            return value
        try:
            url = sa.make_url(value.strip())
        except sa.exc.ArgumentError:
            raise ValueError("must be a SQLAlchemy URL, e.g. mssql+pyodbc://host/PERSONIFY?driver=...") from None
        if url.password is not None:
            raise ValueError("must not carry a password; use password = {env = ...}")
        return value.strip()

    @field_validator("password", mode="before")
    @classmethod
    def _by_reference(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError('must be a reference, {env = "NAME"} or {file = "/path"}, never the password')
        return value

    @model_validator(mode="after")
    def _opt_in_needs_mapping(self) -> Config:
        if self.personify_mode.writes_opt_in and (self.manage_unsubscribe is None or self.manage_unsubscribe.empty):
            raise ValueError(
                f"manage_unsubscribe: required when personify_mode is {self.personify_mode} "
                "(the interest area of each group category, group or message category)"
            )
        return self
