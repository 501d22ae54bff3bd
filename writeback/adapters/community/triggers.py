"""003's other sync types, as the platform calls them: "Sync on send/publish" (just before a
mailing uses a group; it returns once the sync is applied), and the campaign start and stop that
turn the hourly sync of a campaign's groups on and off. The CLI and `serve`'s HTTP endpoints
both call these."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from writeback.adapters.community import groups as store
from writeback.adapters.community.client import Client
from writeback.adapters.community.sync import (
    OpenClient,
    Publish,
    SyncError,
    SyncReport,
    community_connection,
    resolve_groups,
    sync,
)
from writeback.ledger import Ledger
from writeback.settings import Settings


def on_send(
    ledger: Ledger,
    settings: Settings,
    publish: Publish,
    connection_id: str,
    group: str,
    now: datetime,
    *,
    open_client: OpenClient = Client,
) -> SyncReport:
    account, connection = community_connection(settings, connection_id)
    return sync(ledger, publish, account, connection, now, group=group, open_client=open_client)


def start_campaign(
    ledger: Ledger, settings: Settings, connection_id: str, campaign_id: str, groups: Sequence[str], now: datetime
) -> list[str]:
    """Record a running campaign and the groups it uses; returns their list keys."""
    community_connection(settings, connection_id)
    if not campaign_id.strip() or len(campaign_id) > 64:
        raise SyncError(connection_id, "InvalidCampaign", "campaign must be 1 to 64 characters")
    if not groups:
        raise SyncError(connection_id, "NoGroups", "a campaign uses at least one target group")
    keys = resolve_groups(ledger, connection_id, groups)
    store.start_campaign(ledger, connection_id, campaign_id, keys, now)
    return keys


def stop_campaign(ledger: Ledger, settings: Settings, connection_id: str, campaign_id: str) -> int:
    """The campaign no longer runs: its groups are no longer synced hourly (for it)."""
    community_connection(settings, connection_id)
    return store.stop_campaign(ledger, connection_id, campaign_id)
