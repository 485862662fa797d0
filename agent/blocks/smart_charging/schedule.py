"""The composite charging schedule (OCPP 2.0.1 K01, K08 GetCompositeSchedule): what one
EVSE (or, for evse 0, the whole station) may draw over a window, from the installed
charging profiles and the hardware's own limits. Pure functions, no clock of their own.

How the limit at one instant is found (recurrence.py says when a single profile is in force):
- Within one purpose and one EVSE target, the profile with the highest stackLevel that
  has an active period wins; when its schedule has ended or not begun, the next lower
  stack level with an active period applies. Two at the same level (K01 forbids it)
  yield the lower per-phase current, so a bad state errs on the safe side.
- TxProfile (on the EVSE, transactionId equal to the running transaction's) replaces
  TxDefaultProfile while it is active. TxDefaultProfiles installed on the EVSE take
  precedence over those on evse 0 whenever any of them is active.
- ChargingStationMaxProfile (only those on evse 0, the one place K01 allows it) and
  ChargingStationExternalConstraints (evse 0, and separately the EVSE's own) cap it,
  as does the EVSE hardware. For evse 0 only
  the station max, the evse-0 external constraints and the station hardware count.
- No profile at all: the hardware limit.

Units and phases. Each limit is read as a per-phase current cap plus a cap on the number
of phases, as EVerest libocpp does when it combines purposes: its phases are the
period's numberPhases (3 when omitted) but never more than the EVSE has (a 1-phase EVSE
charges on one phase whatever a profile says), and a limit in W means W / (phases x
nominal voltage) per phase. The composite uses the fewest phases any applicable limit
allows and the lowest per-phase current, shown in the requested unit: A per phase, or
W = A x phases x voltage. When all limits agree on phases (the usual case) this is just
the minimum of the limits converted with W = A x phases x V; when they disagree it
never exceeds any of them in either unit.

Station level (evse 0): conversions use the phases and voltage of EVSE 1 (else the
lowest EVSE id), the station's main connection being assumed alike. Its hardware limit
is the sum over the EVSEs: in W, the sum of max_current x phases x voltage; in A, the
sum of the per-phase maxima, i.e. the current per phase at the grid connection if all
EVSEs draw their maximum on the same phase(s).

Output: limits floored to 0.1 A or 1 W (never rounded up past a limit); negative limits
count as 0. minChargingRate is not applied (it is the EV's minimum, a hint for the
CSMS; K08 does not ask the station to raise or cut limits by it). All times are UTC and
taken to the whole second (floored, as EVerest does; see recurrence.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from agent.blocks.smart_charging import recurrence as rec
from agent.blocks.smart_charging.model import (DEFAULT_PHASES, EXTERNAL, STATION_MAX, TX,
                                               TX_DEFAULT, ChargingProfile, Installed, Period)
from agent.clock import format_datetime

AMPS, WATTS = "A", "W"


@dataclass(frozen=True)
class EvseLimits:
    """The hardware's own limits of one EVSE."""
    max_current_a: float      # per phase
    phases: int               # 1 or 3 (AC; of the supply for a DC EVSE)
    nominal_voltage_v: float  # phase to neutral
    dc: bool = False          # a DC output: periods carry no phase values (K01.FR.44)


@dataclass(frozen=True)
class TxContext:
    """A transaction running on the EVSE: Relative profiles count from its start."""
    transaction_id: str
    started: datetime


@dataclass(frozen=True)
class CompositePeriod:
    start: datetime           # absolute
    limit: float              # in the requested unit; A is per phase, W is total
    number_phases: int


@dataclass(frozen=True)
class Composite:
    start: datetime
    duration: int             # seconds
    rate_unit: str
    periods: tuple[CompositePeriod, ...]   # contiguous, equal neighbours merged, first at start

    def to_ocpp(self, evse_id: int) -> dict[str, Any]:
        """CompositeScheduleType, for GetCompositeScheduleResponse.schedule."""
        return {"evseId": evse_id, "duration": self.duration,
                "scheduleStart": format_datetime(self.start),
                "chargingRateUnit": self.rate_unit,
                "chargingSchedulePeriod": [
                    {"startPeriod": rec.to_seconds(p.start) - rec.to_seconds(self.start),
                     "limit": _number(p.limit), "numberPhases": p.number_phases}
                    for p in self.periods]}


