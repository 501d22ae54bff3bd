"""Writes batches to one Salesforce org: sObject Collections with `allOrNone=false`, so one bad
record never fails its neighbours, at most 200 records a call.

Idempotent: Tasks are upserted on `Writeback_Id__c`; before inserting notes, one query per batch
fetches the recipients' Informz notes, and a writeback whose marker is already there is complete
and touches nothing (so replaying an old unsubscribe never re-sets a flag a later resubscribe
cleared). The Email Opt Out flag is written before the note, because the flag is what stops
Salesforce's own mail.

Order: a recipient's changes are applied in rounds (the k-th change of every recipient in round
k), so flags and notes land in the given order; once a recipient's writeback does not complete,
its later ones in the same `write` are held back (`Outcome.blocked`) instead of overtaking it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from writeback.adapters.base import Disposition, Outcome, Writeback
from writeback.adapters.salesforce import mapping
from writeback.adapters.salesforce.client import Client
from writeback.adapters.salesforce.config import Config
from writeback.adapters.salesforce.errors import (
    INTEGRATION_ID_MISMATCH,
    RECORD_KINDS,
    UNKNOWN_RECIPIENT_CODES,
    UNSUPPORTED_EVENT_TYPE,
    CallFailed,
    scrub,
)
from writeback.adapters.salesforce.mapping import ActivityRecord, SubscriberChange
from writeback.contract.events import ActivityEvent, SubscriberEvent

log = logging.getLogger(__name__)

T = TypeVar("T")
P = TypeVar("P")
TrackingPair = Callable[[Writeback], tuple[str, str] | None]
MAX_RECORDS_PER_CALL = 200


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
    halt: CallFailed | None = None


def _outcome(failure: CallFailed, writeback_id: str) -> Outcome:
    if failure.kind is None:
        return Outcome.failed(writeback_id, failure.code, failure.message)
    return Outcome.retry(writeback_id, failure.code, failure.message, failure.retry_after, failure.kind)


class SalesforceAdapter:
    """One Outcome per input, same order. With `tracking_pair` it is a seed-001 tracking
    connection: every event with a code/subcode pair becomes a Task."""

    max_batch = MAX_RECORDS_PER_CALL

    def __init__(self, config: Config, *, time_zone: str, tracking_pair: TrackingPair | None = None) -> None:
        self._config = config
        self._zone_name = time_zone
        self._zone = ZoneInfo(time_zone)
        self._tracking_pair = tracking_pair
        self._client = Client(config)

    def __enter__(self) -> SalesforceAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def write(self, batch: Sequence[Writeback]) -> list[Outcome]:
        run = _Run()
        outcomes: list[Outcome] = []
        for start in range(0, len(batch), self.max_batch):
            outcomes.extend(self._write_chunk(batch[start : start + self.max_batch], run))
        return outcomes

    def _write_chunk(self, chunk: Sequence[Writeback], run: _Run) -> list[Outcome]:
        outcomes: dict[int, Outcome] = {}
        changes: list[_Item[SubscriberChange]] = []
        activities: list[_Item[ActivityRecord]] = []
        for index, wb in enumerate(chunk):
            plan = self._plan(wb)
            if isinstance(plan, Outcome):
                outcomes[index] = plan
            elif isinstance(plan, ActivityRecord):
                activities.append(_Item(index, wb, plan))
            else:
                changes.append(_Item(index, wb, plan))
        outcomes.update(self._upsert_activities(run, activities))
        outcomes.update(self._apply_subscriber_changes(run, changes))
        return [outcomes[index] for index in range(len(chunk))]

    def _plan(self, wb: Writeback) -> mapping.Plan:
        if self._tracking_pair is not None:
            return mapping.tracking_task(wb, self._tracking_pair(wb), self._zone, self._zone_name)
        if isinstance(wb.event, SubscriberEvent):
            return mapping.subscriber_change(wb, self._zone, self._config.suppress_email_opt_out)
        if isinstance(wb.event, ActivityEvent):
            return mapping.mailing_task(wb, self._zone, self._zone_name)
        return Outcome.failed(wb.id, UNSUPPORTED_EVENT_TYPE, f"{type(wb.event).__name__}s are not written to Salesforce")

    # -- plans → collection calls ----------------------------------------------------------------

    def _upsert_activities(self, run: _Run, items: list[_Item[ActivityRecord]]) -> dict[int, Outcome]:
        records = [{"attributes": {"type": "Task"}, **item.plan.fields} for item in items]
        return self._save(run, "PATCH", f"composite/sobjects/Task/{mapping.TASK_EXTERNAL_ID}", items, records)

    def _apply_subscriber_changes(self, run: _Run, items: list[_Item[SubscriberChange]]) -> dict[int, Outcome]:
        if not items:
            return {}
        existing = self._attempt(run, lambda: self._existing_notes(items))
        if isinstance(existing, CallFailed):
            return {item.index: _outcome(existing, item.wb.id) for item in items}
        outcomes: dict[int, Outcome] = {}
        for round_items in _rounds(items):
            ready: list[_Item[SubscriberChange]] = []
            for item in round_items:
                if item.plan.recipient.who_id in run.blocked:
                    outcomes[item.index] = Outcome.blocked(item.wb.id)
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
        self, run: _Run, items: list[_Item[SubscriberChange]], existing: dict[str, str]
    ) -> dict[int, Outcome]:
        """One change per recipient: flag first (it is what stops mail), then the note."""
        outcomes = {i.index: Outcome.completed(i.wb.id, existing[i.wb.id]) for i in items if i.wb.id in existing}
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
            {"attributes": {"type": "Note"}, "ParentId": i.plan.recipient.who_id, "Title": i.plan.title, "Body": i.plan.body}
            for i in notes
        ]
        outcomes.update(self._save(run, "POST", "composite/sobjects", notes, note_records))
        return outcomes

    def _existing_notes(self, items: list[_Item[SubscriberChange]]) -> dict[str, str]:
        """Writeback id → Note id for the notes these recipients already carry from us."""
        parents = ", ".join(f"'{who}'" for who in sorted({i.plan.recipient.who_id for i in items}))
        soql = f"SELECT Id, Body FROM Note WHERE ParentId IN ({parents}) AND Title LIKE '%Informz on%'"
        found: dict[str, str] = {}
        for record in self._client.query(soql):
            if match := mapping.MARKER_RE.search(record.get("Body") or ""):
                found[match.group(1)] = record["Id"]
        return found

    def _save(
        self, run: _Run, method: str, path: str, items: Sequence[_Item[Any]], records: list[dict[str, Any]]
    ) -> dict[int, Outcome]:
        if not items:
            return {}
        body = {"allOrNone": False, "records": records}
        results = self._attempt(run, lambda: self._client.call(method, path, body=body))
        if isinstance(results, CallFailed):
            return {item.index: _outcome(results, item.wb.id) for item in items}
        if not isinstance(results, list) or len(results) != len(items):
            return {
                item.index: Outcome.retry(item.wb.id, "INVALID_RESPONSE", f"{method} {path}: result count mismatch")
                for item in items
            }
        return {item.index: self._record_outcome(item.wb.id, r) for item, r in zip(items, results, strict=True)}

    def _record_outcome(self, writeback_id: str, result: dict[str, Any]) -> Outcome:
        if result.get("success"):
            return Outcome.completed(writeback_id, str(result.get("id")))
        error = (result.get("errors") or [{}])[0]
        code = str(error.get("statusCode") or "UNKNOWN_EXCEPTION")
        message = scrub(str(error.get("message") or ""))
        if error.get("fields"):
            message += f" (fields: {', '.join(map(str, error['fields']))})"
        if code in RECORD_KINDS:
            return Outcome.retry(writeback_id, code, message, kind=RECORD_KINDS[code])
        if self._tracking_pair is not None and code in UNKNOWN_RECIPIENT_CODES:
            return Outcome.failed(
                writeback_id,
                INTEGRATION_ID_MISMATCH,
                f"the integration id matches no live Contact or Lead in Salesforce ({code})",
            )
        return Outcome.failed(writeback_id, code, message)

    def _attempt(self, run: _Run, call: Callable[[], T]) -> T | CallFailed:
        """Run one call, catching its failure. A transient failure (down, throttled, auth) halts
        the rest of this write: its writebacks get the same retry instead of more calls."""
        if run.halt is not None:
            return run.halt
        try:
            return call()
        except CallFailed as failure:
            log.warning("salesforce call failed: %s %s", failure.code, failure.message)
            if failure.kind is not None:
                run.halt = failure
            return failure


def _rounds(items: list[_Item[SubscriberChange]]) -> list[list[_Item[SubscriberChange]]]:
    """Round k holds each recipient's k-th change, keeping the given order within a recipient."""
    seen: Counter[str] = Counter()
    rounds: list[list[_Item[SubscriberChange]]] = []
    for item in items:
        k = seen[item.plan.recipient.who_id]
        seen[item.plan.recipient.who_id] += 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(item)
    return rounds
