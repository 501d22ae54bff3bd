"""Every exception writeback raises on purpose, in one place (as httpx does)."""

from __future__ import annotations


class WritebackError(Exception):
    """Base for errors this package raises deliberately."""


class StackError(WritebackError):
    """The local development/test stack (Kafka, registry, PostgreSQL) could not start."""


class ConfigError(WritebackError):
    """Settings are invalid; the message names the field and the reason."""


class DecodeError(WritebackError):
    """A Kafka record is not a valid event; the message names the field and the reason."""


class InvalidEvent(DecodeError):
    """A record decodes as Avro but breaks the event contract (a field's value is not allowed)."""


class RegistryUnavailable(WritebackError):
    """The schema registry could not be reached."""


class BrokerUnavailable(WritebackError):
    """The Kafka broker could not be reached."""


class PublishError(WritebackError):
    """Some events were not acknowledged by the broker."""
