"""Salesforce adapter: writes seed-002 writebacks (and seed-001 tracking) through the REST API.

Protocol: OAuth 2.0 client-credentials flow (token fetched lazily, renewed once on
`INVALID_SESSION_ID`), then sObject Collections with `allOrNone=false` so one bad record never
fails its neighbours, at most 200 records a call, and SOQL queries.

What goes where, and why it is idempotent:

- Unsubscribe, bad email, resubscribe → a classic `Note` (ParentId = the Contact/Lead). Seed 002
  says the text appears in the "Notes and Attachments" section, which is where classic notes show;
  a Note is one atomic insert, where an enhanced `ContentNote` needs a second `ContentDocumentLink`
  insert and can be left orphaned between the two. Title = the seed sentence exactly; Body = the
  sentence, `Reason: …` when there is one, and a last line `Informz writeback id: <id>`. Notes have
  no external-id field, so before inserting, one query per batch fetches the recipients' Informz
  notes and any whose Body carries the writeback id counts as already written (check-before-insert).
- Email Opt Out → `HasOptedOutOfEmail` on the Contact/Lead (collection update), written before the
  note, because the flag is what stops Salesforce's own mail. A writeback whose note already
  exists is complete and touches nothing, so replaying an old unsubscribe never re-sets a flag a
  later resubscribe cleared. Unless `suppress_email_opt_out`.
- Mailing activity (Sent, Opened) and tracking pairs → `Task` upserted on the external id
  `Writeback_Id__c` = writeback id, so a retry or replay updates the same Task.

Order: a recipient's changes are applied in rounds (the k-th change of every recipient in round k),
so flags and notes land in the given order; once a recipient's writeback does not complete, its
later ones in the same `write` are returned for retry (`ORDER_BLOCKED`) instead of overtaking it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from writeback.writebacks import Disposition, Outcome, Writeback

log = logging.getLogger(__name__)

T = TypeVar("T")
P = TypeVar("P")
TrackingPair = Callable[[Writeback], tuple[str, str] | None]

MAX_RECORDS_PER_CALL = 200
NOTE_MARKER = "Informz writeback id: "
TASK_EXTERNAL_ID = "Writeback_Id__c"

INTEGRATION_ID_MISMATCH = "INTEGRATION_ID_MISMATCH"
ACTIVITY_NOT_WRITTEN = "ACTIVITY_NOT_WRITTEN"
ACTION_NOT_WRITTEN = "ACTION_NOT_WRITTEN"
ORDER_BLOCKED = "ORDER_BLOCKED"

RECIPIENT_OBJECTS = {"003": "Contact", "00Q": "Lead"}
TRANSIENT_RECORD_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "SERVER_UNAVAILABLE",
        "REQUEST_LIMIT_EXCEEDED",
    }
)
UNKNOWN_RECIPIENT_CODES = frozenset(
    {"INVALID_CROSS_REFERENCE_KEY", "ENTITY_IS_DELETED", "FIELD_INTEGRITY_EXCEPTION", "MALFORMED_ID"}
)

_SUBSCRIBER_RULES: dict[str, tuple[str, bool, str | None]] = {
    # action: (verb in the note, Email Opt Out value, fixed reason)
    "UNSUBSCRIBE": ("unsubscribed from", True, None),
    "BAD_EMAIL": ("unsubscribed from", True, "Bad Email"),
    "RESUBSCRIBE": ("resubscribed to", False, None),
}
_RECORD_TYPES = {"CONTACT": "Contact", "LEAD": "Lead"}

_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-5]{3})?$")
_ID_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_MARKER_RE = re.compile("^" + re.escape(NOTE_MARKER) + r"(\S+)\s*$", re.MULTILINE)
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TOKEN_RE = re.compile(r"\b00D\w{12,15}![\w.]+|(?i:bearer)\s+\S+")


def id18(value: object) -> str | None:
    """The canonical 18-character form of a Salesforce record id, or None if `value` is not one.

    Orgs hand out case-sensitive 15-character ids and case-insensitive 18-character ones (the
    last three characters encode the capitals); comparing ids only works once both are 18 long.
    """
    if not isinstance(value, str) or not _ID_RE.match(value):
        return None
    base = value[:15]
    suffix = "".join(
        _ID_SUFFIX_CHARS[sum(1 << bit for bit, ch in enumerate(base[k : k + 5]) if "A" <= ch <= "Z")]
        for k in (0, 5, 10)
    )
    if len(value) == 18 and value[15:].upper() != suffix:
        return None
    return base + suffix


class SalesforceConfig(BaseModel):
    """One Salesforce connection. The secret is a SecretStr so it never shows in reprs or logs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    login_url: str = Field(description="The org's My Domain URL; client-credentials needs it.")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    api_version: str = Field("60.0", pattern=r"^\d{2,3}\.0$")
    time_zone: str = Field(description="The account's IANA zone; note timestamps render in it.")
    suppress_email_opt_out: bool = Field(False, description="Seed 002: leave Email Opt Out alone.")
    tracking: bool = Field(False, description="Seed 001 tracking connection: every pair a Task.")
    timeout_s: float = Field(30.0, gt=0)

    @field_validator("login_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("login_url must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


class _CallFailed(Exception):
    """A whole Salesforce call failed; every writeback riding on it gets the same outcome."""

    def __init__(
        self, disposition: Disposition, code: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.disposition = disposition
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def outcome(self, writeback_id: str) -> Outcome:
        return Outcome(writeback_id, self.disposition, self.code, self.message, self.retry_after)


@dataclass(frozen=True, slots=True)
class _Session:
    access_token: str
    instance_url: str


@dataclass(frozen=True, slots=True)
class _Recipient:
    who_id: str  # 18-character
    sobject: str  # "Contact" | "Lead"


@dataclass(frozen=True, slots=True)
class _SubscriberChange:
    """A note on a Contact/Lead, and the Email Opt Out value to set first (None: leave it)."""

    recipient: _Recipient
    title: str
    body: str
    opted_out: bool | None


@dataclass(frozen=True, slots=True)
class _ActivityRecord:
    """Task fields, upserted on Writeback_Id__c."""

    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Item(Generic[P]):
    """A writeback, its position in the chunk, and what it turns into."""

    index: int
    wb: Writeback
    plan: P


@dataclass(slots=True)
class _Run:
    """State of one `write` call: who must wait for an earlier writeback, and whether Salesforce
    already answered 'not now' (then the rest of the batch stops calling it)."""

    blocked: set[str] = field(default_factory=set)
    halt: _CallFailed | None = None


class SalesforceAdapter:
    """Writes batches of writebacks to one Salesforce org; one Outcome per input, same order.

    `tracking_pair` maps a writeback to its seed-001 (Activity Code, Activity Subcode) labels; it
    is required when `config.tracking` is set and unused otherwise.
    """

    max_batch = MAX_RECORDS_PER_CALL

    def __init__(self, config: SalesforceConfig, tracking_pair: TrackingPair | None = None) -> None:
        if config.tracking and tracking_pair is None:
            raise ValueError("a tracking connection needs tracking_pair (seed 001 labels)")
        self._config = config
        self._zone = ZoneInfo(config.time_zone)
        self._tracking_pair = tracking_pair
        self._http = httpx.Client(
            timeout=httpx.Timeout(config.timeout_s),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
            headers={"Accept": "application/json"},
        )
        self._session: _Session | None = None
        self._session_lock = threading.Lock()

    def __enter__(self) -> SalesforceAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def write(self, batch: Sequence[Writeback]) -> list[Outcome]:
        run = _Run()
        outcomes: list[Outcome] = []
        for start in range(0, len(batch), self.max_batch):
            outcomes.extend(self._write_chunk(batch[start : start + self.max_batch], run))
        return outcomes

    def _write_chunk(self, chunk: Sequence[Writeback], run: _Run) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        changes: list[_Item[_SubscriberChange]] = []
        activities: list[_Item[_ActivityRecord]] = []
        for index, wb in enumerate(chunk):
            plan = self._plan(wb)
            if isinstance(plan, Outcome):
                outcomes[index] = plan
            elif isinstance(plan, _ActivityRecord):
                activities.append(_Item(index, wb, plan))
            else:
                changes.append(_Item(index, wb, plan))
        outcomes.update(self._upsert_activities(run, activities))
        outcomes.update(self._apply_subscriber_changes(run, changes))
        return [outcomes[index] for index in range(len(chunk))]

    # -- planning: writeback → what to write, without I/O ---------------------------------------

    def _plan(self, wb: Writeback) -> Outcome | _SubscriberChange | _ActivityRecord:
        if self._config.tracking:
            return self._plan_tracking(wb)
        if wb.event_type == "subscriber":
            return self._plan_subscriber(wb)
        if wb.event_type == "activity":
            return self._plan_mailing_activity(wb)
        return Outcome.failed(
            wb.id, "UNSUPPORTED_EVENT_TYPE", f"{wb.event_type!r} events are not written to Salesforce"
        )

    def _plan_subscriber(self, wb: Writeback) -> Outcome | _SubscriberChange:
        action = wb.event.get("action")
        rule = _SUBSCRIBER_RULES.get(str(action))
        if rule is None:
            return _counted(
                wb,
                ACTION_NOT_WRITTEN,
                f"{action} is not a Salesforce writeback (seed 002: unsubscribe, resubscribe, bad email)",
            )
        recipient = _recipient(wb)
        if isinstance(recipient, Outcome):
            return recipient
        verb, opted_out, fixed_reason = rule
        title = f"{recipient.sobject} {verb} Informz on {_stamp(wb.occurred_at, self._zone)}"
        reason = fixed_reason or (str(wb.event.get("reason") or "").strip() or None)
        lines = [title, *([f"Reason: {_clip(reason, 1000)}"] if reason else []), NOTE_MARKER + wb.id]
        flag = None if self._config.suppress_email_opt_out else opted_out
        return _SubscriberChange(recipient, title, "\n".join(lines), flag)

    def _plan_mailing_activity(self, wb: Writeback) -> Outcome | _ActivityRecord:
        code, subcode = wb.event.get("code"), wb.event.get("subcode")
        if (code, subcode) == ("Sent", "Delivered"):
            subject = "Informz mailing sent"
        elif code == "Opened":
            subject = "Informz mailing opened"
        else:
            return _counted(
                wb,
                ACTIVITY_NOT_WRITTEN,
                f"Salesforce mailing activity is Sent and Opened only; {code}/{subcode} is counted",
            )
        recipient = _recipient(wb)
        if isinstance(recipient, Outcome):
            return recipient
        return _ActivityRecord(self._task_fields(wb, recipient, (str(code), str(subcode)), subject))

    def _plan_tracking(self, wb: Writeback) -> Outcome | _ActivityRecord:
        assert self._tracking_pair is not None
        pair = self._tracking_pair(wb)
        if pair is None:
            return _counted(wb, ACTIVITY_NOT_WRITTEN, "no seed-001 Activity Code/Subcode for this event")
        recipient = _recipient(wb)
        if isinstance(recipient, Outcome):
            return recipient
        return _ActivityRecord(self._task_fields(wb, recipient, pair, f"{pair[0]}: {pair[1]}"))

    def _task_fields(
        self, wb: Writeback, recipient: _Recipient, pair: tuple[str, str], subject: str
    ) -> dict[str, Any]:
        name = _event_name(wb.event)
        return {
            "WhoId": recipient.who_id,
            "Subject": _clip(f"{subject} - {name}" if name else subject, 255),
            "ActivityDate": _utc(wb.occurred_at).astimezone(self._zone).date().isoformat(),
            "Status": "Completed",
            "Priority": "Normal",
            "Description": _clip(self._task_description(wb), 32000),
            "Activity_Group__c": _clip(pair[0], 255),
            "Activity__c": _clip(pair[1], 255),
            TASK_EXTERNAL_ID: wb.id,
        }

    def _task_description(self, wb: Writeback) -> str:
        event = wb.event
        lines = [f"Occurred: {_stamp(wb.occurred_at, self._zone)} ({self._config.time_zone})"]
        mailing = event.get("mailing") or {}
        if mailing.get("name"):
            lines.append(f"Mailing: {mailing['name']}")
        if mailing.get("send_date"):
            lines.append(f"Mailing sent: {self._render_date(str(mailing['send_date']))}")
        opened = event.get("open") or {}
        details = [str(opened[k]) for k in ("device", "client", "country") if opened.get(k)]
        if details:
            lines.append("Opened with: " + " | ".join(details))
        click = event.get("click") or {}
        if click.get("target"):
            lines.append(f"Clicked: {str(click['target']).lower()}")
        if event.get("name"):
            lines.append(f"Survey/Event: {event['name']}")
        return "\n".join(lines)

    def _render_date(self, value: str) -> str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if len(value) <= 10:
            return moment.strftime("%m/%d/%y")
        return _stamp(moment, self._zone)

    # -- writing: plans → collection calls ------------------------------------------------------

    def _upsert_activities(self, run: _Run, items: list[_Item[_ActivityRecord]]) -> dict[int, Outcome]:
        records = [{"attributes": {"type": "Task"}, **item.plan.fields} for item in items]
        return self._save(run, "PATCH", f"composite/sobjects/Task/{TASK_EXTERNAL_ID}", items, records)

    def _apply_subscriber_changes(
        self, run: _Run, items: list[_Item[_SubscriberChange]]
    ) -> dict[int, Outcome]:
        if not items:
            return {}
        existing = self._attempt(run, lambda: self._existing_notes(items))
        if isinstance(existing, _CallFailed):
            return {item.index: existing.outcome(item.wb.id) for item in items}
        outcomes: dict[int, Outcome] = {}
        for round_items in _rounds(items):
            ready: list[_Item[_SubscriberChange]] = []
            for item in round_items:
                if item.plan.recipient.who_id in run.blocked:
                    outcomes[item.index] = Outcome.retry(
                        item.wb.id, ORDER_BLOCKED, "an earlier writeback for this recipient has not completed"
                    )
                else:
                    ready.append(item)
            done = self._apply_round(run, ready, existing)
            outcomes.update(done)
            for item in ready:
                outcome = done[item.index]
                if outcome.disposition is Disposition.COMPLETED:
                    existing[item.wb.id] = outcome.crm_ids[0]
                else:
                    run.blocked.add(item.plan.recipient.who_id)
        return outcomes

    def _apply_round(
        self, run: _Run, items: list[_Item[_SubscriberChange]], existing: dict[str, str]
    ) -> dict[int, Outcome]:
        """One change per recipient: flag first (it is what stops mail), then the note."""
        outcomes = {
            i.index: Outcome.completed(i.wb.id, existing[i.wb.id]) for i in items if i.wb.id in existing
        }
        todo = [i for i in items if i.index not in outcomes]
        flagged = [i for i in todo if i.plan.opted_out is not None]
        flag_records = [
            {
                "attributes": {"type": i.plan.recipient.sobject},
                "Id": i.plan.recipient.who_id,
                "HasOptedOutOfEmail": i.plan.opted_out,
            }
            for i in flagged
        ]
        for index, outcome in self._save(run, "PATCH", "composite/sobjects", flagged, flag_records).items():
            if outcome.disposition is not Disposition.COMPLETED:
                outcomes[index] = outcome
        notes = [i for i in todo if i.index not in outcomes]
        note_records = [
            {
                "attributes": {"type": "Note"},
                "ParentId": i.plan.recipient.who_id,
                "Title": i.plan.title,
                "Body": i.plan.body,
            }
            for i in notes
        ]
        outcomes.update(self._save(run, "POST", "composite/sobjects", notes, note_records))
        return outcomes

    def _existing_notes(self, items: list[_Item[_SubscriberChange]]) -> dict[str, str]:
        """Writeback id → Note id for the notes these recipients already carry from us."""
        parents = ", ".join(f"'{who}'" for who in sorted({i.plan.recipient.who_id for i in items}))
        soql = f"SELECT Id, Body FROM Note WHERE ParentId IN ({parents}) AND Title LIKE '%Informz on%'"
        found: dict[str, str] = {}
        for record in self._query(soql):
            if match := _MARKER_RE.search(record.get("Body") or ""):
                found[match.group(1)] = record["Id"]
        return found

    def _save(
        self, run: _Run, method: str, path: str, items: Sequence[_Item[Any]], records: list[dict[str, Any]]
    ) -> dict[int, Outcome]:
        if not items:
            return {}
        body = {"allOrNone": False, "records": records}
        results = self._attempt(run, lambda: self._call(method, path, body=body))
        if isinstance(results, _CallFailed):
            return {item.index: results.outcome(item.wb.id) for item in items}
        if not isinstance(results, list) or len(results) != len(items):
            failure = _CallFailed(
                Disposition.RETRY, "INVALID_RESPONSE", f"{method} {path}: result count mismatch"
            )
            return {item.index: failure.outcome(item.wb.id) for item in items}
        return {
            item.index: self._record_outcome(item.wb.id, r) for item, r in zip(items, results, strict=True)
        }

    def _record_outcome(self, writeback_id: str, result: dict[str, Any]) -> Outcome:
        if result.get("success"):
            return Outcome.completed(writeback_id, str(result.get("id")))
        error = (result.get("errors") or [{}])[0]
        code = str(error.get("statusCode") or "UNKNOWN_EXCEPTION")
        message = _scrub(str(error.get("message") or ""))
        if error.get("fields"):
            message += f" (fields: {', '.join(map(str, error['fields']))})"
        if code in TRANSIENT_RECORD_CODES:
            return Outcome.retry(writeback_id, code, message)
        if self._config.tracking and code in UNKNOWN_RECIPIENT_CODES:
            return Outcome.failed(
                writeback_id,
                INTEGRATION_ID_MISMATCH,
                f"the integration id matches no live Contact or Lead in Salesforce ({code})",
            )
        return Outcome.failed(writeback_id, code, message)

    # -- transport: the only place failures are translated and caught ---------------------------

    def _attempt(self, run: _Run, call: Callable[[], T]) -> T | _CallFailed:
        """Run one call, catching its failure. A transient failure (down, throttled, auth) halts
        the rest of this write: its writebacks get the same retry instead of more calls."""
        if run.halt is not None:
            return run.halt
        try:
            return call()
        except _CallFailed as failure:
            log.warning("salesforce call failed: %s %s", failure.code, failure.message)
            if failure.disposition is Disposition.RETRY:
                run.halt = failure
            return failure

    def _query(self, soql: str) -> list[dict[str, Any]]:
        page = self._call("GET", "query", params={"q": soql})
        records = list(page["records"])
        while not page.get("done", True):
            page = self._call("GET", page["nextRecordsUrl"])
            records.extend(page["records"])
        return records

    def _call(self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None) -> Any:
        """One authenticated REST call. `path` is relative to /services/data/vXX.X/ unless it
        starts with '/'. An expired session is renewed once and the call repeated."""
        label = f"{method} {path}"
        try:
            session = self._current_session()
            response = self._send(session, method, path, params, body)
            if response.status_code == 401:
                response = self._send(self._renew_session(session), method, path, params, body)
            _raise_for_status(response, label)
            return _json(response, label) if response.content else None
        except httpx.TimeoutException:
            raise _CallFailed(
                Disposition.RETRY, "TIMEOUT", f"{label}: no answer within {self._config.timeout_s}s"
            ) from None
        except httpx.TransportError as exc:
            raise _CallFailed(
                Disposition.RETRY, "CONNECTION_ERROR", f"{label}: {type(exc).__name__}"
            ) from None

    def _send(
        self, session: _Session, method: str, path: str, params: dict[str, str] | None, body: Any
    ) -> httpx.Response:
        prefix = "" if path.startswith("/") else f"/services/data/v{self._config.api_version}/"
        return self._http.request(
            method,
            session.instance_url + prefix + path,
            params=params,
            json=body,
            headers={"Authorization": f"Bearer {session.access_token}"},
        )

    def _current_session(self) -> _Session:
        with self._session_lock:
            if self._session is None:
                self._session = self._fetch_session()
            return self._session

    def _renew_session(self, stale: _Session) -> _Session:
        with self._session_lock:
            if self._session is None or self._session is stale:
                self._session = self._fetch_session()
            return self._session

    def _fetch_session(self) -> _Session:
        """Client-credentials grant. A refused credential is retried, not failed: it is the
        connection's problem, fixed by an operator, not a fault of any one writeback."""
        response = self._http.post(
            f"{self._config.login_url}/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self._config.client_id,
                "client_secret": self._config.client_secret.get_secret_value(),
            },
        )
        if response.status_code in (400, 401):
            error = str(_json(response, "token").get("error") or "invalid_request")
            raise _CallFailed(
                Disposition.RETRY,
                f"OAUTH_{error.upper()}",
                f"Salesforce refused the connection's credentials ({error})",
            )
        _raise_for_status(response, "POST token")
        data = _json(response, "token")
        return _Session(str(data["access_token"]), str(data["instance_url"]).rstrip("/"))


def _raise_for_status(response: httpx.Response, label: str) -> None:
    if response.is_success:
        return
    status = response.status_code
    code, message = _error_detail(response)
    code = code or f"HTTP_{status}"
    text = f"{label}: HTTP {status} {message}".rstrip()
    if status in (401, 408, 429) or status >= 500 or code == "REQUEST_LIMIT_EXCEEDED":
        raise _CallFailed(Disposition.RETRY, code, text, _retry_after(response))
    raise _CallFailed(Disposition.FAILED, code, text)


def _error_detail(response: httpx.Response) -> tuple[str | None, str]:
    """Salesforce error bodies are `[{"message", "errorCode", ...}]`; OAuth's are `{"error", ...}`."""
    try:
        body = response.json()
    except ValueError:
        return None, ""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode"), _scrub(str(body[0].get("message") or ""))
    if isinstance(body, dict) and "error" in body:
        return str(body["error"]).upper(), _scrub(str(body.get("error_description") or ""))
    return None, ""


def _json(response: httpx.Response, label: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise _CallFailed(Disposition.RETRY, "INVALID_RESPONSE", f"{label}: not JSON") from None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _recipient(wb: Writeback) -> _Recipient | Outcome:
    """The Contact/Lead a writeback targets: record_type when given, else the id's prefix; the
    two must agree. The raw value is never echoed: a mistyped id field can hold an email."""
    recipient = wb.event.get("recipient") or {}
    raw = recipient.get("integration_id")
    if not raw:
        return Outcome.failed(
            wb.id, INTEGRATION_ID_MISMATCH, "the recipient has no Salesforce integration id"
        )
    who_id = id18(str(raw).strip())
    by_prefix = RECIPIENT_OBJECTS.get(who_id[:3]) if who_id else None
    if who_id is None or by_prefix is None:
        return Outcome.failed(
            wb.id, INTEGRATION_ID_MISMATCH, "the integration id is not a Salesforce Contact or Lead id"
        )
    declared = _RECORD_TYPES.get(str(recipient.get("record_type") or "").upper())
    if declared is not None and declared != by_prefix:
        return Outcome.failed(
            wb.id,
            INTEGRATION_ID_MISMATCH,
            f"record type {declared} does not match the integration id, which is a {by_prefix}",
        )
    return _Recipient(who_id, by_prefix)


def _rounds(items: list[_Item[_SubscriberChange]]) -> list[list[_Item[_SubscriberChange]]]:
    """Round k holds each recipient's k-th change, keeping the given order within a recipient."""
    seen: Counter[str] = Counter()
    rounds: list[list[_Item[_SubscriberChange]]] = []
    for item in items:
        k = seen[item.plan.recipient.who_id]
        seen[item.plan.recipient.who_id] += 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(item)
    return rounds


def _counted(wb: Writeback, code: str, message: str) -> Outcome:
    """Completed without a CRM write: counted in the writeback list, never retried or failed."""
    return Outcome(wb.id, Disposition.COMPLETED, code, message)


def _event_name(event: dict[str, Any]) -> str | None:
    mailing = event.get("mailing") or {}
    return mailing.get("name") or event.get("name") or None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _stamp(moment: datetime, zone: ZoneInfo) -> str:
    """Seed 002's `mm/dd/yy hh:mm:ss tt` in the connection's zone, AM/PM independent of locale."""
    local = _utc(moment).astimezone(zone)
    return f"{local:%m/%d/%y %I:%M:%S} {'AM' if local.hour < 12 else 'PM'}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scrub(message: str) -> str:
    """Salesforce messages can quote field values (validation rules, duplicates): keep emails
    and session tokens out of outcomes and logs."""
    return _clip(_TOKEN_RE.sub("<token>", _EMAIL_RE.sub("<email>", message)), 500)
