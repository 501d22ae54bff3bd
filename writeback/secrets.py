"""Credentials by reference: settings name where a secret lives, never the secret itself."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from writeback.errors import ConfigError


class SecretRef(BaseModel):
    """Where a credential lives. Resolved only when a connection is opened, never stored."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def resolve(self) -> SecretStr:
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"environment variable {self.env} is not set")
            return SecretStr(value)
        assert self.file is not None
        try:
            return SecretStr(self.file.read_text().strip())
        except OSError as exc:
            raise ConfigError(f"secret file {self.file} cannot be read: {exc.strerror}") from None
