"""A protocol-faithful Salesforce REST simulator that runs as a real HTTP server on loopback.

Shapes, status codes and error codes are Salesforce's own, so a client that works here works
against an org. What it models:

- OAuth 2.0 client-credentials flow, `POST /services/oauth2/token` (form-encoded). Errors as an
  org gives them: unknown client `invalid_client_id`, wrong secret `invalid_client`, no run-as
  user `invalid_grant`, any other grant `unsupported_grant_type`.
- sObject Collections under `/services/data/vXX.X/`: create `POST composite/sobjects`, update
  `PATCH composite/sobjects`, upsert `PATCH composite/sobjects/{SObject}/{ExternalIdField}` (v46+),
  retrieve `GET composite/sobjects/{SObject}?ids=&fields=` (null for unknown or deleted ids). At
  most 200 records a call, else 400 `EXCEEDED_ID_LIMIT` ("record limit reached. cannot submit more
  than 200 records into this call", the code orgs return). Per-record SaveResults; with
  `allOrNone` one failure rolls everything back and the rest report `ALL_OR_NONE_OPERATION_ROLLED_BACK`.
- SOQL `GET query?q=` and `GET query/{cursor}` for exactly these shapes:
  `SELECT f[, f…] FROM Obj [WHERE c [AND c…]] [LIMIT n]`, with c one of `F = v`, `F != v`,
  `F IN (v, …)`, `F LIKE 'pattern'` and v a quoted string, number, true, false or null. Text
  compares case-insensitively, ids in 15 or 18 characters; long text areas cannot be filtered;
  deleted rows are left out (as `query`, unlike `queryAll`); pages hold 2,000 rows.
- Objects: Contact (003) and Lead (00Q) with Email and HasOptedOutOfEmail; classic Note (002;
  ParentId, Title, Body — the "Notes & Attachments" list seed 002 names); Task (00T) with WhoId and
  the custom fields Activity_Group__c, Activity__c and Writeback_Id__c (external id, unique).
- Errors: 401 `INVALID_SESSION_ID`; per record `UNABLE_TO_LOCK_ROW`, `INVALID_CROSS_REFERENCE_KEY`,
  `ENTITY_IS_DELETED`, `MALFORMED_ID`, `FIELD_INTEGRITY_EXCEPTION`, `DUPLICATE_VALUE`,
  `DUPLICATE_EXTERNAL_ID`, `REQUIRED_FIELD_MISSING`, `STRING_TOO_LONG`, `INVALID_FIELD`.

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

from .errors import ApiError, RecordError
from .ids import id18
from .server import MAX_RECORDS, QUERY_PAGE, FaultSpec, SalesforceSim, SimRequest

__all__ = [
    "MAX_RECORDS",
    "QUERY_PAGE",
    "ApiError",
    "FaultSpec",
    "RecordError",
    "SalesforceSim",
    "SimRequest",
    "id18",
]
