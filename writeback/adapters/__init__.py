"""CRM adapters, one module per CRM, each beside its protocol-faithful simulator.

`open_adapter` turns a connection's settings into a live adapter. Kinds without an adapter yet
answer None: their rows stay pending (visible in the writeback list and the backlog gauge)
rather than failing, so they are written once the adapter exists.
"""

from __future__ import annotations

from writeback import taxonomy
from writeback.events import EVENT_KINDS, ActivityEvent, SubscriberEvent
from writeback.settings import Account, Connection, ConnectionKind
from writeback.writebacks import Adapter, Writeback

SALESFORCE = "salesforce"


def writeback_tracking_pair(wb: Writeback) -> tuple[str, str] | None:
    """Seed 001's (Activity Code, Activity Subcode) labels for a stored writeback."""
    event = EVENT_KINDS[wb.event_type].model_validate(wb.event)
    if isinstance(event, ActivityEvent | SubscriberEvent):
        return taxonomy.tracking_pair(event)
    return None


def open_adapter(account: Account, connection: Connection) -> Adapter | None:
    """The adapter for a connection, or None when this build cannot write to its CRM."""
    product = connection.crm.get("product", SALESFORCE if connection.kind is ConnectionKind.SALESFORCE else None)
    if connection.kind in (ConnectionKind.SALESFORCE, ConnectionKind.TRACKING) and product == SALESFORCE:
        from writeback.adapters.salesforce import SalesforceAdapter, SalesforceConfig

        tracking = connection.kind is ConnectionKind.TRACKING
        config = SalesforceConfig(
            login_url=connection.crm["login_url"],
            client_id=connection.crm["client_id"],
            client_secret=connection.secret("client_secret"),
            api_version=connection.crm.get("api_version", "60.0"),
            time_zone=account.time_zone,
            suppress_email_opt_out=connection.suppress_email_opt_out,
            tracking=tracking,
            timeout_s=connection.crm.get("timeout_s", 30.0),
        )
        return SalesforceAdapter(config, writeback_tracking_pair if tracking else None)
    return None
