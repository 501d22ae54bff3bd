"""Every exception writeback raises on purpose, in one place (as httpx does)."""

from __future__ import annotations


class WritebackError(Exception):
    """Base for errors this package raises deliberately."""


class StackError(WritebackError):
    """The local development/test stack (Kafka, registry, PostgreSQL) could not start."""


class ConfigError(WritebackError):
    """Settings are invalid; the message names the field and the reason."""
