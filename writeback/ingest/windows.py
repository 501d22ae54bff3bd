"""When a new writeback's window closes: the next fire of its connection's schedule.

Every row ingested between two fires shares one close time, so the fire is computed once per
(connection, class) and reused until it passes; ingest calls this for every row it creates.
"""

from __future__ import annotations

from datetime import datetime

from writeback.ledger.rows import WritebackClass
from writeback.schedules import Schedule, next_fire
from writeback.settings import Connection


class Windows:
    def __init__(self) -> None:
        self._open: dict[tuple[str, WritebackClass], tuple[Schedule, datetime | None]] = {}

    def closes_at(
        self, connection: Connection, wb_class: WritebackClass, now: datetime
    ) -> datetime | None:
        """The current window's close for `connection`; None for a manual schedule, whose
        rows wait for `writeback send-activity`."""
        schedule = connection.schedule(wb_class)
        key = (connection.id, wb_class)
        cached = self._open.get(key)
        if cached is not None and cached[0] == schedule and (cached[1] is None or now < cached[1]):
            return cached[1]
        fire = next_fire(schedule, now)
        self._open[key] = (schedule, fire)
        return fire