_NO_TX: Mapping[int, TxContext] = MappingProxyType({})


def composite_schedule(profiles: Sequence[Installed], evse_id: int, start: datetime,
                       duration: int, rate_unit: str, limits: Mapping[int, EvseLimits],
                       tx: Mapping[int, TxContext] = _NO_TX) -> Composite:
    """The composite schedule of evse_id (0: the whole station) over
    [start, start + duration), start floored to the second.

    `limits` holds every EVSE of the station (evse 0 sums them); `tx` the running
    transaction per EVSE. Duration 0 gives the single period in force at start (the
    response still needs one). ValueError on an unknown unit or EVSE, a negative
    duration or a naive datetime."""
    if duration < 0:
        raise ValueError(f"duration must not be negative, got {duration}")
    view = _View.of(profiles, evse_id, rate_unit, limits, tx)
    first = rec.to_seconds(start)
    end = first + duration
    instants = {first}
    for profile in view.profiles():
        instants.update(rec.changes(profile, first, end, first, view.tx_start))
    periods: list[CompositePeriod] = []
    for t in sorted(instants):
        limit, phases = view.limit_at(t, first)
        if not periods or (periods[-1].limit, periods[-1].number_phases) != (limit, phases):
            periods.append(CompositePeriod(rec.from_seconds(t), limit, phases))
    return Composite(rec.from_seconds(first), duration, rate_unit, tuple(periods))


def limit_at(profiles: Sequence[Installed], evse_id: int, at: datetime, rate_unit: str,
             limits: Mapping[int, EvseLimits],
             tx: Mapping[int, TxContext] = _NO_TX) -> tuple[float, int]:
    """The effective (limit, number of phases) at one instant: the first period of a
    one-second composite from `at`. A floating profile (Relative without transaction,
    Absolute without startSchedule) is therefore in its first period."""
    period = composite_schedule(profiles, evse_id, at, 1, rate_unit, limits, tx).periods[0]
    return period.limit, period.number_phases


def next_change(profiles: Sequence[Installed], evse_id: int, after: datetime,
                limits: Mapping[int, EvseLimits],
                tx: Mapping[int, TxContext] = _NO_TX) -> datetime | None:
    """The next whole second > after at which the EVSE's limit may change (a period
    boundary, validFrom/validTo, a recurrence, a schedule's end), or None if never.
    The block arms its timer with it. It may name an instant where the limit happens to
    stay the same; it never skips a change. Hardware limits (`limits`) do not vary in
    time: they are taken only to check the EVSE exists, like the other functions."""
    view = _View.of(profiles, evse_id, AMPS, limits, tx)
    lo = rec.to_seconds(after)
    found = min((b for profile in view.profiles()
                 for b in rec.changes(profile, lo, None, None, view.tx_start)), default=None)
    return None if found is None else rec.from_seconds(found)


@dataclass(frozen=True)
class _Limit:
    """One constraint at one instant: `value` in `unit`, on at most `phases` phases."""
    value: float
    unit: str
    phases: int


