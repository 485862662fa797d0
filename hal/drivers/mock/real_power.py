"""A real power-module driver in a mock station: `[evse.power] driver = "can_power"` under
`hal.driver = "mock"`.

The real modules (on a CAN bus: a bench, or simulated modules on vcan) get every command
the agent gives, through the real driver; the simulated EV of the EVSE takes what those
modules report as their output, not what they were told (SimulatedEv.use_reported_output),
and the mock meter integrates that. So a session on a laptop or in a test rig exercises
the driver and the modules' own behaviour (their split, their keep-alive, their
switching off) while the rest of the station (pilot, contactor, meter, the EV) stays
simulated and drivable with `station-agent sim`.

The output is read from the modules after every command and, while they may deliver,
every `poll_s`, as a meter polls. The simulated world records the commands for a safety
monitor as it does for its own module (hal/drivers/mock/recorder.py): a switch-on before
it is sent, a switch-off once the modules have taken it, so the record never shows a
module off that might still be on.
"""

from __future__ import annotations

import asyncio

from hal.api import Clock, PowerCapabilities, PowerModule, PowerReadback
from hal.drivers.mock.ev import SimulatedEv


class ReportedPowerModule(PowerModule):
    """The driver `real` (not started: this device starts and stops it) feeding the
    simulated EV `ev`."""

    def __init__(self, real: PowerModule, ev: SimulatedEv, clock: Clock,
                 poll_s: float = 1.0) -> None:
        super().__init__()
        self.real = real
        self._ev = ev
        self._clock = clock
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None
        self._commanded = asyncio.Event()
        self._shown = self._view()
        ev.use_reported_output()
        ev.watch(self._on_ev)
        real.subscribe(self._on_real)

    async def capabilities(self) -> PowerCapabilities:
        return await self.real.capabilities()

    async def set_output(self, voltage_v: float, current_a: float) -> None:
        await self.real.set_output(voltage_v, current_a)
        self._ev.set_dc_output(voltage_v, current_a)
        await self.read()

    async def enable(self, on: bool) -> None:
        if on:
            self._ev.set_dc_on(True)
        await self.real.enable(on)
        if not on:
            self._ev.set_dc_on(False)
        self._commanded.set()
        await self.read()

    async def read(self) -> PowerReadback | None:
        readback = await self.real.read()
        if readback is not None:
            self._ev.set_reported_output(readback.voltage_v, readback.current_a)
        return readback

    async def start(self) -> None:
        await self.real.start()
        self._on_real()
        await self.read()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._poll())

    async def stop(self) -> None:
        self._ev.note("stop")
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.real.stop()        # the real driver leaves its modules off
        self._ev.set_dc_on(False)

    async def _poll(self) -> None:
        while True:
            if not (self._ev.dc_on or self._ev.module_output_on):
                # Nothing to follow until the agent switches the modules on.
                self._commanded.clear()
                await self._commanded.wait()
            await self._clock.sleep(self._poll_s)
            try:
                await self.read()
            except Exception:  # noqa: BLE001 - the driver reports its own faults
                pass

    def _view(self) -> tuple[object, ...]:
        ev = self._ev
        return ev.voltage_v, ev.current_a, ev.dc_on

    def _on_ev(self) -> None:
        view = self._view()
        if view != self._shown:
            self._shown = view
            self._changed()

    def _on_real(self) -> None:
        # The real driver's fault (no answer, a module's fault, the bus gone) is this
        # device's: the EVSE supervisor switches off on it.
        if self.real.fault != self.fault:
            self._set_fault(self.real.fault)
        else:
            self._changed()
