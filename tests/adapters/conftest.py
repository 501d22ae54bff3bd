"""One Salesforce simulator per test session, emptied before each test that uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from writeback.adapters.salesforce_sim import SalesforceSim

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret-do-not-log"


@pytest.fixture(scope="session")
def sim_server() -> Iterator[SalesforceSim]:
    with SalesforceSim(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        yield sim


@pytest.fixture
def sim(sim_server: SalesforceSim) -> SalesforceSim:
    sim_server.reset()
    return sim_server
