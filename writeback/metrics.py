"""Prometheus metrics: what SREs watch. Labels are connection ids, kinds, classes and reason
codes — never recipients, emails or anything else a customer would call personal."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
