"""`writeback serve`: ingest in the main thread, the flusher beside it, probes on HTTP.

Instances scale by joining the consumer group (partitions are shared) and the same database
(flush leases are shared); nothing else is coordinated.

Stopping (SIGTERM or SIGINT) is bounded for orchestrators' grace periods: ingest finishes the
batch in hand (stored and committed, or not committed at all) and the consumer leaves the group;
the flusher finishes the CRM call in flight, records its outcome and releases its lease, and
starts no other. If that takes longer than `shutdown_timeout_s` the process exits anyway (status
1): rows claimed and not yet recorded stay in flight, the next lease holder returns them to
pending, and the adapters' idempotency keeps the second write from doubling the first.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka import Consumer
from sqlalchemy.exc import SQLAlchemyError

from writeback import access, health, metrics
from writeback.adapters.community import endpoints as community_endpoints
from writeback.adapters.community import scheduler as community_scheduler
from writeback.adapters.community.sync import kafka_publish
from writeback.adapters.registry import KINDS
from writeback.config import ServiceConfig
from writeback.contract.events import ErrorClass
from writeback.contract.serde import EventSerde, registry_client
from writeback.flush import flusher as flushing
from writeback.flush.breaker import BreakerRegistry
from writeback.ingest import consume as ingesting
from writeback.kafka import dead_letters
from writeback.kafka.dead_letters import DeadLetterSink
from writeback.kafka.group import GroupState
from writeback.kafka.lag import ConsumerLag
from writeback.kafka.producer import Publisher
from writeback.ledger import Ledger
from writeback.settings import Settings, StoredSettings, apply, load_settings

log = logging.getLogger("writeback.service")


def install_stop_handlers(stop: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())


def exit_after(stop: threading.Event, timeout: float) -> threading.Event:
    """Once stopping, give the process `timeout` seconds to finish cleanly (to set the event
    returned), then end it."""
    done = threading.Event()

    def watch() -> None:
        stop.wait()
        started = time.monotonic()
        if done.wait(timeout):
            return
        log.error(
            "stop not finished within %.0fs (%.1fs): exiting with the in-flight batch abandoned; "
            "its rows are returned to pending when the lease expires and written again idempotently",
            timeout,
            time.monotonic() - started,
        )
        logging.shutdown()
        os._exit(1)

    threading.Thread(target=watch, name="stop-watchdog", daemon=True).start()
    return done


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


class _Access:
    """Why the instance cannot start serving yet (None once it can): /readyz reports it."""

    def __init__(self) -> None:
        self.waiting: str | None = "starting"

    def report(self, reason: str | None) -> None:
        self.waiting = reason or "starting"

    def granted(self) -> None:
        self.waiting = None


def _first_problem(*checks: Callable[[], str | None]) -> str | None:
    """What /readyz reports: the first check that fails, so an outage does not run every probe."""
    for check in checks:
        problem = check()
        if problem is not None:
            return problem
    return None


def _database_problem(ledger: Ledger) -> str | None:
    try:
        with ledger.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        return f"database unreachable ({type(exc).__name__})"  # its message can quote the URL
    return None


def build_flusher(
    config: ServiceConfig,
    ledger: Ledger,
    settings: Callable[[], Settings],
    serde: EventSerde,
    sink: DeadLetterSink,
    stop: threading.Event | None = None,
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
        stop=stop,
        concurrency=config.flush_concurrency,
    )


def serve(config: ServiceConfig, stop: threading.Event) -> None:
    done = exit_after(stop, config.shutdown_timeout_s)
    try:
        _serve(config, stop)
    finally:
        done.set()


@dataclass
class _Probes:
    """What /readyz and the HTTP routes read; `_run` adds what exists only once the ledger is open."""

    heartbeat: _Heartbeat = field(default_factory=lambda: _Heartbeat("ingest", "flusher"))
    gate: _Access = field(default_factory=_Access)
    group: GroupState = field(default_factory=GroupState)
    checks: list[health.Check] = field(default_factory=list)
    routes: dict[str, health.WsgiApp] = field(default_factory=dict)

    def ready(self, stop: threading.Event, stall_limit: float) -> str | None:
        if stop.is_set():
            return "stopping"
        return self.gate.waiting or _first_problem(
            lambda: self.heartbeat.stalled(stall_limit), self.group.problem, *self.checks
        )


def _serve(config: ServiceConfig, stop: threading.Event) -> None:
    probes = _Probes()
    metrics.record_build_info()
    metrics.initialise(KINDS, [c.value for c in ErrorClass])
    for topic in config.topics:
        for reason in (dead_letters.INVALID_EVENT, dead_letters.UNDECODABLE, ingesting.INGEST_ERROR):
            metrics.EVENTS_REJECTED.labels(topic, reason)
    stall_limit = max(60.0, 10 * config.flush_interval_s)
    server = None
    if config.metrics_port is not None:
        server = health.serve_http(
            config.http_host,
            config.metrics_port,
            live=lambda: None,
            ready=lambda: probes.ready(stop, stall_limit),
            routes=probes.routes,
        )
        log.info("metrics and probes on http://%s:%d", config.http_host, server.server_port)
    try:
        if access.wait_for_access(config, stop, probes.gate.report):
            _run(config, stop, probes)
    finally:
        if server is not None:
            server.shutdown()


def _run(config: ServiceConfig, stop: threading.Event, probes: _Probes) -> None:
    ledger = Ledger.connect(config.database_url)
    if config.settings_file:
        apply(ledger, load_settings(Path(config.settings_file)), datetime.now(UTC))
        log.info("settings applied from %s", config.settings_file)
    settings = StoredSettings(ledger, timedelta(seconds=config.settings_ttl_s))
    serde = EventSerde(registry_client(config.schema_registry_url, config.registry_config()))
    sink = DeadLetterSink.connect(
        config.bootstrap_servers, serde, config.dead_letter_prefix, config=config.kafka.client_config()
    )
    ingest = ingesting.Ingest(ledger, serde, config.topic_models(), settings, sink)
    flusher = build_flusher(config, ledger, settings, serde, sink, stop)
    community_publisher = Publisher(config.bootstrap_servers, serde, config=config.kafka.client_config())
    publish_community = kafka_publish(community_publisher, config.community_topic)
    probes.routes[community_endpoints.PREFIX] = community_endpoints.app(ledger, settings, publish_community)
    hourly = threading.Thread(
        target=community_scheduler.run,
        args=(community_scheduler.Hourly(ledger, settings, publish_community), stop),
        kwargs={"interval": config.community_interval_s},
        name="community-hourly",
    )
    hourly.start()
    probes.checks.append(lambda: _database_problem(ledger))
    heartbeat, group = probes.heartbeat, probes.group
    heartbeat.beat("ingest")
    heartbeat.beat("flusher")
    probes.gate.granted()

    # What start-up built (modules, schemas, settings, engines) lives as long as the process:
    # frozen, the collector stops walking it on every full collection that ingest's batches
    # trigger (bench/results/ingest.md). Refcounting still frees any of it that is dropped.
    gc.freeze()
    flush_thread = threading.Thread(
        target=_flush_loop, args=(flusher, ledger, stop, config, heartbeat), name="flusher"
    )
    flush_thread.start()
    # librdkafka's own log lines go through logging (JSON when asked), not straight to stderr
    consumer = Consumer(config.consumer_config() | group.consumer_config() | {"logger": logging.getLogger("writeback.kafka.consumer")})
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
        log.info("stopping: leaving the consumer group, finishing the flush in flight")
        consumer.close()
        flush_thread.join()
        hourly.join()
        community_publisher.close()
        flusher.close()
        sink.close()
        ledger.close()
        log.info("stopped")


def _flush_loop(
    flusher: flushing.Flusher,
    ledger: Ledger,
    stop: threading.Event,
    config: ServiceConfig,
    heartbeat: _Heartbeat,
) -> None:
    # The backlog gauges are grouped counts over the ledger: read them at about the pace a
    # scrape does, not on every pass, or a large ledger is scanned every second.
    refreshed = [float("-inf")]

    def on_pass() -> None:
        heartbeat.beat("flusher")
        if time.monotonic() - refreshed[0] >= config.gauges_interval_s:
            flushing.refresh_gauges(ledger, flusher.settings())
            refreshed[0] = time.monotonic()

    flushing.run(flusher, stop, interval=config.flush_interval_s, on_pass=on_pass)
