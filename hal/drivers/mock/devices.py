"""The mock devices: the hal.api interfaces over a SimulatedEv, so the agent cannot tell
them from real drivers. Each device notifies its listeners only when what *it* shows
changed, as a real driver reporting its own hardware would.
"""

from __future__ import annotations

import asyncio
import collections
from typing import AsyncIterator

from hal.api import (ID_TOKEN_TYPES, Clock, ConnectorLock, Contactor, ContactorState, ControlPilot,
                     EnergyMeter, ExternalLimit, ExternalLimitSignal, IdTokenReader, MeterReading,
                     PilotState, PowerCapabilities, PowerModule, PowerReadback, PresentedToken)
from hal.drivers.mock.ev import DC_MAX_VOLTAGE_V, DC_MIN_VOLTAGE_V, FAULT_TEXT, SimulatedEv

# How often the mock meter takes a reading; energy is exact regardless (see ev.py).
METER_POLL_S = 1.0
AC_FREQUENCY_HZ = 50.0
# Cards swiped while nobody reads the reader: keep the newest few, like a reader's buffer.
READER_BUFFER = 16
ID_TOKEN_MAX_LEN = 36  # IdTokenType.idToken maxLength


class MockPilot(ControlPilot):
    def __init__(self, ev: SimulatedEv) -> None:
        super().__init__()
        self._ev = ev
        self._shown = self._observed()
        ev.watch(self._on_ev)

    @property
    def state(self) -> PilotState:
        return self._ev.pilot

    @property
    def offered_a(self) -> float | None:
        return self._ev.offered_a

    async def offer(self, current_a: float | None) -> None:
        self._ev.set_offer(current_a)

    async def stop(self) -> None:
        # A stopped pilot offers nothing (no PWM), as a real one left alone must not.
        self._ev.note("stop")
        self._ev.set_offer(None)

    def _observed(self) -> tuple[PilotState, float | None, str | None]:
        return self._ev.pilot, self._ev.offered_a, self._ev.fault

    def _on_ev(self) -> None:
        shown = self._observed()
        if shown != self._shown:
            self._shown = shown
            # The hardware fault shows as this device's fault: the EVSE supervisor opens
            # the contactor on any device fault, as for a real pilot reading -12 V.
            self.fault = self._ev.fault
            self._changed()


class MockContactor(Contactor):
    def __init__(self, ev: SimulatedEv) -> None:
        super().__init__()
        self._ev = ev
        self._shown = self.state
        ev.watch(self._on_ev)

    async def close(self) -> None:
        self._ev.set_contactor(True)

    async def open(self) -> None:
        self._ev.set_contactor(False)

    @property
    def state(self) -> ContactorState:
        return ContactorState.CLOSED if self._ev.contactor_closed else ContactorState.OPEN

    async def stop(self) -> None:
        self._ev.note("stop")
        await self.open()

    def _on_ev(self) -> None:
        if self.state != self._shown:
            self._shown = self.state
            self._changed()


