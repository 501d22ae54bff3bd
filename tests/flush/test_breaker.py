"""Circuit breaker: a CRM that is down gets probed once per open period, never hammered."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from writeback.adapters.base import Outcome
from writeback.flush.breaker import (
    BreakerPolicy,
    BreakerRegistry,
    BreakerState,
    CircuitBreaker,
    Transition,
)
from writeback.flush.retries import batch_health

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = BreakerPolicy(
    failure_threshold=3,
    reset_timeout=timedelta(seconds=30),
    max_reset_timeout=timedelta(minutes=2),
    growth=2.0,
)
CLOSED, HALF_OPEN, OPEN = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def tripped(policy: BreakerPolicy = POLICY, now: datetime = T0) -> CircuitBreaker:
    breaker = CircuitBreaker("sf-1", policy)
    for _ in range(policy.failure_threshold):
        assert breaker.allow(now)
        breaker.record(False, now)
    assert breaker.state is OPEN
    return breaker


def test_state_values_are_the_gauge_values() -> None:
    assert (CLOSED, HALF_OPEN, OPEN) == (0, 1, 2)


def test_opens_after_threshold_consecutive_unhealthy_calls() -> None:
    breaker = CircuitBreaker("sf-1", POLICY)
    for _ in range(POLICY.failure_threshold - 1):
        breaker.record(False, T0)
    assert breaker.state is CLOSED
    assert breaker.allow(T0)
    breaker.record(False, T0)
    assert breaker.state is OPEN
    assert breaker.trips == 1
    assert not breaker.allow(T0)


def test_a_healthy_call_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker("sf-1", POLICY)
    for healthy in [False, False, True, False, False, True, False, False]:
        breaker.record(healthy, T0)
    assert breaker.state is CLOSED
    assert breaker.trips == 0
    breaker.record(False, T0)
    assert breaker.state is OPEN


def test_stays_open_until_the_reset_timeout_then_lets_one_trial_through() -> None:
    breaker = tripped()
    assert not breaker.allow(at(1))
    assert not breaker.allow(at(29.999))
    assert breaker.state is OPEN
    assert breaker.allow(at(30))
    assert breaker.state is HALF_OPEN
    assert not breaker.allow(at(30))
    assert not breaker.allow(at(45))


def test_successful_trial_closes_and_resets_the_open_period() -> None:
    breaker = tripped()
    assert breaker.allow(at(30))
    breaker.record(False, at(31))  # reopened for 60 s
    assert breaker.open_for == timedelta(seconds=60)
    assert breaker.allow(at(91))
    breaker.record(True, at(92))
    assert breaker.state is CLOSED
    assert breaker.open_for == POLICY.reset_timeout
    assert all(breaker.allow(at(93)) for _ in range(5))

    for _ in range(POLICY.failure_threshold - 1):
        breaker.record(False, at(100))
    assert breaker.state is CLOSED  # the count restarted on closing
    breaker.record(False, at(100))
    assert breaker.state is OPEN
    assert not breaker.allow(at(129))
    assert breaker.allow(at(130))


def test_failed_trials_reopen_for_longer_up_to_the_cap() -> None:
    breaker = tripped()
    now = T0
    periods = []
    for _ in range(5):
        now += breaker.open_for
        assert not breaker.allow(now - timedelta(microseconds=1))
        assert breaker.allow(now)
        breaker.record(False, now)
        periods.append(breaker.open_for)
    assert periods == [timedelta(seconds=s) for s in (60, 120, 120, 120, 120)]
    assert breaker.trips == 6


def test_results_arriving_while_open_are_ignored() -> None:
    breaker = tripped()
    breaker.record(True, at(1))  # calls let through before the trip, finishing late
    for _ in range(POLICY.failure_threshold):
        breaker.record(False, at(10))
    assert breaker.state is OPEN
    assert breaker.trips == 1
    assert not breaker.allow(at(29))
    assert breaker.allow(at(30))  # the late failure did not restart the open period


def test_an_abandoned_trial_is_replaced_after_one_open_period() -> None:
    breaker = tripped()
    assert breaker.allow(at(30))  # the trial's result is never recorded
    assert not breaker.allow(at(59))
    assert breaker.allow(at(60))
    assert not breaker.allow(at(60))
    breaker.record(True, at(61))
    assert breaker.state is CLOSED


def test_listeners_see_every_transition_in_order() -> None:
    seen: list[Transition] = []
    breaker = CircuitBreaker("sf-1", POLICY)
    breaker.on_change(seen.append)
    for _ in range(3):
        breaker.record(False, at(0))
    breaker.allow(at(30))
    breaker.record(False, at(31))
    breaker.allow(at(91))
    breaker.record(True, at(92))
    assert seen == [
        Transition("sf-1", CLOSED, OPEN, at(0)),
        Transition("sf-1", OPEN, HALF_OPEN, at(30)),
        Transition("sf-1", HALF_OPEN, OPEN, at(31)),
        Transition("sf-1", OPEN, HALF_OPEN, at(91)),
        Transition("sf-1", HALF_OPEN, CLOSED, at(92)),
    ]


def test_a_listener_may_read_the_breaker_and_a_failing_one_breaks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gauge: list[int] = []
    breaker = CircuitBreaker("sf-1", POLICY)

    def broken(_: Transition) -> None:
        raise RuntimeError("metrics bug")

    breaker.on_change(broken)
    breaker.on_change(lambda t: gauge.append(int(breaker.state)))
    for _ in range(3):
        breaker.record(False, T0)
    assert breaker.state is OPEN
    assert gauge == [2]
    assert "listener failed" in caplog.text


@pytest.fixture
def eager_thread_switches() -> Iterator[None]:
    """Switch threads every microsecond so that an unguarded check-then-set would interleave."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("eager_thread_switches")
