"""`writeback community …`: the real CLI against the simulator, a ledger file and the broker."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.adapters.community.conftest import CONNECTION
from writeback.adapters.community import groups
from writeback.cli import app

pytestmark = pytest.mark.kafka

runner = CliRunner()
DISCUSSION, WELCOME = "Has Started Discussion Thread", "Welcome New Members"


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def cli(setup, kafka, schema_registry, database_url, monkeypatch):
    monkeypatch.setenv("WRITEBACK_BOOTSTRAP_SERVERS", kafka.bootstrap)
    monkeypatch.setenv("WRITEBACK_SCHEMA_REGISTRY_URL", schema_registry.url)
    monkeypatch.setenv("WRITEBACK_COMMUNITY_TOPIC", setup.topic)

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["community", *args, "--database", database_url])
        return result.exit_code, result.output

    return run


def test_refresh_then_sync_then_groups(cli, setup, community, published):
    community.seed_reconciliation()

    code, out = cli("refresh", "--connection", CONNECTION)
    assert code == 0, out
    assert "Online Community" in out
    assert out.count("never synced") == 2 and out.count("Sync Target Group Now") == 2
    assert "Board Members" not in out and "InformzX" not in out

    code, out = cli("sync", "--connection", CONNECTION)
    assert code == 0, out
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in out.splitlines() if "│" in line and ("Thread" in line or "New Members" in line)}
    # community members, subscribers, unsubscribed, invalid email, duplicate email, no Remote ID, added, removed
    assert rows[DISCUSSION] == ["9", "3", "0", "3", "2", "1", "8", "0"]
    assert rows[WELCOME] == ["2", "2", "0", "0", "0", "0", "2", "0"]
    assert "2 target groups synced, 10 membership events published" in out
    assert "@" not in out  # no member's address on screen
    assert len(published(setup.topic, expected=10)) == 10

    code, out = cli("groups", "--json")
    shown = {g["group_name"]: g for g in json.loads(out)}
    assert {n: (g["status"], g["action"], g["members"], g["subscribers"], g["folder"]) for n, g in shown.items()} == {
        DISCUSSION: ("synced", "Resync Now", 9, 3, "Online Community"),
        WELCOME: ("synced", "Resync Now", 2, 2, "Online Community"),
    }
    assert shown[DISCUSSION]["reconciliation"] == {"no_remote_id": 1, "invalid_email": 3, "duplicate_email": 2, "unsubscribed": 0}
    assert shown[DISCUSSION]["last_synced_at"] is not None

    code, out = cli("sync", "--connection", CONNECTION, "--group", WELCOME, "--json")
    assert code == 0 and json.loads(out)["published"] == 0


def test_on_send_and_campaigns(cli, setup, community):
    seed = community.seed_reconciliation()
    welcome = seed["lists"]["Informz Welcome New Members"]
    code, out = cli("on-send", "--connection", CONNECTION, "--group", WELCOME, "--json")
    assert code == 0, out
    assert [g["group_name"] for g in json.loads(out)["groups"]] == [WELCOME]
    assert set(groups.memberships(setup.ledger, CONNECTION, welcome)) == {"R-1001", "R-1002"}

    code, out = cli("campaign", "start", "--connection", CONNECTION, "--campaign", "spring", "--group", WELCOME)
    assert (code, out.strip()) == (0, "campaign spring running: 1 target groups synced hourly")
    assert groups.campaign_groups(setup.ledger) == {CONNECTION: {welcome}}
    code, out = cli("campaign", "stop", "--connection", CONNECTION, "--campaign", "spring")
    assert (code, out.strip()) == (0, "campaign spring stopped")
    assert groups.campaign_groups(setup.ledger) == {}


def test_a_failed_sync_says_why_and_names_no_secret(cli, setup, community):
    community.seed_reconciliation()
    community.revoke_credentials()
    code, out = cli("sync", "--connection", CONNECTION)
    assert code == 1
    assert "InvalidCredentials" in out and "target groups unchanged" in out
    assert community.password not in out and community.iam_key not in out
    code, out = cli("sync", "--connection", "nope")
    assert code == 1 and "no such connection" in out