class MockMeter(EnergyMeter):
    """Polls the simulated EVSE on the clock, like a Modbus meter polled on a serial line.

    While nothing flows it waits for the simulated world to change instead of polling:
    the readings could not differ, an idle daemon stays at ~0 CPU, and a test can skip a
    day on a ManualClock without a wake-up every second of it.
    """

    def __init__(self, ev: SimulatedEv, clock: Clock, poll_s: float = METER_POLL_S) -> None:
        super().__init__()
        self._ev = ev
        self._clock = clock
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None
        self._inputs_changed = asyncio.Event()
        ev.watch(self._inputs_changed.set)

    async def read(self) -> MeterReading:
        ev = self._ev
        energy = ev.energy_wh()  # first: integrates up to now
        current, voltage = ev.current_a, ev.voltage_v
        if ev.spec.phases == 3:
            currents: tuple[float | None, ...] = (current,) * 3
            voltages: tuple[float | None, ...] = (voltage,) * 3
        else:  # single phase or DC: the first channel only
            currents, voltages = (current, None, None), (voltage, None, None)
        reading = MeterReading(
            timestamp=self._clock.now(), energy_import_wh=energy, energy_export_wh=0.0,
            power_w=ev.power_w, voltage_v=voltages, current_a=currents,  # type: ignore[arg-type]
            frequency_hz=None if ev.spec.dc else AC_FREQUENCY_HZ)
        self.latest = reading
        return reading

    async def start(self) -> None:
        if self._task is None or self._task.done():
            await self.read()
            self._changed()
            self._task = asyncio.ensure_future(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _poll(self) -> None:
        while True:
            if self.latest is not None and not self.latest.power_w:
                await self._inputs_changed.wait()
            await self._clock.sleep(self._poll_s)
            self._inputs_changed.clear()  # the reading below sees every change until now
            before = self.latest
            after = await self.read()
            # Only a reading that says something new is a change: an idle EVSE stays quiet.
            if before is None or _values(after) != _values(before):
                self._changed()


def _values(reading: MeterReading) -> tuple[object, ...]:
    return (reading.energy_import_wh, reading.power_w, reading.current_a, reading.voltage_v)


class MockLock(ConnectorLock):
    """A socket's lock with feedback. Jammed (`MockStation.lock_fail`), it does not move
    and its feedback says so: lock()/unlock() return False, as a real lock that stalls.
    That is not a device fault by itself (the GPIO lock's contract): the agent decides
    what a lock that did not move means. Listeners hear when the lock moves and when a
    jam starts or ends (a technician freeing it is something to retry on)."""

    def __init__(self, ev: SimulatedEv) -> None:
        super().__init__()
        self._ev = ev
        self._shown = (ev.locked, ev.lock_jammed)
        ev.watch(self._on_ev)

    async def lock(self) -> bool:
        return self._ev.set_locked(True)

    async def unlock(self) -> bool:
        return self._ev.set_locked(False)

    @property
    def locked(self) -> bool | None:
        return self._ev.locked

    def _on_ev(self) -> None:
        shown = (self._ev.locked, self._ev.lock_jammed)
        if shown != self._shown:
            self._shown = shown
            self._changed()


class MockReader(IdTokenReader):
    def __init__(self) -> None:
        super().__init__()
        self._pending: collections.deque[PresentedToken] = collections.deque(maxlen=READER_BUFFER)
        self._arrived = asyncio.Event()

    def present(self, uid: str, type: str = "ISO14443") -> PresentedToken:
        """A card held to the reader; ValueError for a uid or type OCPP could not carry."""
        if not isinstance(uid, str) or not uid or len(uid) > ID_TOKEN_MAX_LEN \
                or not uid.isprintable() or not uid.isascii() or " " in uid:
            raise ValueError(f"token must be 1 to {ID_TOKEN_MAX_LEN} printable ASCII characters "
                             f"without spaces, got {uid!r}")
        if type not in ID_TOKEN_TYPES:
            raise ValueError(f"unknown idToken type {type!r}; known: {', '.join(sorted(ID_TOKEN_TYPES))}")
        token = PresentedToken(uid=uid.upper(), type=type)
        self._pending.append(token)
        self._arrived.set()
        return token

    async def tokens(self) -> AsyncIterator[PresentedToken]:
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            yield self._pending.popleft()


class MockPowerModule(PowerModule):
    def __init__(self, ev: SimulatedEv) -> None:
        super().__init__()
        self._ev = ev
        self._shown = self._readback()
        ev.watch(self._on_ev)

    async def capabilities(self) -> PowerCapabilities:
        spec = self._ev.spec
        return PowerCapabilities(min_voltage_v=DC_MIN_VOLTAGE_V, max_voltage_v=DC_MAX_VOLTAGE_V,
                                 max_current_a=float(spec.max_current_a),
                                 max_power_w=float(spec.max_current_a) * DC_MAX_VOLTAGE_V)

    async def set_output(self, voltage_v: float, current_a: float) -> None:
        self._ev.set_dc_output(voltage_v, current_a)

    async def enable(self, on: bool) -> None:
        self._ev.set_dc_on(on)

    async def read(self) -> PowerReadback:
        return self._readback()

    async def stop(self) -> None:
        self._ev.note("stop")
        await self.enable(False)

    def _readback(self) -> PowerReadback:
        ev = self._ev
        return PowerReadback(voltage_v=ev.voltage_v, current_a=ev.current_a, on=ev.dc_on,
                             faults=frozenset({FAULT_TEXT} if ev.fault else ()))

    def _on_ev(self) -> None:
        readback = self._readback()
        if readback != self._shown:
            self._shown = readback
            self._changed()


class MockExternalLimit(ExternalLimit):
    """A station-wide limit set by a person (`station-agent sim external-limit`) or a test,
    standing in for an energy manager or a grid operator's control box. It starts with no
    limit, as a station without such an input has none."""

    def __init__(self) -> None:
        super().__init__()
        self._signal = ExternalLimitSignal()

    @property
    def signal(self) -> ExternalLimitSignal:
        return self._signal

    def set(self, signal: ExternalLimitSignal) -> None:
        """Listeners hear only a change: a control box repeating its last word is not news."""
        if not isinstance(signal, ExternalLimitSignal):
            raise TypeError("an external limit is an ExternalLimitSignal, "
                            f"got {type(signal).__name__}")
        if signal != self._signal:
            self._signal = signal
            self._changed()
