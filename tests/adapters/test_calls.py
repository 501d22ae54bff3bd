"""CRM requests counted and timed at each transport the adapters use, against real servers on
loopback: an answer by its status class, no answer by the error's type, SQL statements too."""

from __future__ import annotations

import socket

import httpx
import pytest
import requests
import sqlalchemy as sa
from prometheus_client import REGISTRY

from writeback.adapters import calls


def _count(kind: str, status_class: str, code: str) -> float:
    labels = {"kind": kind, "status_class": status_class, "error_code": code}
    return REGISTRY.get_sample_value("writeback_crm_responses_total", labels) or 0.0


def _timed(kind: str) -> float:
    return REGISTRY.get_sample_value("writeback_crm_request_seconds_count", {"kind": kind}) or 0.0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("kind", "client", "refused"),
    [
        ("test-httpx", lambda kind: httpx.Client(transport=calls.http_transport(kind)), "ConnectError"),
        ("test-requests", lambda kind: calls.observe_session(requests.Session(), kind), "ConnectionError"),
    ],
    ids=["httpx", "requests-as-zeep-uses-it"],
)
def test_http_requests_are_counted_by_status_class_and_failures_by_type(sim, kind, client, refused):
    http = client(kind)
    assert http.get(f"{sim.login_url}/no/such/path").status_code == 404
    with pytest.raises(Exception) as failed:
        http.get(f"http://127.0.0.1:{_closed_port()}/")
    assert type(failed.value).__name__ == refused
    http.close()
    assert _count(kind, "4xx", "HTTP_404") == 1
    assert _count(kind, "error", refused) == 1
    assert _timed(kind) == 2


def test_sql_statements_are_timed_and_driver_errors_counted(tmp_path):
    kind = "test-sql"
    engine = calls.observe_engine(sa.create_engine(f"sqlite:///{tmp_path / 'crm.db'}"), kind)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        with pytest.raises(sa.exc.OperationalError):
            conn.execute(sa.text("SELECT * FROM no_such_table"))
    assert _count(kind, "ok", "") == 1
    assert _count(kind, "error", "OperationalError") == 1
    assert _timed(kind) == 2
