"""Logs SREs can ship: `--log-format json` writes one JSON object per line with the fields they
filter on, and neither the logs nor /metrics ever carry an email, a recipient's identity, a
credential or what a hostile record put in its fields."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta

import httpx
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from tests.builders import T0, subscriber, wait_for
from tests.test_service import (  # noqa: F401 - `service` is a fixture
    Instances,
    one_salesforce_connection,
    publish,
    release_all_windows,
    service,
)
from writeback.contract.events import Recipient, SubscriberEvent
from writeback.contract.serde import EventSerde, registry_client
from writeback.ledger import Ledger
from writeback.logs import FIELDS, Redact, fields, redact


def test_redaction_removes_emails_credentials_and_url_user_info():
    line = (
        'pat.o-brien+x@mail.example.org said password=hunter2, "client_secret": "abc123" and '
        "Authorization: Bearer eyJ.abc.def via postgresql://informz:pw@db.example.org/ledger"
    )
    out = redact(line)
    for value in ("pat.o-brien+x@mail.example.org", "hunter2", "abc123", "eyJ.abc.def", "informz:pw"):
        assert value not in out, out
    assert "db.example.org/ledger" in out and "password=<redacted>" in out


def test_a_record_is_redacted_in_its_arguments_fields_and_traceback():
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "lookup of %s failed", ("a@b.example",), None)
    try:
        raise ValueError("token=s3cr3t")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    record.error_code = "secret=zzz"
    Redact().filter(record)
    assert record.getMessage() == "lookup of <email> failed"
    assert "s3cr3t" not in record.exc_text and record.exc_info is None
    assert record.error_code == "secret=<redacted>"


def test_log_fields_are_the_known_ones():
    assert fields(connection="c", kind=None) == {"connection": "c"}
    with pytest.raises(ValueError, match="not a log field: email"):
        fields(email="x")


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_serve_json_logs_and_metrics_of_a_hostile_run_hold_no_email_recipient_or_credential(
    service, kafka, schema_registry, sim, tmp_path  # noqa: F811 - the fixture imported above
):
    instances, topics = service
    assert isinstance(instances, Instances)
    database = one_salesforce_connection(instances, sim, tmp_path, WRITEBACK_LOG_FORMAT="json")
    injection = "x'); DROP TABLE writebacks; --"
    written = "victim.one@example.org"
    refused = "victim.two@example.org"
    contact = sim.add_contact("One", written)
    locked = sim.add_contact("Two", refused)
    sim.reject_id(locked, "FIELD_CUSTOM_VALIDATION_EXCEPTION", f"{refused} is locked; password=hunter2 {injection}")

    def of(email: str, contact_id: str, **extra: object) -> SubscriberEvent:
        event = subscriber(email=email, at=T0 + timedelta(seconds=len(extra)), **extra)
        return event.model_copy(update={"recipient": Recipient(email=email, integration_id=contact_id)})

    events = [
        of(written, contact, reason=f"password=hunter2 {injection}"),
        of(refused, locked),
    ]
    # a bad email, as a producer that skips validation would frame it
    bad_email = "robert'); DROP TABLE writebacks;--@@example"
    unvalidated = subscriber(email="x@example.org").model_copy(
        update={"recipient": Recipient.model_construct(email=bad_email, integration_id=None)}
    )
    serde = EventSerde(registry_client(schema_registry.url))
    framed = serde.serialize(unvalidated, topics["sub"])
    raw = json.dumps({"email": "raw.three@example.org", "client_secret": "s3cr3t-raw", "q": injection}).encode()

    instances.start()
    publish(kafka, schema_registry, topics, events)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    producer.produce(topics["sub"], value=framed)
    producer.produce(topics["sub"], value=raw)
    producer.flush(30)

    ledger = Ledger.connect(database)
    wait_for(lambda: sum(ledger.counts().values()) == 2, 60, lambda: "ingest: " + instances.output()[-2000:])
    release_all_windows(ledger, ["acme-sf"])
    statuses = lambda: {s: n for (_c, s), n in ledger.counts().items()}  # noqa: E731
    wait_for(lambda: statuses() == {"completed": 1, "failed": 1}, 60, lambda: "the flush: " + instances.output()[-2000:])
    url = re.search(r"metrics and probes on (http://[\w.:]+)", instances.output()).group(1)
    wait_for(lambda: "writeback_events_rejected_total" in httpx.get(f"{url}/metrics").text, 30, "the scrape")
    scrape = httpx.get(f"{url}/metrics").text
    instances.stop_all()
    ledger.close()

    output = instances.output()
    lines = _json_lines(output)  # every line is one JSON object: json.loads raises otherwise
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    dead = [line for line in lines if "dead-lettered" in line["message"]]
    assert len(dead) == 1 and set(FIELDS) <= set(dead[0]), dead
    assert dead[0]["error_code"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION" and dead[0]["connection"] == "acme-sf"
    assert sum("set aside" in line["message"] for line in lines) == 2, output[-3000:]
    rejected = {
        (s.labels["topic"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
        if s.name == "writeback_events_rejected_total" and s.value
    }
    assert rejected == {(topics["sub"], "INVALID_EVENT"): 1, (topics["sub"], "UNDECODABLE"): 1}

    secrets = [written, refused, "raw.three@example.org", bad_email, "hunter2", "s3cr3t-raw", sim.client_secret]
    for where, text in (("logs", output), ("metrics", scrape)):
        for value in [*secrets, contact, locked, "DROP TABLE"]:
            assert value.lower() not in text.lower(), f"{value!r} in the {where}"
