"""When one charging profile is in force: the run of its schedule that covers an instant
(Absolute, Recurring Daily/Weekly, Relative), the period active then, and the instants at
which that may change. Pure; schedule.py combines profiles on top of it.

Time here is whole seconds since the Unix epoch (int). OCPP carries whole seconds on the
wire and EVerest libocpp floors every instant to the second too; working in ints keeps
period boundaries exact and comparable (a startPeriod is an integer number of seconds).
Flooring moves a change by less than a second, which no charger can act on anyway.

Recurrence is in UTC: Daily is every 86,400 s and Weekly every 604,800 s from
startSchedule. OCPP times are UTC, so a daylight-saving change does not move a
recurring schedule; a CSMS that wants "22:00 local" all year sends a new profile.

"Floating" profiles have no fixed start: a Relative profile with no transaction on the
EVSE and an Absolute one without startSchedule. Both start at the start of the
composite schedule being computed (EVerest does so for Relative in
GetCompositeSchedule). A caller with no composite start (next_change) passes
floating=None: such a profile's own period boundaries are then not instants of change,
because wherever one looks from, it is in its first period.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from agent.blocks.smart_charging.model import (DAILY, RECURRING, RELATIVE, WEEKLY,
                                               ChargingProfile, Period)

DAY = 86_400
WEEK = 7 * DAY
RECURRENCE_S = {DAILY: DAY, WEEKLY: WEEK}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECOND = timedelta(seconds=1)


def to_seconds(when: datetime) -> int:
    """Whole seconds since the epoch, floored; exact (no float rounding at microseconds)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when!r}: charging schedule times must be aware (UTC)")
    return (when - _EPOCH) // _SECOND


def from_seconds(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def run_at(profile: ChargingProfile, t: int, floating: int | None,
           tx_start: int | None) -> tuple[int, int | None] | None:
    """(start, end) of the run of the profile's schedule that began most recently at or
    before t; end is exclusive, None when the run never ends. None if no run began yet.

    Only schedules[0] counts (the others are for ISO 15118). validFrom/validTo are not
    looked at here (see valid_at)."""
    schedule = profile.schedules[0]
    if profile.kind == RECURRING:
        length = RECURRENCE_S.get(profile.recurrency or "")
        if length is None or schedule.start_schedule is None:
            # Nothing to repeat from: K01 requires both; EVerest also never applies it.
            return None
        first = to_seconds(schedule.start_schedule)
        if t < first:
            # Before the first occurrence nothing runs. (EVerest counts back from t
            # regardless of startSchedule; we take startSchedule as the real beginning.)
            return None
        start = first + (t - first) // length * length
        # A run longer than the recurrence is cut at the next occurrence.
        run = length if schedule.duration is None else min(schedule.duration, length)
        return start, start + run
    start_or_none = _fixed_start(profile, floating, tx_start)
    if start_or_none is None or t < start_or_none:
        return None
    end = None if schedule.duration is None else start_or_none + schedule.duration
    return start_or_none, end


def valid_at(profile: ChargingProfile, t: int) -> bool:
    """validFrom <= t < validTo, a missing bound being no bound."""
    if profile.valid_from is not None and t < to_seconds(profile.valid_from):
        return False
    return profile.valid_to is None or t < to_seconds(profile.valid_to)


def active_period(profile: ChargingProfile, t: int, floating: int | None,
                  tx_start: int | None) -> Period | None:
    """The period of the profile in force at t, or None if the profile is not valid then
    or its schedule is not running (not begun, or ended)."""
    if not profile.schedules or not valid_at(profile, t):
        return None
    run = run_at(profile, t, t if floating is None else floating, tx_start)
    if run is None or (run[1] is not None and t >= run[1]):
        return None
    elapsed = t - run[0]
    found: Period | None = None
    # The last period that has started; a scan, not bisect: periods are few (the
    # device model's PeriodsPerSchedule) and a malformed order must not mislead.
    for period in profile.schedules[0].periods:
        if period.start_period <= elapsed and (found is None
                                               or period.start_period >= found.start_period):
            found = period
    return found


def changes(profile: ChargingProfile, lo: int, hi: int | None, floating: int | None,
            tx_start: int | None) -> Iterator[int]:
    """Instants b with lo < b < hi at which this profile's active period may change:
    validFrom, validTo, period starts, run ends, recurrences. With hi None, at least the
    earliest such instant after lo is among them (not necessarily all later ones).

    May include instants where nothing actually changes (two equal periods in a row);
    never misses one. Boundaries outside the validity window are left out: the profile
    is not in force there, so its schedule cannot change anything."""
    if not profile.schedules:
        return
    valid_from = None if profile.valid_from is None else to_seconds(profile.valid_from)
    valid_to = None if profile.valid_to is None else to_seconds(profile.valid_to)

    def inside(b: int) -> bool:
        return lo < b and (hi is None or b < hi)

    for bound in (valid_from, valid_to):
        if bound is not None and inside(bound):
            yield bound
    for b in _schedule_changes(profile, lo, hi, floating, tx_start):
        if inside(b) and (valid_from is None or b > valid_from) and (
                valid_to is None or b < valid_to):
            yield b


def _schedule_changes(profile: ChargingProfile, lo: int, hi: int | None,
                      floating: int | None, tx_start: int | None) -> Iterator[int]:
    schedule = profile.schedules[0]
    offsets = sorted({p.start_period for p in schedule.periods})
    if profile.kind == RECURRING:
        length = RECURRENCE_S.get(profile.recurrency or "")
        if length is None or schedule.start_schedule is None:
            return
        first = to_seconds(schedule.start_schedule)
        run = length if schedule.duration is None else min(schedule.duration, length)
        k_lo = max(0, (lo - first) // length)
        # Unbounded: the run covering lo and the next one hold the next change (the
        # next occurrence's start is itself a change, less than one period away).
        k_hi = k_lo + 1 if hi is None else (hi - 1 - first) // length
        for k in range(k_lo, k_hi + 1):
            start = first + k * length
            yield from (start + o for o in offsets if o < run)
            yield start + run
        return
    start = _fixed_start(profile, floating, tx_start)
    if start is None:
        return   # floating and no composite start: it sits in its first period
    end = None if schedule.duration is None else start + schedule.duration
    yield from (start + o for o in offsets if end is None or start + o < end)
    if end is not None:
        yield end


def _fixed_start(profile: ChargingProfile, floating: int | None,
                 tx_start: int | None) -> int | None:
    """Start of an Absolute or Relative schedule (None: floating and no anchor given)."""
    if profile.kind == RELATIVE:
        return tx_start if tx_start is not None else floating
    start_schedule = profile.schedules[0].start_schedule
    # Absolute without startSchedule: lenient, from the composite's start (EVerest
    # uses validFrom, else "now"; K01 requires startSchedule for Absolute anyway).
    return floating if start_schedule is None else to_seconds(start_schedule)
