"""Community lists (seed 003): the connection that reads from its CRM instead of writing to it.

Community Super Admins build Custom User Lists in List Builder; the sync job (`sync.py`) makes
the lists whose names begin with "Informz" target groups in the "Online Community" folder, with
the prefix removed (the rule and its near-misses in `mapping.py`), matches members on Legacy
Contact Key = Remote ID, keeps groups and memberships in the ledger (`groups.py`) and publishes
each membership change once as a community list event. Syncs are manual (`writeback community
sync`, `refresh`), on send (`writeback community on-send`, `POST /community/on-send`) and hourly
for the groups of running campaigns (`scheduler.py`, run by `serve`).

writeback is the producer of community list events, so the kind routes nothing outbound: a
community list event ingest reads is dropped ("produced_by_sync", counted) rather than stored
as a writeback nothing would ever write, and the kind has no adapter and no writeback schedule.

Choices where the community's public documentation is silent: List Builder has no public
endpoint (the ones used are in `client.py`); the IAMKey and Password are both credentials;
"Active" is `crm.active` (and the connection's `enabled`); a list gone from List Builder keeps
its target group as it was (marked "not in community") rather than emptying it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from writeback import schedules
from writeback.adapters.base import Kind, Route, drop
from writeback.adapters.community.config import Config
from writeback.contract.events import CommunityListEvent, Event
from writeback.ledger.rows import WritebackClass

if TYPE_CHECKING:
    from writeback.settings import Connection


def _route(event: Event, _connection: Connection) -> Route:
    return drop("produced_by_sync" if isinstance(event, CommunityListEvent) else "not_for_kind")


def _schedules(_tz: str) -> dict[WritebackClass, schedules.Schedule]:
    return {}


KIND = Kind(name="community", route=_route, schedules=_schedules, config=Config, subscriber_state=True)
