"""The xWeb SOAP client: zeep speaks the protocol, this module keeps the session and the fault count.

- Session: `Authenticate(userName, password)` answers with the token in the `AuthorizationToken`
  SOAP header; every call sends the current token in the same header and every answer carries the
  next one, which replaces it. A session older than `session_max_age_s` is renewed before a call
  (xWeb's absolute token timeout would otherwise cost a TokenExpired fault); a TokenExpired or
  InvalidToken fault anyway renews it once and repeats the call.
- Credentials: a password xWeb refused is not sent again (25 failed logins lock the xWeb user);
  the secret is resolved at each Authenticate, so a corrected secret file is picked up.
- Faults: every soap:Fault netFORUM counts is counted here per UTC day too; once the connection's
  `fault_budget_per_day` is spent, no call is made until the next day, so this connection can never
  take the xWeb user to `MethodsFaultLimitPerDay`.
- Errors: transport errors, HTTP error pages, unreadable answers and soap:Faults all leave as one
  `XWebError` carrying an `ErrorKind` (see errors.py).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import requests
import zeep
from lxml import etree
from lxml.builder import ElementMaker
from zeep.exceptions import Fault, TransportError
from zeep.transports import Transport

from writeback.adapters import calls
from writeback.adapters.base import ErrorKind
from writeback.errors import ConfigError

from . import errors
from .config import Config
from .errors import XWebError

log = logging.getLogger(__name__)

NS = "http://www.avectra.com/2005/"
Row = dict[str, str]

_E = ElementMaker(namespace=NS, nsmap={None: NS})
_DETAIL_CODE = f"{{{NS}}}xWebFault/{{{NS}}}Code"


class XWebClient:
    """One xWeb site as one xWeb user. Calls are serialised: the token is one piece of state."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        self._config = config
        self._clock, self._today = clock, today
        self._http = calls.observe_session(requests.Session(), "netforum")
        self._transport = Transport(
            session=self._http, timeout=config.timeout_s, operation_timeout=config.timeout_s
        )
        self._service: Any = None
        self._token: str | None = None
        self._authenticated_at = 0.0
        self._refused: bytes | None = None
        self._faults: dict[date, int] = {}
        self._lock = threading.Lock()

    # -- the generic methods the adapter uses ---------------------------------------------------

    def get_query(self, obj: str, columns: Sequence[str], where: str = "", order_by: str = "") -> list[Row]:
        """`GetQuery`: an empty result is an empty list, never a fault."""
        node = self._invoke(
            "GetQuery",
            szObjectName=obj,
            szColumnList=", ".join(columns),
            szWhereClause=where,
            szOrderBy=order_by,
        )
        return _rows(node)

    def insert(self, obj: str, objects: Sequence[Mapping[str, str]]) -> list[Row]:
        """`InsertFacadeObject` with several objects in one oNode: all stored, or none."""
        node = _onode(obj, objects)
        return _rows(self._invoke("InsertFacadeObject", szObjectName=obj, oNode={"_value_1": node}))

    def update(self, obj: str, key: str, fields: Mapping[str, str]) -> Row:
        node = _onode(obj, [fields])
        found = _rows(self._invoke("UpdateFacadeObject", szObjectName=obj, szObjectKey=key, oNode={"_value_1": node}))
        if len(found) != 1:
            message = f"UpdateFacadeObject {obj}: no object returned"
            raise XWebError(ErrorKind.OUTAGE, errors.INVALID_RESPONSE, message)
        return found[0]

    def faults_today(self) -> int:
        return self._faults.get(self._today(), 0)

    def close(self) -> None:
        self._http.close()

    # -- session --------------------------------------------------------------------------------

    def _invoke(self, operation: str, **params: Any) -> Any:
        with self._lock:
            self._check_budget()
            token = self._session_token()
            try:
                return self._send(operation, params, token)
            except XWebError as error:
                if error.code not in errors.TOKEN_CODES:
                    raise
                log.info("xWeb %s: %s; authenticating again", operation, error.code)
            self._token = None
            return self._send(operation, params, self._session_token())

    def _session_token(self) -> str:
        age = self._clock() - self._authenticated_at
        if self._token is None or age >= self._config.session_max_age_s:
            self._token = self._authenticate()
            self._authenticated_at = self._clock()
        return self._token

    def _authenticate(self) -> str:
        self._check_budget()
        try:
            password = self._config.password.resolve().get_secret_value()
        except ConfigError as exc:
            raise XWebError(ErrorKind.CREDENTIALS, errors.SECRET_UNAVAILABLE, str(exc)) from None
        digest = hashlib.sha256(password.encode()).digest()
        if digest == self._refused:
            raise XWebError(
                ErrorKind.CREDENTIALS,
                errors.CREDENTIALS_REFUSED,
                "xWeb refused this user name and password before; they are not sent again until the "
                "secret changes (25 failed logins lock the xWeb user)",
            )
        try:
            with self._boundary("Authenticate"):
                reply = self._proxy().Authenticate(userName=self._config.username, password=password)
        except XWebError as error:
            if error.code == errors.INVALID_CREDENTIALS:
                self._refused = digest
            raise
        token = _header_token(reply)
        if token is None:
            message = "Authenticate: no AuthorizationToken header"
            raise XWebError(ErrorKind.OUTAGE, errors.INVALID_RESPONSE, message)
        return token

    def _send(self, operation: str, params: dict[str, Any], token: str) -> Any:
        with self._boundary(operation):
            method = getattr(self._proxy(), operation)
            reply = method(**params, _soapheaders={"AuthorizationToken": {"Token": token}})
        self._token = _header_token(reply) or self._token
        return getattr(getattr(reply, "body", None), f"{operation}Result", None)

    def _proxy(self) -> Any:
        """The service, its WSDL read at the first call (inside the error boundary: a site that is
        down when the adapter opens is an outage of that call, not a crash)."""
        if self._service is None:
            client = zeep.Client(self._config.wsdl, transport=self._transport)
            service = client.service
            if self._config.xweb_url is not None:
                ports = [port for found in client.wsdl.services.values() for port in found.ports.values()]
                if not ports:
                    raise XWebError(ErrorKind.OUTAGE, errors.INVALID_RESPONSE, "the WSDL describes no service")
                service = client.create_service(ports[0].binding.name, self._config.xweb_url)
            self._service = service
        return self._service

    # -- errors ---------------------------------------------------------------------------------

    def _check_budget(self) -> None:
        spent = self.faults_today()
        if spent >= self._config.fault_budget_per_day:
            raise XWebError(
                ErrorKind.CREDENTIALS,
                errors.FAULT_BUDGET_SPENT,
                f"this connection has had {spent} xWeb faults today (UTC), its fault_budget_per_day; it "
                "makes no more calls today so the xWeb user stays below MethodsFaultLimitPerDay",
            )

    @contextmanager
    def _boundary(self, operation: str) -> Iterator[None]:
        """The one place failures of the transport and of xWeb become `XWebError`s."""
        try:
            yield
        except Fault as fault:
            detail = fault.detail.findtext(_DETAIL_CODE) if fault.detail is not None else None
            text = fault.message or ""
            error = errors.from_fault(errors.fault_code(detail, text), errors.scrub(text))
            if error.fault:
                today = self._today()
                self._faults[today] = self._faults.get(today, 0) + 1
            log.warning("xWeb %s fault %s (%d today)", operation, error.code, self.faults_today())
            raise error from None
        except TransportError as exc:
            status = exc.status_code
            kind = ErrorKind.CREDENTIALS if status in (401, 403) else ErrorKind.OUTAGE
            kind = ErrorKind.THROTTLED if status == 429 else kind
            message = f"{operation}: HTTP {status} without a SOAP answer"
            raise XWebError(kind, f"HTTP_{status}", message) from None
        except requests.Timeout:
            raise XWebError(
                ErrorKind.OUTAGE, errors.TIMEOUT, f"{operation}: no answer within {self._config.timeout_s}s"
            ) from None
        except requests.RequestException as exc:
            message = f"{operation}: {type(exc).__name__}"
            raise XWebError(ErrorKind.OUTAGE, errors.CONNECTION_ERROR, message) from None
        except (zeep.exceptions.Error, etree.LxmlError) as exc:
            message = f"{operation}: unreadable answer ({type(exc).__name__})"
            raise XWebError(ErrorKind.OUTAGE, errors.INVALID_RESPONSE, message) from None


