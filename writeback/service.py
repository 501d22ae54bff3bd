"""`writeback serve`: ingest in the main thread, the flusher beside it, probes on HTTP.

Instances scale by joining the consumer group (partitions are shared) and the same database
(flush leases are shared); nothing else is coordinated.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Consumer

from writeback import health
from writeback.config import ServiceConfig
from writeback.contract.serde import EventSerde, registry_client
from writeback.flush import flusher as flushing
from writeback.flush.breaker import BreakerRegistry
from writeback.ingest import consume as ingesting
from writeback.kafka.dead_letters import DeadLetterSink
from writeback.kafka.lag import ConsumerLag
from writeback.ledger import Ledger
from writeback.settings import Settings, StoredSettings, apply, load_settings

log = logging.getLogger("writeback.service")


def install_stop_handlers(stop: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


class _Heartbeat:
    """When each loop last finished a pass; /readyz fails when one stalls."""

    def __init__(self, *names: str) -> None:
        self.beats = dict.fromkeys(names, time.monotonic())

    def beat(self, name: str) -> None:
        self.beats[name] = time.monotonic()

    def stalled(self, limit: float) -> str | None:
        now = time.monotonic()
        late = [n for n, at in self.beats.items() if now - at > limit]
        return f"stalled: {', '.join(late)}" if late else None


def build_flusher(
    config: ServiceConfig,
    ledger: Ledger,
    settings: Callable[[], Settings],
    serde: EventSerde,
    sink: DeadLetterSink,
) -> flushing.Flusher:
    """The flusher `serve` runs; replay builds the same one, so both take one path to a CRM."""
    return flushing.Flusher(
        ledger,
        settings,
        flushing.open_adapter,
        sink,
        serde,
        policy=config.retry,
        breakers=BreakerRegistry(config.breaker),
        lease_ttl=timedelta(seconds=config.lease_ttl_s),
        concurrency=config.flush_concurrency,
    )


def serve(config: ServiceConfig, stop: threading.Event) -> None:
    ledger = Ledger.connect(config.database_url)
    if config.settings_file:
        apply(ledger, load_settings(Path(config.settings_file)), datetime.now(UTC))
        log.info("settings applied from %s", config.settings_file)
    settings = StoredSettings(ledger, timedelta(seconds=config.settings_ttl_s))
    serde = EventSerde(registry_client(config.schema_registry_url))
    sink = DeadLetterSink.connect(config.bootstrap_servers, serde, config.dead_letter_prefix)
    ingest = ingesting.Ingest(ledger, serde, config.topic_models(), settings, sink)
    flusher = build_flusher(config, ledger, settings, serde, sink)
    heartbeat = _Heartbeat("ingest", "flusher")
    server = None
    if config.metrics_port is not None:
        server = health.serve_http(
            config.http_host,
            config.metrics_port,
            live=lambda: None,
            ready=lambda: heartbeat.stalled(max(60.0, 10 * config.flush_interval_s)),
        )
        log.info("metrics and probes on http://%s:%d", config.http_host, server.server_port)

    flush_thread = threading.Thread(
        target=_flush_loop, args=(flusher, ledger, stop, config, heartbeat), name="flusher"
    )
    flush_thread.start()
    consumer = Consumer(config.consumer_config())
    consumer.subscribe(config.topics)
    lag = ConsumerLag()
    log.info("consuming %s from %s as %s", ",".join(config.topics), config.bootstrap_servers, flusher.owner)
    try:
        ingesting.run(
            consumer,
            ingest,
            stop,
            batch_size=config.ingest_batch_size,
            on_pass=lambda: (heartbeat.beat("ingest"), lag.update(consumer)),
        )
    finally:
        stop.set()
        consumer.close()
        flush_thread.join()
        flusher.close()
        sink.close()
        if server is not None:
            server.shutdown()
        ledger.close()


def _flush_loop(
    flusher: flushing.Flusher,
    ledger: Ledger,
    stop: threading.Event,
    config: ServiceConfig,
    heartbeat: _Heartbeat,
) -> None:
    flushing.run(
        flusher,
        stop,
        interval=config.flush_interval_s,
        on_pass=lambda: (heartbeat.beat("flusher"), flushing.refresh_gauges(ledger)),
    )
