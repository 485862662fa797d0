"""hal/evse.py: the safety rules that hold whatever the drivers do."""

import asyncio

from agent.clock import ManualClock
from hal.api import ContactorState, EnergyMeter, EvseDevices
from hal.drivers.mock import MockStation
from hal.drivers.mock.recorder import read
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


async def settled(condition, turns=100):
    """Until `condition()` holds; the supervisor's watchdog runs as a task of this loop."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the supervisor did not act")


async def ac_charging(station, hw):
    """An AC session as the charging rules drive it: lock, offer, EV in C, contactor."""
    station.plug(1)
    assert await hw.engage_lock()
    assert await hw.offer(16)
    assert await hw.close_contactor()
    assert station.snapshot(1)["power_w"] > 0


def test_a_device_fault_switches_off_in_the_safe_order(safety_monitor):
    async def main():
        station = MockStation([Spec()], ManualClock())
        hw = EvseHardware(1, station.devices(1))
        await hw.start()
        await ac_charging(station, hw)
        contactor = station.devices(1).contactor
        meter = station.devices(1).meter
        meter._set_fault("no answer from meter at address 1")
        await settled(lambda: contactor.state is ContactorState.OPEN)
        assert hw.faults == ["no answer from meter at address 1"]
        assert station.devices(1).pilot.offered_a is None
        assert not await hw.close_contactor(), "no energy during a fault"
        assert not await hw.offer(16)
        await hw.stop()
        causes = [t.cause for t in read(safety_monitor) if t.cause in ("offer", "contactor")]
        assert causes[-2:] == ["offer", "contactor"], "offer withdrawn, then the contactor"
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


def test_stop_switches_off_then_unlocks_then_releases_the_devices(safety_monitor):
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
        await ac_charging(station, hw)
        await hw.stop()
        assert order[0] == "contactor"
        assert devices.contactor.state is ContactorState.OPEN
        assert devices.lock.locked is False, "a stopped agent holds no cable"
        moves = [(t.cause, t.after.offered_a, t.after.contactor_closed, t.after.locked)
                 for t in read(safety_monitor) if t.cause != "plug"]
        assert moves[-5:] == [("offer", None, True, True), ("contactor", None, False, True),
                              ("lock", None, False, False), ("stop", None, False, False),
                              ("stop", None, False, False)]
    asyncio.run(main())


def test_no_energy_through_an_unlocked_socket_and_no_unlock_under_load():
    async def main():
        station = MockStation([Spec()], ManualClock())
        hw = EvseHardware(1, station.devices(1))
        await hw.start()
        station.plug(1)
        assert not await hw.offer(16), "no offer before the lock holds"
        assert not await hw.close_contactor()
        station.lock_fail(1)
        assert not await hw.engage_lock()
        assert hw.lock_problem == ("the connector lock did not lock: its feedback did not "
                                   "confirm")
        locks = []
        station.devices(1).lock.lock = lambda: locks.append(1)
        assert not await hw.engage_lock(), "not tried again in the same session"
        assert locks == []
        del station.devices(1).lock.lock
        station.lock_ok(1)                # freed: the lock says so, and may be tried again
        assert await hw.engage_lock() and hw.lock_problem is None
        assert await hw.offer(16) and await hw.close_contactor()
        assert not await hw.release_lock() and not await hw.unlock_connector()
        assert station.snapshot(1)["locked"] is True
        await hw.stop()
    asyncio.run(main())


def test_the_supervisor_reports_what_it_switches_to_an_observer():
    """The safety monitor's view of real drivers: every command and every device change
    as a transition, the DC current from the module's read-back."""
    from hal.drivers.mock import MockEvseSpec
    from tests.safety_monitor import check

    async def main():
        station = MockStation([MockEvseSpec(1, max_current_a=200, phases=0)], ManualClock())
        seen = []
        hw = EvseHardware(1, station.devices(1), observer=seen.append, rating_a=200)
        await hw.start()
        station.plug(1)
        assert await hw.close_contactor()
        await hw.set_module_output(1000, 80)
        assert await hw.switch_module_on()
        await hw.stop()
        commands = [(t.cause, t.after.contactor_closed, t.after.module_on) for t in seen
                    if t.cause != "device"]
        assert commands == [("contactor", True, False), ("setpoint", True, False),
                            ("module", True, True), ("module", True, False),
                            ("contactor", False, False), ("stop", False, False)]
        opening = next(t for t in seen if t.cause == "contactor" and not t.after.contactor_closed)
        assert opening.before.current_a == 0.0, "the read-back said the current had gone"
        assert any(t.cause == "device" and t.after.plugged for t in seen), "the EV plugged in"
        assert check(seen) == []
    asyncio.run(main())


def test_a_card_reader_that_stops_answering_does_not_cut_a_session():
    """The reader only reads new cards: its fault is reported, energy stays on."""
    async def main():
        station = MockStation([Spec()], ManualClock())
        hw = EvseHardware(1, station.devices(1))
        await hw.start()
        await ac_charging(station, hw)
        station.devices(1).reader._set_fault("RFID reader: no answer on /dev/ttyS1")
        for _ in range(20):
            await asyncio.sleep(0)
        assert hw.faults == []
        assert hw.faults_by_role() == {"reader": "RFID reader: no answer on /dev/ttyS1"}
        assert station.devices(1).contactor.state is ContactorState.CLOSED
        assert station.snapshot(1)["power_w"] > 0
        await hw.stop()
    asyncio.run(main())
