"""The charging rules (agent/blocks/charging.py) on the mock hardware."""

import asyncio

from agent.blocks import charging
from agent.clock import ManualClock
from agent.station import Connector, Evse
from hal.api import ContactorState
from hal.drivers.mock import MockStation
from hal.evse import EvseHardware


class Spec:
    id = 1
    max_current_a = 16
    phases = 3
    nominal_voltage_v = 230


def rig():
    mock = MockStation([Spec()], ManualClock())
    hw = EvseHardware(1, mock.devices(1))
    evse = Evse(1, 16, 3, 230, connectors={1: Connector(1, 1)})
    return mock, hw, evse


def test_offer_and_contactor_follow_plug_and_authorization():
    async def main():
        mock, hw, evse = rig()
        await hw.start()
        await charging.apply(hw, evse, authorized=True)
        assert hw.devices.pilot.offered_a is None, "nothing plugged: no offer"
        mock.plug(1)
        evse.connectors[1].plugged = True
        await charging.apply(hw, evse, authorized=False)
        assert hw.devices.pilot.offered_a is None, "not authorized: no offer"
        assert charging.charging_state(hw, evse, authorized=False) == "EVConnected"
        await charging.apply(hw, evse, authorized=True)
        assert hw.devices.pilot.offered_a == 16
        await charging.apply(hw, evse, authorized=True)   # the EV went to C: close
        assert hw.devices.contactor.state is ContactorState.CLOSED
        assert charging.reached_points(hw, evse, True) >= {"EVConnected", "Authorized",
                                                            "PowerPathClosed"}
        mock.suspend(1)
        await charging.apply(hw, evse, authorized=True)
        assert hw.devices.contactor.state is ContactorState.OPEN, "EV back in B: open"
        assert charging.charging_state(hw, evse, authorized=True) == "SuspendedEV"
        await hw.stop()
    asyncio.run(main())


def test_inoperative_or_faulted_never_offers():
    async def main():
        mock, hw, evse = rig()
        await hw.start()
        mock.plug(1)
        evse.connectors[1].plugged = True
        evse.connectors[1].operative = False
        await charging.apply(hw, evse, authorized=True)
        assert hw.devices.pilot.offered_a is None
        evse.connectors[1].operative = True
        await charging.apply(hw, evse, authorized=True)
        await charging.apply(hw, evse, authorized=True)
        assert hw.devices.contactor.state is ContactorState.CLOSED
        mock.fault(1)
        await charging.apply(hw, evse, authorized=True)
        assert hw.devices.pilot.offered_a is None
        assert hw.devices.contactor.state is ContactorState.OPEN
        await hw.stop()
    asyncio.run(main())


# -- DC: the power module's set-point is the offer --------------------------------------------

class DcSpec:
    id = 1
    max_current_a = 200
    phases = 3
    nominal_voltage_v = 230
    dc = True


def dc_rig():
    mock = MockStation([DcSpec()], ManualClock())
    hw = EvseHardware(1, mock.devices(1))
    evse = Evse(1, 200, 3, 230, connectors={1: Connector(1, 1)})
    # Every state the simulated output passes through, to catch switching under load.
    seen = []
    ev = mock.ev(1)
    ev.watch(lambda: seen.append((ev.contactor_closed, ev.dc_on, ev.dc_current_a)))
    return mock, hw, evse, seen


async def dc_plugged():
    """The DC rig started, an EV plugged in, nothing told to the module yet."""
    mock, hw, evse, seen = dc_rig()
    await hw.start()
    mock.plug(1)
    evse.connectors[1].plugged = True
    return mock, hw, evse, seen, charging.DcCommand()


def test_dc_module_follows_the_power_limit_and_never_switches_under_load():
    async def main():
        mock, hw, evse, seen, dc = await dc_plugged()
        await charging.apply(hw, evse, authorized=False, dc=dc)
        assert mock.snapshot(1)["power_w"] == 0, "not authorized: module off"
        await charging.apply(hw, evse, authorized=True, limit_w=50_000, dc=dc)
        snap = mock.snapshot(1)
        # 50 kW at the module's 1000 V ceiling: 50 A, so no battery voltage exceeds it.
        assert snap["offered_current_a"] == 50 and snap["contactor_closed"]
        assert snap["power_w"] == 50_000
        await charging.apply(hw, evse, authorized=True, limit_w=None, dc=dc)
        assert mock.snapshot(1)["offered_current_a"] == 200, "no limit: the rating"
        await charging.apply(hw, evse, authorized=True, limit_w=500, dc=dc)
        snap = mock.snapshot(1)
        assert snap["power_w"] == 0 and not snap["contactor_closed"], "below 1 A: a pause"
        assert charging.charging_state(hw, evse, authorized=True) == "SuspendedEVSE"
        await charging.apply(hw, evse, authorized=True, limit_w=20_000, dc=dc)
        assert mock.snapshot(1)["power_w"] == 20_000
        mock.suspend(1)          # the EV stops asking: module off, then contactor open
        await charging.apply(hw, evse, authorized=True, limit_w=20_000, dc=dc)
        assert mock.snapshot(1)["contactor_closed"] is False
        assert charging.charging_state(hw, evse, authorized=True) == "SuspendedEV"
        mock.resume(1)
        await charging.apply(hw, evse, authorized=True, limit_w=20_000, dc=dc)
        mock.fault(1)
        await charging.apply(hw, evse, authorized=True, limit_w=20_000, dc=dc)
        assert mock.snapshot(1)["power_w"] == 0
        await hw.stop()
        assert (True, True, 50.0) in seen and (True, True, 20.0) in seen
        # The module is on only behind a closed contactor, the fault included: the
        # station switched it off before opening.
        assert all(closed or not on for closed, on, _ in seen)
        assert not mock.ev(1).dc_on, "stopped: module off"
    asyncio.run(main())


def test_dc_set_point_is_sent_once_per_change():
    async def main():
        mock, hw, evse, seen, dc = await dc_plugged()
        for _ in range(3):
            await charging.apply(hw, evse, authorized=True, limit_w=30_000, dc=dc)
        assert [s for s in seen if s[2] == 30.0 and s[1]] == [(True, True, 30.0)]
        assert charging.dc_current_for(evse, 1000, 33_333) == 33.3
        assert charging.dc_current_for(evse, 1000, None) == 200
        await hw.stop()
    asyncio.run(main())
