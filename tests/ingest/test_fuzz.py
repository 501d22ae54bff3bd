"""Hostile bytes through decode → validate → route: nothing raises past ingest's boundary, and
everything that is not a valid event becomes a dead letter that carries its bytes and a reason.

The registry is real (schema ids in mutated frames are looked up for real); the dead-letter
sink records instead of producing, since what is specified here is ingest's handling of one
record, not Kafka (the Kafka path of the same letters is in test_ingest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import NF_CRM, SF_CRM, activity, subscriber
from writeback.contract.events import ActivityEvent, DeadLetter, SubscriberEvent
from writeback.ingest.consume import Consumed, Ingest
from writeback.kafka.dead_letters import INVALID_EVENT, UNDECODABLE
from writeback.ledger import Ledger
from writeback.settings import parse_settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

SETTINGS = parse_settings(
    {
        "accounts": [
            {
                "id": "acme",
                "time_zone": "UTC",
                "connections": [{"id": "acme-sf", "kind": "salesforce", "crm": SF_CRM}, {"id": "acme-nf", "kind": "netforum", "crm": NF_CRM}],
            }
        ]
    }
)
TOPICS = {"fuzz.subscriber": SubscriberEvent, "fuzz.activity": ActivityEvent}


class Letters:
    """Records what ingest hands to its dead-letter sink."""

    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []

    def send(self, letters, timeout: float = 30.0) -> None:
        self.sent.extend(letters)


@pytest.fixture(scope="module")
def fuzz_ingest(schema_registry, tmp_path_factory) -> tuple[Ingest, Letters, dict[str, bytes]]:
    from writeback.contract.serde import EventSerde, registry_client

    serde = EventSerde(registry_client(schema_registry.url))
    ledger = Ledger.connect(f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'ledger.db'}")
    letters = Letters()
    ingest = Ingest(ledger, serde, TOPICS, lambda: SETTINGS, letters)  # type: ignore[arg-type]
    frames = {
        "fuzz.subscriber": serde.serialize(subscriber("UNSUBSCRIBE", reason="Too many mails"), "fuzz.subscriber"),
        "fuzz.activity": serde.serialize(activity("Opened"), "fuzz.activity"),
    }
    return ingest, letters, frames


def mutate(frame: bytes, data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice", "schema_id"]))
    if kind == "truncate":
        return frame[: data.draw(st.integers(0, len(frame) - 1))]
    if kind == "extend":
        return frame + data.draw(st.binary(min_size=1, max_size=64))
    if kind == "schema_id":
        return frame[:1] + data.draw(st.binary(min_size=4, max_size=4)) + frame[5:]
    position = data.draw(st.integers(0, len(frame) - 1))
    if kind == "flip":
        return frame[:position] + bytes([frame[position] ^ data.draw(st.integers(1, 255))]) + frame[position + 1 :]
    return frame[:position] + data.draw(st.binary(max_size=16)) + frame[position:]


def check(ingest: Ingest, letters: Letters, topic: str, value: bytes | None) -> None:
    before = len(letters.sent)
    report = ingest.handle([Consumed(topic, 0, 42, b"acme:someone", value)])
    new = letters.sent[before:]
    assert report.consumed == 1 and report.rejected == len(new)
    if new:
        [letter] = new
        assert letter.error_code in (UNDECODABLE, INVALID_EVENT)
        assert letter.error_message
        assert letter.original[0].value == (value or b"")  # byte for byte
        assert (letter.original[0].topic, letter.original[0].offset) == (topic, 42)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.none(), st.binary(max_size=256)), topic=st.sampled_from(sorted(TOPICS)))
def test_arbitrary_bytes_are_stored_or_dead_lettered_never_raised(fuzz_ingest, value, topic):
    ingest, letters, _ = fuzz_ingest
    check(ingest, letters, topic, value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), topic=st.sampled_from(sorted(TOPICS)))
def test_mutated_valid_frames_are_stored_or_dead_lettered_never_raised(fuzz_ingest, data, topic):
    ingest, letters, frames = fuzz_ingest
    check(ingest, letters, topic, mutate(frames[topic], data))
