"""Schedules decide when writeback windows close: the seed cadences and the DST policy."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from writeback.ledger.rows import WritebackClass
from writeback.schedules import (
    DAILY_DEFAULT_AT,
    SUBSCRIBER_STATUS_DEFAULT,
    DailySchedule,
    EveryNDaysSchedule,
    HourlySchedule,
    IntervalSchedule,
    ManualSchedule,
    Schedule,
    WeeklySchedule,
    daily_default,
    next_fire,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


_SCHEDULE: TypeAdapter[Schedule] = TypeAdapter(Schedule)


def parse_schedule(config: dict, *, default_tz: str | None = None) -> Schedule:
    """A schedule as Writeback Settings validate it: wall-clock kinds take the account's zone."""
    data = dict(config)
    if default_tz is not None and data.get("kind") not in ("interval", "manual"):
        data.setdefault("tz", default_tz)
    return _SCHEDULE.validate_python(data)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every fire in (start, end], walked with next_fire as the ledger's windows do."""
    found, fire = [], next_fire(schedule, start)
    while fire is not None and fire <= end:
        found.append(fire)
        fire = next_fire(schedule, fire)
    return found


def daily(at: str, tz: str) -> DailySchedule:
    return parse_schedule({"kind": "daily", "at": at, "tz": tz})


def hourly(tz: str, minute: int = 0) -> HourlySchedule:
    return parse_schedule({"kind": "hourly", "minute": minute, "tz": tz})


# --- seed cadences -----------------------------------------------------------------------------


def test_subscriber_status_goes_out_every_ten_minutes_seed_000():
    assert SUBSCRIBER_STATUS_DEFAULT == IntervalSchedule(minutes=10)
    got = fires(SUBSCRIBER_STATUS_DEFAULT, utc(2026, 5, 1, 12, 3, 7), utc(2026, 5, 1, 13, 0))
    assert got == [utc(2026, 5, 1, 12, m) for m in (10, 20, 30, 40, 50)] + [utc(2026, 5, 1, 13, 0)]


def test_interval_is_aligned_to_the_utc_epoch_not_to_the_query():
    # Two instances asking at different moments must close the same windows.
    ten = SUBSCRIBER_STATUS_DEFAULT
    assert next_fire(ten, utc(2026, 5, 1, 12, 0, 1)) == utc(2026, 5, 1, 12, 10)
    assert next_fire(ten, utc(2026, 5, 1, 12, 9, 59)) == utc(2026, 5, 1, 12, 10)
    assert next_fire(ten, utc(2026, 5, 1, 12, 10)) == utc(2026, 5, 1, 12, 20)
    seven = IntervalSchedule(minutes=7)
    fire = next_fire(seven, utc(2026, 5, 1, 12, 0))
    assert (fire - EPOCH) % timedelta(minutes=7) == timedelta(0)
    assert timedelta(0) < fire - utc(2026, 5, 1, 12, 0) <= timedelta(minutes=7)


def test_interval_ignores_dst_in_every_zone():
    # Subscriber status is on real minutes: a fall-back night has 25 hours of ten-minute windows.
    ny_day = (utc(2026, 11, 1, 4, 0), utc(2026, 11, 2, 5, 0))  # local midnight to midnight
    assert len(fires(SUBSCRIBER_STATUS_DEFAULT, *ny_day)) == 25 * 6


def test_salesforce_activity_defaults_to_manual_and_never_fires_by_itself_seed_002():
    from writeback.adapters import salesforce

    assert salesforce.KIND.schedules("UTC")[WritebackClass.ACTIVITY] == ManualSchedule()
    assert next_fire(ManualSchedule(), utc(2026, 1, 1)) is None
    assert fires(ManualSchedule(), utc(2000, 1, 1), utc(2037, 1, 1)) == []


@pytest.mark.parametrize("tz", ["America/New_York", "Europe/London", "Australia/Sydney",
                                "Asia/Kolkata", "Australia/Lord_Howe"])
