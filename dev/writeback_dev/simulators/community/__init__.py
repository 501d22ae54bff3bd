"""A community REST API simulator (Higher Logic's public API v2.0 style): a real HTTP server on loopback.

What is modelled from the public API:

- Base path `/api/v2.0/`, JSON, endpoints named `Controller/Action`. Paths and query parameter
  names are case-insensitive (IIS, ASP.NET Web API model binding).
- Credentials in the request headers `HLIAMKey` (a GUID) and `HLPassword` on every call. Missing,
  wrong or revoked credentials answer 401 with ASP.NET's
  `{"Message": "Authorization has been denied for this request.", "Code": ...}`.
- Record-range paging with `StartRecord` and `EndRecord`: 1-based and inclusive, a page of 50 by
  default. Members come in LastName, FirstName order (as GetCommunityMembers documents).
- Contacts: `ContactKey` (GUID), `LegacyContactKey` (the key in the source system; for the
  marketing platform's connection it is the Remote ID), `FirstName`, `LastName`, `EmailAddress`.
  Email addresses are stored as given: malformed ones and duplicates exist in real communities.

Our choices (the public documentation is silent or does not cover them):

- Paged responses are an envelope `{"TotalCount": n, "StartRecord": s, "EndRecord": e,
  "Items": [...]}` echoing the requested range (the documented collection endpoints return bare
  arrays with no total). A page past the end has no Items; `EndRecord >= TotalCount` means done.
  `EndRecord` defaults to StartRecord + 49 (the documented default of 50 is meant as "a page of 50").
  At most `max_page_size` (500) records per request; a bad range (non-integer, StartRecord < 1,
  EndRecord < StartRecord, too many) answers 400 `InvalidRange`. Ties in member order are broken
  by ContactKey so paging is stable.
- List Builder has no public endpoint. Ours, in the same style:
  `GET /api/v2.0/ListBuilder/GetLists?StartRecord=&EndRecord=` → page of
  `{"ListKey", "ListName", "ListType": "CustomUserList", "MemberCount", "UpdatedOn"}` in creation
  order; `UpdatedOn` is UTC `YYYY-MM-DDTHH:MM:SS.fffZ` and changes (strictly increasing) whenever
  members or the name change. List names are stored exactly as given: which names count as
  "Informz" lists is the sync job's rule, not the simulator's.
  `GET /api/v2.0/ListBuilder/GetListMembers?listKey=&StartRecord=&EndRecord=` → page of contacts.
  An unknown list is 404 `ListNotFound`; a missing or non-GUID key is 400.
- Also ours: `GET /api/v2.0/Contacts/GetContacts?StartRecord=&EndRecord=` (all contacts, paged) and
  `GET /api/v2.0/Contacts/GetContact?contactKey=` (one contact, 404 `ContactNotFound`).
- Every error body is `{"Message", "Code"}`; `Code` is ours, so clients need not parse prose. An
  unknown path is 404 `NotFound`, another method than GET 405 `MethodNotAllowed`.

Test hooks: faults in-process (`fail_next`: an IIS 503 HTML page for the next N API calls, before
credentials are checked; `slow_next`: hold the next N calls; `revoke_credentials` /
`restore_credentials`: 401 `InvalidCredentials` meanwhile; `vanish_list(list_key, after_pages=1)`:
after that many more member pages the list is deleted, so the next page answers 404 `ListNotFound`;
`clear_faults`) and over HTTP (`POST /__sim/faults` with `{"kind": <method>, ...its arguments}`,
`DELETE /__sim/faults`). Seeding: `add_contact`, `add_list(name, members)`, `add_member`,
`remove_member`, `rename_list`, `remove_list`, `seed_reconciliation` (duplicate and malformed
emails, a contact without email, one without LegacyContactKey, lists named "Informz …",
"informz …", " Informz …", "InformzX …" and a non-Informz list); over HTTP `POST /__sim/contacts`,
`POST /__sim/lists`, `GET|PATCH|DELETE /__sim/lists/{key}`, `POST /__sim/lists/{key}/members`,
`DELETE /__sim/lists/{key}/members/{contact_key}`, `POST /__sim/seed`. Inspection: `contact`,
`contacts`, `lists`, `members`, `request_log`, `calls`, `state` and `GET /__sim/state`. `reset()`
(`POST /__sim/reset`) drops data, faults and log and restores the credentials. The `/__sim` API
needs no credentials and is never faulted or logged.

Run standalone: `PYTHONPATH=dev python -m writeback_dev.simulators.community --port 8800 [--seed]`.
"""

from .server import (
    API_PREFIX,
    DEFAULT_IAM_KEY,
    DEFAULT_PAGE_SIZE,
    DEFAULT_PASSWORD,
    MAX_PAGE_SIZE,
    ApiError,
    CommunitySim,
    FaultSpec,
    SimRequest,
)
from .store import LIST_TYPE

__all__ = [
    "API_PREFIX",
    "DEFAULT_IAM_KEY",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_PASSWORD",
    "LIST_TYPE",
    "MAX_PAGE_SIZE",
    "ApiError",
    "CommunitySim",
    "FaultSpec",
    "SimRequest",
]
