"""Retry decisions and the error taxonomy: what each adapter outcome does to its ledger row."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from writeback.adapters.base import Disposition, ErrorKind, Outcome
from writeback.contract.events import ErrorClass
from writeback.flush.retries import (
    RETRIES_EXHAUSTED,
    UNKNOWN_ERROR,
    Jitter,
    RetryPolicy,
    backoff,
    batch_health,
    consumes_attempt,
    decide,
    error_class,
    error_kind,
)
from writeback.ledger import RowResult
from writeback.ledger.rows import Status

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
# the kinds adapters give these codes (each adapter maps its CRM's codes; see tests/adapters)
KIND_OF = {
    "UNABLE_TO_LOCK_ROW": ErrorKind.CONTENTION,
    "HTTP_429": ErrorKind.THROTTLED,
    "REQUEST_LIMIT_EXCEEDED": ErrorKind.THROTTLED,
    "OAUTH_INVALID_CLIENT": ErrorKind.CREDENTIALS,
    "OAUTH_INVALID_GRANT": ErrorKind.CREDENTIALS,
    "ORDER_BLOCKED": ErrorKind.ORDER,
}


def retry(writeback_id: str, code: str, message: str, retry_after: float | None = None) -> Outcome:
    """A RETRY outcome as an adapter gives it: the code its CRM said, the kind it mapped."""
    return Outcome.retry(writeback_id, code, message, retry_after, KIND_OF.get(code, ErrorKind.OUTAGE))


POLICY = RetryPolicy()  # 5 s base, 15 min cap, 12 attempts, 3 days, 1 h Retry-After, equal jitter


class Fixed(random.Random):
    """A Random whose draws are all `value`, to pin jitter to its bounds."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def ceiling(attempt: int, policy: RetryPolicy = POLICY) -> timedelta:
    return min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))


# -- backoff ---------------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    assert POLICY.base_delay == timedelta(seconds=5)
    assert POLICY.max_delay == timedelta(minutes=15)
    assert POLICY.max_attempts == 12
    assert POLICY.max_age == timedelta(days=3)
    assert POLICY.jitter is Jitter.EQUAL


@pytest.mark.parametrize("attempt", range(1, 16))
def test_equal_jitter_stays_within_half_to_full_exponential_ceiling(attempt: int) -> None:
    c = ceiling(attempt)
    assert backoff(attempt, POLICY, Fixed(0.0)) == c / 2
    assert backoff(attempt, POLICY, Fixed(0.999999)) <= c
    assert backoff(attempt, POLICY, Fixed(0.999999)) > c * 0.99
    rng = random.Random(attempt)
    for _ in range(200):
        assert c / 2 <= backoff(attempt, POLICY, rng) <= c


def test_backoff_floor_doubles_until_the_cap() -> None:
    floors = [backoff(n, POLICY, Fixed(0.0)) for n in range(1, 13)]
    assert floors[:5] == [timedelta(seconds=s) for s in (2.5, 5, 10, 20, 40)]
    assert all(later == 2 * earlier for earlier, later in zip(floors[:7], floors[1:8]))
    # 5 s * 2**8 is past the 15 min cap
    assert floors[7:] == [timedelta(seconds=320)] + [POLICY.max_delay / 2] * 4
    assert max(backoff(n, POLICY, Fixed(0.999999)) for n in range(1, 200)) <= POLICY.max_delay


def test_full_jitter_is_never_zero_and_never_above_the_ceiling() -> None:
    policy = RetryPolicy(jitter=Jitter.FULL)
    assert backoff(3, policy, Fixed(0.0)) == ceiling(3, policy)
    assert timedelta(0) < backoff(3, policy, Fixed(0.999999)) < timedelta(milliseconds=1)
    rng = random.Random(7)
    draws = [backoff(30, policy, rng) for _ in range(500)]
    assert min(draws) < POLICY.max_delay / 10  # full jitter does reach far below half
    assert all(timedelta(0) < d <= POLICY.max_delay for d in draws)


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert backoff(10**9, POLICY, Fixed(0.0)) == POLICY.max_delay / 2


def test_same_seed_same_decision() -> None:
    outcome = retry("wb", "HTTP_503", "down")
    first = decide(outcome, 4, NOW, NOW, POLICY, random.Random(42))
    assert first == decide(outcome, 4, NOW, NOW, POLICY, random.Random(42))


# -- decide: retry -----------------------------------------------------------------------------