def test_tracking_and_personify_push_once_daily_at_0400_local_all_year_seeds_001_004(tz):
    schedule = daily_default(tz)
    assert schedule == DailySchedule(at=time(4, 0), tz=tz) and DAILY_DEFAULT_AT == time(4, 0)
    zone = ZoneInfo(tz)
    year = fires(schedule, datetime(2026, 1, 1, tzinfo=zone), datetime(2027, 1, 1, tzinfo=zone))
    local = [f.astimezone(zone) for f in year]
    assert [d.date() for d in local] == [date(2026, 1, 1) + timedelta(days=i) for i in range(365)]
    assert {d.time() for d in local} == {time(4, 0)}


@pytest.mark.parametrize(
    ("config", "after", "expected"),
    [
        ({"kind": "hourly", "minute": 15, "tz": "Europe/London"}, utc(2026, 7, 1, 9, 20),
         utc(2026, 7, 1, 10, 15)),
        ({"kind": "daily", "at": "18:00", "tz": "America/New_York"}, utc(2026, 7, 1, 21, 0),
         utc(2026, 7, 1, 22, 0)),
        ({"kind": "weekly", "day": "monday", "at": "09:00", "tz": "Europe/London"},
         utc(2026, 3, 25), utc(2026, 3, 30, 8, 0)),  # first Monday in BST
        ({"kind": "weekly", "day": "monday", "at": "09:00", "tz": "Europe/London"},
         utc(2026, 3, 18), utc(2026, 3, 23, 9, 0)),  # last Monday in GMT
        ({"kind": "every_n_days", "days": 3, "at": "06:00", "anchor": "2026-01-01",
          "tz": "America/New_York"}, utc(2026, 1, 1, 11, 0), utc(2026, 1, 4, 11, 0)),
    ],
)
def test_mailing_activity_cadences_seeds_000_002(config, after, expected):
    assert next_fire(parse_schedule(config), after) == expected


def test_every_n_days_counts_local_calendar_days_across_dst():
    # Jan 1 + 60 days = Mar 2; 72-hour steps would drift to 07:00 local after spring-forward.
    schedule = parse_schedule({"kind": "every_n_days", "days": 3, "at": "06:00",
                               "anchor": "2026-01-01", "tz": "America/New_York"})
    got = fires(schedule, utc(2026, 3, 1), utc(2026, 3, 12))
    assert got == [utc(2026, 3, 2, 11), utc(2026, 3, 5, 11),
                   utc(2026, 3, 8, 10), utc(2026, 3, 11, 10)]


def test_every_n_days_anchor_sets_the_phase_in_both_directions():
    schedule = parse_schedule({"kind": "every_n_days", "days": 3, "at": "06:00",
                               "anchor": "2026-01-01", "tz": "Asia/Kolkata"})
    assert next_fire(schedule, utc(2025, 12, 27)) == utc(2025, 12, 29, 0, 30)


# --- DST: spring-forward gap fires once at the end of the gap ----------------------------------


@pytest.mark.parametrize(
    ("at", "tz", "start", "end", "expected"),
    [
        # 02:30 does not exist in New York on 2026-03-08: fires at 03:00 EDT.
        ("02:30", "America/New_York", utc(2026, 3, 7), utc(2026, 3, 9, 12),
         [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]),
        # 01:30 does not exist in London on 2026-03-29: fires at 02:00 BST.
        ("01:30", "Europe/London", utc(2026, 3, 28), utc(2026, 3, 30, 12),
         [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]),
        # Southern hemisphere springs forward in October: 02:30 on 2026-10-04 → 03:00 AEDT.
        ("02:30", "Australia/Sydney", utc(2026, 10, 2), utc(2026, 10, 4, 23),
         [utc(2026, 10, 2, 16, 30), utc(2026, 10, 3, 16, 0), utc(2026, 10, 4, 15, 30)]),
        # Lord Howe skips only 02:00-02:30: 02:15 → 02:30 (+11:00).
        ("02:15", "Australia/Lord_Howe", utc(2026, 10, 2), utc(2026, 10, 4, 23),
         [utc(2026, 10, 2, 15, 45), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 15)]),
    ],
)
def test_a_skipped_wall_time_fires_once_when_the_gap_ends(at, tz, start, end, expected):
    assert fires(daily(at, tz), start, end) == expected


