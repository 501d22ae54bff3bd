"""A real Prometheus scrapes a running `writeback serve` through an end-to-end run (broker,
registry, Salesforce simulator): what it stored must equal what was published and written, the
latency histograms must have observations, and every metric the dashboard and the alert rules
read must be in the scrape. The dashboard's main panels are rendered from it (matplotlib)."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Producer
from writeback_dev.dashboard import metric_names, render
from writeback_dev.localstack.prometheus import Prometheus

from tests.builders import subscriber, wait_for
from tests.test_service import (  # noqa: F401 - `service` is a fixture
    markers,
    one_salesforce_connection,
    publish,
    recipient_events,
    release_all_windows,
    service,
)
from writeback.contract.events import Recipient
from writeback.ledger import Ledger

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "writeback.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RENDER_TO = os.environ.get("WRITEBACK_DASHBOARD_PNG")  # docs/dashboard.png: a longer run for the picture
WAVES = 12 if RENDER_TO else 4  # published, flushed and scraped one after another: the panels have a shape


def _used_by_dashboard() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {n for panel in dashboard["panels"] for t in panel["targets"] for n in metric_names(t["expr"])}


def _used_by_rules() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {n for g in groups for rule in g["rules"] for n in metric_names(rule["expr"])}


def test_prometheus_scraping_an_end_to_end_run_counts_what_was_published_and_written(
    service, kafka, schema_registry, sim, tmp_path  # noqa: F811 - the fixture imported above
):
    instances, topics = service
    database = one_salesforce_connection(instances, sim, tmp_path, WRITEBACK_RETRY__BASE_DELAY="PT0.5S")
    instances.start()
    wait_for(lambda: "metrics and probes on" in instances.output(), 60, "the HTTP endpoint")
    target = re.search(r"metrics and probes on (http://[\w.:]+)", instances.output()).group(1)
    ledger = Ledger.connect(database)
    started = time.time()
    with Prometheus(targets=[target], workdir=tmp_path) as prometheus:
        api = prometheus.api
        wait_for(api.targets_up, 30, "prometheus to scrape the service")
        contacts: list[str] = []
        published = rejected_contacts = 0
        for wave in range(WAVES):
            wave_contacts, events = recipient_events(sim, f"acme{wave}", 5 + 5 * (wave % 3))  # acme{wave}-{i}@…
            now = datetime.now(UTC)
            events = [
                e.model_copy(update={"account_id": "acme", "occurred_at": now - timedelta(seconds=i % 20)})
                for i, e in enumerate(events)
            ]
            contacts += wave_contacts
            if wave == 1:  # the CRM refuses one writeback for good: a dead letter
                locked = sim.add_contact("Locked", f"locked{wave}@example.org")
                sim.reject_id(locked, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "locked by a validation rule")
                event = subscriber(email=f"locked{wave}@example.org", at=datetime.now(UTC))
                events.append(event.model_copy(update={"recipient": Recipient(email=event.recipient.email, integration_id=locked)}))
                rejected_contacts += 1
            if wave == 2:  # the CRM's API limit: one 429 with Retry-After, retried
                sim.throttle_next(1, retry_after=1.0)
            publish(kafka, schema_registry, topics, events)
            published += len(events)
            if wave == 3:  # a record nobody can read: an ingest dead letter
                producer = Producer({"bootstrap.servers": kafka.bootstrap})
                producer.produce(topics["sub"], value=b"not avro")
                producer.flush(30)
            wait_for(lambda n=published: sum(ledger.counts().values()) == n, 60, "ingest")
            release_all_windows(ledger, ["acme-sf"])
            wait_for(
                lambda: {s for (_c, s) in ledger.counts()} <= {"completed", "failed"},
                90,
                lambda: "the flush: " + instances.output()[-2000:],
            )
            time.sleep(8)

        statuses = {s: n for (_c, s), n in ledger.counts().items()}
        assert statuses == {"completed": published - rejected_contacts, "failed": rejected_contacts}
        # what the CRM holds: one note per unsubscribe and one Task per Sent, none twice
        assert all(len(markers(sim, c)) == 1 and len(sim.tasks_for(c)) == 1 for c in contacts)

        def settled(expr: str, expected: float) -> float | None:
            wait_for(lambda: api.value(expr) == expected, 30, f"{expr} == {expected}: {api.value(expr)}")
            return api.value(expr)

        settled("sum(writeback_events_consumed_total)", published + 1)
        settled("sum(writeback_writebacks_ingested_total)", published)
        settled('sum(writeback_flush_outcomes_total{status="completed"})', statuses["completed"])
        settled('sum(writeback_flush_outcomes_total{status="failed"})', rejected_contacts)
        settled("sum(writeback_dead_letters_total)", rejected_contacts)
        settled("sum(writeback_events_rejected_total)", 1)
        settled("sum(writeback_end_to_end_latency_seconds_count)", statuses["completed"])
        settled("sum(writeback_window_lateness_seconds_count)", statuses["completed"])
        settled('sum(writeback_ledger_rows{status="completed"})', statuses["completed"])
        settled("sum(writeback_pending_rows)", 0)
        # the overdue alert's yardstick: the subscriber schedule's period (weekly), none for the manual window
        settled('max(writeback_schedule_period_seconds{connection="acme-sf",wb_class="subscriber"})', 7 * 86_400)
        assert api.query('writeback_schedule_period_seconds{wb_class="activity"}') == []
        assert api.value("sum(writeback_throttled_total)") >= 1
        assert api.value('sum(writeback_crm_responses_total{status_class="4xx",error_code="HTTP_429"})') >= 1
        assert api.value("sum(writeback_retry_after_seconds_count)") >= 1
        assert api.value("sum(writeback_retries_scheduled_total)") >= 1
        calls = api.value('sum(writeback_crm_responses_total{status_class="2xx"})')
        assert calls and calls >= WAVES * 2  # a composite call or more per wave and class
        assert api.value("sum(writeback_crm_request_seconds_count)") == api.value("sum(writeback_crm_responses_total)")
        lease_age = api.value('time() - max(writeback_flush_lease_renewed_timestamp_seconds{connection="acme-sf"})')
        assert lease_age is not None and lease_age < 120
        # events occurred up to 20 s before they were published; windows closed once ingested
        p50 = api.value("histogram_quantile(0.5, sum by (le) (rate(writeback_end_to_end_latency_seconds_bucket[5m])))")
        assert p50 is not None and 1 <= p50 <= 300, p50
        build = api.query("writeback_build_info")
        assert build and {"version", "python", "confluent_kafka", "librdkafka"} <= set(build[0]["metric"])

        scraped = api.metric_names()
        for used, where in ((_used_by_dashboard(), "the dashboard"), (_used_by_rules(), "the alert rules")):
            assert used, where
            assert used <= scraped, f"{where} reads metrics the scrape does not have: {sorted(used - scraped)}"

        out = Path(RENDER_TO or tmp_path / "dashboard.png")
        drawn = render(api, out, started, time.time())
        assert drawn >= 8 and out.stat().st_size > 10_000
    ledger.close()
