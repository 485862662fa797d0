"""The station's hardware as the agent uses it, and what it sees becoming station state.

`build_hardware` picks the backends the config names (the mock station, or a driver per
device role); the hardware outlives a Reset of the agent's work, as a real board does.
`HardwareBridge` is the only place where `agent` reads `hal` devices for state: pilot
states become plugged connectors, device faults become Faulted ones. Commands to the
hardware (contactor, offered current) are the blocks' business and go the other way.
"""

from __future__ import annotations

from dataclasses import dataclass

from hal.api import Clock, EvseDevices, PilotState
from hal.drivers import create as create_device
from hal.drivers.mock import MockStation
from hal.evse import EvseHardware

from agent.config import Config
from agent.station import Station


@dataclass
class Hardware:
    evses: dict[int, EvseHardware]
    mock: MockStation | None = None     # set when hal.driver = "mock": sim drives it

    async def start(self) -> None:
        for hw in self.evses.values():
            await hw.start()

    async def stop(self) -> None:
        # EvseHardware.stop opens the contactor first: the board is left safe.
        for hw in self.evses.values():
            await hw.stop()


def build_hardware(config: Config, clock: Clock) -> Hardware:
    if config.hal.driver == "mock":
        mock = MockStation(config.evses, clock)
        return Hardware({e.id: EvseHardware(e.id, mock.devices(e.id)) for e in config.evses}, mock)
    evses = {}
    for evse in config.evses:
        devices = EvseDevices(**{spec.role: create_device(spec, clock) for spec in evse.devices})
        evses[evse.id] = EvseHardware(evse.id, devices)
    return Hardware(evses)


class HardwareBridge:
    def __init__(self, station: Station, hardware: Hardware) -> None:
        self._station = station
        self._hardware = hardware
        self._listeners = {evse_id: (lambda evse_id=evse_id: self.sync(evse_id))
                           for evse_id in hardware.evses}
        for evse_id, hw in hardware.evses.items():
            hw.subscribe(self._listeners[evse_id])
            self.sync(evse_id)

    def sync(self, evse_id: int) -> None:
        hw = self._hardware.evses[evse_id]
        pilot = hw.devices.pilot
        state = pilot.state if pilot is not None else PilotState.A
        faulted = bool(hw.faults) or state in (PilotState.E, PilotState.F)
        for connector_id in self._station.evses[evse_id].connectors:
            self._station.update(evse_id, connector_id, plugged=state.plugged, faulted=faulted)

    def close(self) -> None:
        """Detach from the hardware (the runtime ends; the hardware lives on)."""
        for evse_id, hw in self._hardware.evses.items():
            hw.unsubscribe(self._listeners[evse_id])