# --- DST: fall-back overlap fires once, at the first occurrence --------------------------------


@pytest.mark.parametrize(
    ("at", "tz", "start", "end", "expected"),
    [
        ("01:30", "America/New_York", utc(2026, 10, 31), utc(2026, 11, 2, 12),
         [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]),
        ("01:30", "Europe/London", utc(2026, 10, 24), utc(2026, 10, 26, 12),
         [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]),
        # Sydney falls back in April: 02:30 on 2026-04-05 happens at +11:00 then +10:00.
        ("02:30", "Australia/Sydney", utc(2026, 4, 3), utc(2026, 4, 5, 23),
         [utc(2026, 4, 3, 15, 30), utc(2026, 4, 4, 15, 30), utc(2026, 4, 5, 16, 30)]),
        # Lord Howe repeats only 01:30-02:00.
        ("01:45", "Australia/Lord_Howe", utc(2026, 4, 3), utc(2026, 4, 5, 23),
         [utc(2026, 4, 3, 14, 45), utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)]),
    ],
)
def test_a_repeated_wall_time_fires_once_at_its_first_occurrence(at, tz, start, end, expected):
    assert fires(daily(at, tz), start, end) == expected


def test_asking_between_the_two_occurrences_does_not_fire_the_second():
    schedule = daily("01:30", "America/New_York")
    first = utc(2026, 11, 1, 5, 30)  # 01:30 EDT; 01:30 EST is 06:30 UTC
    assert next_fire(schedule, first) == utc(2026, 11, 2, 6, 30)
    assert next_fire(schedule, utc(2026, 11, 1, 6, 0)) == utc(2026, 11, 2, 6, 30)


def test_weekly_on_a_dst_sunday_fires_once():
    schedule = parse_schedule({"kind": "weekly", "day": "sunday", "at": "01:30",
                               "tz": "America/New_York"})
    assert fires(schedule, utc(2026, 10, 30), utc(2026, 11, 9)) == [
        utc(2026, 11, 1, 5, 30), utc(2026, 11, 8, 6, 30)]
    schedule = parse_schedule({"kind": "weekly", "day": "sunday", "at": "02:30",
                               "tz": "America/New_York"})
    assert next_fire(schedule, utc(2026, 3, 5)) == utc(2026, 3, 8, 7, 0)


def test_every_n_days_on_a_gap_day_fires_when_the_gap_ends():
    schedule = parse_schedule({"kind": "every_n_days", "days": 2, "at": "02:30",
                               "anchor": "2026-10-02", "tz": "Australia/Sydney"})
    assert fires(schedule, utc(2026, 10, 2), utc(2026, 10, 6, 12)) == [
        utc(2026, 10, 3, 16, 0), utc(2026, 10, 5, 15, 30)]


# --- hourly ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "start", "local_readings"),
    [
        ("America/New_York", utc(2026, 11, 1, 3, 30),
         ["00:00-04:00", "01:00-04:00", "01:00-05:00", "02:00-05:00", "03:00-05:00"]),
        ("America/New_York", utc(2026, 3, 8, 4, 30),
         ["00:00-05:00", "01:00-05:00", "03:00-04:00", "04:00-04:00", "05:00-04:00"]),
        ("Europe/London", utc(2026, 10, 24, 22, 30),
         ["00:00+01:00", "01:00+01:00", "01:00+00:00", "02:00+00:00", "03:00+00:00"]),
        ("Australia/Sydney", utc(2026, 4, 4, 12, 30),
         ["00:00+11:00", "01:00+11:00", "02:00+11:00", "02:00+10:00", "03:00+10:00"]),
        ("Australia/Sydney", utc(2026, 10, 3, 13, 30),
         ["00:00+10:00", "01:00+10:00", "03:00+11:00", "04:00+11:00", "05:00+11:00"]),
    ],
)
def test_hourly_fires_each_real_hour_once_across_dst(tz, start, local_readings):
    got = fires(hourly(tz), start, start + timedelta(hours=5))
    readings = [f.astimezone(ZoneInfo(tz)).isoformat(timespec="minutes")[11:] for f in got]
    assert readings == local_readings
    assert all(b - a == timedelta(hours=1) for a, b in zip(got, got[1:]))


