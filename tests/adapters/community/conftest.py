"""A community simulator, a ledger with one community connection's settings stored, the test's own
community topic on the real broker, and a reader for what the sync published there."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from writeback_dev.simulators.community import CommunitySim

from writeback.adapters.community.sync import Publish, kafka_publish
from writeback.contract.events import CommunityListEvent
from writeback.contract.serde import EventSerde
from writeback.kafka.producer import Publisher
from writeback.ledger import Ledger
from writeback.settings import Account, Connection, Settings, apply, parse_settings

CONNECTION = "acme-community"
ACCOUNT = "acme"
T0 = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def community_server() -> Iterator[CommunitySim]:
    with CommunitySim() as sim:
        yield sim


@pytest.fixture
def community(community_server: CommunitySim, monkeypatch: pytest.MonkeyPatch) -> CommunitySim:
    """The simulator, emptied; its credentials in the environment the settings refer to."""
    community_server.reset()
    monkeypatch.setenv("ACME_CM_IAM_KEY", community_server.iam_key)
    monkeypatch.setenv("ACME_CM_PASSWORD", community_server.password)
    return community_server


def community_settings(sim: CommunitySim, **crm: Any) -> Settings:
    return parse_settings(
        {
            "accounts": [
                {
                    "id": ACCOUNT,
                    "time_zone": "America/Chicago",
                    "connections": [
                        {
                            "id": CONNECTION,
                            "kind": "community",
                            "crm": {
                                "api_url": sim.api_url,
                                "iam_key": {"env": "ACME_CM_IAM_KEY"},
                                "password": {"env": "ACME_CM_PASSWORD"},
                                **crm,
                            },
                        }
                    ],
                }
            ]
        }
    )


@dataclass
class Setup:
    ledger: Ledger
    settings: Settings
    topic: str
    publish: Publish

    @property
    def account(self) -> Account:
        return self.settings.accounts[0]

    @property
    def connection(self) -> Connection:
        return self.account.connections[0]


@pytest.fixture
def setup(
    community: CommunitySim, ledger: Ledger, topic_factory: Callable[..., str], publisher: Publisher
) -> Setup:
    """Page size 3, so every list of the reconciliation seed takes several pages."""
    settings = community_settings(community, page_size=3)
    apply(ledger, settings, T0)
    topic = topic_factory("community", partitions=1)
    return Setup(ledger, settings, topic, kafka_publish(publisher, topic))


@pytest.fixture
def published(consume_all, serde: EventSerde) -> Callable[..., list[CommunityListEvent]]:
    """Every community list event on a topic, read back from the broker."""

    def read(topic: str, expected: int | None = None, timeout: float = 20.0) -> list[CommunityListEvent]:
        events = []
        for message in consume_all(topic, expected, timeout):
            event = serde.deserialize(topic, message.value(), CommunityListEvent)
            assert isinstance(event, CommunityListEvent)
            events.append(event)
        return events

    return read
