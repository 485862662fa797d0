"""Clock-aligned meter values (J01): MeterValues for idle EVSEs at each aligned instant.

At every AlignedDataCtrlr.Interval instant (aligned to midnight UTC, see timing.py) the
meter of every EVSE is sampled once, stamped with the instant itself (what a CSMS and
the OCTT expect of a Sample.Clock value), with the AlignedDataCtrlr.Measurands:
- an EVSE without a transaction gets a MeterValuesRequest (evseId, one meterValue with
  context Sample.Clock) (J01.FR.14, as corrected by the errata: every evseId);
- an EVSE with a transaction gets nothing here: its value goes to the subscribers
  (the transaction block) for a TransactionEvent Updated with triggerReason
  MeterValueClock (J01.FR.14 note; J02.FR.22: only that EVSE's values).

Settings, read afresh at every instant; a CSMS write to AlignedDataCtrlr wakes the task
at once, so a new Interval applies from the next instant of the new series:
- Interval 0 or Enabled false: no clock-aligned data at all.
- SendDuringIdle true: while any transaction is ongoing, no clock-aligned values are
  sent at all, neither MeterValues nor the transaction values (appendix 3,
  AlignedDataCtrlr.SendDuringIdle: "the Charging Station SHALL not send clock aligned
  meter values when a transaction is ongoing"; J01.FR.20). SendDuringIdle false does
  NOT stop MeterValues for idle EVSEs: idle EVSEs are exactly what J01.FR.14 sends.
  To save data on an idle station, the CSMS sets Interval 0 or Enabled false.

Not durable: MeterValues outside a transaction are best effort. They are sent only on a
live, registered connection (no waiting, no queue) and lost when the station is offline
or the CSMS does not answer; the next instant carries the registers on. Only
TransactionEvents are kept for delivery (the transaction block's outbox).

EVSE 0 (the grid/main meter): not reported, the HAL has no station meter yet. When one
appears, add it to `meters` under id 0 (it is never "in a transaction").
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Mapping

from agent.blocks.metering.timing import LATE_LIMIT_S, next_aligned
from agent.blocks.metering.values import Extras, meter_value
from agent.clock import Clock
from agent.model.device_model import DeviceModel
from agent.model.types import Component, Variable
from agent.ocpp.connection import Messenger
from agent.ocpp.session import CallFailed, NotConnected
from hal.api import MeterReading

log = logging.getLogger(__name__)

CONTROLLER = "AlignedDataCtrlr"
# Longest single sleep: a wall-clock correction from the CSMS (Clock.set_time) moves the
# instants without waking us, so look again at least this often. Costs nothing.
MAX_SLEEP_S = 300.0

MeterValue = dict[str, Any]
TransactionListener = Callable[[int, MeterValue], Awaitable[None] | None]


class AlignedMeterValues:
    def __init__(self, link: Messenger, model: DeviceModel, clock: Clock,
                 meters: Mapping[int, Callable[[], MeterReading | None]],
                 is_in_transaction: Callable[[int], bool], *,
                 phases: Mapping[int, int] | None = None,
                 extras: Callable[[int], Extras] | None = None,
                 location: str = "Outlet") -> None:
        """`meters[evse_id]()` gives that EVSE's latest reading (None: none to be had).
        `phases` overrides EVSE.SupplyPhases of the device model; `extras(evse_id)`
        supplies Current.Offered / Power.Offered / SoC where configured."""
        self._link = link
        self._model = model
        self._clock = clock
        self._meters = dict(meters)
        self._in_tx = is_in_transaction
        self._phases = dict(phases or {})
        self._extras = extras
        self._location = location
        self._listeners: list[TransactionListener] = []
        self._wake = asyncio.Event()
        model.subscribe(self._on_write)

    # -- for the transaction block --------------------------------------------------------

    def subscribe(self, listener: TransactionListener) -> None:
        """Call `listener(evse_id, meterValue)` at each aligned instant for every EVSE in
        a transaction (may be a coroutine function; it is awaited)."""
        self._listeners.append(listener)

    def aligned_values(self, evse_id: int,
                       timestamp: datetime | None = None) -> MeterValue | None:
        """A Sample.Clock value of this EVSE now, with the AlignedDataCtrlr.Measurands,
        stamped `timestamp` (default: the reading's time). None when aligned data is
        off, when SendDuringIdle forbids clock-aligned values during a transaction, or
        when nothing could be sampled."""
        if self._interval() <= 0 or self._setting(self._model.get_bool, "SendDuringIdle",
                                                  False):
            return None
        return self._sample(evse_id, self._measurands(), timestamp)

    def triggered(self, evse_id: int | None = None) -> list[dict[str, Any]]:
        """MeterValuesRequest payloads for TriggerMessage(MeterValues) (F06): context
        Trigger, the AlignedDataCtrlr.Measurands, the reading's own time; for one EVSE
        or, when `evse_id` is None, every EVSE with a reading. Given whatever the
        aligned settings are (a trigger is an explicit request). [] when nothing could
        be sampled; the caller sends them after its TriggerMessageResponse."""
        ids = sorted(self._meters) if evse_id is None else [evse_id]
        measurands = self._measurands()
        payloads = []
        for evse in ids:
            value = self._sample(evse, measurands, None, "Trigger")
            if value is not None:
                payloads.append({"evseId": evse, "meterValue": [value]})
        return payloads

    # -- the task ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Send clock-aligned values until cancelled."""
        target: datetime | None = None
        interval = 0
        while True:
            self._wake.clear()
            current = self._interval()
            if current <= 0:
                target = None
                await self._wake.wait()
                continue
            now = self._clock.now()
            if (target is None or current != interval
                    or target - now > timedelta(seconds=current)):   # clock moved back
                interval, target = current, next_aligned(now, current)
            delay = (target - now).total_seconds()
            if delay > 0:
                await self._sleep(min(delay, MAX_SLEEP_S))
                continue
            if -delay <= min(interval, LATE_LIMIT_S):
                await self.tick(target)
            else:
                log.info("clock-aligned meter values of %s skipped: %.0f s late",
                         target.isoformat(), -delay)
            target = next_aligned(max(self._clock.now(), target), interval)

    async def tick(self, instant: datetime) -> None:
        """Sample and deliver the values of one aligned instant (never raises)."""
        try:
            in_tx = {evse_id: self._busy(evse_id) for evse_id in sorted(self._meters)}
            if any(in_tx.values()) and self._setting(self._model.get_bool, "SendDuringIdle",
                                                     False):
                return   # J01.FR.20
            measurands = self._measurands()
            idle: list[tuple[int, MeterValue]] = []
            for evse_id, busy in in_tx.items():
                value = self._sample(evse_id, measurands, instant)
                if value is None:
                    continue
                if busy:
                    await self._to_transaction(evse_id, value)
                else:
                    idle.append((evse_id, value))
            for evse_id, value in idle:
                try:
                    await self._link.call("MeterValues", {"evseId": evse_id,
                                                          "meterValue": [value]}, wait=False)
                except NotConnected:
                    log.debug("clock-aligned MeterValues dropped: not connected")
                    return
                except CallFailed as exc:
                    log.info("clock-aligned MeterValues for EVSE %d not delivered: %s",
                             evse_id, exc)
        except Exception:
            log.exception("clock-aligned meter values at %s failed", instant.isoformat())

    # -- helpers ------------------------------------------------------------------------------

    def _interval(self) -> int:
        if not self._setting(self._model.get_bool, "Enabled", False):
            return 0
        return self._setting(self._model.get_int, "Interval", 0)

    def _measurands(self) -> list[str]:
        return self._setting(self._model.get_list, "Measurands", [])

    def _setting(self, read: Callable[..., Any], variable: str, default: Any) -> Any:
        try:
            return read(CONTROLLER, variable)
        except (KeyError, ValueError):
            return default

    def _busy(self, evse_id: int) -> bool:
        try:
            return bool(self._in_tx(evse_id))
        except Exception:
            log.exception("is_in_transaction(%d) failed; treating the EVSE as busy", evse_id)
            return True   # neither a MeterValues nor a transaction value: nothing wrong sent

    def _sample(self, evse_id: int, measurands: list[str], timestamp: datetime | None,
                context: str = "Sample.Clock") -> MeterValue | None:
        read = self._meters.get(evse_id)
        if read is None or not measurands:
            return None
        try:
            reading = read()
            if reading is None:
                return None
            e = self._extras(evse_id) if self._extras else Extras()
        except Exception:
            log.exception("meter of EVSE %d could not be read", evse_id)
            return None
        return meter_value(reading, measurands, context, phases=self._phases_of(evse_id),
                           location=self._location, timestamp=timestamp,
                           offered_current_a=e.offered_current_a,
                           offered_power_w=e.offered_power_w, soc_percent=e.soc_percent)

    def _phases_of(self, evse_id: int) -> int:
        if evse_id in self._phases:
            return self._phases[evse_id]
        try:
            return self._model.get_int("EVSE", "SupplyPhases", evse=evse_id)
        except (KeyError, ValueError):
            return 3   # unknown: report every phase the meter gives

    async def _to_transaction(self, evse_id: int, value: MeterValue) -> None:
        for listener in list(self._listeners):
            try:
                result = listener(evse_id, value)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("clock-aligned value for EVSE %d: listener failed", evse_id)

    def _on_write(self, component: Component, variable: Variable, attribute: str,
                  value: str) -> None:
        if component.name.lower() == CONTROLLER.lower():
            self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