def test_transient_failure_stays_pending_with_its_error_and_a_backoff() -> None:
    outcome = retry("wb-1", "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access")
    result = decide(outcome, 3, NOW - timedelta(minutes=1), NOW, POLICY, random.Random(1))
    assert result.writeback_id == "wb-1"
    assert result.status is Status.PENDING
    assert (result.error_code, result.error_message) == (
        "UNABLE_TO_LOCK_ROW",
        "unable to obtain exclusive access",
    )
    assert result.next_attempt_at is not None
    assert NOW + ceiling(4) / 2 <= result.next_attempt_at <= NOW + ceiling(4)
    assert error_class(result) is None


def test_retry_after_longer_than_the_backoff_is_the_wait() -> None:
    outcome = retry("wb", "HTTP_429", "slow down", retry_after=120)
    result = decide(outcome, 0, None, NOW, POLICY, random.Random(1))
    assert result.next_attempt_at == NOW + timedelta(seconds=120)


def test_retry_after_shorter_than_the_backoff_does_not_shorten_it() -> None:
    outcome = retry("wb", "HTTP_429", "slow down", retry_after=1)
    result = decide(outcome, 9, None, NOW, POLICY, Fixed(0.0))
    assert result.next_attempt_at == NOW + ceiling(10) / 2


def test_retry_after_is_honoured_above_max_delay_up_to_max_retry_after() -> None:
    forty_minutes = retry("wb", "HTTP_503", "maintenance", retry_after=40 * 60)
    result = decide(forty_minutes, 0, None, NOW, POLICY, random.Random(1))
    assert result.next_attempt_at == NOW + timedelta(minutes=40)

    next_week = retry("wb", "HTTP_503", "maintenance", retry_after=7 * 86400)
    result = decide(next_week, 0, None, NOW, POLICY, random.Random(1))
    assert result.next_attempt_at == NOW + POLICY.max_retry_after == NOW + timedelta(hours=1)


@pytest.mark.parametrize("retry_after", [0.0, -5.0, math.nan, math.inf, -math.inf])
def test_meaningless_retry_after_falls_back_to_backoff(retry_after: float) -> None:
    outcome = retry("wb", "HTTP_503", "down", retry_after=retry_after)
    result = decide(outcome, 0, None, NOW, POLICY, Fixed(0.0))
    assert result.next_attempt_at == NOW + ceiling(1) / 2


def test_retry_without_a_code_is_recorded_as_unknown_so_the_ledger_dates_the_failure() -> None:
    outcome = Outcome("wb", Disposition.RETRY)
    result = decide(outcome, 0, None, NOW, POLICY, random.Random(1))
    assert (result.status, result.error_code) == (Status.PENDING, UNKNOWN_ERROR)


# -- decide: giving up ---------------------------------------------------------------------------


def test_gives_up_on_the_max_attempts_th_try_keeping_the_last_error() -> None:
    outcome = retry("wb", "HTTP_503", "POST composite/sobjects: HTTP 503 down")
    still = decide(outcome, POLICY.max_attempts - 2, NOW, NOW, POLICY, random.Random(1))
    assert still.status is Status.PENDING

    result = decide(outcome, POLICY.max_attempts - 1, NOW, NOW, POLICY, random.Random(1))
    assert result == RowResult(
        "wb",
        Status.FAILED,
        RETRIES_EXHAUSTED,
        "gave up after 12 attempts; last error HTTP_503: POST composite/sobjects: HTTP 503 down",
    )
    assert error_class(result) is ErrorClass.TRANSIENT_EXHAUSTED


def test_gives_up_once_the_row_has_been_failing_for_max_age() -> None:
    outcome = retry("wb", "TIMEOUT", "no answer within 30s")
    almost = NOW - POLICY.max_age + timedelta(seconds=1)
    assert decide(outcome, 2, almost, NOW, POLICY, random.Random(1)).status is Status.PENDING

    result = decide(outcome, 2, NOW - POLICY.max_age, NOW, POLICY, random.Random(1))
    assert result.status is Status.FAILED
    assert result.error_code == RETRIES_EXHAUSTED
    assert result.error_message == (
        "gave up after 3 attempts over 3 days, 0:00:00; last error TIMEOUT: no answer within 30s"
    )
    assert result.next_attempt_at is None
    assert error_class(result) is ErrorClass.TRANSIENT_EXHAUSTED


def test_age_counts_from_the_first_failure_so_a_first_failure_never_ages_out() -> None:
    outcome = retry("wb", "TIMEOUT", "no answer")
    assert decide(outcome, 0, None, NOW, POLICY, random.Random(1)).status is Status.PENDING


def test_single_attempt_policy_gives_up_at_once() -> None:
    policy = RetryPolicy(max_attempts=1)
    result = decide(retry("wb", "HTTP_500", ""), 0, None, NOW, policy, random.Random(1))
    assert (result.status, result.error_message) == (
        Status.FAILED,
        "gave up after 1 attempts; last error HTTP_500",
    )


# -- decide: completed and failed --------------------------------------------------------------


