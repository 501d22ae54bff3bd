"""What an adapter's outcome means for its ledger row.

Adapters choose each writeback's disposition (completed, retry, failed) and map their CRM's
errors to an `ErrorKind` (`writeback.adapters.base`); this module turns that into the row's next
state: when to try again, and when to give up. The kind also decides whether a flush says the
CRM is unhealthy (the circuit breaker's input) and which dead-letter class a failure belongs to.

Decisions, and why:

- Backoff uses *equal jitter*: attempt n waits a uniform draw from [c/2, c] where
  c = min(max_delay, base_delay * 2**(n-1)). Full jitter (uniform [0, c]) spreads load best when
  many independent clients contend for one resource, but one lease holder already serialises a
  connection's calls, and full jitter can retry a failing CRM almost at once. Equal jitter keeps
  a floor that grows exponentially and still spreads rows that failed together.
- A CRM's Retry-After is a floor: delay = max(jittered backoff, Retry-After). It is honoured above
  `max_delay` (retrying sooner only burns an attempt and API quota on a certain 429) but clipped to
  `max_retry_after`, because the header is untrusted input (an HTTP-date plus clock skew can say
  "next week"); outages longer than that are the circuit breaker's and `max_age`'s business.
- Age is measured from the row's first failure, not from `occurred_at`: rows wait for their
  window (some activity schedules are manual), and that wait says nothing about
  whether the CRM will ever take them.
- An ORDER wait (an earlier writeback for the recipient did not complete) is not the row's own
  failure. It never gives up, never counts against the CRM's health, and waits only `base_delay`:
  the ledger's claim holds the row back until its blocker is due, and the blocker's own retry
  limits bound the wait.
- Credential failures (refused or expired credentials) are the connection's problem, fixed by an
  operator: they trip the breaker and never exhaust a row's attempts, only its `max_age`.

The ledger counts every recorded result as an attempt; `consumes_attempt` says which ones
should not count, for a ledger that can skip them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from writeback.adapters.base import Disposition, ErrorKind, Outcome
from writeback.contract.events import ErrorClass
from writeback.ledger.rows import Status
from writeback.ledger.store import RowResult

RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"
UNKNOWN_ERROR = "UNKNOWN_ERROR"


class Jitter(StrEnum):
    EQUAL = "equal"  # uniform in [c/2, c]: a growing floor (the default, see module doc)
    FULL = "full"  # uniform in (0, c]


class RetryPolicy(BaseModel):
    """How long transient failures are retried. Durations accept seconds or ISO 8601."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_delay: timedelta = Field(timedelta(seconds=5), ge=timedelta(milliseconds=1))
    max_delay: timedelta = Field(timedelta(minutes=15))
    max_retry_after: timedelta = Field(
        timedelta(hours=1), ge=timedelta(0), description="Longest Retry-After honoured."
    )
    max_attempts: int = Field(12, ge=1, description="Tries in all, the first included.")
    max_age: timedelta = Field(
        timedelta(days=3), gt=timedelta(0), description="Measured from the row's first failure."
    )
    jitter: Jitter = Jitter.EQUAL

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.max_delay < self.base_delay:
            raise ValueError("max_delay must be at least base_delay")
        return self


_UNHEALTHY = frozenset({ErrorKind.OUTAGE, ErrorKind.THROTTLED, ErrorKind.CREDENTIALS})
_WAITS = frozenset({ErrorKind.ORDER, ErrorKind.CREDENTIALS})


def error_kind(outcome: Outcome) -> ErrorKind | None:
    """The kind of a non-completed outcome, as its adapter mapped it; None when it completed.

    The disposition wins: a FAILED outcome is REJECTED whatever it says, and a RETRY that names no
    kind, or names REJECTED, is taken as an OUTAGE, since it is not a per-record refusal.
    """
    if outcome.disposition is Disposition.COMPLETED:
        return None
    if outcome.disposition is Disposition.FAILED:
        return ErrorKind.REJECTED
    return ErrorKind.OUTAGE if outcome.kind in (None, ErrorKind.REJECTED) else outcome.kind