def test_concurrent_allow_in_half_open_lets_exactly_one_through() -> None:
    for _ in range(20):
        breaker = tripped()
        # a slow metrics listener widens the window an unguarded check-then-set would leave open
        breaker.on_change(lambda _: time.sleep(0.01))
        threads_n = 8
        barrier = threading.Barrier(threads_n)
        granted: list[bool] = []
        lock = threading.Lock()

        def probe() -> None:
            barrier.wait()
            allowed = breaker.allow(at(30))
            with lock:
                granted.append(allowed)

        threads = [threading.Thread(target=probe) for _ in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(granted) == [False] * (threads_n - 1) + [True]
        assert breaker.state is HALF_OPEN


@pytest.mark.usefixtures("eager_thread_switches")
def test_concurrent_failures_trip_once() -> None:
    policy = BreakerPolicy(failure_threshold=40)
    breaker = CircuitBreaker("sf-1", policy)
    seen: list[Transition] = []
    breaker.on_change(seen.append)
    barrier = threading.Barrier(60)

    def fail() -> None:
        barrier.wait()
        breaker.record(False, T0)

    threads = [threading.Thread(target=fail) for _ in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.trips == 1
    assert [(t.old, t.new) for t in seen] == [(CLOSED, OPEN)]


def test_batch_health_drives_the_breaker() -> None:
    breaker = CircuitBreaker("sf-1", POLICY)
    down = [Outcome.retry(f"wb-{i}", "HTTP_503", "down") for i in range(3)]
    rejected = [Outcome.failed(f"wb-{i}", "INVALID_CROSS_REFERENCE_KEY", "") for i in range(3)]
    for batch in (down, down, rejected, down, down):
        breaker.record(batch_health(batch), T0)
    assert breaker.state is CLOSED
    breaker.record(batch_health(down), T0)
    assert breaker.state is OPEN


def test_registry_keeps_one_breaker_per_connection_and_shares_listeners() -> None:
    registry = BreakerRegistry(POLICY)
    seen: list[Transition] = []
    first = registry.get("sf-1")
    registry.on_change(seen.append)
    second = registry.get("nf-2")
    assert registry.get("sf-1") is first
    assert first.policy is second.policy is POLICY

    for _ in range(3):
        first.record(False, T0)
    assert registry.states() == {"sf-1": OPEN, "nf-2": CLOSED}
    assert second.allow(T0)
    for _ in range(3):
        second.record(False, at(5))
    assert [(t.connection_id, t.new) for t in seen] == [("sf-1", OPEN), ("nf-2", OPEN)]


def test_policy_validation() -> None:
    policy = BreakerPolicy.model_validate({"reset_timeout": "PT1M", "max_reset_timeout": 600})
    assert policy.reset_timeout == timedelta(minutes=1)
    assert policy.max_reset_timeout == timedelta(minutes=10)
    with pytest.raises(ValidationError, match="max_reset_timeout must be at least reset_timeout"):
        BreakerPolicy(reset_timeout=timedelta(minutes=5), max_reset_timeout=timedelta(minutes=1))
    with pytest.raises(ValidationError):
        BreakerPolicy(failure_threshold=0)
    with pytest.raises(ValidationError):
        BreakerPolicy(growth=0.5)
