"""How far ingest is behind each partition it owns: the number that says whether it keeps up.

Read from the consumer's own state (its position and the high watermarks librdkafka caches from
fetch responses), so it costs no broker round trip, and only from the thread that polls the
consumer: confluent-kafka's consumer is not to be called from two threads at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException

from writeback import metrics


class ConsumerLag:
    """Sets `writeback_consumer_lag` per assigned partition, at most once per `interval`, and
    drops the partitions a rebalance took away."""

    def __init__(self, interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._next = 0.0
        self._shown: set[tuple[str, str]] = set()

    def update(self, consumer: Consumer, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now < self._next:
            return
        self._next = now + self.interval
        shown = set()
        try:
            positions = consumer.position(consumer.assignment())
        except KafkaException:
            return
        for tp in positions:
            if tp.offset < 0:
                continue  # nothing consumed there yet: no position to measure from
            _low, high = consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
            if high < 0:
                continue
            labels = (tp.topic, str(tp.partition))
            metrics.CONSUMER_LAG.labels(*labels).set(max(high - tp.offset, 0))
            shown.add(labels)
        for gone in self._shown - shown:
            metrics.CONSUMER_LAG.remove(*gone)
        self._shown = shown
