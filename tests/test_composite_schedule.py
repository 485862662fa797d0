"""The composite charging schedule (K01, K08): worked examples of each rule, the wire
form against the official schema, and properties over random profile sets checked
against a naive point-by-point reading of the rules written here. Pure: no I/O, no clock."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.messages import MessageType, get_validator

from agent.blocks.smart_charging.model import (ABSOLUTE, DAILY, DEFAULT_PHASES, EXTERNAL,
                                               RECURRING, RELATIVE, STATION_MAX, TX,
                                               TX_DEFAULT, WEEKLY, ChargingProfile,
                                               Installed, Period, Schedule)
from agent.blocks.smart_charging.schedule import (Composite, EvseLimits, TxContext,
                                                  composite_schedule, limit_at, next_change)
from agent.clock import parse_datetime

UTC = timezone.utc
T0 = datetime(2026, 3, 2, tzinfo=UTC)          # a Monday, 00:00 UTC
H, MIN, DAY, WEEK = 3600, 60, 86_400, 7 * 86_400
EVSE3 = EvseLimits(32, 3, 230)                 # 22,080 W
EVSE1 = EvseLimits(32, 1, 230)                 # 7,360 W
ONE = {1: EVSE3}
TWO = {1: EVSE3, 2: EvseLimits(16, 1, 230)}

_ids = itertools.count(1)


def at(seconds: float = 0, base: datetime = T0) -> datetime:
    return base + timedelta(seconds=seconds)


def profile(purpose: str, *periods: tuple[int, float] | tuple[int, float, int], stack: int = 0,
            kind: str = ABSOLUTE, start: datetime | None = T0, duration: int | None = None,
            unit: str = "A", recurrency: str | None = None, valid_from: datetime | None = None,
            valid_to: datetime | None = None, tx_id: str | None = None) -> ChargingProfile:
    steps = tuple(Period(p[0], p[1], p[2] if len(p) > 2 else None) for p in periods)
    if kind == RELATIVE:
        start = None
    schedule = Schedule(1, unit, steps, start, duration)
    return ChargingProfile(next(_ids), stack, purpose, kind, (schedule,), recurrency,
                           valid_from, valid_to, tx_id)


def on(evse_id: int, *profiles: ChargingProfile) -> list[Installed]:
    return [Installed(evse_id, p) for p in profiles]


def steps(c: Composite) -> list[tuple[int, float, int]]:
    """(seconds from the composite's start, limit, phases) of each period."""
    return [(int((p.start - c.start).total_seconds()), p.limit, p.number_phases)
            for p in c.periods]


def check_wire(c: Composite, evse_id: int) -> dict[str, Any]:
    payload = {"status": "Accepted", "schedule": c.to_ocpp(evse_id)}
    get_validator(MessageType.CallResult, "GetCompositeSchedule", "2.0.1").validate(payload)
    schedule = payload["schedule"]
    assert parse_datetime(schedule["scheduleStart"]) == c.start   # a real RFC 3339 time
    for period in schedule["chargingSchedulePeriod"]:
        assert isinstance(period["startPeriod"], int)
        assert round(period["limit"], 1) == period["limit"]        # at most one decimal
    return payload


# -- worked examples -----------------------------------------------------------------------------


def test_no_profile_is_the_hardware_limit():
    c = composite_schedule([], 1, T0, 3600, "A", ONE)
    assert steps(c) == [(0, 32, 3)]
    assert steps(composite_schedule([], 1, T0, 3600, "W", ONE)) == [(0, 22080, 3)]
    assert c.duration == 3600 and c.rate_unit == "A" and c.start == T0


def test_single_absolute_tx_default():
    p = profile(TX_DEFAULT, (0, 16), (1800, 10), start=at(H), duration=2 * H)
    c = composite_schedule(on(1, p), 1, T0, 4 * H, "A", ONE)
    assert steps(c) == [(0, 32, 3), (H, 16, 3), (H + 1800, 10, 3), (3 * H, 32, 3)]
    check_wire(c, 1)


def test_higher_stack_wins_then_falls_back_after_its_duration():
    low = profile(TX_DEFAULT, (0, 20), stack=0)
    high = profile(TX_DEFAULT, (0, 10), stack=1, start=at(H), duration=H)
    c = composite_schedule(on(1, high, low), 1, T0, 3 * H, "A", ONE)
    assert steps(c) == [(0, 20, 3), (H, 10, 3), (2 * H, 20, 3)]
    # A higher stack level wins even with a higher limit (it is not a minimum).
    generous = profile(TX_DEFAULT, (0, 25), stack=2, start=at(H / 2), duration=H)
    c = composite_schedule(on(1, high, low, generous), 1, T0, 3 * H, "A", ONE)
    assert steps(c) == [(0, 20, 3), (H / 2, 25, 3), (1.5 * H, 10, 3), (2 * H, 20, 3)]


def test_higher_stack_before_its_first_period_leaves_the_lower_one():
    low = profile(TX_DEFAULT, (0, 20))
    late_first = profile(TX_DEFAULT, (600, 8), stack=3)     # first period not at 0
    assert steps(composite_schedule(on(1, low, late_first), 1, T0, H, "A", ONE)) == [
        (0, 20, 3), (600, 8, 3)]


def test_valid_from_and_valid_to_switch_a_profile_on_and_off():
    low = profile(TX_DEFAULT, (0, 20))
    window = profile(TX_DEFAULT, (0, 10), stack=1, valid_from=at(H), valid_to=at(2 * H))
    c = composite_schedule(on(1, low, window), 1, T0, 3 * H, "A", ONE)
    assert steps(c) == [(0, 20, 3), (H, 10, 3), (2 * H, 20, 3)]
    assert next_change(on(1, low, window), 1, T0, ONE) == at(H)
    assert next_change(on(1, low, window), 1, at(H), ONE) == at(2 * H)
    assert next_change(on(1, low, window), 1, at(2 * H), ONE) is None


def test_evse_specific_tx_default_takes_precedence_over_evse_0():
    station_wide = profile(TX_DEFAULT, (0, 10), stack=5)
    own = profile(TX_DEFAULT, (0, 20), stack=0, start=at(H), duration=H)
    installed = on(0, station_wide) + on(1, own)
    # Lower stack level, yet EVSE 1's own profile wins while it runs.
    assert steps(composite_schedule(installed, 1, T0, 3 * H, "A", TWO)) == [
        (0, 10, 3), (H, 20, 3), (2 * H, 10, 3)]
    # EVSE 2 has none of its own: the station-wide one (capped by its 16 A, 1 phase).
    assert steps(composite_schedule(installed, 2, T0, 3 * H, "A", TWO)) == [(0, 10, 1)]


def test_tx_profile_replaces_tx_default_only_for_its_transaction():
    default = profile(TX_DEFAULT, (0, 10))
    tx_profile = profile(TX, (0, 16), tx_id="abc")
    installed = on(0, default) + on(1, tx_profile)
    mine = {1: TxContext("abc", T0)}
    other = {1: TxContext("xyz", T0)}
    # Replaces, not min: 16 A above TxDefault's 10 A.
    assert steps(composite_schedule(installed, 1, T0, H, "A", ONE, mine)) == [(0, 16, 3)]
    assert steps(composite_schedule(installed, 1, T0, H, "A", ONE, other)) == [(0, 10, 3)]
    assert steps(composite_schedule(installed, 1, T0, H, "A", ONE)) == [(0, 10, 3)]
    # A transaction on another EVSE with that id does not make it apply here.
    assert limit_at(installed, 1, T0, "A", TWO, {2: TxContext("abc", T0)}) == (10, 3)


def test_tx_profile_that_ended_gives_way_to_tx_default():
    default = profile(TX_DEFAULT, (0, 10))
    short = profile(TX, (0, 6), kind=RELATIVE, duration=H, tx_id="abc")
    tx = {1: TxContext("abc", at(-H / 2))}
    c = composite_schedule(on(1, default, short), 1, T0, 2 * H, "A", ONE, tx)
    assert steps(c) == [(0, 6, 3), (H / 2, 10, 3)]


def test_station_max_caps():
    default = profile(TX_DEFAULT, (0, 20))
    station = profile(STATION_MAX, (0, 12), start=at(H), duration=H)
    c = composite_schedule(on(0, default, station), 1, T0, 3 * H, "A", ONE)
    assert steps(c) == [(0, 20, 3), (H, 12, 3), (2 * H, 20, 3)]
    # A higher station maximum does not raise anything.
    loose = profile(STATION_MAX, (0, 63))
    assert steps(composite_schedule(on(0, default, loose), 1, T0, H, "A", ONE)) == [(0, 20, 3)]


def test_external_constraints_cap_from_evse_0_and_from_the_evse():
    default = profile(TX_DEFAULT, (0, 20))
    grid = profile(EXTERNAL, (0, 15), start=at(H), duration=2 * H)
    local = profile(EXTERNAL, (0, 8), start=at(2 * H), duration=2 * H)
    elsewhere = profile(EXTERNAL, (0, 1))
    installed = on(0, default, grid) + on(1, local) + on(2, elsewhere)
    c = composite_schedule(installed, 1, T0, 5 * H, "A", TWO)
    assert steps(c) == [(0, 20, 3), (H, 15, 3), (2 * H, 8, 3), (4 * H, 20, 3)]
    # The station as a whole sees only the evse-0 constraints.
    assert steps(composite_schedule(installed, 0, T0, 5 * H, "A", TWO)) == [
        (0, 48, 3), (H, 15, 3), (3 * H, 48, 3)]


def test_hardware_limit_caps():
    greedy = profile(TX_DEFAULT, (0, 40), (H, 20))
    assert steps(composite_schedule(on(1, greedy), 1, T0, 2 * H, "A", ONE)) == [
        (0, 32, 3), (H, 20, 3)]


def test_relative_profile_counts_from_the_transaction_start():
    relative = profile(TX_DEFAULT, (0, 10), (1800, 16), kind=RELATIVE, duration=H)
    tx = {1: TxContext("t1", at(-600))}
    c = composite_schedule(on(1, relative), 1, T0, 2 * H, "A", ONE, tx)
    assert steps(c) == [(0, 10, 3), (1200, 16, 3), (3000, 32, 3)]
    assert next_change(on(1, relative), 1, T0, ONE, tx) == at(1200)
    # A transaction starting inside the window: nothing before it.
    late = {1: TxContext("t1", at(H))}
    assert steps(composite_schedule(on(1, relative), 1, T0, 2 * H, "A", ONE, late)) == [
        (0, 32, 3), (H, 10, 3), (H + 1800, 16, 3)]


def test_relative_without_transaction_starts_at_the_composite_start():
    relative = profile(TX_DEFAULT, (0, 10), (1800, 16), kind=RELATIVE)
    c = composite_schedule(on(0, relative), 1, at(5 * H), 2 * H, "A", ONE)
    assert steps(c) == [(0, 10, 3), (1800, 16, 3)]
    # Wherever one looks from, it is in its first period: no change to wait for.
    assert limit_at(on(0, relative), 1, at(7 * H), "A", ONE) == (10, 3)
    assert next_change(on(0, relative), 1, T0, ONE) is None


def test_absolute_without_start_schedule_starts_at_the_composite_start():
    loose = profile(TX_DEFAULT, (0, 10), (600, 12), start=None)
    assert steps(composite_schedule(on(1, loose), 1, at(123), H, "A", ONE)) == [
        (0, 10, 3), (600, 12, 3)]


def test_recurring_daily_wraps_over_midnight():
    night = profile(TX_DEFAULT, (0, 8), (2 * H, 6), stack=1, kind=RECURRING, recurrency=DAILY,
                    start=at(22 * H - 3 * DAY), duration=4 * H)
    day = profile(TX_DEFAULT, (0, 32))
    c = composite_schedule(on(1, night, day), 1, T0, DAY, "A", ONE)
    # 22:00 yesterday + 2 h = 00:00: in its second period; ends 02:00; again from 22:00.
    assert steps(c) == [(0, 6, 3), (2 * H, 32, 3), (22 * H, 8, 3)]
    assert next_change(on(1, night, day), 1, at(3 * H), ONE) == at(22 * H)
    assert next_change(on(1, night, day), 1, at(23 * H), ONE) == at(DAY)
    # Daily is every 24 h of UTC: the same a week later.
    assert steps(composite_schedule(on(1, night, day), 1, at(WEEK), DAY, "A", ONE)) == steps(c)


def test_recurring_before_its_first_occurrence_is_not_in_force():
    night = profile(TX_DEFAULT, (0, 8), kind=RECURRING, recurrency=DAILY,
                    start=at(22 * H), duration=4 * H)
    c = composite_schedule(on(1, night), 1, T0, 2 * DAY, "A", ONE)
    # Not at 00:00-02:00 of the first day: the first run begins at 22:00.
    assert steps(c) == [(0, 32, 3), (22 * H, 8, 3), (26 * H, 32, 3), (46 * H, 8, 3)]


def test_recurring_weekly_wraps_over_the_week_boundary():
    sunday_23 = at(-H - 2 * WEEK)                    # a Sunday, 23:00
    assert sunday_23.weekday() == 6 and sunday_23.hour == 23
    weekly = profile(TX_DEFAULT, (0, 8), kind=RECURRING, recurrency=WEEKLY, start=sunday_23,
                     duration=2 * H)
    c = composite_schedule(on(1, weekly), 1, at(-2 * H), 4 * H, "A", ONE)   # Sun 22:00
    assert steps(c) == [(0, 32, 3), (H, 8, 3), (3 * H, 32, 3)]              # to Mon 01:00
    assert limit_at(on(1, weekly), 1, at(30 * MIN), "A", ONE) == (8, 3)      # Mon 00:30
    assert limit_at(on(1, weekly), 1, at(DAY + 30 * MIN), "A", ONE) == (32, 3)  # Tuesday
    assert next_change(on(1, weekly), 1, at(2 * H), ONE) == at(WEEK - H)


def test_recurring_duration_longer_than_the_recurrence_is_cut():
    long = profile(TX_DEFAULT, (0, 8), (25 * H, 4), kind=RECURRING, recurrency=DAILY,
                   start=T0 - timedelta(days=1), duration=30 * H)
    c = composite_schedule(on(1, long), 1, T0, 2 * DAY, "A", ONE)
    assert steps(c) == [(0, 8, 3)]                   # never reaches 25 h; no gap either
    no_duration = replace(long, schedules=(replace(long.schedules[0], duration=None),))
    assert steps(composite_schedule(on(1, no_duration), 1, T0, 2 * DAY, "A", ONE)) == [
        (0, 8, 3)]


def test_watts_and_amps_on_three_phases():
    watts = profile(TX_DEFAULT, (0, 11040), unit="W")
    assert limit_at(on(1, watts), 1, T0, "A", ONE) == (16, 3)       # 11040 = 16 x 3 x 230
    assert limit_at(on(1, watts), 1, T0, "W", ONE) == (11040, 3)
    amps = profile(TX_DEFAULT, (0, 16))
    assert limit_at(on(1, amps), 1, T0, "W", ONE) == (11040, 3)
    one_phase = profile(TX_DEFAULT, (0, 16, 1))                       # numberPhases 1
    assert limit_at(on(1, one_phase), 1, T0, "W", ONE) == (3680, 1)
    assert limit_at(on(1, one_phase), 1, T0, "A", ONE) == (16, 1)


def test_one_phase_evse_given_a_three_phase_profile():
    ones = {1: EVSE1}
    # 11040 W meant for 3 phases: on one phase that is 48 A, more than the EVSE's 32 A.
    watts = profile(TX_DEFAULT, (0, 11040, 3), unit="W")
    assert limit_at(on(1, watts), 1, T0, "A", ones) == (32, 1)
    assert limit_at(on(1, watts), 1, T0, "W", ones) == (7360, 1)
    small = profile(TX_DEFAULT, (0, 3680), unit="W")
    assert limit_at(on(1, small), 1, T0, "A", ones) == (16, 1)
    amps = profile(TX_DEFAULT, (0, 16))                               # 3 assumed
    assert limit_at(on(1, amps), 1, T0, "W", ones) == (3680, 1)


def test_limits_are_floored_never_rounded_up():
    watts = profile(TX_DEFAULT, (0, 10000), unit="W")                 # 14.4927... A
    assert limit_at(on(1, watts), 1, T0, "A", ONE) == (14.4, 3)
    amps = profile(TX_DEFAULT, (0, 14.49))                           # 9998.1 W
    assert limit_at(on(1, amps), 1, T0, "W", ONE) == (9998, 3)
    assert limit_at(on(1, profile(TX_DEFAULT, (0, -5))), 1, T0, "A", ONE) == (0, 3)


def test_phases_are_the_fewest_any_limit_allows():
    # As EVerest: per-phase current and phases are capped separately.
    default = profile(TX_DEFAULT, (0, 16, 3))
    station = profile(STATION_MAX, (0, 20, 1))
    assert limit_at(on(0, default, station), 1, T0, "A", ONE) == (16, 1)
    assert limit_at(on(0, default, station), 1, T0, "W", ONE) == (3680, 1)
    default_one = profile(TX_DEFAULT, (0, 16, 1))
    station_three = profile(STATION_MAX, (0, 10, 3))
    assert limit_at(on(0, default_one, station_three), 1, T0, "A", ONE) == (10, 1)


def test_station_level_in_watts_with_two_evses():
    # Hardware: 32 A x 3 x 230 + 16 A x 1 x 230 = 22080 + 3680 W.
    assert steps(composite_schedule([], 0, T0, H, "W", TWO)) == [(0, 25760, 3)]
    assert steps(composite_schedule([], 0, T0, H, "A", TWO)) == [(0, 48, 3)]
    station = profile(STATION_MAX, (0, 40), (H, 30))                  # 27600 W, 20700 W
    default = profile(TX_DEFAULT, (0, 6))                             # not a station limit
    c = composite_schedule(on(0, station, default), 0, T0, 2 * H, "W", TWO)
    assert steps(c) == [(0, 25760, 3), (H, 20700, 3)]
    check_wire(c, 0)
    assert steps(composite_schedule(on(0, station), 0, T0, 2 * H, "A", TWO)) == [
        (0, 40, 3), (H, 30, 3)]


def test_station_level_converts_with_evse_1():
    ones_first = {1: EVSE1, 2: EVSE3}
    station = profile(STATION_MAX, (0, 20))       # 3 assumed, but EVSE 1 has one phase
    assert limit_at(on(0, station), 0, T0, "W", ones_first) == (4600, 1)


def test_equal_neighbours_are_merged():
    a = profile(TX_DEFAULT, (0, 10), (600, 10), (1200, 12), (1800, 12, 3), duration=H)
    b = profile(TX_DEFAULT, (0, 32), stack=0, start=at(-DAY))
    c = composite_schedule(on(1, a), 1, T0, 2 * H, "A", ONE)
    assert steps(c) == [(0, 10, 3), (1200, 12, 3), (H, 32, 3)]
    # A profile at the hardware limit, then none: one period.
    assert steps(composite_schedule(on(1, b), 1, at(-H), 3 * H, "A", ONE)) == [(0, 32, 3)]


def test_to_ocpp_is_a_valid_get_composite_schedule_response():
    night = profile(TX_DEFAULT, (0, 8.5), (H, 40, 1), kind=RECURRING, recurrency=DAILY,
                    start=at(-30 * MIN), duration=3 * H)
    c = composite_schedule(on(1, night), 1, at(0.250), 6 * H, "A", ONE)
    payload = check_wire(c, 1)
    assert payload["schedule"] == {
        "evseId": 1, "duration": 6 * H, "scheduleStart": "2026-03-02T00:00:00.000Z",
        "chargingRateUnit": "A", "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 8.5, "numberPhases": 3},
            {"startPeriod": 30 * MIN, "limit": 32, "numberPhases": 1},
            {"startPeriod": 2 * H + 30 * MIN, "limit": 32, "numberPhases": 3}]}
    assert isinstance(payload["schedule"]["chargingSchedulePeriod"][1]["limit"], int)
    check_wire(composite_schedule(on(1, night), 1, T0, DAY, "W", ONE), 1)


