"""netFORUM's fault codes and the adapter's own codes, mapped once to the service's `ErrorKind`.

xWeb answers every refusal with a soap:Fault, and netFORUM counts each one against the xWeb user's
`MethodsFaultLimitPerDay`. What a fault means for the batch therefore matters more than usual:

- REJECTED: the record itself was refused (a value, a missing key, a business rule). The writeback
  that rode alone on the call fails; the rest of the batch stops calling, so a rule that refuses
  every record costs one fault per batch, not one per record.
- CREDENTIALS: the connection cannot work until an operator acts: refused or locked credentials,
  the fault limit reached, or the site refusing what this adapter needs (an object the xWeb user
  may not read, a column the site does not have, a query it cannot parse). The rows wait.
- OUTAGE: no answer, an HTTP error page instead of an envelope, an unreadable answer, or a fault
  this module does not know.

The detail element `xWebFault/Code` is what the simulator sends (xWeb's fault detail is not
publicly documented). A fault without it is classified by its fault string, which covers the
phrases public material quotes ("Credentials Locked Out", expired or invalid tokens).
"""

from __future__ import annotations

import re

from writeback.adapters.base import ErrorKind

# netFORUM fault codes -------------------------------------------------------------------------

INVALID_CREDENTIALS = "InvalidCredentials"
CREDENTIALS_LOCKED_OUT = "CredentialsLockedOut"
FAULT_LIMIT_EXCEEDED = "MethodsFaultLimitExceeded"
INVALID_TOKEN = "InvalidToken"
TOKEN_EXPIRED = "TokenExpired"

#: A new session fixes these: the client authenticates again once and repeats the call.
TOKEN_CODES = frozenset({INVALID_TOKEN, TOKEN_EXPIRED})
#: Answers to a user xWeb already refuses; netFORUM does not add them to the fault count.
REFUSALS = frozenset({CREDENTIALS_LOCKED_OUT, FAULT_LIMIT_EXCEEDED})

_FAULT_KINDS: dict[str, ErrorKind] = {
    INVALID_CREDENTIALS: ErrorKind.CREDENTIALS,
    CREDENTIALS_LOCKED_OUT: ErrorKind.CREDENTIALS,
    FAULT_LIMIT_EXCEEDED: ErrorKind.CREDENTIALS,
    INVALID_TOKEN: ErrorKind.CREDENTIALS,
    TOKEN_EXPIRED: ErrorKind.CREDENTIALS,
    # the site and the adapter disagree about objects, columns or the request's shape
    "MalformedRequest": ErrorKind.CREDENTIALS,
    "UnknownOperation": ErrorKind.CREDENTIALS,
    "MissingParameter": ErrorKind.CREDENTIALS,
    "InvalidObjectName": ErrorKind.CREDENTIALS,
    "InvalidColumnList": ErrorKind.CREDENTIALS,
    "InvalidColumn": ErrorKind.CREDENTIALS,
    "InvalidWhereClause": ErrorKind.CREDENTIALS,
    "InvalidOrderBy": ErrorKind.CREDENTIALS,
    "InvalidNode": ErrorKind.CREDENTIALS,
    "TooManyObjects": ErrorKind.CREDENTIALS,
    # the record
    "RequiredFieldMissing": ErrorKind.REJECTED,
    "ReadOnlyColumn": ErrorKind.REJECTED,
    "InvalidFieldValue": ErrorKind.REJECTED,
    "InvalidDateFormat": ErrorKind.REJECTED,
    "StringTooLong": ErrorKind.REJECTED,
    "InvalidCustomerKey": ErrorKind.REJECTED,
    "RecordNotFound": ErrorKind.REJECTED,
    "RecordRejected": ErrorKind.REJECTED,
}

_FAULT_STRINGS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"credentials locked out", re.I), CREDENTIALS_LOCKED_OUT),
    (re.compile(r"MethodsFaultLimit", re.I), FAULT_LIMIT_EXCEEDED),
    (re.compile(r"token.*expired|expired.*token", re.I), TOKEN_EXPIRED),
    (re.compile(r"invalid.*token|token.*(invalid|superseded)", re.I), INVALID_TOKEN),
    (re.compile(r"invalid user ?name or password", re.I), INVALID_CREDENTIALS),
)

UNKNOWN_FAULT = "XWEB_FAULT"

# The adapter's own codes ----------------------------------------------------------------------

UNKNOWN_CUSTOMER = "UNKNOWN_CUSTOMER"  # no Individual for the recipient: nothing was written
AMBIGUOUS_CUSTOMER = "AMBIGUOUS_CUSTOMER"  # several Individuals have the recipient's email
NO_EMAIL_ADDRESS = "NO_EMAIL_ADDRESS"  # neither the event nor the Individual has an address
EMAIL_NOT_PRIMARY = "EMAIL_NOT_PRIMARY"  # a bad email that is not the Individual's primary email
MAILING_MISSING = "MAILING_MISSING"  # mailing activity without its mailing: no send date
UNSUPPORTED_EVENT = "UNSUPPORTED_EVENT"
ACTION_NOT_WRITTEN = "ACTION_NOT_WRITTEN"  # counted: not a netFORUM subscriber writeback
ACTIVITY_NOT_WRITTEN = "ACTIVITY_NOT_WRITTEN"  # counted: not one of 000's mailing activities
RESUBSCRIBE_SUPERSEDED = "RESUBSCRIBE_SUPERSEDED"  # counted: a later unsubscribe is on record
ROLLED_BACK = "ROLLED_BACK"  # a neighbour in the same insert was refused; retried alone
FAULT_HALT = "XWEB_FAULT_HALT"  # an earlier call of this batch faulted; the rest waits
FAULT_BUDGET_SPENT = "XWEB_FAULT_BUDGET_SPENT"  # the connection's daily fault budget is used up
CREDENTIALS_REFUSED = "XWEB_CREDENTIALS_REFUSED"  # these credentials were refused; not tried again
SECRET_UNAVAILABLE = "SECRET_UNAVAILABLE"
TIMEOUT = "TIMEOUT"
CONNECTION_ERROR = "CONNECTION_ERROR"
INVALID_RESPONSE = "INVALID_RESPONSE"


class XWebError(Exception):
    """A call that did not succeed, whatever the cause: `kind` is what the flusher reads, `code` is
    netFORUM's fault code or the adapter's own, `fault` says whether netFORUM counted it."""

    def __init__(self, kind: ErrorKind, code: str, message: str, *, fault: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.kind, self.code, self.message, self.fault = kind, code, message, fault

    @property
    def record_level(self) -> bool:
        """The records on the call were refused, not the call: they fail, the connection is fine."""
        return self.kind is ErrorKind.REJECTED


def fault_code(detail_code: str | None, fault_string: str) -> str:
    """netFORUM's code for a soap:Fault: the detail's, else one recognised in the fault string."""
    if detail_code:
        return detail_code
    for pattern, code in _FAULT_STRINGS:
        if pattern.search(fault_string):
            return code
    return UNKNOWN_FAULT


def from_fault(code: str, message: str) -> XWebError:
    """The error for a soap:Fault. Refusals are not faults netFORUM counts."""
    kind = _FAULT_KINDS.get(code, ErrorKind.OUTAGE)
    return XWebError(kind, code, message, fault=code not in REFUSALS)


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def scrub(message: str, limit: int = 500) -> str:
    """A fault string as outcomes and logs may show it: xWeb quotes values, and addresses are PII."""
    text = _EMAIL.sub("<email>", message).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
