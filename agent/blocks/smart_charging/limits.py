"""The limit each EVSE works to now: the composite of the installed profiles, the
hardware's own limits and a fair share of a station-wide maximum, kept current as
schedule periods begin and end.

Why a share: a ChargingStationMaxProfile limits the station as a whole (its grid
connection), and so does an external limit on evse 0 (an energy manager's, the grid
operator's): EVSEs charging at once must stay under it together. Each EVSE's own
limit (its TxProfile or TxDefaultProfile, its own external constraints, its rating) is
worked out without the station-wide ones; then their composite, in W, is shared among the EVSEs
with a transaction by water-filling: every EVSE gets an equal part, an EVSE that needs
less than its part leaves the rest to the others. An EVSE without a transaction is told
the whole maximum as its limit (it draws nothing; when it starts, the shares are worked
out again at once).

Timing: after every change of profiles or transactions, and at the next instant the
schedules say a limit may change (`next_change`), the limits are worked out again and
the EVSEs whose limit changed are told (within the same loop turn: well within a second
of a period's start on the injectable clock).
"""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime
from typing import Callable, Iterable, Mapping

from agent.blocks.smart_charging.model import EXTERNAL, STATION_MAX, Installed
from agent.blocks.smart_charging.schedule import EvseLimits, TxContext, limit_at, next_change
from agent.clock import Clock

log = logging.getLogger(__name__)

MAX_SLEEP_S = 3600.0   # look again at least hourly: the wall clock may have been set


class AppliedLimits:
    def __init__(self, *, clock: Clock, evses: Mapping[int, EvseLimits],
                 profiles: Callable[[], list[Installed]],
                 transaction: Callable[[int], TxContext | None],
                 on_change: Callable[[Iterable[int]], None]) -> None:
        self._clock = clock
        self._evses = dict(evses)
        self._profiles = profiles
        self._transaction = transaction
        self._on_change = on_change
        self._current: dict[int, tuple[float, float]] = {}   # evse -> (A per phase, W)
        self._wake = asyncio.Event()
        self.refresh()

    def current_a(self, evse_id: int) -> float | None:
        """The current per phase this EVSE may offer now; None: its rating."""
        limit = self._current.get(evse_id)
        if limit is None or limit[0] >= self._evses[evse_id].max_current_a:
            return None
        return limit[0]

    def power_w(self, evse_id: int) -> float | None:
        """The power this EVSE may deliver now; None: nothing limits it below its rating."""
        spec = self._evses[evse_id]
        watts = self._current[evse_id][1]
        return None if watts >= math.floor(spec.max_current_a * spec.phases *
                                           spec.nominal_voltage_v) else watts

    def changed(self) -> None:
        """Profiles or transactions changed: work the limits out again now."""
        self.refresh()
        self._wake.set()

    def refresh(self) -> None:
        now = self._clock.now()
        new = self._compute(now)
        moved = [e for e in new if new[e] != self._current.get(e)]
        self._current = new
        if moved:
            for evse_id in moved:
                log.info("EVSE %d: limit now %.1f A per phase (%.0f W)", evse_id, *new[evse_id])
            self._on_change(moved)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock.now()
            upcoming = [t for t in (next_change(self._profiles(), e, now, self._evses,
                                                self._transactions()) for e in self._evses)
                        if t is not None]
            delay = MAX_SLEEP_S
            if upcoming:
                delay = min(delay, max(0.0, (min(upcoming) - now).total_seconds()))
            sleeper = asyncio.ensure_future(self._clock.sleep(delay))
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                woken.cancel()
            self.refresh()

    # -- the arithmetic ---------------------------------------------------------------------

    def _transactions(self) -> dict[int, TxContext]:
        return {e: tx for e in self._evses if (tx := self._transaction(e)) is not None}

    def _compute(self, at: datetime) -> dict[int, tuple[float, float]]:
        profiles = self._profiles()
        txs = self._transactions()
        # The station's own limits (its maximum, an external limit on evse 0) are for
        # all EVSEs together: shared out below, not granted to each in full.
        own_profiles = [p for p in profiles if not _station_wide(p)]
        own_w = {e: limit_at(own_profiles, e, at, "W", self._evses, txs)[0]
                 for e in self._evses}
        if any(_station_wide(p) for p in profiles):
            station_w = limit_at(profiles, 0, at, "W", self._evses, txs)[0]
            shares = fair_share(station_w, {e: own_w[e] for e in txs})
            granted = {e: shares.get(e, min(own_w[e], station_w)) for e in self._evses}
        else:
            granted = own_w
        out = {}
        for evse_id, watts in granted.items():
            # Per phase over all the EVSE's phases: the pilot cannot switch phases
            # (no Phases3to1), so the EV may draw on each; never above the watts.
            spec = self._evses[evse_id]
            amps = watts / (spec.phases * spec.nominal_voltage_v)
            out[evse_id] = (math.floor(amps * 10 + 1e-9) / 10, math.floor(watts + 1e-9))
        return out


def _station_wide(installed: Installed) -> bool:
    purpose = installed.profile.purpose
    return purpose == STATION_MAX or (purpose == EXTERNAL and installed.evse_id == 0)


def fair_share(total: float, wants: Mapping[int, float]) -> dict[int, float]:
    """Share `total` among the EVSEs by water-filling: equal parts, what one does not
    need goes to the others; nobody gets more than it wants."""
    left, given = total, {}
    open_ = sorted(wants, key=lambda e: wants[e])
    while open_:
        part = left / len(open_)
        evse_id = open_[0]
        if wants[evse_id] <= part:
            given[evse_id] = wants[evse_id]
            left -= wants[evse_id]
            open_.pop(0)
        else:
            for evse_id in open_:
                given[evse_id] = part
            break
    return given
