"""A protocol-faithful netFORUM Enterprise xWeb simulator: a real SOAP 1.1 server on loopback.

Endpoint `/xweb/secure/netFORUMXML.asmx` (path case-insensitive, as on IIS), namespace
`http://www.avectra.com/2005/`, WSDL at `?WSDL` (document/literal, loadable by zeep). What it models:

- `Authenticate(userName, password)`: the token comes back in the SOAP header
  `AuthorizationToken/Token`; `AuthenticateResult` holds the namespace URI, not the token (as a
  vendor capture in a public connector shows). Every later call sends the token in the same header
  and every successful response carries the next one. Faults carry no header, and the token that was
  sent stays current. Sessions expire `token_timeout` (20 min) after Authenticate ("absolute", xWeb's
  default; `token_expiration="sliding"` renews on each call) → `TokenExpired`.
- Our choices: a replaced token stays valid for `token_grace` (30 s) after its successor was issued
  (for a response lost in flight), then `InvalidToken`; tokens are GUIDs.
- 25 consecutive failed logins (`login_lockout`) lock the credentials: the 25th failure locks, later
  attempts, even with the right password, get "Credentials Locked Out" until `unlock()`/`reset()`.
- Faults are soap:Faults (HTTP 500): `faultcode` soap:Client for envelopes the service cannot read,
  soap:Server for what xWeb rejects; `faultstring` in words; `detail/xWebFault{Code, Message,
  Method}` with the codes in `errors.py` (the detail shape is ours). Each fault on a call that names
  a known xWeb user (by userName or by a token ever issued to them) counts against
  `MethodsFaultLimitPerDay` (`fault_limit_per_day`, 100) per UTC day of the simulator clock; once the
  count reaches the limit, every call of that user, Authenticate included, gets
  `MethodsFaultLimitExceeded` until `unlock()`/`reset()`. Refusals (that one and CredentialsLockedOut)
  do not add to the count; HTTP-level outages are not faults.
- `GetQuery(szObjectName, szColumnList, szWhereClause, szOrderBy)` for the objects
  `Individual` (cst_key, ind_cst_key, ind_first_name, ind_last_name, cst_no_email_flag, cst_eml_key,
  and the primary email's eml_key, eml_address, eml_invalid_flag, eml_invalid_reason; cst_add_date,
  cst_change_date), `Email` (co_email: eml_key, eml_cst_key, eml_address, eml_invalid_flag,
  eml_invalid_reason, eml_add_date, eml_change_date) and `CustomerMessagingActivity` (fields below).
  Object and column names are case-insensitive. The column list names columns; `*` faults
  (InvalidColumnList), unknown columns fault (InvalidColumn). WHERE grammar (ours, small):
  `cond [AND cond]…` with `col = lit`, `col IN (lit, …)`, `col IS [NOT] NULL`; literals are 'quoted'
  ('' escapes) or integers; text compares case-insensitively (SQL Server's default collation); GUIDs,
  flags and dates convert or fault. OR, LIKE, <>, parentheses and the rest fault (InvalidWhereClause).
  ORDER BY is `col [ASC|DESC], …`, NULLs first. The result is `<{Object}Objects recordReturn="n">`
  with one `<{Object}Object>` per row, NULL columns left out; flags render 0/1, dates ISO 8601 with
  milliseconds (the rendering is our choice). Soft-deleted activity never appears.
- `GetFacadeObject`, `InsertFacadeObject`, `UpdateFacadeObject` for `Individual` and
  `CustomerMessagingActivity`; oNode is `<{Object}Objects><{Object}Object>fields…`, fields matched by
  local name. Insert takes one or more objects (at most `max_insert_objects`, 100, our choice),
  validates all of them first and stores none if one fails (the message names the object's
  position); it and Update return the stored objects with their keys. Get/Update of a missing or
  deleted key fault RecordNotFound; prefer GetQuery for existence checks, it does not fault.
- CustomerMessagingActivity: cma_key, cma_cst_key, cma_eml_key, cma_eml_address, cma_activity_date,
  cma_activity_code, cma_activity_subcode, cma_message_id, cma_message_name, cma_recipient_id,
  cma_activity_id, cma_delete_flag, cma_add_date/user, cma_change_date/user. Required: cma_cst_key
  (must match an Individual, else InvalidCustomerKey), cma_activity_date, one of cma_eml_key (an
  email of that customer) / cma_eml_address. `cma_message_name` holds seed 000's "Message Name":
  public docs are silent, the name is ours. Removal (xWeb has no generic delete, netFORUM rows carry
  `*_delete_flag`): UpdateFacadeObject with `cma_delete_flag` 1 soft-deletes the row, hiding it from
  GetQuery, GetFacadeObject and the Correspondence tab (`correspondence()`).
- Individual facade: ind_first_name, ind_last_name (required), cst_no_email_flag ("Do Not Contact
  by Email"), eml_address, eml_invalid_flag, eml_invalid_reason writable; keys read-only
  (ReadOnlyColumn unless equal to the stored value).
- Values: dates `MM/DD/YYYY[ HH:MM[:SS[.fff]]]` (xWeb's examples) or `YYYY-MM-DD[THH:MM:SS[.fff]]`,
  no offsets, else InvalidDateFormat; flags 0/1/true/false; GUIDs with or without braces; an empty
  element is NULL; over-long text faults StringTooLong (widths ours: names 50, emails 100, codes 50,
  message name 255). Unknown fields fault InvalidColumn.

Test hooks: faults in-process (`fail_next`: HTTP 503 page for the next N SOAP calls; `slow_next`:
hold the next N, then carry them out even if the client has gone, so a killed client's write lands;
`expire_tokens`; `fail_record`: objects whose column equals a value fault RecordRejected;
`advance_clock`; `clear_faults`) and over HTTP (`POST /__sim/faults` with `{"kind": <method>, ...its
arguments}`, `DELETE /__sim/faults`); inspection with `individual`, `individuals`, `correspondence`,
`activities`, `request_log`, `calls`, `in_flight`, `fault_count`, `lockout` and `GET /__sim/state`,
`GET /__sim/individuals/{cst_key}`; seeding with `add_individual`, `add_email`, `add_user` (also
`POST /__sim/individuals`); `unlock` (`POST /__sim/unlock`) and `reset` (`POST /__sim/reset`).

Run standalone: `PYTHONPATH=dev python -m writeback_dev.simulators.netforum --port 8700`.
"""

from .errors import XWebError
from .server import (
    DEFAULT_PASSWORD,
    DEFAULT_USER,
    ENDPOINT_PATH,
    FaultSpec,
    NetforumSim,
    SimRequest,
)
from .soap import NS

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_USER",
    "ENDPOINT_PATH",
    "NS",
    "FaultSpec",
    "NetforumSim",
    "SimRequest",
    "XWebError",
]
