"""Every exception writeback raises on purpose, in one place (as httpx does)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from confluent_kafka import KafkaError


class WritebackError(Exception):
    """Base for errors this package raises deliberately."""


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

    def __init__(self, message: str, failures: Sequence[tuple[Any, KafkaError]] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)  # (record, the broker's or client's error) per failed record


class RecordTooLarge(PublishError):
    """A record is larger than the producer or the topic accepts (MSG_SIZE_TOO_LARGE)."""
