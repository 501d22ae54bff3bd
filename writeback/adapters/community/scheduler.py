"""003's hourly sync: "A campaign that is using a list from your Thrive Community is running.
Thrive Marketing Professional resyncs the list hourly". `serve` runs `run`; a group is due when
a running campaign uses it and its last sync (of any kind: manual, on send or hourly) is an hour
old or more, so a group no running campaign uses is never synced by this loop.

The clock and the period are parameters, so tests move time instead of waiting an hour.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from writeback.adapters.community import groups as store
from writeback.adapters.community.client import Client
from writeback.adapters.community.sync import (
    OpenClient,
    Publish,
    SyncError,
    SyncReport,
    community_connection,
    sync,
)
from writeback.ledger import Ledger
from writeback.settings import Settings

log = logging.getLogger("writeback.community")

HOURLY = timedelta(hours=1)
RETRY_AFTER = timedelta(minutes=5)  # after a failed hourly sync, not every pass


def due(ledger: Ledger, now: datetime, every: timedelta = HOURLY) -> dict[str, list[str]]:
    """Connection → list keys of the groups running campaigns use whose last sync is `every` old."""
    running = store.campaign_groups(ledger)
    found: dict[str, list[str]] = {}
    for connection_id, keys in running.items():
        synced = {g.list_key: g.last_synced_at for g in store.groups(ledger, connection_id)}
        stale = [k for k in sorted(keys) if synced.get(k) is None or now - synced[k] >= every]  # type: ignore[operator]
        if stale:
            found[connection_id] = stale
    return found


class Hourly:
    """One pass at a time: sync what is due; a connection whose sync failed waits RETRY_AFTER."""

    def __init__(
        self,
        ledger: Ledger,
        settings: Callable[[], Settings],
        publish: Publish,
        *,
        every: timedelta = HOURLY,
        open_client: OpenClient = Client,
    ) -> None:
        self.ledger, self.settings, self.publish, self.every = ledger, settings, publish, every
        self.open_client = open_client
        self._failed: dict[str, datetime] = {}

    def run_pass(self, now: datetime) -> list[SyncReport]:
        reports = []
        for connection_id, keys in due(self.ledger, now, self.every).items():
            failed = self._failed.get(connection_id)
            if failed is not None and now - failed < min(RETRY_AFTER, self.every):
                continue
            try:
                account, connection = community_connection(self.settings(), connection_id)
                reports.append(
                    sync(self.ledger, self.publish, account, connection, now, list_keys=keys, open_client=self.open_client)
                )
                self._failed.pop(connection_id, None)
            except SyncError as exc:
                self._failed[connection_id] = now
                log.warning("hourly community sync of %s failed: %s", connection_id, exc.code)
        return reports


def run(
    hourly: Hourly,
    stop: threading.Event,
    *,
    interval: float = 60.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_pass: Callable[[], object] = lambda: None,
) -> None:
    while not stop.is_set():
        try:
            hourly.run_pass(clock())
        except Exception:  # a bad pass must not end the loop; the next one tries again
            log.exception("hourly community pass failed")
        on_pass()
        stop.wait(interval)