def test_hourly_minute_is_on_the_local_clock_in_half_hour_zones():
    assert fires(hourly("Asia/Kolkata", 0), utc(2026, 5, 1, 12), utc(2026, 5, 1, 14)) == [
        utc(2026, 5, 1, 12, 30), utc(2026, 5, 1, 13, 30)]
    assert fires(hourly("Asia/Kolkata", 30), utc(2026, 5, 1, 12), utc(2026, 5, 1, 14)) == [
        utc(2026, 5, 1, 13, 0), utc(2026, 5, 1, 14, 0)]


def test_hourly_in_lord_howe_follows_the_clock_through_half_hour_shifts():
    # Spring: 01:00 (+10:30) is followed by 03:00 (+11:00), 90 real minutes later.
    spring = fires(hourly("Australia/Lord_Howe", 0), utc(2026, 10, 3, 14), utc(2026, 10, 3, 17))
    assert spring == [utc(2026, 10, 3, 14, 30), utc(2026, 10, 3, 16, 0), utc(2026, 10, 3, 17, 0)]
    # Fall: 01:45 reads twice, 30 real minutes apart; each reading is its own instant.
    fall = fires(hourly("Australia/Lord_Howe", 45), utc(2026, 4, 4, 14), utc(2026, 4, 4, 17))
    assert fall == [utc(2026, 4, 4, 14, 45), utc(2026, 4, 4, 15, 15), utc(2026, 4, 4, 16, 15)]


# --- instants in, instants out -----------------------------------------------------------------


def test_naive_datetimes_are_rejected_naming_the_argument():
    with pytest.raises(ValueError, match="after must be timezone-aware"):
        next_fire(SUBSCRIBER_STATUS_DEFAULT, datetime(2026, 1, 1))


def test_aware_non_utc_input_is_accepted_and_output_is_utc():
    kolkata = datetime(2026, 5, 1, 18, 3, tzinfo=ZoneInfo("Asia/Kolkata"))  # 12:33 UTC
    fire = next_fire(SUBSCRIBER_STATUS_DEFAULT, kolkata)
    assert fire == utc(2026, 5, 1, 12, 40) and fire.tzinfo is UTC


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "loc", "reason"),
    [
        ({"kind": "daily", "at": "02:30", "tz": "Mars/Base"}, ("daily", "tz"),
         "unknown IANA time zone 'Mars/Base'"),
        ({"kind": "hourly", "tz": "localtime"}, ("hourly", "tz"), "unknown IANA time zone"),
        ({"kind": "daily", "at": "02:30"}, ("daily", "tz"), "Field required"),
        ({"kind": "daily", "at": "25:00", "tz": "UTC"}, ("daily", "at"),
         "'25:00' is not a time of day; expected HH:MM"),
        ({"kind": "daily", "at": "7pm", "tz": "UTC"}, ("daily", "at"), "not a time of day"),
        ({"kind": "interval", "minutes": 0}, ("interval", "minutes"), "greater than or equal to 1"),
        ({"kind": "interval", "minutes": -10}, ("interval", "minutes"),
         "greater than or equal to 1"),
        ({"kind": "interval", "minutes": 1441}, ("interval", "minutes"),
         "less than or equal to 1440"),
        ({"kind": "hourly", "minute": 60, "tz": "UTC"}, ("hourly", "minute"),
         "less than or equal to 59"),
        ({"kind": "every_n_days", "days": 0, "at": "06:00", "anchor": "2026-01-01", "tz": "UTC"},
         ("every_n_days", "days"), "greater than or equal to 1"),
        ({"kind": "every_n_days", "days": 2, "at": "06:00", "tz": "UTC"},
         ("every_n_days", "anchor"), "Field required"),
        ({"kind": "weekly", "day": "Funday", "at": "09:00", "tz": "UTC"}, ("weekly", "day"),
         "'monday', 'tuesday'"),
        ({"kind": "daily", "at": "02:30", "tz": "UTC", "time": "03:00"}, ("daily", "time"),
         "Extra inputs are not permitted"),
        ({"kind": "interval", "minutes": 10, "tz": "UTC"}, ("interval", "tz"),
         "Extra inputs are not permitted"),
        ({"kind": "fortnightly"}, (), "does not match any of the expected tags"),
        ({"every": "10m"}, (), "Unable to extract tag using discriminator 'kind'"),
    ],
)
def test_invalid_config_names_the_field_and_the_reason(config, loc, reason):
    with pytest.raises(ValidationError) as caught:
        parse_schedule(config)
    errors = caught.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == loc
    assert reason in errors[0]["msg"]
    if loc:
        assert ".".join(loc) in str(caught.value)


