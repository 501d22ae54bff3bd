"""When writeback windows close: one schedule per (CRM connection, writeback class).

A pending writeback's window closes at its schedule's next fire instant after the event was
ingested; the flusher then writes the batch. Config has one shape, tagged by ``kind``, the same
in TOML and in dicts::

    {"kind": "interval", "minutes": 10}                      # UTC-epoch aligned, no tz
    {"kind": "manual"}                                       # only "send activity now" closes it
    {"kind": "hourly", "minute": 0, "tz": "Asia/Kolkata"}
    {"kind": "daily", "at": "02:30", "tz": "America/New_York"}
    {"kind": "weekly", "day": "monday", "at": "09:00", "tz": "Europe/London"}
    {"kind": "every_n_days", "days": 3, "at": "06:00", "anchor": "2026-01-01",
     "tz": "Australia/Sydney"}

``at`` is "HH:MM" (24-hour) or a TOML local time; ``tz`` is an IANA name, which settings fill in
with the account's zone when a connection leaves it out. Every kind but manual fires forever, and
settings allow manual only for mailing activity, whose windows "send activity now" closes: no
configuration that passes validation can leave a subscriber-status window open for good.

Wall-clock policy (all in the schedule's ``tz``, via :mod:`zoneinfo`):

* A wall time the clocks skip (02:30 on a spring-forward night in New York) fires once, at the
  instant the gap ends (03:00 local): the earliest moment the configured time has passed.
* A wall time the clocks repeat (01:30 on a fall-back night) fires once, at its first
  occurrence (``fold=0``).
* ``hourly`` fires at every real instant the local clock reads ``HH:minute``. The minute is on
  the local clock, so ``minute=0`` in Asia/Kolkata (+05:30) is :30 past the UTC hour. On a
  fall-back night the repeated hour is a real hour and fires; on a spring-forward night the
  skipped hour never existed and nothing is lost. Spacing stays 60 minutes wherever offsets
  change by whole hours; where they change by 30 minutes (Australia/Lord_Howe) the fires around
  a transition are 30 or 90 minutes apart, never twice at one instant.
* ``every_n_days`` counts calendar days in ``tz`` from ``anchor``; the anchor sets the phase,
  so dates before it on the same cycle fire too.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)

__all__ = [
    "DAILY_DEFAULT_AT",
    "SUBSCRIBER_STATUS_DEFAULT",
    "DailySchedule",
    "EveryNDaysSchedule",
    "HourlySchedule",
    "IntervalSchedule",
    "ManualSchedule",
    "Schedule",
    "WeeklySchedule",
    "cadence",
    "daily_default",
    "next_fire",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_HOUR = timedelta(hours=1)
_SECOND = timedelta(seconds=1)
_HH_MM = re.compile(r"(\d{2}):(\d{2})")
_MODEL = ConfigDict(frozen=True, extra="forbid")


def _check_tz(name: str) -> str:
    # "localtime" loads on many hosts but names the server's zone, never an account's.
    if name != "localtime":
        try:
            ZoneInfo(name)
            return name
        except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
            pass
    raise ValueError(f"unknown IANA time zone {name!r}")


def _parse_at(value: object) -> time:
    if isinstance(value, time):  # TOML local times arrive as datetime.time
        if value.tzinfo is None and value.second == 0 and value.microsecond == 0:
            return value
    elif isinstance(value, str) and (match := _HH_MM.fullmatch(value.strip())):
        hour, minute = int(match[1]), int(match[2])
        if hour < 24 and minute < 60:
            return time(hour, minute)
    raise ValueError(f"{value!r} is not a time of day; expected HH:MM from 00:00 to 23:59")


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


TimeZoneName = Annotated[str, AfterValidator(_check_tz)]
WallTime = Annotated[
    time,
    BeforeValidator(_parse_at),
    PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str),
]
Weekday = Annotated[
    Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    BeforeValidator(_lower),
]


class IntervalSchedule(BaseModel):
    """Every ``minutes`` on the grid counted from the UTC epoch, so every instance computes the
    same window boundaries without coordinating. Capped at a day: longer cadences belong to
    wall-clock kinds, which follow the account's calendar."""

    model_config = _MODEL
    kind: Literal["interval"] = "interval"
    minutes: int = Field(ge=1, le=1440)


class ManualSchedule(BaseModel):
    """Never fires by itself; windows close only on an explicit "send activity now"."""

    model_config = _MODEL
    kind: Literal["manual"] = "manual"


class HourlySchedule(BaseModel):
    model_config = _MODEL
    kind: Literal["hourly"] = "hourly"
    minute: int = Field(default=0, ge=0, le=59)
    tz: TimeZoneName


class DailySchedule(BaseModel):
    model_config = _MODEL
    kind: Literal["daily"] = "daily"
    at: WallTime
    tz: TimeZoneName


class WeeklySchedule(BaseModel):
    model_config = _MODEL
    kind: Literal["weekly"] = "weekly"
    day: Weekday
    at: WallTime
    tz: TimeZoneName


class EveryNDaysSchedule(BaseModel):
    """The "day interval" of seed 000. A year is the cap: beyond it a writeback is not a sync."""

    model_config = _MODEL
    kind: Literal["every_n_days"] = "every_n_days"
    days: int = Field(ge=1, le=366)
    at: WallTime
    anchor: date
    tz: TimeZoneName


