"""The `make run` demo: its settings are valid, its netFORUM account's sample events reach the
netFORUM simulator through the connections' own adapters, and the status line reports what
each simulator holds (read from the simulators, not from what was sent)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from writeback_dev import demo
from writeback_dev.simulators.netforum import NetforumSim
from writeback_dev.simulators.salesforce import SalesforceSim

from writeback.adapters.base import Disposition, Writeback
from writeback.contract.events import SubscriberEvent
from writeback.ingest.routing import route
from writeback.ledger import Ledger


@pytest.fixture
def sims(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SalesforceSim, NetforumSim]]:
    with SalesforceSim() as sim, NetforumSim() as nf:
        monkeypatch.setenv(demo.SECRET_ENV, sim.client_secret)
        monkeypatch.setenv(demo.NETFORUM_PASSWORD_ENV, nf.password)
        yield sim, nf


def test_the_demo_has_a_netforum_account_beside_the_salesforce_one(sims: tuple[SalesforceSim, NetforumSim]) -> None:
    settings = demo.settings(*sims)
    kinds = {a.id: {c.id: (c.kind, getattr(c.config, "product", None)) for c in a.connections} for a in settings.accounts}
    assert kinds == {
        demo.ACCOUNT: {"demo-salesforce": ("salesforce", None), "demo-tracking": ("tracking", "salesforce")},
        demo.NETFORUM_ACCOUNT: {"demo-netforum": ("netforum", None), "demo-nf-tracking": ("tracking", "netforum")},
    }


def test_netforum_sample_events_land_in_the_simulator_and_the_status_line_reads_it(
    sims: tuple[SalesforceSim, NetforumSim], tmp_path: Path
) -> None:
    sim, nf = sims
    settings = demo.settings(sim, nf)
    account = settings.account(demo.NETFORUM_ACCOUNT)
    assert account is not None
    individuals = demo.seed_netforum(nf)
    events = demo.netforum_events(individuals, random.Random(3), 60)
    written = 0
    for connection in account.connections:
        batch = []
        for event in events:
            decision = route(event, connection)
            if decision.wb_class is not None:
                batch.append(
                    Writeback(str(uuid.uuid4()), account.id, connection.id, decision.wb_class, event.recipient.key(), event.occurred_at, event)
                )
        assert connection.kind_of().open is not None
        adapter = connection.kind_of().open(account, connection)
        outcomes = adapter.write(batch)
        adapter.close()
        assert {o.disposition for o in outcomes} == {Disposition.COMPLETED}, [o for o in outcomes if o.error_code]
        written += sum(1 for o in outcomes if o.crm_ids and o.error_code is None)
    assert written > 0

    rows = nf.activities(include_deleted=True)
    live = [r for r in rows if not r["cma_delete_flag"]]
    codes = [r["cma_activity_code"] for r in live]
    people = nf.individuals()
    expected = (
        f"netFORUM: {len(live)} correspondence rows ({codes.count('Informz Mailing')} Informz Mailing, "
        f"{codes.count('InformzUnsubscribe')} InformzUnsubscribe, "
        f"{len(live) - codes.count('Informz Mailing') - codes.count('InformzUnsubscribe')} tracking), "
        f"{len(rows) - len(live)} removed by resubscribes, "
        f"{sum(p['cst_no_email_flag'] for p in people)} do not contact, {sum(p['eml_invalid_flag'] for p in people)} bad emails"
    )
    assert demo.netforum_status(nf) == expected
    assert codes.count("Informz Mailing") > 0 and len(live) > codes.count("Informz Mailing") + codes.count("InformzUnsubscribe")
    assert any(isinstance(e, SubscriberEvent) for e in events)

    ledger = Ledger.connect(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        line = demo.status_line(ledger, sim, nf)
    finally:
        ledger.close()
    assert line == f"writeback list: empty | Salesforce: 0 notes, 0 tasks, 0 opted out | {expected}"