@dataclass(frozen=True)
class _View:
    """The profiles that matter to one EVSE, sorted by purpose and target, and how to
    read their limits."""
    unit: str
    phases: int                # of the EVSE (evse 0: of the reference EVSE)
    voltage: float
    hardware: _Limit
    tx_start: int | None
    station_max: tuple[ChargingProfile, ...]
    external: tuple[tuple[ChargingProfile, ...], ...]   # each stack caps on its own
    tx_profiles: tuple[ChargingProfile, ...]
    tx_default_evse: tuple[ChargingProfile, ...]
    tx_default_station: tuple[ChargingProfile, ...]

    @classmethod
    def of(cls, installed: Sequence[Installed], evse_id: int, unit: str,
           limits: Mapping[int, EvseLimits], tx: Mapping[int, TxContext]) -> "_View":
        if unit not in (AMPS, WATTS):
            raise ValueError(f"charging rate unit must be 'A' or 'W', got {unit!r}")
        if evse_id < 0 or (evse_id > 0 and evse_id not in limits) or not limits:
            raise ValueError(f"no hardware limits for EVSE {evse_id}")
        context = tx.get(evse_id) if evse_id > 0 else None

        def on(purpose: str, target: int) -> tuple[ChargingProfile, ...]:
            return tuple(i.profile for i in installed
                         if i.evse_id == target and i.profile.purpose == purpose
                         and i.profile.schedules)

        if evse_id > 0:
            own = limits[evse_id]
            phases, voltage = own.phases, own.nominal_voltage_v
            hardware = _Limit(own.max_current_a, AMPS, own.phases)
            tx_profiles = tuple(p for p in on(TX, evse_id) if context is not None
                                and p.transaction_id == context.transaction_id)
            external = (on(EXTERNAL, 0), on(EXTERNAL, evse_id))
            tx_default_evse, tx_default_station = on(TX_DEFAULT, evse_id), on(TX_DEFAULT, 0)
        else:
            ref = limits[1] if 1 in limits else limits[min(limits)]
            phases, voltage = ref.phases, ref.nominal_voltage_v
            if unit == AMPS:
                hardware = _Limit(sum(e.max_current_a for e in limits.values()), AMPS, phases)
            else:
                hardware = _Limit(sum(e.max_current_a * e.phases * e.nominal_voltage_v
                                      for e in limits.values()), WATTS, phases)
            tx_profiles, external = (), (on(EXTERNAL, 0),)
            tx_default_evse = tx_default_station = ()
        return cls(unit, phases, voltage, hardware,
                   None if context is None else rec.to_seconds(context.started),
                   on(STATION_MAX, 0), external, tx_profiles, tx_default_evse,
                   tx_default_station)

    def profiles(self) -> Iterable[ChargingProfile]:
        yield from self.station_max
        for stack in self.external:
            yield from stack
        yield from self.tx_profiles
        yield from self.tx_default_evse
        yield from self.tx_default_station

    def limit_at(self, t: int, floating: int) -> tuple[float, int]:
        """(limit in self.unit, phases) at t, rounded down for the wire."""
        tx_limit = (self._stack(self.tx_profiles, t, floating)
                    or self._stack(self.tx_default_evse, t, floating)
                    or self._stack(self.tx_default_station, t, floating))
        caps = [self.hardware, tx_limit, self._stack(self.station_max, t, floating),
                *(self._stack(stack, t, floating) for stack in self.external)]
        applicable = [c for c in caps if c is not None]
        phases = min(c.phases for c in applicable)
        value = min(self._value(c, phases) for c in applicable)
        return _floor(max(0.0, value), self.unit), phases

    def _stack(self, stack: tuple[ChargingProfile, ...], t: int,
               floating: int) -> _Limit | None:
        """The limit of the highest stack level with a period active at t."""
        best: tuple[int, float, int] | None = None
        chosen: _Limit | None = None
        for profile in stack:
            period = rec.active_period(profile, t, floating, self.tx_start)
            if period is None:
                continue
            limit = self._limit(period, profile.schedules[0].rate_unit)
            # Highest level first; at equal levels (invalid) the lower per-phase current.
            key = (-profile.stack_level, self._value(limit, limit.phases, AMPS), limit.phases)
            if best is None or key < best:
                best, chosen = key, limit
        return chosen

    def _limit(self, period: Period, unit: str) -> _Limit:
        phases = min(period.number_phases or DEFAULT_PHASES, self.phases)
        return _Limit(max(0.0, period.limit), unit, max(1, phases))

    def _value(self, limit: _Limit, phases: int, unit: str | None = None) -> float:
        """The limit in `unit` (default: the requested one) when charging on `phases`
        (<= limit.phases): a W limit is W / (its phases x V) per phase."""
        unit = unit or self.unit
        per_phase = (limit.value if limit.unit == AMPS
                     else limit.value / (limit.phases * self.voltage))
        if unit == AMPS:
            return per_phase
        if limit.unit == WATTS:
            return limit.value * phases / limit.phases   # exact when phases agree
        return per_phase * phases * self.voltage


def _floor(value: float, unit: str) -> float:
    """Down to 0.1 A or 1 W. The 1e-6 absorbs float noise (16 A stored as 15.9999...),
    i.e. it may exceed the exact value by at most 1e-7 A or 1e-6 W."""
    scale = 10 if unit == AMPS else 1
    return math.floor(value * scale + 1e-6) / scale


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
