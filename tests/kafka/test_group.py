"""Readiness from librdkafka's statistics: a real consumer in a real group, a real rebalance,
and a broker address where nothing listens."""

from __future__ import annotations

import socket

import pytest
from confluent_kafka import Consumer

from tests.builders import wait_for
from writeback.kafka.group import GroupState

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


def _consumer(bootstrap: str, group: str, state: GroupState) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
            **state.consumer_config(),
        }
    )


def poll_until(members: list[tuple[Consumer, GroupState]], done, seen: list[str | None], timeout: float = 60) -> None:
    """Poll every member as ingest would (statistics arrive during polls) until `done()`."""

    def polled() -> bool:
        for consumer, state in members:
            consumer.consume(100, timeout=0.1)
            seen.append(state.problem())
        return done()

    wait_for(polled, timeout, "the group: " + repr(seen[-6:]))


def test_a_consumer_is_ready_once_its_group_is_steady_and_not_while_a_member_joins(kafka, topic_factory):
    topic = topic_factory("group-ready", partitions=4)
    group = f"ready-{topic}"
    first_state, second_state = GroupState(), GroupState()
    assert first_state.problem() == "consumer group not joined yet"
    first = _consumer(kafka.bootstrap, group, first_state)
    second = _consumer(kafka.bootstrap, group, second_state)
    seen: list[str | None] = []
    try:
        first.subscribe([topic])
        poll_until([(first, first_state)], lambda: first_state.problem() is None, seen)
        assert seen[0] is not None, seen  # never ready before the first statistics say so

        seen.clear()
        second.subscribe([topic])
        members = [(first, first_state), (second, second_state)]
        poll_until(members, lambda: first_state.problem() is None is second_state.problem() and len(seen) > 20, seen)
        assert any(p and p.startswith("consumer group rebalancing") for p in seen), seen
    finally:
        first.close()
        second.close()


def test_no_broker_at_the_address_is_not_ready(topic_factory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    state = GroupState()
    consumer = _consumer(f"127.0.0.1:{port}", "nobody", state)
    consumer.subscribe(["anything"])
    seen: list[str | None] = []
    try:
        poll_until([(consumer, state)], lambda: state.problem() == "no broker reachable", seen, 30)
    finally:
        consumer.close()


def test_statistics_that_stop_arriving_are_not_trusted():
    now = [0.0]
    state = GroupState(stale_after=30, clock=lambda: now[0])
    state.update('{"brokers": {"b/1": {"state": "UP", "nodeid": 1}}, "cgrp": {"state": "up", "join_state": "steady"}}')
    assert state.problem() is None
    now[0] = 31
    assert state.problem() == "no consumer statistics for 31s"