def quote(value: str) -> str:
    """A WHERE literal: single quotes, a quote doubled."""
    return "'" + value.replace("'", "''") + "'"


def where_in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(quote(v) for v in values)})"


def _onode(obj: str, objects: Sequence[Mapping[str, str]]) -> etree._Element:
    each = (_E(f"{obj}Object", *(_E(name, value) for name, value in fields.items())) for fields in objects)
    return _E(f"{obj}Objects", *each)


def _rows(result: Any) -> list[Row]:
    """`<{Object}Objects><{Object}Object><column>text…` as dicts by column; absent columns are NULL."""
    node = getattr(result, "_value_1", result)
    if isinstance(node, list):
        node = next((item for item in node if isinstance(item, etree._Element)), None)
    if not isinstance(node, etree._Element):
        raise XWebError(ErrorKind.OUTAGE, errors.INVALID_RESPONSE, "the answer holds no result set")
    return [
        {etree.QName(field).localname: field.text or "" for field in row if isinstance(field.tag, str)}
        for row in node
        if isinstance(row.tag, str)
    ]


def _header_token(reply: Any) -> str | None:
    header = getattr(reply, "header", None)
    auth = getattr(header, "AuthorizationToken", None)
    token = getattr(auth, "Token", None)
    return str(token).strip() if token else None