def consumes_attempt(outcome: Outcome) -> bool:
    """False for waits that are not the row's failure (ORDER_BLOCKED, credentials)."""
    return error_kind(outcome) not in _WAITS


def batch_health(outcomes: Sequence[Outcome]) -> bool:
    """Whether one adapter call says the CRM is healthy: the circuit breaker's input.

    Unhealthy means the CRM gave no sign of life: nothing in the batch was written or found there,
    and at least one writeback was held back by an outage, throttling or refused credentials.
    A batch of per-record answers (permanent rejections, row-lock contention) is healthy: the CRM
    answered. Outcomes decided without a CRM call (a completed-with-a-note such as
    type the CRM does not take, a failed recipient check) are no sign of life either way, so they can't
    hide an outage when they ride along with one.
    """
    answered = any(
        o.disposition is Disposition.COMPLETED and (o.crm_ids or o.error_code is None)
        for o in outcomes
    )
    return answered or not any(error_kind(o) in _UNHEALTHY for o in outcomes)


def error_class(result: RowResult) -> ErrorClass | None:
    """The dead-letter class of a decided row: None unless it failed."""
    if result.status is not Status.FAILED:
        return None
    if result.error_code == RETRIES_EXHAUSTED:
        return ErrorClass.TRANSIENT_EXHAUSTED
    return ErrorClass.PERMANENT


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random) -> timedelta:
    """The jittered wait after the `attempt`-th try (1-based) failed."""
    exponent = min(max(attempt, 1) - 1, 64)  # 2**64 * 1 ms is far past any max_delay
    exponential = policy.base_delay.total_seconds() * 2.0**exponent
    ceiling = min(policy.max_delay.total_seconds(), exponential)
    if policy.jitter is Jitter.FULL:
        seconds = ceiling * (1.0 - rng.random())
    else:
        seconds = ceiling / 2 + ceiling / 2 * rng.random()
    return timedelta(seconds=seconds)


def decide(
    outcome: Outcome,
    attempts_before: int,
    first_failed_at: datetime | None,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> RowResult:
    """The ledger row's next state after one adapter outcome.

    `attempts_before` counts the row's earlier tries, so this outcome is try `attempts_before + 1`;
    `first_failed_at` is None when this is the row's first failure. A transient failure stays
    pending until it would be the `max_attempts`-th try or the row has failed for `max_age`; then
    it fails as RETRIES_EXHAUSTED with the last error kept in the message, so the writeback list
    and the dead letter say what kept going wrong.
    """
    code = outcome.error_code
    if outcome.disposition is Disposition.COMPLETED:
        return RowResult(outcome.writeback_id, Status.COMPLETED, code, outcome.error_message)
    code = code or UNKNOWN_ERROR
    if outcome.disposition is Disposition.FAILED:
        return RowResult(outcome.writeback_id, Status.FAILED, code, outcome.error_message)

    kind = error_kind(outcome)
    if kind is ErrorKind.ORDER:
        after = now + policy.base_delay
        return RowResult(
            outcome.writeback_id, Status.PENDING, code, outcome.error_message, after, counts_attempt=False
        )
    attempt = attempts_before + 1
    age = now - first_failed_at if first_failed_at is not None else timedelta(0)
    out_of_attempts = attempt >= policy.max_attempts and kind is not ErrorKind.CREDENTIALS
    if out_of_attempts or age >= policy.max_age:
        last = f"{code}: {outcome.error_message}" if outcome.error_message else code
        span = f" over {timedelta(seconds=round(age.total_seconds()))}" if age else ""
        return RowResult(
            outcome.writeback_id,
            Status.FAILED,
            RETRIES_EXHAUSTED,
            f"gave up after {attempt} attempts{span}; last error {last}",
        )
    delay = backoff(attempt, policy, rng)
    retry_after = outcome.retry_after
    if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
        honoured = min(retry_after, policy.max_retry_after.total_seconds())
        delay = max(delay, timedelta(seconds=honoured))
    return RowResult(
        outcome.writeback_id,
        Status.PENDING,
        code,
        outcome.error_message,
        now + delay,
        counts_attempt=consumes_attempt(outcome),
    )