Recurring = IntervalSchedule | HourlySchedule | DailySchedule | WeeklySchedule | EveryNDaysSchedule
Schedule = Annotated[Recurring | ManualSchedule, Field(discriminator="kind")]

SUBSCRIBER_STATUS_DEFAULT = IntervalSchedule(minutes=10)
"""Unsubscribe, resubscribe and bad email go out every ten minutes (seed 000)."""

DAILY_DEFAULT_AT = time(4, 0)
"""The once-daily pushes (seeds 001, 004) go at 04:00 by default: 04:00 is after the day's activity and
outside every common DST gap or overlap (US 02:00, EU 01:00 UTC, Australia 02:00-03:00), so the
default never depends on the gap/overlap policy."""


def daily_default(tz: str) -> DailySchedule:
    """The once-daily default schedule (seeds 001, 004); a factory because the time of day is
    the account's, so there is no zone-free constant to share."""
    return DailySchedule(at=DAILY_DEFAULT_AT, tz=tz)


def cadence(schedule: Schedule) -> timedelta | None:
    """How often a schedule fires, to hold it to a seed's cadence ("every ten minutes"): the
    nominal gap between fires (interval: its minutes, hourly: an hour, daily: a day, weekly: a
    week, every_n_days: N days); None for manual, which never fires. Nominal, so a daily schedule
    is once a day also on a 25-hour clock-change day."""
    return None if isinstance(schedule, ManualSchedule) else _period(schedule)


def next_fire(schedule: Schedule, after: datetime) -> datetime | None:
    """The first fire instant strictly after ``after``, in UTC; None for manual schedules.

    Strictly after, so feeding each result back in walks the fires without repeating one.
    """
    after = _utc(after, "after")
    if isinstance(schedule, ManualSchedule):
        return None
    return _next(schedule, after)


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC); got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _next(schedule: Recurring, after: datetime) -> datetime:
    if isinstance(schedule, IntervalSchedule):
        period = timedelta(minutes=schedule.minutes)
        return EPOCH + ((after - EPOCH) // period + 1) * period
    tz = ZoneInfo(schedule.tz)
    if isinstance(schedule, HourlySchedule):
        return _next_hourly(tz, schedule.minute, after)
    if isinstance(schedule, DailySchedule):
        return _next_on_cycle(tz, schedule.at, EPOCH.date(), 1, after)
    if isinstance(schedule, WeeklySchedule):
        a_monday = date(1970, 1, 5)
        first = a_monday + timedelta(days=WEEKDAYS.index(schedule.day))
        return _next_on_cycle(tz, schedule.at, first, 7, after)
    return _next_on_cycle(tz, schedule.at, schedule.anchor, schedule.days, after)


def _period(schedule: Recurring) -> timedelta:
    if isinstance(schedule, IntervalSchedule):
        return timedelta(minutes=schedule.minutes)
    if isinstance(schedule, HourlySchedule):
        return _HOUR
    if isinstance(schedule, DailySchedule):
        return timedelta(days=1)
    if isinstance(schedule, WeeklySchedule):
        return timedelta(days=7)
    return timedelta(days=schedule.days)


def _next_on_cycle(tz: ZoneInfo, at: time, anchor: date, step: int, after: datetime) -> datetime:
    # Each date's fire is the first instant its clock reads at least `at` on that date, so no
    # date before the one `after` reads on can still be ahead of `after`.
    start = after.astimezone(tz).date()
    day = start + timedelta(days=(anchor - start).days % step)
    while (fire := _resolve(tz, datetime.combine(day, at))) <= after:
        day += timedelta(days=step)
    return fire


def _resolve(tz: ZoneInfo, wall: datetime) -> datetime:
    """The one instant a configured wall time stands for: its first occurrence when clocks fall
    back, the end of the gap when they spring forward over it."""
    first = wall.replace(tzinfo=tz).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # In a gap, fold=0 applies the offset from before the transition (landing after it) and
    # fold=1 the offset from after it (landing before it), so the transition lies between.
    return _transition(tz, wall.replace(tzinfo=tz, fold=1).astimezone(UTC), first)


def _next_hourly(tz: ZoneInfo, minute: int, after: datetime) -> datetime:
    t = after
    while True:
        offset = _offset(tz, t)
        reading = t + offset  # the local clock, as a UTC-tagged value for arithmetic only
        mark = reading.replace(minute=minute, second=0, microsecond=0)
        if mark <= reading:
            mark += _HOUR
        candidate = mark - offset
        if _offset(tz, candidate) == offset:
            return candidate
        # The offset changed before the clock reached the mark; continue from the transition,
        # which is itself a fire if the new offset makes the clock read HH:minute there.
        t = _transition(tz, t, candidate)
        reading = t + _offset(tz, t)
        if reading.minute == minute and reading.second == 0:
            return t


def _offset(tz: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None  # ZoneInfo always knows its offset
    return offset


def _transition(tz: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """The first whole second in ``(lo, hi]`` whose UTC offset differs from ``lo``'s; tzdata
    transitions fall on whole seconds, so bisecting seconds finds the exact instant."""
    before = _offset(tz, lo)
    low = (lo - EPOCH) // _SECOND
    high = -((EPOCH - hi) // _SECOND)
    while high - low > 1:
        mid = (low + high) // 2
        if _offset(tz, EPOCH + mid * _SECOND) == before:
            low = mid
        else:
            high = mid
    return EPOCH + high * _SECOND