def test_times_are_whole_utc_seconds():
    p = profile(TX_DEFAULT, (0, 10), (600, 12))
    c = composite_schedule(on(1, p), 1, at(0.9), H, "A", ONE)
    assert c.start == T0 and steps(c)[1][0] == 600
    # Any time zone is the same instant; a naive datetime is refused.
    plus2 = timezone(timedelta(hours=2))
    assert limit_at(on(1, p), 1, at(700).astimezone(plus2), "A", ONE) == (12, 3)
    with pytest.raises(ValueError):
        limit_at(on(1, p), 1, T0.replace(tzinfo=None), "A", ONE)
    assert next_change(on(1, p), 1, at(0.5), ONE) == at(600)


def test_bad_requests_raise_value_error():
    with pytest.raises(ValueError):
        composite_schedule([], 1, T0, H, "kW", ONE)
    with pytest.raises(ValueError):
        composite_schedule([], 3, T0, H, "A", ONE)
    with pytest.raises(ValueError):
        composite_schedule([], 1, T0, -1, "A", ONE)


def test_duration_zero_gives_the_limit_in_force():
    c = composite_schedule(on(1, profile(TX_DEFAULT, (0, 10))), 1, T0, 0, "A", ONE)
    assert steps(c) == [(0, 10, 3)]
    check_wire(c, 1)


