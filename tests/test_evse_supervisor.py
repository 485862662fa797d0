"""hal/evse.py: the safety rules that hold whatever the drivers do."""

import asyncio

from agent.clock import ManualClock
from hal.api import ContactorState, EnergyMeter, EvseDevices
from hal.drivers.mock import MockStation
from hal.evse import EvseHardware


class Spec:
    id = 1
    max_current_a = 32
    phases = 3
    nominal_voltage_v = 230


class BrokenMeter(EnergyMeter):
    """A driver with a bug: it raises where it should report."""

    async def start(self):
        raise RuntimeError("driver bug")

    async def read(self):
        return None


def test_a_device_fault_opens_the_contactor():
    async def main():
        station = MockStation([Spec()], ManualClock())
        hw = EvseHardware(1, station.devices(1))
        await hw.start()
        contactor = station.devices(1).contactor
        await contactor.close()
        assert contactor.state is ContactorState.CLOSED
        meter = station.devices(1).meter
        meter._set_fault("no answer from meter at address 1")
        await asyncio.sleep(0.01)
        assert contactor.state is ContactorState.OPEN
        assert hw.faults == ["no answer from meter at address 1"]
        await hw.stop()
    asyncio.run(main())


def test_a_driver_that_raises_at_start_is_a_fault_not_a_crash():
    async def main():
        station = MockStation([Spec()], ManualClock())
        devices = station.devices(1)
        hw = EvseHardware(1, EvseDevices(meter=BrokenMeter(), contactor=devices.contactor,
                                         pilot=devices.pilot))
        seen = []
        hw.subscribe(lambda: seen.append(list(hw.faults)))
        await hw.start()
        assert any("BrokenMeter failed to start: driver bug" in f for f in hw.faults)
        assert seen and seen[-1] == hw.faults
        await hw.stop()
    asyncio.run(main())


def test_stop_opens_the_contactor_first():
    async def main():
        station = MockStation([Spec()], ManualClock())
        devices = station.devices(1)
        order = []
        for name, device in (("meter", devices.meter), ("contactor", devices.contactor),
                             ("pilot", devices.pilot)):
            original = device.stop

            async def stop(original=original, name=name):
                order.append(name)
                await original()
            device.stop = stop
        hw = EvseHardware(1, devices)
        await hw.start()
        await devices.contactor.close()
        await hw.stop()
        assert order[0] == "contactor"
        assert devices.contactor.state is ContactorState.OPEN
    asyncio.run(main())
