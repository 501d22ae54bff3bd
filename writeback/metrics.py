"""Prometheus metrics: what SREs watch. Labels are connection ids, kinds, classes and reason
codes — never recipients, emails or anything else a customer would call personal."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, Info

EVENTS_CONSUMED = Counter(
    "writeback_events_consumed_total", "Records read from the event topics.", ["topic"]
)
EVENTS_REJECTED = Counter(
    "writeback_events_rejected_total",
    "Records that could not be decoded or validated (sent to the ingest dead-letter topic).",
    ["topic", "reason"],
)
EVENTS_DROPPED = Counter(
    "writeback_events_dropped_total",
    "Event/connection pairs not written back, by why (disabled type, not for this kind...).",
    ["kind", "reason"],
)
WRITEBACKS_INGESTED = Counter(
    "writeback_writebacks_ingested_total",
    "Pending writebacks created (one per event and connection).",
    ["kind", "wb_class"],
)
DUPLICATES = Counter(
    "writeback_duplicate_events_total", "Redelivered events that added no writeback."
)
CONFLICTING_DUPLICATES = Counter(
    "writeback_conflicting_duplicate_events_total",
    "Events whose id was seen before with different content; the first event is kept.",
)
DEAD_LETTERS_OMITTED = Counter(
    "writeback_dead_letters_value_omitted_total",
    "Dead letters that carry a digest instead of the original value, which was too large to carry.",
    ["kind"],
)
INGEST_ERRORS = Counter(
    "writeback_ingest_errors_total",
    "Ingest passes that failed, by what happened: retried (transient) or isolated (records tried one by one).",
    ["outcome"],
)
CONSUMER_LAG = Gauge(
    "writeback_consumer_lag",
    "Records on an event topic partition that ingest has not consumed yet (high watermark minus position).",
    ["topic", "partition"],
)
INGEST_BATCH_SECONDS = Histogram(
    "writeback_ingest_batch_seconds", "Time to decode, route and store one consumed batch."
)
FLUSH_OUTCOMES = Counter(
    "writeback_flush_outcomes_total",
    "Writeback outcomes recorded by the flusher.",
    ["kind", "status", "error_code"],
)
FLUSH_BATCH_SECONDS = Histogram(
    "writeback_flush_batch_seconds", "Time for one adapter call, by CRM kind.", ["kind"]
)
DEAD_LETTERS = Counter(
    "writeback_dead_letters_total", "Records produced to dead-letter topics.", ["kind", "error_class"]
)
LEDGER_ROWS = Gauge(
    "writeback_ledger_rows", "Writebacks in the ledger by connection and status.", ["connection", "status"]
)
OLDEST_DUE_SECONDS = Gauge(
    "writeback_oldest_due_seconds",
    "Age of the oldest due pending writeback (window closed, not yet written).",
)
BREAKER_STATE = Gauge(
    "writeback_circuit_breaker_state",
    "Per-connection circuit breaker: 0 closed, 1 half-open, 2 open.",
    ["connection"],
)
BREAKER_TRIPS = Counter(
    "writeback_circuit_breaker_trips_total", "Times a connection's breaker opened.", ["connection"]
)
# Community lists (seed 003, inbound). Labelled by connection and closed sets only: never a
# group's name, a member or an address.
COMMUNITY_SYNCS = Counter(
    "writeback_community_syncs_total", "Community list syncs, by outcome (completed, failed).", ["connection", "outcome"]
)
COMMUNITY_CHANGES = Counter(
    "writeback_community_membership_changes_total",
    "Community list membership events published (once per real change), by change (added, removed).",
    ["connection", "change"],
)
COMMUNITY_MEMBERS = Gauge(
    "writeback_community_members",
    "Community members of the connection's target groups at their last syncs (summed over groups).",
    ["connection"],
)
COMMUNITY_SUBSCRIBERS = Gauge(
    "writeback_community_subscribers",
    "Of those members, target-group subscribers in the marketing platform (summed over groups).",
    ["connection"],
)
COMMUNITY_UNRECONCILED = Gauge(
    "writeback_community_unreconciled_members",
    "Members that are not subscribers, by cause (unsubscribed, invalid_email, duplicate_email, "
    "no_remote_id); members = subscribers + the sum over causes.",
    ["connection", "cause"],
)

# -- how late writebacks are ----------------------------------------------------------------

# from minutes (subscriber status every ten minutes) to days (daily and weekly activity windows)
_AGE_BUCKETS = (1, 5, 15, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)
_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)
WRITEBACK_LATENCY = Histogram(
    "writeback_end_to_end_latency_seconds",
    "From the event's occurred_at to its writeback recorded as completed, by CRM kind and class.",
    ["kind", "wb_class"],
    buckets=_AGE_BUCKETS,
)
WINDOW_LATENESS = Histogram(
    "writeback_window_lateness_seconds",
    "From the row's window closing (it became due) to its writeback recorded as completed.",
    ["kind", "wb_class"],
    buckets=_WAIT_BUCKETS,
)
PENDING_ROWS = Gauge(
    "writeback_pending_rows",
    "Pending writebacks by connection and class (window open, due, or waiting for a retry).",
    ["connection", "wb_class"],
)
DUE_ROWS = Gauge(
    "writeback_due_rows",
    "Pending writebacks whose window has closed and whose retry wait is over: what the flusher should write now.",
    ["connection", "wb_class"],
)
CONNECTION_OLDEST_DUE_SECONDS = Gauge(
    "writeback_connection_oldest_due_seconds",
    "Age of the connection's oldest due writeback of a class (since its window closed); 0 when none is due.",
    ["connection", "wb_class"],
)
SCHEDULE_PERIOD_SECONDS = Gauge(
    "writeback_schedule_period_seconds",
    "Nominal period of the connection's schedule for a class (seconds between window closes); absent for manual schedules.",
    ["connection", "wb_class"],
)
LEASE_RENEWED = Gauge(
    "writeback_flush_lease_renewed_timestamp_seconds",
    "Unix time this instance last took or renewed the connection's flush lease.",
    ["connection"],
)

# -- how each CRM answers (observed at the adapters' transports, writeback.adapters.calls) ----

CRM_REQUEST_SECONDS = Histogram(
    "writeback_crm_request_seconds",
    "One request to a CRM (HTTP exchange or SQL statement), until its answer's headers or result.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CRM_RESPONSES = Counter(
    "writeback_crm_responses_total",
    "CRM requests by answer: status class (2xx, 4xx, 5xx, or error when no answer came) and code (HTTP_<status> or the transport/driver error's type).",
    ["kind", "status_class", "error_code"],
)
THROTTLED = Counter(
    "writeback_throttled_total",
    "Writebacks the CRM held back for its API limits (HTTP 429 and the CRM's own limit codes).",
    ["kind"],
)
RETRY_AFTER_SECONDS = Histogram(
    "writeback_retry_after_seconds",
    "Retry-After the CRM asked for when it throttled, as it said it (before clipping).",
    ["kind"],
    buckets=(1, 5, 10, 30, 60, 300, 900, 3600, 86400),
)
RETRIES_SCHEDULED = Counter(
    "writeback_retries_scheduled_total",
    "Writebacks put back to pending for another try, by kind and the error that caused it.",
    ["kind", "error_code"],
)
RETRY_WAIT_SECONDS = Histogram(
    "writeback_retry_wait_seconds",
    "How long a writeback put back for another try waits before it is due again.",
    ["kind"],
    buckets=_WAIT_BUCKETS,
)

# -- replay (the `writeback replay` process; pushed to a Pushgateway when one is configured) --

REPLAY_RUNS = Counter("writeback_replay_runs_total", "Replay runs that finished (dry runs excluded).")
REPLAY_LETTERS = Counter(
    "writeback_replay_letters_total",
    "Dead letters a replay handled, by what it did: replayed, recreated, reingested or skipped (why).",
    ["verdict"],
)
REPLAY_OUTCOMES = Counter(
    "writeback_replay_outcomes_total",
    "Final state of what a replay sent back: completed, failed (dead-lettered again), pending, ingested.",
    ["outcome"],
)

BUILD_INFO = Info("writeback_build", "The running build: writeback, Python, confluent-kafka and librdkafka versions.")


def record_build_info() -> None:
    """Set once at start: SREs compare fleets and match librdkafka bugs to versions."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import confluent_kafka

    try:
        own = version("writeback")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        own = "unknown"
    BUILD_INFO.info(
        {
            "version": own,
            "python": platform.python_version(),
            "confluent_kafka": confluent_kafka.__version__,
            "librdkafka": confluent_kafka.libversion()[0],
        }
    )


def initialise(kinds: Iterable[str], error_classes: Iterable[str]) -> None:
    """Series that would otherwise appear only at their first event, at zero: a rate() or an
    alert over a counter needs the zero before the first increment, and dashboards need the name."""
    for outcome in ("retried", "isolated"):
        INGEST_ERRORS.labels(outcome)
    classes = list(error_classes)
    for kind in kinds:
        THROTTLED.labels(kind)
        RETRY_AFTER_SECONDS.labels(kind)
        RETRY_WAIT_SECONDS.labels(kind)
        CRM_REQUEST_SECONDS.labels(kind)
        FLUSH_BATCH_SECONDS.labels(kind)
        for error_class in classes:
            DEAD_LETTERS.labels(kind, error_class)