def test_next_change_is_none_without_anything_to_wait_for():
    assert next_change([], 1, T0, ONE) is None
    forever = profile(TX_DEFAULT, (0, 10), (H, 8))
    assert next_change(on(1, forever), 1, T0, ONE) == at(H)
    assert next_change(on(1, forever), 1, at(H), ONE) is None
    # A TxProfile of no running transaction cannot change anything.
    orphan = profile(TX, (0, 10), (H, 8), tx_id="gone")
    assert next_change(on(1, orphan), 1, T0, ONE) is None


# -- properties ----------------------------------------------------------------------------------
# Times on a coarse grid (quarter hours) so that boundaries of different profiles often
# coincide, plus some odd seconds. The window lies within +-2 weeks of T0.

GRID = st.one_of(st.integers(-4 * 96, 8 * 96).map(lambda q: q * 900),
                 st.integers(-4 * DAY, 8 * DAY))
SPAN = st.one_of(st.integers(1, 4 * 24).map(lambda q: q * 900), st.integers(1, 3 * DAY))


@st.composite
def periods(draw, unit: str) -> tuple[Period, ...]:
    offsets = draw(st.lists(SPAN, max_size=3, unique=True))
    limits = (st.integers(0, 640).map(lambda k: k / 10) if unit == "A"
              else st.integers(0, 50_000).map(float))
    return tuple(Period(o, draw(limits), draw(st.sampled_from([None, 1, 3])))
                 for o in [0, *sorted(offsets)])