def test_every_configurable_kind_parses_from_toml():
    doc = tomllib.loads(
        """
        [subscriber]
        kind = "interval"
        minutes = 10
        [activity]
        kind = "weekly"
        day = "Friday"
        at = 17:30:00
        tz = "Australia/Sydney"
        [tracking]
        kind = "every_n_days"
        days = 3
        at = "06:00"
        anchor = 2026-01-01
        """
    )
    assert parse_schedule(doc["subscriber"]) == SUBSCRIBER_STATUS_DEFAULT
    assert parse_schedule(doc["activity"]) == WeeklySchedule(day="friday", at=time(17, 30),
                                                             tz="Australia/Sydney")
    assert parse_schedule(doc["tracking"], default_tz="Asia/Kolkata") == EveryNDaysSchedule(
        days=3, at=time(6, 0), anchor=date(2026, 1, 1), tz="Asia/Kolkata")
    with pytest.raises(ValidationError, match="daily.at"):
        parse_schedule(tomllib.loads('kind = "daily"\nat = 02:30:15\ntz = "UTC"'))


def test_account_zone_is_inherited_but_an_explicit_zone_wins():
    inherited = parse_schedule({"kind": "hourly"}, default_tz="Asia/Kolkata")
    assert inherited == HourlySchedule(minute=0, tz="Asia/Kolkata")
    explicit = parse_schedule({"kind": "daily", "at": "09:00", "tz": "Europe/London"},
                              default_tz="Asia/Kolkata")
    assert explicit.tz == "Europe/London"
    assert parse_schedule({"kind": "manual"}, default_tz="Asia/Kolkata") == ManualSchedule()


@pytest.mark.parametrize(
    "schedule",
    [SUBSCRIBER_STATUS_DEFAULT, ManualSchedule(), daily_default("Europe/London"),
     HourlySchedule(minute=45, tz="Asia/Kathmandu"),
     WeeklySchedule(day="sunday", at=time(1, 30), tz="America/New_York"),
     EveryNDaysSchedule(days=5, at=time(23, 59), anchor=date(2025, 2, 28), tz="Pacific/Chatham")],
)
def test_config_round_trips_through_json(schedule):
    dumped = schedule.model_dump(mode="json")
    assert parse_schedule(dumped) == schedule
    assert "at" not in dumped or len(dumped["at"]) == 5


def test_schedules_are_frozen_and_hashable():
    with pytest.raises(ValidationError):
        SUBSCRIBER_STATUS_DEFAULT.minutes = 5
    assert len({daily_default("UTC"), daily_default("UTC")}) == 1


# --- properties --------------------------------------------------------------------------------

ZONES = sorted(available_timezones() - {"localtime"})
# Shifts of 30 minutes and 2 hours, midnight transitions, a skipped day, southern hemisphere.
AWKWARD_ZONES = ["America/New_York", "Europe/London", "Australia/Sydney", "Asia/Kolkata",
                 "Australia/Lord_Howe", "Antarctica/Troll", "America/Santiago", "America/Havana",
                 "Pacific/Apia", "Pacific/Chatham", "Asia/Kathmandu"]
