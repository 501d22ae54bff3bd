"""The platform's calls into `serve`'s HTTP server: on-send returns once the sync is applied (and
its events acknowledged); campaign start and stop turn the hourly sync on and off."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.adapters.community.conftest import CONNECTION, Setup
from writeback import health
from writeback.adapters.community import endpoints, groups

pytestmark = pytest.mark.kafka

WELCOME = "Welcome New Members"


@pytest.fixture(params=["sqlite"])
def database_url(request, tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def http(setup: Setup) -> Iterator[httpx.Client]:
    """The service's HTTP server (probes, /metrics and the community's routes) on a free port."""
    routes = {endpoints.PREFIX: endpoints.app(setup.ledger, lambda: setup.settings, setup.publish)}
    server = health.serve_http("127.0.0.1", 0, lambda: None, lambda: None, routes)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}", timeout=30) as client:
            yield client
    finally:
        server.shutdown()
        server.server_close()


def test_on_send_returns_after_the_sync_is_applied(setup, community, http, published):
    seed = community.seed_reconciliation()
    welcome = seed["lists"]["Informz Welcome New Members"]
    community.add_member(welcome, seed["contacts"]["alan"])
    community.slow_next(2, seconds=0.5)  # GetLists and the member page take a while

    answer = http.post("/community/on-send", json={"connection": CONNECTION, "group": WELCOME})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(g["group_name"], g["members"], g["added"]) for g in body["groups"]] == [(WELCOME, 3, 3)]
    # applied before the answer: the ledger has the members, the broker the events
    assert set(groups.memberships(setup.ledger, CONNECTION, welcome)) == {"R-1001", "R-1002", "R-1003"}
    assert community.state()["in_flight"] == 0
    assert sorted(e.legacy_contact_key for e in published(setup.topic, expected=3, timeout=5)) == ["R-1001", "R-1002", "R-1003"]
    assert body["published"] == 3
    assert http.get("/healthz").status_code == 200
    metrics = http.get("/metrics").text
    assert f'writeback_community_members{{connection="{CONNECTION}"}} 3.0' in metrics
    assert "example.org" not in metrics and "Welcome" not in metrics


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"connection": CONNECTION, "group": "Nope"}, 404, "UnknownGroup"),
        ({"connection": "other", "group": WELCOME}, 404, "UnknownConnection"),
        ({"connection": CONNECTION}, 400, "InvalidField"),
    ],
)
def test_on_send_refuses_what_it_cannot_sync_with_a_clear_error(setup, community, http, body, status, error):
    community.seed_reconciliation()
    answer = http.post("/community/on-send", json=body)
    assert answer.status_code == status and answer.json()["error"] == error
    assert answer.json()["message"]


def test_on_send_with_bad_credentials_leaves_the_group_as_it_was(setup, community, http):
    seed = community.seed_reconciliation()
    welcome = seed["lists"]["Informz Welcome New Members"]
    assert http.post("/community/on-send", json={"connection": CONNECTION, "group": WELCOME}).status_code == 200
    community.add_member(welcome, seed["contacts"]["alan"])
    community.revoke_credentials()

    answer = http.post("/community/on-send", json={"connection": CONNECTION, "group": WELCOME})

    assert answer.status_code == 502 and answer.json()["error"] == "InvalidCredentials"
    assert "target groups unchanged" in answer.json()["message"]
    assert set(groups.memberships(setup.ledger, CONNECTION, welcome)) == {"R-1001", "R-1002"}


def test_campaign_start_and_stop_over_http(setup, community, http):
    seed = community.seed_reconciliation()
    http.post("/community/on-send", json={"connection": CONNECTION, "group": WELCOME}).raise_for_status()
    started = http.post("/community/campaigns/start", json={"connection": CONNECTION, "campaign": "c-1", "groups": [WELCOME]})
    assert started.status_code == 200 and started.json() == {"campaign": "c-1", "groups": 1}
    assert groups.campaign_groups(setup.ledger) == {CONNECTION: {seed["lists"]["Informz Welcome New Members"]}}
    stopped = http.post("/community/campaigns/stop", json={"connection": CONNECTION, "campaign": "c-1"})
    assert stopped.json() == {"campaign": "c-1", "stopped": True}
    assert groups.campaign_groups(setup.ledger) == {}
    assert http.get("/community/on-send").status_code == 405


def test_serve_answers_on_send_on_its_http_port(setup, community, kafka, schema_registry, topic_factory, tmp_path, published):
    """The same endpoint in a real `writeback serve` process, beside /metrics and the probes."""
    import os
    import socket
    import subprocess
    import sys
    import uuid

    from tests.builders import wait_for

    seed = community.seed_reconciliation()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text(
        '[[accounts]]\nid = "acme"\ntime_zone = "America/Chicago"\n[[accounts.connections]]\n'
        f'id = "{CONNECTION}"\nkind = "community"\n'
        f'crm = {{ api_url = "{community.api_url}", iam_key = {{ env = "ACME_CM_IAM_KEY" }}, '
        'password = { env = "ACME_CM_PASSWORD" } }\n'
    )
    env = {
        **os.environ,
        "WRITEBACK_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "WRITEBACK_SCHEMA_REGISTRY_URL": schema_registry.url,
        "WRITEBACK_SUBSCRIBER_TOPIC": topic_factory("serve-sub"),
        "WRITEBACK_ACTIVITY_TOPIC": topic_factory("serve-act"),
        "WRITEBACK_COMMUNITY_TOPIC": setup.topic,
        "WRITEBACK_GROUP_ID": f"serve-{uuid.uuid4().hex[:8]}",
        "WRITEBACK_DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
        "WRITEBACK_SETTINGS_FILE": str(settings_file),
        "WRITEBACK_METRICS_PORT": str(port),
        "WRITEBACK_HTTP_HOST": "127.0.0.1",
        "ACME_CM_IAM_KEY": community.iam_key,
        "ACME_CM_PASSWORD": community.password,
    }
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "writeback.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            def up() -> bool:
                try:
                    return client.get("/readyz").status_code == 200  # serving, community routes included
                except httpx.TransportError:
                    return False

            wait_for(up, timeout=60)
            answer = client.post("/community/on-send", json={"connection": CONNECTION, "group": WELCOME})
            assert answer.status_code == 200, answer.text
            assert answer.json()["published"] == 2
            assert sorted(e.legacy_contact_key for e in published(setup.topic, expected=2)) == ["R-1001", "R-1002"]
            assert {e.list_id for e in published(setup.topic, expected=2)} == {seed["lists"]["Informz Welcome New Members"]}
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