@st.composite
def charging_profile(draw) -> Installed:
    purpose = draw(st.sampled_from([STATION_MAX, EXTERNAL, TX_DEFAULT, TX]))
    evse_id = {STATION_MAX: st.just(0), EXTERNAL: st.sampled_from([0, 1, 2]),
               TX_DEFAULT: st.sampled_from([0, 1, 2]), TX: st.sampled_from([1, 2])}[purpose]
    kind = draw(st.sampled_from([ABSOLUTE, RECURRING, RELATIVE]))
    unit = draw(st.sampled_from(["A", "W"]))
    start = draw(st.none() | GRID.map(at)) if kind == ABSOLUTE else (
        draw(GRID.map(at)) if kind == RECURRING else None)
    valid_from = draw(st.none() | GRID.map(at))
    valid_to = draw(st.none() | GRID.map(at))
    schedule = Schedule(1, unit, draw(periods(unit)), start, draw(st.none() | SPAN))
    return Installed(draw(evse_id), ChargingProfile(
        next(_ids), draw(st.integers(0, 3)), purpose, kind, (schedule,),
        draw(st.sampled_from([DAILY, WEEKLY])) if kind == RECURRING else None,
        valid_from, valid_to, draw(st.sampled_from(["tx1", "tx2"])) if purpose == TX else None))