SPAN_START = datetime(2000, 1, 1)
SPAN_END = datetime(2037, 12, 31)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def offset_at(instant: datetime, tz: ZoneInfo) -> timedelta:
    return instant.astimezone(tz).utcoffset()


@lru_cache(maxsize=4096)
def transitions(zone: str, year: int) -> tuple[datetime, ...]:
    """Offset changes in one year, found by scanning, to aim examples at DST edges."""
    tz = ZoneInfo(zone)
    found = []
    t, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    while t < end:
        nxt = t + timedelta(hours=6)
        if offset_at(t, tz) != offset_at(nxt, tz):
            lo, hi = t, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if offset_at(mid, tz) == offset_at(lo, tz) else (lo, mid)
            found.append(hi.replace(microsecond=0))
        t = nxt
    return tuple(found)


@st.composite
def settings_and_start(draw):
    """A zone, a start instant and a wall time; half the time both sit at one of the zone's DST
    transitions, since random instants almost never land in a gap or an overlap."""
    zone = draw(st.one_of(st.sampled_from(ZONES), st.sampled_from(AWKWARD_ZONES)))
    start = draw(st.datetimes(SPAN_START, SPAN_END, timezones=st.just(UTC)))
    at = draw(st.builds(time, st.integers(0, 23), st.integers(0, 59)))
    edge = None
    if (edges := transitions(zone, start.year)) and draw(st.booleans()):
        edge = draw(st.sampled_from(edges))
        start = edge - timedelta(minutes=draw(st.integers(0, 4 * 24 * 60)))
        reading_before = (edge + offset_at(edge - timedelta(seconds=1), ZoneInfo(zone)))
        at = (reading_before + timedelta(minutes=draw(st.integers(-90, 90)))).time()
        at = at.replace(second=0, microsecond=0)
    return zone, start, at, edge


@st.composite
def wall_clock_schedules(draw):
    zone, start, at, edge = draw(settings_and_start())
    edge_day = (edge or start).astimezone(ZoneInfo(zone)).date()
    kind = draw(st.sampled_from(["daily", "weekly", "every_n_days"]))
    if kind == "daily":
        return DailySchedule(at=at, tz=zone), start
    if kind == "weekly":
        day = draw(st.one_of(st.just(WEEKDAYS[edge_day.weekday()]), st.sampled_from(WEEKDAYS)))
        return WeeklySchedule(day=day, at=at, tz=zone), start
    days = draw(st.one_of(st.integers(1, 10), st.integers(1, 366)))
    phase = draw(st.sampled_from([0, 0, 1]))  # mostly on the edge day's cycle
    anchor = edge_day - timedelta(days=days * draw(st.integers(-50, 50)) + phase)
    return EveryNDaysSchedule(days=days, at=at, anchor=anchor, tz=zone), start


@st.composite
def hourly_schedules(draw):
    zone, start, at, _ = draw(settings_and_start())
    return HourlySchedule(minute=at.minute, tz=zone), start


interval_schedules = st.tuples(
    st.builds(IntervalSchedule, minutes=st.one_of(st.sampled_from([1, 5, 10, 15, 60, 1440]),
                                                  st.integers(1, 1440))),
    st.datetimes(SPAN_START, SPAN_END, timezones=st.just(UTC)),
)
any_recurring = st.one_of(wall_clock_schedules(), hourly_schedules(), interval_schedules)


def cycle_dates(schedule, first: date, last: date):
    day = first
    while day <= last:
        if isinstance(schedule, DailySchedule):
            yield day
        elif isinstance(schedule, WeeklySchedule):
            if WEEKDAYS[day.weekday()] == schedule.day:
                yield day
        elif (day - schedule.anchor).days % schedule.days == 0:
            yield day
        day += timedelta(days=1)