def test_completed_keeps_an_informational_code() -> None:
    note = "Salesforce mailing activity is Sent and Opened only"
    outcome = Outcome("wb", Disposition.COMPLETED, "ACTIVITY_NOT_WRITTEN", note)
    result = decide(outcome, 7, NOW - timedelta(days=30), NOW, POLICY, random.Random(1))
    assert result == RowResult("wb", Status.COMPLETED, "ACTIVITY_NOT_WRITTEN", note)
    assert error_class(result) is None


def test_completed_plain() -> None:
    result = decide(Outcome.completed("wb", "00T1"), 0, None, NOW, POLICY, random.Random(1))
    assert result == RowResult("wb", Status.COMPLETED)


def test_permanent_failure_fails_at_once_whatever_the_attempts_left() -> None:
    outcome = Outcome.failed("wb", "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
    result = decide(outcome, 0, None, NOW, POLICY, random.Random(1))
    assert result == RowResult(
        "wb", Status.FAILED, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id"
    )
    assert error_class(result) is ErrorClass.PERMANENT
    codeless = decide(Outcome("wb", Disposition.FAILED), 0, None, NOW, POLICY, random.Random(1))
    assert codeless.error_code == UNKNOWN_ERROR


# -- waits: ORDER_BLOCKED and credentials ---------------------------------------------------------


def test_order_blocked_waits_base_delay_and_never_gives_up() -> None:
    message = "an earlier writeback for this recipient has not completed"
    outcome = retry("wb", "ORDER_BLOCKED", message)
    result = decide(outcome, 500, NOW - timedelta(days=30), NOW, POLICY, random.Random(1))
    assert result == RowResult(
        "wb", Status.PENDING, "ORDER_BLOCKED", message, NOW + POLICY.base_delay, counts_attempt=False
    )
    assert not consumes_attempt(outcome)
    assert batch_health([outcome, outcome])


def test_credential_failures_wait_past_max_attempts_but_not_past_max_age() -> None:
    outcome = retry("wb", "OAUTH_INVALID_CLIENT", "Salesforce refused the credentials")
    assert not consumes_attempt(outcome)
    waiting = decide(outcome, 100, NOW - timedelta(days=1), NOW, POLICY, Fixed(0.0))
    assert waiting.status is Status.PENDING
    assert waiting.next_attempt_at == NOW + POLICY.max_delay / 2

    given_up = decide(outcome, 100, NOW - timedelta(days=3), NOW, POLICY, random.Random(1))
    assert (given_up.status, given_up.error_code) == (Status.FAILED, RETRIES_EXHAUSTED)
    assert "last error OAUTH_INVALID_CLIENT" in (given_up.error_message or "")


def test_ordinary_failures_consume_attempts() -> None:
    assert consumes_attempt(retry("wb", "HTTP_503", ""))
    assert consumes_attempt(retry("wb", "UNABLE_TO_LOCK_ROW", ""))
    assert consumes_attempt(Outcome.failed("wb", "INVALID_FIELD", ""))


# -- the taxonomy ---------------------------------------------------------------------------------


def test_adapter_disposition_wins_over_the_kind() -> None:
    assert error_kind(Outcome.failed("wb", "HTTP_503", "")) is ErrorKind.REJECTED
    assert error_kind(Outcome("wb", Disposition.RETRY, "UNKNOWN_EXCEPTION", "")) is ErrorKind.OUTAGE
    assert error_kind(Outcome("wb", Disposition.RETRY, "X", "", kind=ErrorKind.REJECTED)) is ErrorKind.OUTAGE
    assert error_kind(retry("wb", "UNABLE_TO_LOCK_ROW", "")) is ErrorKind.CONTENTION
    assert error_kind(Outcome.completed("wb", "00T1")) is None


# -- batch health ---------------------------------------------------------------------------------


WRITTEN = Outcome.completed("wb", "00T000000000001")
NOTED = Outcome("wb", Disposition.COMPLETED, "ACTIVITY_NOT_WRITTEN", "counted, not written")
REJECTED = Outcome.failed("wb", "INVALID_CROSS_REFERENCE_KEY", "")
LOCAL_FAILURE = Outcome.failed("wb", "INTEGRATION_ID_MISMATCH", "no integration id")


@pytest.mark.parametrize(
    ("outcomes", "healthy"),
    [
        ([], True),
        ([WRITTEN, WRITTEN], True),
        ([retry("wb", "HTTP_503", "")] * 3, False),
        ([retry("wb", "TIMEOUT", ""), retry("wb", "CONNECTION_ERROR", "")], False),
        ([retry("wb", "HTTP_429", "")], False),
        ([retry("wb", "REQUEST_LIMIT_EXCEEDED", "")], False),
        ([retry("wb", "OAUTH_INVALID_CLIENT", "")] * 2, False),
        ([retry("wb", "UNKNOWN_EXCEPTION", "")], False),
        ([retry("wb", "HTTP_503", ""), retry("wb", "ORDER_BLOCKED", "")], False),
        ([REJECTED, REJECTED], True),  # per-record permanent failures: the CRM answered
        ([retry("wb", "UNABLE_TO_LOCK_ROW", "")] * 4, True),  # contention: the CRM answered
        ([retry("wb", "ORDER_BLOCKED", "")], True),
        ([WRITTEN, retry("wb", "HTTP_503", "")], True),  # part of the flush got through
        ([Outcome.completed("wb"), retry("wb", "HTTP_503", "")], True),  # a write without a CRM id
        ([NOTED, retry("wb", "HTTP_503", ""), retry("wb", "HTTP_503", "")], False),  # the note needed no CRM
        ([LOCAL_FAILURE, retry("wb", "TIMEOUT", "")], False),  # nor did the recipient check
        ([NOTED, LOCAL_FAILURE], True),
    ],
)
def test_batch_health(outcomes: list[Outcome], healthy: bool) -> None:
    assert batch_health(outcomes) is healthy


# -- properties ---------------------------------------------------------------------------------

policies = st.builds(
    RetryPolicy,
    base_delay=st.integers(1, 60_000).map(lambda ms: timedelta(milliseconds=ms)),
    max_delay=st.integers(60, 7200).map(lambda s: timedelta(seconds=s)),
    max_retry_after=st.integers(0, 86400).map(lambda s: timedelta(seconds=s)),
    max_attempts=st.integers(1, 30),
    jitter=st.sampled_from(Jitter),
)
codes = st.sampled_from(
    ["HTTP_503", "HTTP_429", "TIMEOUT", "UNABLE_TO_LOCK_ROW", "OAUTH_INVALID_GRANT"]
    + ["ORDER_BLOCKED", "INVALID_CROSS_REFERENCE_KEY", "SOMETHING_NEW"]
)
retry_afters = st.none() | st.floats(min_value=0, max_value=1e9, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(
    policy=policies,
    code=codes,
    attempts_before=st.integers(0, 40),
    failing_for=st.none() | st.integers(0, 10 * 86400).map(lambda s: timedelta(seconds=s)),
    retry_after=retry_afters,
    seed=st.integers(0, 2**32 - 1),
)
def test_pending_rows_come_back_later_but_within_the_documented_bound(
    policy: RetryPolicy,
    code: str,
    attempts_before: int,
    failing_for: timedelta | None,
    retry_after: float | None,
    seed: int,
) -> None:
    outcome = retry("wb", code, "msg", retry_after)
    first_failed_at = NOW - failing_for if failing_for is not None else None
    result = decide(outcome, attempts_before, first_failed_at, NOW, policy, random.Random(seed))

    kind = error_kind(outcome)
    aged_out = failing_for is not None and failing_for >= policy.max_age
    waits = kind is ErrorKind.CREDENTIALS
    out_of_attempts = attempts_before + 1 >= policy.max_attempts and not waits
    if kind is not ErrorKind.ORDER and (aged_out or out_of_attempts):
        assert (result.status, result.error_code) == (Status.FAILED, RETRIES_EXHAUSTED)
        assert f"last error {code}: msg" in (result.error_message or "")
        assert result.next_attempt_at is None
        return

    assert (result.status, result.error_code) == (Status.PENDING, code)
    assert result.next_attempt_at is not None
    honoured = timedelta(seconds=min(retry_after or 0.0, policy.max_retry_after.total_seconds()))
    if kind is not ErrorKind.ORDER:
        assert result.next_attempt_at >= NOW + honoured - timedelta(microseconds=1)
    assert NOW < result.next_attempt_at <= NOW + max(policy.max_delay, honoured)


# -- the policy itself -----------------------------------------------------------------------------


def test_policy_takes_seconds_or_iso_durations_and_rejects_nonsense() -> None:
    policy = RetryPolicy.model_validate({"base_delay": 2, "max_delay": "PT10M", "max_age": "P1D"})
    assert (policy.base_delay, policy.max_delay, policy.max_age) == (
        timedelta(seconds=2),
        timedelta(minutes=10),
        timedelta(days=1),
    )
    with pytest.raises(ValidationError, match="max_delay must be at least base_delay"):
        RetryPolicy(base_delay=timedelta(minutes=5), max_delay=timedelta(minutes=1))
    with pytest.raises(ValidationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValidationError):
        RetryPolicy(base_delay=timedelta(0))
    with pytest.raises(ValidationError):
        RetryPolicy(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        POLICY.max_attempts = 3  # type: ignore[misc]
