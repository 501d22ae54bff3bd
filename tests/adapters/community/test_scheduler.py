"""003's hourly sync, on a clock the test moves: only groups a running campaign uses, once their
last sync is an hour old, and never after the campaign stops."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from tests.adapters.community.conftest import CONNECTION, T0
from writeback.adapters.community import groups, scheduler
from writeback.adapters.community.sync import SyncError, sync
from writeback.adapters.community.triggers import start_campaign, stop_campaign

pytestmark = pytest.mark.kafka

MEMBERS = "ListBuilder/GetListMembers"
WELCOME = "Welcome New Members"


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def member_calls(sim) -> set[str]:
    return {c.list_key for c in sim.calls(MEMBERS) if c.list_key}


def test_the_hourly_sync_runs_only_while_a_campaign_uses_the_group(setup, community, published):
    seed = community.seed_reconciliation()
    welcome = seed["lists"]["Informz Welcome New Members"]
    sync(setup.ledger, setup.publish, setup.account, setup.connection, T0)
    hourly = scheduler.Hourly(setup.ledger, lambda: setup.settings, setup.publish)
    community.add_member(welcome, seed["contacts"]["alan"])
    calls_before = len(community.request_log)

    # no campaign: however late it is, nothing is synced
    assert hourly.run_pass(T0 + timedelta(hours=5)) == []
    assert len(community.request_log) == calls_before

    start_campaign(setup.ledger, setup.settings, CONNECTION, "spring-drive", [WELCOME], T0 + timedelta(minutes=10))
    assert hourly.run_pass(T0 + timedelta(minutes=59)) == []  # synced less than an hour ago
    assert len(community.request_log) == calls_before

    [report] = hourly.run_pass(T0 + timedelta(hours=1))
    assert [g.group_name for g in report.groups] == [WELCOME] and report.published == 1
    assert {c.list_key for c in community.request_log[calls_before:] if c.endpoint == MEMBERS} == {welcome}
    assert set(groups.memberships(setup.ledger, CONNECTION, welcome)) == {"R-1001", "R-1002", "R-1003"}
    assert hourly.run_pass(T0 + timedelta(hours=1, minutes=30)) == []  # the next is due an hour later
    [again] = hourly.run_pass(T0 + timedelta(hours=2))
    assert again.published == 0

    stop_campaign(setup.ledger, setup.settings, CONNECTION, "spring-drive")
    calls_stopped = len(community.request_log)
    assert hourly.run_pass(T0 + timedelta(hours=9)) == []
    assert len(community.request_log) == calls_stopped
    assert len(published(setup.topic, expected=11)) == 11


def test_a_failed_hourly_sync_waits_before_trying_again(setup, community):
    community.seed_reconciliation()
    sync(setup.ledger, setup.publish, setup.account, setup.connection, T0)
    start_campaign(setup.ledger, setup.settings, CONNECTION, "c", [WELCOME], T0)
    hourly = scheduler.Hourly(setup.ledger, lambda: setup.settings, setup.publish)
    community.revoke_credentials()
    assert hourly.run_pass(T0 + timedelta(hours=1)) == []
    tried = len(community.request_log)
    assert hourly.run_pass(T0 + timedelta(hours=1, minutes=1)) == []
    assert len(community.request_log) == tried  # not every pass
    community.restore_credentials()
    [report] = hourly.run_pass(T0 + timedelta(hours=1, minutes=5))
    assert [g.group_name for g in report.groups] == [WELCOME]


def test_the_loop_reads_the_clock_it_is_given(setup, community):
    community.seed_reconciliation()
    sync(setup.ledger, setup.publish, setup.account, setup.connection, T0)
    start_campaign(setup.ledger, setup.settings, CONNECTION, "c", [WELCOME], T0)
    now = [T0]
    stop = threading.Event()
    passes = []

    def tick() -> None:
        passes.append(now[0])
        now[0] += timedelta(minutes=20)
        if len(passes) == 6:
            stop.set()

    scheduler.run(
        scheduler.Hourly(setup.ledger, lambda: setup.settings, setup.publish),
        stop, interval=0.01, clock=lambda: now[0], on_pass=tick,
    )  # fmt: skip
    synced = groups.groups(setup.ledger, CONNECTION)
    # passes at 0, 20, 40, 60, 80 and 100 minutes: one sync, at 60
    assert len(passes) == 6
    assert {g.group_name: g.last_synced_at for g in synced}[WELCOME] == T0 + timedelta(hours=1)


def test_a_campaign_names_groups_that_exist(setup, community):
    community.seed_reconciliation()
    with pytest.raises(SyncError, match="no target group named 'Nope'"):
        start_campaign(setup.ledger, setup.settings, CONNECTION, "c", ["Nope"], T0)