def expected_fire_for(day: date, at: time, tz: ZoneInfo) -> datetime:
    """Oracle: the configured wall time's first occurrence, or, if the clocks skip it, the
    first instant whose reading is past it, found by stepping back from beyond the gap."""
    target = datetime.combine(day, at)
    instant = target.replace(tzinfo=tz).astimezone(UTC)
    if wall(instant, tz) == target:
        return instant
    for step in (timedelta(minutes=1), timedelta(seconds=1)):
        while wall(instant - step, tz) >= target:
            instant -= step
    return instant


def meets_configured_time(schedule, fire: datetime) -> bool:
    tz = ZoneInfo(schedule.tz)
    local = fire.astimezone(tz)
    for back in range(3):
        day = local.date() - timedelta(days=back)
        if not list(cycle_dates(schedule, day, day)):
            continue
        target = datetime.combine(day, schedule.at)
        if wall(fire, tz) == target and local.fold == 0:
            return True
        skipped = wall(target.replace(tzinfo=tz).astimezone(UTC), tz) != target
        if skipped and wall(fire - timedelta(seconds=1), tz) < target < wall(fire, tz):
            return True
    return False


@PROPERTY
@given(any_recurring)
def test_prop_next_fire_is_a_utc_instant_strictly_after(case):
    schedule, start = case
    fire = next_fire(schedule, start)
    assert fire is not None and fire > start and fire.tzinfo is UTC


@PROPERTY
@given(wall_clock_schedules())
def test_prop_wall_clock_fires_at_the_configured_local_time_or_the_end_of_its_gap(case):
    schedule, start = case
    fire = start
    for _ in range(4):
        fire = next_fire(schedule, fire)
        assert meets_configured_time(schedule, fire), (schedule, fire)


@PROPERTY
@given(wall_clock_schedules(), st.integers(1, 40))
def test_prop_wall_clock_fires_match_an_independent_per_date_enumeration(case, periods):
    schedule, start = case
    step = {"daily": 1, "weekly": 7}.get(schedule.kind) or schedule.days
    end = start + timedelta(days=step * min(periods, 3 if step > 30 else periods))
    tz = ZoneInfo(schedule.tz)
    first = wall(start, tz).date() - timedelta(days=2)
    last = wall(end, tz).date() + timedelta(days=1)
    candidates = {expected_fire_for(d, schedule.at, tz) for d in cycle_dates(schedule, first, last)}
    expected = sorted(f for f in candidates if start < f <= end)
    got = fires(schedule, start, end)
    assert got == expected
    assert all(a < b for a, b in zip(got, got[1:]))


@PROPERTY
@given(hourly_schedules(), st.integers(1, 72))
def test_prop_hourly_fires_at_every_instant_the_local_clock_reads_the_minute(case, hours):
    schedule, start = case
    end = start + timedelta(hours=hours)
    tz = ZoneInfo(schedule.tz)
    expected = set()
    reading = start.replace(tzinfo=None, minute=schedule.minute, second=0, microsecond=0)
    reading -= timedelta(hours=16)
    while reading <= end.replace(tzinfo=None) + timedelta(hours=16):
        for fold in (0, 1):
            instant = reading.replace(tzinfo=tz, fold=fold).astimezone(UTC)
            if wall(instant, tz) == reading and start < instant <= end:
                expected.add(instant)
        reading += timedelta(hours=1)
    got = fires(schedule, start, end)
    assert got == sorted(expected)
    assert all(a < b for a, b in zip(got, got[1:]))


@PROPERTY
@given(interval_schedules, st.integers(1, 50))
def test_prop_interval_fires_are_epoch_multiples_one_period_apart(case, count):
    schedule, start = case
    period = timedelta(minutes=schedule.minutes)
    got = fires(schedule, start, start + period * count)
    assert len(got) == count
    assert all((f - EPOCH) % period == timedelta(0) for f in got)
    assert timedelta(0) < got[0] - start <= period
    assert all(b - a == period for a, b in zip(got, got[1:]))


@settings(max_examples=50, deadline=None)
@given(st.datetimes(SPAN_START, SPAN_END, timezones=st.just(UTC)))
def test_prop_manual_never_fires(start):
    assert next_fire(ManualSchedule(), start) is None
