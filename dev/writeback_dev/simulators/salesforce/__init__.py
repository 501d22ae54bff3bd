"""A protocol-faithful Salesforce REST simulator that runs as a real HTTP server on loopback.

Shapes, status codes and error codes are Salesforce's own, so a client that works here works
against an org. What it models:

- OAuth 2.0 client-credentials flow, `POST /services/oauth2/token` (form-encoded), with the client
  id and secret as form fields or as an HTTP Basic `Authorization` header (both as an org accepts;
  simple-salesforce sends the header). Errors as an org gives them: unknown client
  `invalid_client_id`, wrong secret or a malformed Basic header `invalid_client`, no run-as user
  `invalid_grant`, any other grant `unsupported_grant_type`.
- sObject Rows under `/services/data/vXX.X/`: create `POST sobjects/{SObject}/` (201,
  `{"id", "success", "errors"}`); `GET sobjects/{SObject}/{id}` (all fields, or `?fields=`);
  update `PATCH sobjects/{SObject}/{id}` (204); delete `DELETE sobjects/{SObject}/{id}` (204, to the
  recycle bin); by external id, `GET` and upsert `PATCH sobjects/{SObject}/{ExternalIdField}/{value}`
  (201 created; updated 200 with `{"id", "success", "errors", "created": false}` from v46.0, 204
  before; `created` in the body from v46.0). Unknown ids 404 `NOT_FOUND`, deleted ones 404
  `ENTITY_IS_DELETED`, a segment that is no id nor external id field 404 `NOT_FOUND` ("Provided
  external ID field does not exist or is not accessible: …"); a record that fails answers 400 with
  its error (`[{"message", "errorCode", "fields"}]`).
- sObject Collections: create `POST composite/sobjects`, update `PATCH composite/sobjects`, upsert
  `PATCH composite/sobjects/{SObject}/{ExternalIdField}` (v46+), retrieve
  `GET composite/sobjects/{SObject}?ids=&fields=` (null for unknown or deleted ids). At most 200
  records a call, else 400 `EXCEEDED_ID_LIMIT` ("record limit reached. cannot submit more than 200
  records into this call", the code orgs return). At most 10 chunks (runs of consecutive records
  of one type, as Salesforce processes a mixed list), else 400 "Cannot have more than 10 chunks in
  a single operation. Please rearrange the data to reduce chunking." — Salesforce's message; the
  whole-request 400 and its code `INVALID_BATCH_REQUEST` are this simulator's model, as no public
  source shows the REST wire shape. Per-record SaveResults; with `allOrNone` one failure rolls
  everything back and the rest report `ALL_OR_NONE_OPERATION_ROLLED_BACK`.
- SOQL `GET query?q=` and `GET query/{cursor}` for exactly these shapes:
  `SELECT f[, f…] FROM Obj [WHERE c [AND c…]] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST][, …]]
  [LIMIT n]` and `SELECT COUNT() FROM Obj [WHERE …] [LIMIT n]` (`totalSize`, no records), with c
  one of `F = v`, `F != v`, `F IN (v, …)`, `F LIKE 'pattern'` and v a quoted string, number,
  true, false or null. Text compares and sorts case-insensitively, nulls sort first unless NULLS
  LAST; ids in 15 or 18 characters; long text areas cannot be filtered or sorted; deleted rows are
  left out (as `query`, unlike `queryAll`); pages hold 2,000 rows.
- `GET limits/`, with `DailyApiRequests` counting the calls made; every authenticated data API
  response carries `Sforce-Limit-Info: api-usage=<calls>/<limit>` (limit 15,000 unless
  `SalesforceSim(api_limit=…)`).
- Every data API resource answers with and without a trailing slash (`query` and `query/`), as an
  org does. Unknown routes answer 404 `[{"errorCode": "NOT_FOUND", "message": "The requested
  resource does not exist"}]` and a wrong method 405 `METHOD_NOT_ALLOWED`, JSON error arrays both.
- Objects: Contact (003) and Lead (00Q) with Email and HasOptedOutOfEmail; classic Note (002;
  ParentId, Title, Body — the "Notes & Attachments" list seed 002 names); Task (00T) with WhoId and
  the custom fields Activity_Group__c, Activity__c and Writeback_Id__c (external id, unique).
- Errors: 401 `INVALID_SESSION_ID`; per record `UNABLE_TO_LOCK_ROW`, `INVALID_CROSS_REFERENCE_KEY`,
  `ENTITY_IS_DELETED`, `MALFORMED_ID`, `FIELD_INTEGRITY_EXCEPTION`, `DUPLICATE_VALUE`,
  `DUPLICATE_EXTERNAL_ID`, `REQUIRED_FIELD_MISSING`, `STRING_TOO_LONG`, `INVALID_FIELD`.

simple-salesforce against the simulator. The library always builds `https://` URLs — the token URL
from `domain` (`https://{domain}.salesforce.com/services/oauth2/token`; the client-credentials
flow is chosen only for a `domain` other than login/test) and the data URLs from the
`instance_url` the token response names — so give it a session that sends every request to the
simulator (`simple_salesforce_session`, a `requests.Session` that swaps scheme and host:port):

    from simple_salesforce import Salesforce
    from writeback_dev.simulators.salesforce import SalesforceSim, simple_salesforce_session

    sim = SalesforceSim().start()
    sf = Salesforce(
        consumer_key=sim.client_id,
        consumer_secret=sim.client_secret,
        domain="sim.my",  # any My Domain-like name: only the path of the URL it makes is kept
        session=simple_salesforce_session(sim.login_url),
    )
    sf.Contact.create({"LastName": "Ada"}); sf.query("SELECT COUNT() FROM Contact"); sf.api_usage

Test hooks: fault injection in-process (`fail_next`, `throttle_next`, `hang_next`, `expire_tokens`,
`reject_id`, `lock_next_records`, `revoke_client_credentials`) and over HTTP (`POST /__sim/faults`
with `{"kind": <method name>, ...its arguments}`, `DELETE /__sim/faults`); inspection with
`records`, `record`, `notes_for`, `tasks_for`, `request_log` and `GET /__sim/state`; seeding with
`add_contact`, `add_lead`, `delete` (also `POST /__sim/records/{SObject}`, `DELETE /__sim/records/{id}`).
Faults apply to data API requests (`/services/data/…`), not to the token endpoint.

Ids are converted by the simulator's own `ids.id18`, never the adapter's: a simulator that shared
the code it checks would agree with that code's bugs.

Run standalone: `python -m writeback_dev.simulators.salesforce --port 8600`.
"""

from .clients import simple_salesforce_session
from .errors import ApiError, RecordError
from .ids import id18
from .server import (
    MAX_CHUNKS,
    MAX_RECORDS,
    QUERY_PAGE,
    FaultSpec,
    SalesforceSim,
    SimRequest,
)

__all__ = [
    "MAX_CHUNKS",
    "MAX_RECORDS",
    "QUERY_PAGE",
    "ApiError",
    "FaultSpec",
    "RecordError",
    "SalesforceSim",
    "SimRequest",
    "id18",
    "simple_salesforce_session",
]
