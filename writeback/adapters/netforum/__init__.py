"""netFORUM Enterprise (seed 000): subscriber status and mailing activity written through xWeb.

Protocol: xWeb's SOAP 1.1 service (`/xweb/secure/netFORUMXML.asmx`, namespace
`http://www.avectra.com/2005/`) through zeep: `Authenticate`, then the generic `GetQuery`,
`InsertFacadeObject` and `UpdateFacadeObject`, the token in the `AuthorizationToken` header and
replaced by the one each answer carries (client.py). Files: config.py (the connection's `crm`
settings), client.py (session, transport, fault budget), errors.py (fault codes → `ErrorKind`),
mapping.py (seed 000's rules as field values), adapter.py (batches, order, idempotency).

Seed 000 → xWeb. Exact strings are the seed's; the rest are our choices where public
documentation is silent, marked (choice).

Mailing activity → one `CustomerMessagingActivity` row (the Individual's Correspondence tab):
- `cma_activity_code` "Informz Mailing"; `cma_activity_subcode` by type: "Sent" (Delivered),
  "Open", "Click", "Block", "Bounce" (any bounce subcode), "Social Sharing".
- `cma_message_name` (choice: the column is not publicly documented) holds 000's Message Name:
  "Mailing was sent"; "Open | <device> | <client> | <country>" for
  "Mailing Action | Device Used | Client Used | Country" (choice: the action is "Open"; a detail
  the event lacks is "Unknown"; a "|" inside a value becomes "/"; each value at most 60
  characters); "Hyperlink was clicked" / "Advertisement was clicked" by the click's target (a
  click without details is a hyperlink). 000 names none for the others (choice): "Mailing was
  blocked", "Mailing bounced (<hard bounce | soft bounce | mailbox full | ...>)", "Mailing was
  shared on <network>".
- `cma_activity_date` = the mailing's send date. `cma_message_id` = the mailing id (left out if
  longer than the column's 50 characters). The link label and the URL are not written.
Unsubscribe → `cst_no_email_flag` ("Do Not Contact by Email") set on the Individual first (it is
  what stops netFORUM's own mail), then one row: code "InformzUnsubscribe", no subcode,
  `cma_activity_date` = the unsubscribe's time, `cma_message_name` = "MM/DD/YYYY hh:mm:ss AM via
  <source>" (choice; sources read "mailing link", "administrator", "subscription page", "account
  rule", "list upload", "campaign", "scheduled task", "SMS reply", "API"), then
  "; reason: <reason>" when the event gives one (000: "Unsubscribe Reason (if provided)").
Resubscribe → the customer's live InformzUnsubscribe rows soft-deleted with `cma_delete_flag` = 1
  (choice: xWeb has no generic delete and netFORUM rows carry `*_delete_flag`; a deleted row is
  gone from GetQuery and the Correspondence tab), then `cst_no_email_flag` cleared: the Individual
  looks as it did before the unsubscribe. A resubscribe older than a live unsubscribe row (a late
  replay) changes nothing and is counted `RESUBSCRIBE_SUPERSEDED`.
Bad email → the primary email's `eml_invalid_flag` = 1 and `eml_invalid_reason` = the event's
  reason, else "Bad Email" (choice), through the Individual facade. An address that is not the
  Individual's primary email fails `EMAIL_NOT_PRIMARY` (the facade reaches only the primary one).
Email Address (000's column) → `cma_eml_key` when the event's address is the Individual's primary
  email or the event has none, else `cma_eml_address`.
Dates are written `MM/DD/YYYY HH:MM:SS.fff` (xWeb's examples) in the site's zone (`time_zone`,
  defaulting to the account's): netFORUM stores local times without an offset.

Tracking (seed 001) with netFORUM as the integrated product (`TRACKING`, a `tracking` connection
  with `product = "netforum"` and this kind's `crm` settings beside it): every code/subcode pair
  becomes one `CustomerMessagingActivity` row and nothing else (no flag changes: 001 tracks, it does
  not manage consent). `cma_activity_code` = 001's Activity Code, `cma_activity_subcode` = its
  Activity Subcode (choice, by analogy with Salesforce's Activity Group / Activity and a public
  xWeb example that writes code "Sent" with a subcode); `cma_activity_date` = when it happened;
  `cma_message_name` = the survey's or event's name (001: "write back only the name of the
  survey or event"), else the mailing's name, else left out; `cma_message_id` = the mailing id.
  The recipient is found only by its Integration ID (001's Custom Member ID) as `cst_key`: a
  recipient without one, or whose key matches no Individual, fails `UNKNOWN_CUSTOMER` and adds
  nothing (001: "Records with a non-matching Custom Member ID ... will fail"). RESUBSCRIBE and
  BAD_EMAIL have no 001 pair and are counted `ACTIVITY_NOT_WRITTEN`. Idempotent like the rest.

Recipients: `recipient.integration_id` is the customer key (`cst_key`); without one the Individual
is found by primary email (GetQuery on Individual by `eml_address`). Lookups run once per write for
the whole batch. No match fails `UNKNOWN_CUSTOMER` and costs no fault (an empty GetQuery is not
one); several Individuals with the address fail `AMBIGUOUS_CUSTOMER`.

Idempotency: `cma_activity_id` = the writeback id (choice; `cma_recipient_id` stays free for the
platform's recipient id). Before inserting, one GetQuery `cma_activity_id IN (...)` per 100 rows
finds what an earlier attempt stored; those writebacks are complete and touch nothing (a replayed
unsubscribe whose row is there does not set the flag again). Flag updates are idempotent by nature.
Limit: a soft-deleted row is invisible to GetQuery, so a batch holding an unsubscribe and its
resubscribe, retried after both were applied, writes the unsubscribe row again and its resubscribe
removes it again: the Individual ends as it should, with one more soft-deleted row.

Faults (netFORUM counts them per xWeb user per day and locks the user at
`MethodsFaultLimitPerDay`): everything xWeb would refuse is refused locally first; existence is
checked with GetQuery before inserting; a failed call stops the rest of the batch (RETRY, with
`ErrorKind.OUTAGE` or `CREDENTIALS`, or `XWEB_FAULT_HALT` after a refused record); expired tokens
are renewed before xWeb would refuse them; a refused password is not sent again; and each
connection stops calling for the day after `fault_budget_per_day` (20) faults.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from writeback import schedules
from writeback.adapters.base import Kind, Product, route_outbound
from writeback.ledger.rows import MailingActivity, WritebackClass

from .adapter import NetforumAdapter
from .config import Config

if TYPE_CHECKING:
    from writeback.schedules import Schedule
    from writeback.settings import Account, Connection

__all__ = ["KIND", "TRACKING", "Config", "NetforumAdapter"]


def _schedules(tz: str) -> dict[WritebackClass, Schedule]:
    """000: status every ten minutes; mailing activity daily by default (it may be weekly or manual)."""
    return {
        WritebackClass.SUBSCRIBER: schedules.SUBSCRIBER_STATUS_DEFAULT,
        WritebackClass.ACTIVITY: schedules.daily_default(tz),
    }


def _open(account: Account, connection: Connection) -> NetforumAdapter:
    return NetforumAdapter(connection.config, time_zone=account.time_zone)


def _open_tracking(account: Account, config: Config) -> NetforumAdapter:
    return NetforumAdapter(config, time_zone=account.time_zone, tracking=True)


TRACKING = Product(config=Config, open=_open_tracking)
"""netFORUM as a tracking connection's integrated product: a messaging-activity row per event,
code = 001's Activity Code, subcode = its Activity Subcode (seed 001)."""


KIND = Kind(
    name="netforum",
    route=route_outbound,
    schedules=_schedules,
    config=Config,
    open=_open,
    mailing_activity=frozenset(MailingActivity),
    mailing_activity_on=None,
    subscriber_cadence=(timedelta(minutes=10), "000"),
    origin_rule=True,
)
