"""A `writeback community sync` process SIGKILLed mid-sync leaves the previous target group intact,
and the next sync completes it, each membership change published once.

The simulator is slowed so the process is killed while it reads member pages (three kills, after
one, two and three pages); a fourth kill lands as the last page is answered, when the sync may be
applying or publishing: whatever it left, the next sync completes, and no change is published
twice under different event ids (a kill after the broker's ack and before the outbox row is
deleted may publish one again under the same id, which consumers de-duplicate on).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.adapters.community.conftest import CONNECTION, T0
from tests.builders import wait_for
from writeback.adapters.community import groups
from writeback.adapters.community.sync import sync

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

MEMBERS = "ListBuilder/GetListMembers"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("postgres_database")


def test_a_sync_killed_mid_sync_leaves_the_group_intact_and_the_next_completes_it(
    setup, community, published, kafka, schema_registry, database_url, tmp_path
):
    seed = community.seed_reconciliation()
    key = seed["lists"]["Informz Has Started Discussion Thread"]
    sync(setup.ledger, setup.publish, setup.account, setup.connection, T0)
    before = groups.memberships(setup.ledger, CONNECTION, key)
    synced_at = {g.list_key: g.last_synced_at for g in groups.groups(setup.ledger)}
    community.remove_member(key, seed["contacts"]["alan"])
    for i in (1, 2):
        community.add_member(key, community.add_contact("New", f"Member {i}", f"new{i}@example.org", legacy_contact_key=f"R-300{i}"))
    env = {
        **os.environ,
        "WRITEBACK_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "WRITEBACK_SCHEMA_REGISTRY_URL": schema_registry.url,
        "WRITEBACK_COMMUNITY_TOPIC": setup.topic,
        "ACME_CM_IAM_KEY": community.iam_key,
        "ACME_CM_PASSWORD": community.password,
    }
    command = [sys.executable, "-m", "writeback.cli", "community", "sync", "--connection", CONNECTION, "--database", database_url]

    def start() -> subprocess.Popen:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    for pages in (1, 2, 3):
        community.slow_next(40, seconds=0.3)
        seen = len(community.calls(MEMBERS))
        proc = start()
        wait_for(lambda: len(community.calls(MEMBERS)) >= seen + pages or proc.poll() is not None, timeout=60)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL, proc.stdout.read().decode() if proc.stdout else ""
        community.wait_idle()
        community.clear_faults()
        assert groups.memberships(setup.ledger, CONNECTION, key) == before
        assert {g.list_key: g.last_synced_at for g in groups.groups(setup.ledger)} == synced_at
    assert len(published(setup.topic, timeout=6)) == 10  # only the first sync's

    # the last kill: as the final member page is answered (applying, publishing, or done)
    welcome = seed["lists"]["Informz Welcome New Members"]
    pages_per_sync = sum(-(-len(community.members(k)) // 3) for k in (key, welcome))  # page size 3
    community.slow_next(40, seconds=0.05)
    seen = len(community.calls(MEMBERS))
    proc = start()
    wait_for(lambda: len(community.calls(MEMBERS)) >= seen + pages_per_sync or proc.poll() is not None, timeout=60)
    time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    community.wait_idle()
    community.clear_faults()

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr

    assert set(groups.memberships(setup.ledger, CONNECTION, key)) == (set(before) - {"R-1003"}) | {"R-3001", "R-3002"}
    events = published(setup.topic, timeout=8)
    later = {e.event_id: (e.list_id, e.legacy_contact_key, str(e.change)) for e in events[10:]}
    assert sorted(later.values()) == sorted([(key, "R-1003", "REMOVED"), (key, "R-3001", "ADDED"), (key, "R-3002", "ADDED")])
    assert groups.outbox(setup.ledger, CONNECTION) == []
    assert {g.group_name: g.last_synced_at > T0 for g in groups.groups(setup.ledger) if g.last_synced_at} == {
        "Has Started Discussion Thread": True, "Welcome New Members": True,
    }
