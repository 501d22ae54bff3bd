"""Per-connection circuit breakers, so a CRM that is down is probed, not hammered.

While a connection's breaker is open the flusher leaves its rows alone: they stay pending, keep
their attempts, and are written once the CRM is back, instead of burning retries against an
outage. Whether a flush was healthy is `retries.batch_health`'s call; the breaker only counts.

Time is always passed in, so the breaker never sleeps or reads a clock and tests can drive it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

log = logging.getLogger(__name__)


class BreakerState(IntEnum):
    """Values are the `writeback_circuit_breaker_state` gauge's: 0 closed, 1 half-open, 2 open."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class BreakerPolicy(BaseModel):
    """When a breaker opens and how long it stays open. Durations accept seconds or ISO 8601."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    failure_threshold: int = Field(5, ge=1, description="Consecutive unhealthy calls that open it.")
    reset_timeout: timedelta = Field(timedelta(seconds=30), gt=timedelta(0))
    max_reset_timeout: timedelta = Field(timedelta(minutes=10))
    growth: float = Field(2.0, ge=1.0, description="Open period factor after a failed trial.")

    @model_validator(mode="after")
    def _ordered(self) -> BreakerPolicy:
        if self.max_reset_timeout < self.reset_timeout:
            raise ValueError("max_reset_timeout must be at least reset_timeout")
        return self


@dataclass(frozen=True, slots=True)
class Transition:
    connection_id: str
    old: BreakerState
    new: BreakerState
    at: datetime


Listener = Callable[[Transition], None]


class CircuitBreaker:
    """CLOSED → OPEN after `failure_threshold` consecutive unhealthy calls; OPEN → HALF_OPEN
    once the open period has passed; HALF_OPEN lets one trial call through, whose health closes the
    breaker or opens it again for `growth` times longer (up to `max_reset_timeout`).

    A trial that is never recorded (the flusher died between `allow` and `record`) would leave
    the connection stuck, so a trial older than the open period is given up and another granted.
    Results recorded while OPEN come from calls let through before it opened and are ignored.

    Listeners are called under the breaker's lock, so they see transitions in order; they should
    be quick (set a gauge) and may read the breaker, but must not call `allow` or `record`.
    """

    def __init__(self, connection_id: str, policy: BreakerPolicy | None = None) -> None:
        self.connection_id = connection_id
        self.policy = policy or BreakerPolicy()
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._open_for = self.policy.reset_timeout
        self._opened_at: datetime | None = None
        self._trial_at: datetime | None = None
        self._trips = 0

    @property
    def state(self) -> BreakerState:
        """The state as last changed by `allow` or `record`; an expired open period shows as
        OPEN until the next `allow` turns it HALF_OPEN."""
        with self._lock:
            return self._state

    @property
    def trips(self) -> int:
        """Times the breaker opened, reopening after a failed trial included."""
        with self._lock:
            return self._trips

    @property
    def open_for(self) -> timedelta:
        """The current (or next) open period."""
        with self._lock:
            return self._open_for

    def on_change(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def allow(self, now: datetime) -> bool:
        """Whether a call may go to the CRM now. In HALF_OPEN only the first caller gets True."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.OPEN:
                assert self._opened_at is not None
                if now < self._opened_at + self._open_for:
                    return False
                self._change(BreakerState.HALF_OPEN, now)
            if self._trial_at is not None and now < self._trial_at + self._open_for:
                return False
            self._trial_at = now
            return True

    def record(self, healthy: bool, now: datetime) -> None:
        """Count one finished call (see `retries.batch_health` for what healthy means)."""
        with self._lock:
            if self._state is BreakerState.OPEN:
                return
            if self._state is BreakerState.HALF_OPEN:
                if healthy:
                    self._open_for = self.policy.reset_timeout
                    self._consecutive = 0
                    self._change(BreakerState.CLOSED, now)
                else:
                    grown = self._open_for * self.policy.growth
                    self._open(min(grown, self.policy.max_reset_timeout), now)
                return
            if healthy:
                self._consecutive = 0
                return
            self._consecutive += 1
            if self._consecutive >= self.policy.failure_threshold:
                self._open(self.policy.reset_timeout, now)

    def _open(self, period: timedelta, now: datetime) -> None:
        self._open_for = period
        self._opened_at = now
        self._consecutive = 0
        self._trips += 1
        self._change(BreakerState.OPEN, now)

    def _change(self, new: BreakerState, now: datetime) -> None:
        old, self._state = self._state, new
        self._trial_at = None
        transition = Transition(self.connection_id, old, new, now)
        for listener in self._listeners:
            try:
                listener(transition)
            except Exception:
                log.exception("circuit breaker listener failed on %s", transition)


class BreakerRegistry:
    """One breaker per connection id, made on first use with a shared policy and listeners."""

    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._listeners: list[Listener] = []

    def get(self, connection_id: str) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(connection_id)
            if breaker is None:
                breaker = self._breakers[connection_id] = CircuitBreaker(connection_id, self.policy)
                for listener in self._listeners:
                    breaker.on_change(listener)
            return breaker

    def on_change(self, listener: Listener) -> None:
        """Listen to every breaker, present and future."""
        with self._lock:
            self._listeners.append(listener)
            for breaker in self._breakers.values():
                breaker.on_change(listener)

    def states(self) -> dict[str, BreakerState]:
        with self._lock:
            breakers = list(self._breakers.values())
        return {b.connection_id: b.state for b in breakers}
