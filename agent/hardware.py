"""The station's hardware as the agent uses it, and what it sees becoming station state.

`build_hardware` picks the backends the config names (the mock station, or a driver per
device role); the hardware outlives a Reset of the agent's work, as a real board does.
`HardwareBridge` is the only place where `agent` reads `hal` devices for state: pilot
states become plugged connectors, device faults become Faulted ones (and, for whoever
watches them, problems by device role: the Availability block's NotifyEvent, a lock that
did not move among them). Commands to the hardware (contactor, offered current, lock) are
the blocks' business and go the other way, through the EVSE supervisor (hal/evse.py).

A fault is not an unplug: while the pilot is in state E or F (the station's own fault
signal, -12 V, which hides the EV's resistor) the connector keeps the plug state it had,
so a session is held through a fault and ends as EVCommunicationLost only once a working
pilot shows the EV gone.

With STATION_AGENT_TRANSITION_LOG set (the test suite's safety monitor), every
transition of the hardware goes to that file: the mock station's own, or on real drivers
the supervisors' (hal/drivers/mock/recorder.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable

from hal.api import (Clock, EnergyMeter, EvseDevices, ExternalLimit, FirmwareInstaller,
                     PilotState)
from hal.drivers import create as create_device
from hal.drivers.command_installer import CommandInstaller
from hal.drivers.mock import MockStation
from hal.drivers.mock.installer import MockInstaller
from hal.drivers.mock.recorder import from_env as transition_log
from hal.evse import ROLES as EVSE_ROLES
from hal.evse import EvseHardware

from agent.config import Config, EvseConfig
from agent.station import Station

log = logging.getLogger(__name__)

# How long start() waits for the meters' first readings. A transaction a power cut left
# open is ended at start-up with the register the meter kept through the cut, which a
# polled meter (Modbus) gives only after its first poll; one that has not answered by
# then (or has a fault) leaves the transaction block the last register it reported
# (docs/energy-register.md). Real time, not the agent's clock: this waits on I/O.
FIRST_READING_S = 2.0


@dataclass
class Hardware:
    evses: dict[int, EvseHardware]
    mock: MockStation | None = None     # set when hal.driver = "mock": sim drives it
    installer: FirmwareInstaller | None = None   # None: this station takes no firmware
    # A station-wide limit from an energy manager or the grid operator (None: no input).
    external_limit: ExternalLimit | None = None
    first_reading_s: float = FIRST_READING_S

    async def start(self) -> None:
        """Start every EVSE's devices; return once each meter has a reading, a fault or
        `first_reading_s` has passed."""
        for hw in self.evses.values():
            await hw.start()
        await self._first_readings()

    async def _first_readings(self) -> None:
        def waiting() -> dict[int, EnergyMeter]:
            return {evse_id: hw.devices.meter for evse_id, hw in self.evses.items()
                    if hw.devices.meter is not None and hw.devices.meter.latest is None
                    and not hw.faults}
        meters = list(waiting().values())
        if not meters:
            return
        changed = asyncio.Event()
        for meter in meters:
            meter.subscribe(changed.set)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.first_reading_s
        try:
            while silent := waiting():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    log.warning("no reading yet from the meter of EVSE %s after %g s; "
                                "going on without", ", ".join(map(str, silent)),
                                self.first_reading_s)
                    return
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except asyncio.TimeoutError:
                    pass
        finally:
            for meter in meters:
                meter.unsubscribe(changed.set)

    async def stop(self) -> None:
        # EvseHardware.stop switches off in the safe order; all EVSEs at once, so DC
        # modules ramp down together within the clean stop's few seconds.
        results = await asyncio.gather(*(hw.stop() for hw in self.evses.values()),
                                       return_exceptions=True)
        for evse_id, result in zip(self.evses, results):
            if isinstance(result, Exception):
                log.error("EVSE %d: stop failed: %s", evse_id, result)


def build_hardware(config: Config, clock: Clock) -> Hardware:
    installer = build_installer(config)
    if config.hal.driver == "mock":
        # The mock meters keep their registers under the storage dir, as real meters
        # keep theirs through a power cut.
        # The mock records its transitions itself, with the physics (recorder.py).
        # A real power module ([evse.power]) feeds the simulated EV (real_power.py).
        power = {e.id: create_device(spec, clock) for e in config.evses
                 for spec in e.devices if spec.role == "power"}
        mock = MockStation(config.evses, clock, state_dir=config.storage.dir, power=power)
        return Hardware({e.id: EvseHardware(e.id, mock.devices(e.id), clock=clock,
                                            rating_a=e.max_current_a)
                         for e in config.evses}, mock, installer, mock.external_limit)
    evses = {}
    recorder = transition_log()
    for evse in config.evses:
        devices = EvseDevices(**{spec.role: create_device(spec, clock) for spec in evse.devices})
        evses[evse.id] = EvseHardware(evse.id, devices, clock=clock, observer=recorder,
                                      rating_a=evse.max_current_a)
    return Hardware(evses, installer=installer)


def connector_type(evse: EvseConfig, driver: str) -> str:
    """ConnectorType of the EVSE's connector: a DC output has a fixed CCS cable; an AC
    one a socket (sType2) where it has a lock to hold a detachable cable, a fixed Type 2
    cable where it has none. The mock gives every AC EVSE a socket with a lock."""
    if evse.dc:
        return "cCCS2"
    if driver == "mock" or any(spec.role == "lock" for spec in evse.devices):
        return "sType2"
    return "cType2"


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
ROLES = EVSE_ROLES

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
        for connector_id, connector in self._station.evses[evse_id].connectors.items():
            # E/F: the station's fault signal hides the EV; it stays as it was seen.
            plugged = connector.plugged if state in (PilotState.E, PilotState.F) \
                else state.plugged
            self._station.update(evse_id, connector_id, plugged=plugged, faulted=faulted)
        if self._fault_listeners:
            faults = self.faults(evse_id)
            for listener in list(self._fault_listeners):
                listener(evse_id, faults)

    def faults(self, evse_id: int) -> dict[str, str]:
        """The EVSE's problems now, by device role ("meter", "pilot", "lock", ...): the
        faults that made its connectors Faulted (a driver's start failure counts under
        its role), and those that do not: a connector lock that did not move, a card
        reader that does not answer."""
        hw = self._hardware.evses[evse_id]
        found = hw.faults_by_role()
        pilot = hw.devices.pilot
        if pilot is not None and "pilot" not in found and pilot.state in (PilotState.E,
                                                                          PilotState.F):
            found["pilot"] = f"control pilot in state {pilot.state.value}"
        if hw.lock_problem is not None:
            found["lock"] = f"{found['lock']}; {hw.lock_problem}" if "lock" in found \
                else hw.lock_problem
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
