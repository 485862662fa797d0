"""The station's hardware as the agent uses it, and what it sees becoming station state.

`build_hardware` picks the backends the config names (the mock station, or a driver per
device role); the hardware outlives a Reset of the agent's work, as a real board does.
`HardwareBridge` is the only place where `agent` reads `hal` devices for state: pilot
states become plugged connectors, device faults become Faulted ones (and, for whoever
watches them, faults by device role: the Availability block's NotifyEvent). Commands to
the hardware (contactor, offered current) are the blocks' business and go the other way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from hal.api import Clock, EvseDevices, ExternalLimit, FirmwareInstaller, PilotState
from hal.drivers import create as create_device
from hal.drivers.command_installer import CommandInstaller
from hal.drivers.mock import MockStation
from hal.drivers.mock.installer import MockInstaller
from hal.evse import EvseHardware

from agent.config import Config
from agent.station import Station


@dataclass
class Hardware:
    evses: dict[int, EvseHardware]
    mock: MockStation | None = None     # set when hal.driver = "mock": sim drives it
    installer: FirmwareInstaller | None = None   # None: this station takes no firmware
    # A station-wide limit from an energy manager or the grid operator (None: no input).
    external_limit: ExternalLimit | None = None

    async def start(self) -> None:
        for hw in self.evses.values():
            await hw.start()

    async def stop(self) -> None:
        # EvseHardware.stop opens the contactor first: the board is left safe.
        for hw in self.evses.values():
            await hw.stop()


def build_hardware(config: Config, clock: Clock) -> Hardware:
    installer = build_installer(config)
    if config.hal.driver == "mock":
        mock = MockStation(config.evses, clock)
        return Hardware({e.id: EvseHardware(e.id, mock.devices(e.id)) for e in config.evses},
                        mock, installer, mock.external_limit)
    evses = {}
    for evse in config.evses:
        devices = EvseDevices(**{spec.role: create_device(spec, clock) for spec in evse.devices})
        evses[evse.id] = EvseHardware(evse.id, devices)
    return Hardware(evses, installer=installer)


def build_installer(config: Config) -> FirmwareInstaller | None:
    """The config's install command; else, on the mock station, the mock installer."""
    firmware = config.firmware
    if firmware.install_command is not None:
        return CommandInstaller(firmware.install_command, firmware.version_command,
                                firmware.install_timeout_s)
    if config.hal.driver == "mock":
        return MockInstaller(config.storage.dir)
    return None


# Device roles of an EVSE (hal.api.EvseDevices); a fault is reported under its role.
ROLES = ("meter", "contactor", "pilot", "lock", "reader", "power")

FaultListener = Callable[[int, dict[str, str]], None]


class HardwareBridge:
    def __init__(self, station: Station, hardware: Hardware) -> None:
        self._station = station
        self._hardware = hardware
        self._fault_listeners: list[FaultListener] = []
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
        if self._fault_listeners:
            faults = self.faults(evse_id)
            for listener in list(self._fault_listeners):
                listener(evse_id, faults)

    def faults(self, evse_id: int) -> dict[str, str]:
        """The EVSE's faults now, by device role ("meter", "pilot", ...): what made its
        connectors Faulted. A driver's start failure counts under its role, anything
        unattributable under "hardware"."""
        hw = self._hardware.evses[evse_id]
        devices = {role: getattr(hw.devices, role) for role in ROLES}
        found: dict[str, str] = {}
        for role, device in devices.items():
            if device is not None and device.fault:
                found[role] = device.fault
        for text in hw.faults:
            if text in found.values():
                continue
            role = next((r for r, d in devices.items() if d is not None
                         and text.startswith(f"{type(d).__name__} ")), "hardware")
            found[role] = f"{found[role]}; {text}" if role in found else text
        pilot = hw.devices.pilot
        if pilot is not None and "pilot" not in found and pilot.state in (PilotState.E,
                                                                          PilotState.F):
            found["pilot"] = f"control pilot in state {pilot.state.value}"
        return found

    def watch_faults(self, listener: FaultListener) -> None:
        """Call `listener(evse_id, faults by role)` now for every EVSE and after every
        change of its hardware from now on (often unchanged: compare before acting)."""
        self._fault_listeners.append(listener)
        for evse_id in self._hardware.evses:
            listener(evse_id, self.faults(evse_id))

    def close(self) -> None:
        """Detach from the hardware (the runtime ends; the hardware lives on)."""
        for evse_id, hw in self._hardware.evses.items():
            hw.unsubscribe(self._listeners[evse_id])
        self._fault_listeners.clear()
