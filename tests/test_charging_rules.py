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
