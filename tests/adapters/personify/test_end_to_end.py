"""Seed 004 end to end: events published to the real broker → `writeback serve` → windows
released → the exact CUS_OPT_IN and CUS_ACTIVITY rows in a PostgreSQL Personify database; the
unknown customer and the unmapped group dead-lettered; replaying them after adding the customer
writes once."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from writeback_dev import personify_schema as ps

from tests import test_service
from tests.builders import wait_for
from tests.test_end_to_end import sub_event
from tests.test_service import by_status, publish, release_all_windows
from writeback.ingest.consume import writeback_id
from writeback.ledger import Ledger

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

service = test_service.service

ZONE = "America/New_York"
AT = datetime(2026, 1, 15, 19, 5, 9, tzinfo=UTC)  # 02:05:09 PM EST
LOCAL = datetime(2026, 1, 15, 14, 5, 9)
ADA, NEWCOMER = "000000123", "000000777"
GROUP = {"kind": "GROUP", "id": "g-12", "name": "Advocacy"}


def test_personify_rows_dead_letters_and_replay_after_the_customer_is_added(
    service, kafka, schema_registry, postgres_database, tmp_path: Path
) -> None:
    instances, topics = service
    engine = ps.create(postgres_database)
    ps.add_codes(engine, ps.INTEREST_AREA_TYPE, ["ADVOCACY"])
    ps.add_codes(engine, ps.ACTIVITY_TYPE, ["UNSUBSCRIBE", "SUBSCRIBE"])
    ps.add_customer(engine, ADA)
    ps.add_opt_in(engine, ADA, "ADVOCACY", datetime(2025, 1, 1))
    url = sa.make_url(postgres_database)
    settings = tmp_path / "settings.toml"
    settings.write_text(
        '[[accounts]]\nid = "acme"\ntime_zone = "America/New_York"\n'
        '[[accounts.connections]]\nid = "acme-ps"\nkind = "personify"\n'
        f'crm = {{ personify_mode = "both", database_url = "{sa.URL.create(url.drivername, host=url.host, port=url.port, database=url.database).render_as_string()}", '
        f'username = "{url.username}", manage_unsubscribe = {{ group = {{ "g-12" = "ADVOCACY" }} }} }}\n'
    )
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    instances.env |= {"WRITEBACK_DATABASE_URL": ledger_url, "WRITEBACK_SETTINGS_FILE": str(settings)}
    events = [
        sub_event("UNSUBSCRIBE", {"integration_id": ADA}, AT, scope=GROUP),
        sub_event("UNSUBSCRIBE", {"integration_id": NEWCOMER}, AT, scope=GROUP),
        sub_event("UNSUBSCRIBE", {"integration_id": ADA}, AT, scope={"kind": "GROUP", "id": "g-99"}),
        sub_event("UNSUBSCRIBE", {"integration_id": ADA}, AT, scope=GROUP, source="CRM_SYNC"),  # not routed
    ]
    instances.start()
    publish(kafka, schema_registry, topics, events)
    ledger = Ledger.connect(ledger_url)
    try:
        wait_for(lambda: sum(ledger.counts().values()) == 3, 90, lambda: "ingest: " + instances.output()[-2000:])
        release_all_windows(ledger, ["acme-ps"])
        wait_for(lambda: by_status(ledger) == {"completed": 1, "failed": 2}, 90, lambda: "the flush: " + instances.output()[-3000:])
        wid = [writeback_id(e.event_id, "acme-ps") for e in events[:3]]
        assert (ledger.get(wid[1])["error_code"], ledger.get(wid[2])["error_code"]) == (
            "UNKNOWN_CUSTOMER", "UNMAPPED_GROUP",
        )  # fmt: skip
        text = 'Unsubscribed from group "Advocacy" (g-12) via mailing link'
        assert ps.opt_ins(engine) == [(ADA, "INTEREST_AREA", "ADVOCACY", datetime(2025, 1, 1), LOCAL, None)]
        assert ps.activities(engine) == [(ADA, "UNSUBSCRIBE", LOCAL, text)]
        instances.stop_all()

        # the customer is added in Personify; replaying the dead letters writes the newcomer once
        ps.add_customer(engine, NEWCOMER)
        ps.add_opt_in(engine, NEWCOMER, "ADVOCACY", datetime(2025, 6, 1))
        args = [
            sys.executable, "-m", "writeback.cli", "replay", "--database", ledger_url, "--bootstrap", kafka.bootstrap,
            "--registry", schema_registry.url, "--group", f"cli-{uuid.uuid4().hex[:6]}",
        ]  # fmt: skip
        for _ in range(2):  # the second replay finds the newcomer's writeback applied: nothing more
            run = subprocess.run(args, env=instances.env, capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, run.stdout + run.stderr
        assert ledger.get(wid[1])["status"] == "completed"
        assert ledger.get(wid[2])["status"] == "failed"
        assert ps.opt_ins(engine) == [
            (ADA, "INTEREST_AREA", "ADVOCACY", datetime(2025, 1, 1), LOCAL, None),
            (NEWCOMER, "INTEREST_AREA", "ADVOCACY", datetime(2025, 6, 1), LOCAL, None),
        ]
        assert ps.activities(engine) == [(ADA, "UNSUBSCRIBE", LOCAL, text), (NEWCOMER, "UNSUBSCRIBE", LOCAL, text)]
    finally:
        ledger.close()
        engine.dispose()