LIMITS = st.builds(lambda a, p, b, q: {1: EvseLimits(a, p, 230.0), 2: EvseLimits(b, q, 230.0)},
                   st.integers(6, 63), st.sampled_from([1, 3]),
                   st.integers(6, 63), st.sampled_from([1, 3]))
TXS = st.dictionaries(st.sampled_from([1, 2]),
                      st.builds(TxContext, st.sampled_from(["tx1", "tx2"]), GRID.map(at)),
                      max_size=2)
CASE = dict(installed=st.lists(charging_profile(), max_size=6), evse_id=st.sampled_from([0, 1, 2]),
            start=GRID.map(at), duration=SPAN, unit=st.sampled_from(["A", "W"]),
            limits=LIMITS, tx=TXS)
FAST = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


# A naive reading of the rules, one instant at a time, on datetimes: the oracle.

def naive_period(p: ChargingProfile, t: datetime, anchor: datetime,
                 tx_start: datetime | None) -> Period | None:
    if (p.valid_from and t < p.valid_from) or (p.valid_to and t >= p.valid_to):
        return None
    s = p.schedules[0]
    length = None if s.duration is None else timedelta(seconds=s.duration)
    if p.kind == RECURRING:
        every = timedelta(days=1 if p.recurrency == DAILY else 7)
        if t < s.start_schedule:
            return None
        begin = s.start_schedule + every * ((t - s.start_schedule) // every)
        length = every if length is None else min(length, every)
    elif p.kind == RELATIVE:
        begin = tx_start or anchor
    else:
        begin = s.start_schedule or anchor
    if t < begin or (length is not None and t >= begin + length):
        return None
    elapsed = (t - begin).total_seconds()
    started = [q for q in s.periods if q.start_period <= elapsed]
    return max(started, key=lambda q: q.start_period) if started else None


def naive_caps(installed: Sequence[Installed], evse_id: int, t: datetime, limits, tx,
               anchor: datetime) -> dict[str, tuple[float, str, int] | None]:
    """Each applicable limit at t as (value, unit, phases), by name."""
    ref = limits[evse_id] if evse_id else limits[1]
    context = tx.get(evse_id) if evse_id else None
    tx_start = context.started if context else None

    def stack(purpose: str, target: int) -> tuple[float, str, int] | None:
        found = []
        for i in installed:
            p = i.profile
            if i.evse_id != target or p.purpose != purpose:
                continue
            if purpose == TX and (context is None or p.transaction_id != context.transaction_id):
                continue
            period = naive_period(p, t, anchor, tx_start)
            if period is not None:
                phases = min(period.number_phases or DEFAULT_PHASES, ref.phases)
                value = max(0.0, period.limit)
                unit = p.schedules[0].rate_unit
                amps = value if unit == "A" else value / (phases * ref.nominal_voltage_v)
                found.append((-p.stack_level, amps, phases, (value, unit, phases)))
        return min(found)[3] if found else None

    if evse_id == 0:
        return {"max": stack(STATION_MAX, 0), "ext0": stack(EXTERNAL, 0),
                "hw_A": (sum(e.max_current_a for e in limits.values()), "A", ref.phases),
                "hw_W": (sum(e.max_current_a * e.phases * e.nominal_voltage_v
                             for e in limits.values()), "W", ref.phases)}
    return {"max": stack(STATION_MAX, 0), "ext0": stack(EXTERNAL, 0),
            "ext": stack(EXTERNAL, evse_id),
            "tx": stack(TX, evse_id) or stack(TX_DEFAULT, evse_id) or stack(TX_DEFAULT, 0),
            "hw": (ref.max_current_a, "A", ref.phases)}


def in_unit(cap: tuple[float, str, int], unit: str, voltage: float) -> float:
    """A cap in `unit` with its own phases (the plain conversion of the brief)."""
    value, cap_unit, phases = cap
    if cap_unit == unit:
        return value
    return value * phases * voltage if unit == "W" else value / (phases * voltage)


def naive_limit(installed, evse_id, t, unit, limits, tx, anchor) -> tuple[float, float, int]:
    """(exact value, floored value, phases) by the per-phase model."""
    caps = naive_caps(installed, evse_id, t, limits, tx, anchor)
    if evse_id == 0:
        caps.pop("hw_W" if unit == "A" else "hw_A")
    applicable = [c for c in caps.values() if c is not None]
    voltage = limits[evse_id or 1].nominal_voltage_v
    phases = min(c[2] for c in applicable)
    amps = min(in_unit(c, "A", voltage) for c in applicable)
    exact = amps if unit == "A" else amps * phases * voltage
    scale = 10 if unit == "A" else 1
    return exact, math.floor(exact * scale + 1e-6) / scale, phases


def value_at(c: Composite, t: datetime) -> tuple[float, int]:
    assert c.start <= t < c.start + timedelta(seconds=max(1, c.duration))
    period = [p for p in c.periods if p.start <= t][-1]
    return period.limit, period.number_phases


def samples(c: Composite, offsets: list[int]) -> list[datetime]:
    ends = [p.start for p in c.periods] + [p.start - timedelta(seconds=1) for p in c.periods[1:]]
    return ends + [c.start + timedelta(seconds=o % c.duration) for o in offsets] + [
        c.start + timedelta(seconds=c.duration - 1)]


def floating(installed: Sequence[Installed], evse_id: int, tx) -> bool:
    """Whether some profile has no fixed start (it starts wherever one looks from)."""
    return any((i.profile.kind == RELATIVE and (evse_id == 0 or evse_id not in tx))
               or (i.profile.kind == ABSOLUTE and i.profile.schedules[0].start_schedule is None)
               for i in installed)


@FAST
@given(**CASE, offsets=st.lists(st.integers(0, 4 * DAY), max_size=8))
def test_composite_is_contiguous_capped_and_matches_the_oracle(installed, evse_id, start,
                                                               duration, unit, limits, tx,
                                                               offsets):
    c = composite_schedule(installed, evse_id, start, duration, unit, limits, tx)
    # Contiguous over exactly [start, start + duration), neighbours differ.
    assert c.start == start and c.duration == duration and c.rate_unit == unit
    assert c.periods and c.periods[0].start == start
    assert all(a.start < b.start for a, b in itertools.pairwise(c.periods))
    assert c.periods[-1].start < start + timedelta(seconds=duration)
    assert all((a.limit, a.number_phases) != (b.limit, b.number_phases)
               for a, b in itertools.pairwise(c.periods))
    check_wire(c, evse_id)
    voltage = limits[evse_id or 1].nominal_voltage_v
    for t in samples(c, offsets):
        limit, phases = value_at(c, t)
        # Never above any applicable cap, each in the unit with its own phases.
        for name, cap in naive_caps(installed, evse_id, t, limits, tx, start).items():
            if cap is not None and name != "tx" and name != {"A": "hw_W", "W": "hw_A"}[unit]:
                assert limit <= in_unit(cap, unit, voltage) + 1e-6, (name, t)
        exact, floored, naive_phases = naive_limit(installed, evse_id, t, unit, limits, tx,
                                                   start)
        assert phases == naive_phases
        scale = 10 if unit == "A" else 1
        assert limit == floored or (abs(limit - floored) <= 1 / scale + 1e-9
                                    and abs(exact * scale - round(exact * scale)) < 1e-6)


@FAST
@given(**CASE, offsets=st.lists(st.integers(0, 4 * DAY), max_size=5))
def test_limit_at_equals_the_composite(installed, evse_id, start, duration, unit, limits, tx,
                                       offsets):
    fixed = [i for i in installed if not floating([i], evse_id, tx)]
    c = composite_schedule(fixed, evse_id, start, duration, unit, limits, tx)
    for t in samples(c, offsets):
        assert limit_at(fixed, evse_id, t, unit, limits, tx) == value_at(c, t)


@FAST
@given(**CASE, probes=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=6))
def test_nothing_changes_before_next_change(installed, evse_id, start, duration, unit, limits,
                                            tx, probes):
    change = next_change(installed, evse_id, start, limits, tx)
    assert change is None or change > start
    now = limit_at(installed, evse_id, start, unit, limits, tx)
    horizon = change or start + timedelta(days=30)
    gap = int((horizon - start).total_seconds())
    for f in probes:
        t = start + timedelta(seconds=min(gap - 1, math.floor(gap * f)))
        assert limit_at(installed, evse_id, t, unit, limits, tx) == now
    assert limit_at(installed, evse_id, horizon - timedelta(seconds=1), unit, limits, tx) == now
    # And it is not late: the composite's first change is no earlier.
    fixed = [i for i in installed if not floating([i], evse_id, tx)]
    if len(fixed) == len(installed):
        c = composite_schedule(installed, evse_id, start, duration, unit, limits, tx)
        if len(c.periods) > 1:
            assert change is not None and change <= c.periods[1].start
        if change is None:
            assert len(c.periods) == 1


