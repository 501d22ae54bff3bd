"""The one error type of the simulator: everything xWeb refuses becomes a soap:Fault."""

from __future__ import annotations

# Detail codes. The detail element and these names are the simulator's own (xWeb's fault detail is
# not publicly documented); they exist so tests and adapters can tell faults apart without parsing
# prose. Fault strings stay human-readable.
INVALID_CREDENTIALS = "InvalidCredentials"
CREDENTIALS_LOCKED_OUT = "CredentialsLockedOut"
FAULT_LIMIT_EXCEEDED = "MethodsFaultLimitExceeded"
INVALID_TOKEN = "InvalidToken"
TOKEN_EXPIRED = "TokenExpired"
MALFORMED_REQUEST = "MalformedRequest"
UNKNOWN_OPERATION = "UnknownOperation"
MISSING_PARAMETER = "MissingParameter"
INVALID_OBJECT_NAME = "InvalidObjectName"
INVALID_COLUMN_LIST = "InvalidColumnList"
INVALID_COLUMN = "InvalidColumn"
INVALID_WHERE_CLAUSE = "InvalidWhereClause"
INVALID_ORDER_BY = "InvalidOrderBy"
INVALID_NODE = "InvalidNode"
TOO_MANY_OBJECTS = "TooManyObjects"
REQUIRED_FIELD_MISSING = "RequiredFieldMissing"
READ_ONLY_COLUMN = "ReadOnlyColumn"
INVALID_FIELD_VALUE = "InvalidFieldValue"
INVALID_DATE_FORMAT = "InvalidDateFormat"
STRING_TOO_LONG = "StringTooLong"
INVALID_CUSTOMER_KEY = "InvalidCustomerKey"
RECORD_NOT_FOUND = "RecordNotFound"
RECORD_REJECTED = "RecordRejected"

# Refusals answer a call without counting as one more fault: the user is already refused.
REFUSALS = frozenset({CREDENTIALS_LOCKED_OUT, FAULT_LIMIT_EXCEEDED})


class XWebError(Exception):
    """A call xWeb refuses. `faultcode` is soap:Client for envelopes the service cannot read and
    soap:Server for everything xWeb itself rejects, as an ASP.NET web service reports them."""

    def __init__(self, code: str, message: str, *, faultcode: str = "soap:Server") -> None:
        super().__init__(message)
        self.code, self.message, self.faultcode = code, message, faultcode

    @property
    def counts(self) -> bool:
        """Whether this fault is added to the user's MethodsFaultLimitPerDay count."""
        return self.code not in REFUSALS
