"""Consumer lag, as SREs see it on /metrics: records each owned partition still has to go."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import REGISTRY

from writeback.kafka.lag import ConsumerLag

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


def lag_of(topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value("writeback_consumer_lag", {"topic": topic, "partition": str(partition)})


def consume_exactly(consumer: Consumer, count: int) -> None:
    got = 0
    while got < count:
        got += len([m for m in consumer.consume(count - got, timeout=5) if m.error() is None])


def test_lag_is_what_each_owned_partition_has_left_and_a_lost_partition_is_dropped(kafka, topic_factory):
    topic = topic_factory("lag", partitions=2)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(10):
        producer.produce(topic, value=b"x", partition=0)
    for i in range(4):
        producer.produce(topic, value=b"y", partition=1)
    producer.flush(30)
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": f"lag-{topic}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    lag = ConsumerLag(interval=3600)
    try:
        lag.update(consumer, force=True)
        assert lag_of(topic, 0) is None  # nothing fetched yet: no figure rather than a wrong one

        consume_exactly(consumer, 3)
        lag.update(consumer, force=True)
        assert lag_of(topic, 0) == 7

        consume_exactly(consumer, 7)
        lag.update(consumer)  # within the interval: not measured again
        assert lag_of(topic, 0) == 7
        lag.update(consumer, force=True)
        assert lag_of(topic, 0) == 0

        consumer.assign([TopicPartition(topic, 1, 0)])  # a rebalance moved partition 0 away
        consume_exactly(consumer, 1)
        lag.update(consumer, force=True)
        assert lag_of(topic, 0) is None
        assert lag_of(topic, 1) == 3
    finally:
        consumer.close()