@FAST
@given(installed=st.lists(charging_profile(), max_size=5), evse_id=st.sampled_from([1, 2]),
       start=GRID.map(at), limits=LIMITS, tx=TXS)
def test_amps_and_watts_agree(installed, evse_id, start, limits, tx):
    amps, phases = limit_at(installed, evse_id, start, "A", limits, tx)
    watts, phases_w = limit_at(installed, evse_id, start, "W", limits, tx)
    assert phases == phases_w
    volt_phases = phases * limits[evse_id].nominal_voltage_v
    assert amps * volt_phases - 1 - 1e-6 <= watts <= (amps + 0.1) * volt_phases + 1e-6


@FAST
@given(installed=st.lists(charging_profile(), max_size=5), evse_id=st.sampled_from([0, 1, 2]),
       offset=st.integers(0, 2 * WEEK), unit=st.sampled_from(["A", "W"]), limits=LIMITS,
       tx=TXS)
def test_recurring_profiles_repeat(installed, evse_id, offset, unit, limits, tx):
    # Only recurring profiles, valid forever: the limit repeats every week (and every
    # day if they are all daily), once every profile has begun.
    recurring = [replace(i, profile=replace(i.profile, kind=RECURRING, valid_from=None,
                                            valid_to=None, recurrency=i.profile.recurrency
                                            or DAILY))
                 for i in installed if i.profile.schedules[0].start_schedule is not None]
    begun = max((i.profile.schedules[0].start_schedule for i in recurring), default=T0)
    t = begun + timedelta(seconds=offset)
    period = WEEK if any(i.profile.recurrency == WEEKLY for i in recurring) else DAY
    here = limit_at(recurring, evse_id, t, unit, limits, tx)
    assert limit_at(recurring, evse_id, t + timedelta(seconds=period), unit, limits, tx) == here
    assert limit_at(recurring, evse_id, t + timedelta(seconds=3 * WEEK), unit, limits, tx) == here
