"""Whether the consumer is in a state to ingest, from librdkafka's own statistics.

librdkafka knows best whether its group is mid-rebalance (the join state) and whether it reaches
a broker (each broker connection's state); its statistics callback reports both every
`STATS_INTERVAL_MS` while the consumer is polled. Reading them costs no request to the broker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

STATS_INTERVAL_MS = 1000


class GroupState:
    """Fed by `stats_cb`; `problem()` is None when the group is steady and a broker is up."""

    def __init__(self, stale_after: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self._lock = threading.Lock()
        self._stats: dict[str, Any] | None = None
        self._at = clock()

    def consumer_config(self) -> dict[str, object]:
        return {"statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self.update}

    def update(self, stats_json: str) -> None:
        stats = json.loads(stats_json)
        with self._lock:
            self._stats, self._at = stats, self.clock()

    def problem(self) -> str | None:
        with self._lock:
            stats, age = self._stats, self.clock() - self._at
        if stats is None:
            return "consumer group not joined yet" if age < self.stale_after else "no consumer statistics"
        if age > self.stale_after:
            return f"no consumer statistics for {age:.0f}s"
        brokers = stats.get("brokers", {}).values()
        if not any(b.get("state") == "UP" and b.get("nodeid", -1) >= 0 for b in brokers):
            return "no broker reachable"
        group = stats.get("cgrp") or {}
        if group.get("state") != "up":
            return f"group coordinator not reached ({group.get('state', 'unknown')})"
        if group.get("join_state") != "steady":
            return f"consumer group rebalancing ({group.get('join_state', 'unknown')})"
        return None
