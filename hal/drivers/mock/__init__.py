"""Mock hardware (hal.driver = "mock"): the real interfaces over a simulated EV per EVSE.

The agent drives these devices exactly as it drives real drivers and cannot tell the
difference; a person or a test drives the simulated world through `MockStation`
(plug, swipe, suspend, fault, ...), in production via `station-agent sim` and the
agent's control socket. Time comes from the injected clock only.

- ev.py       SimulatedEv: the physics of one EVSE (pilot state, current, energy)
- devices.py  MockPilot, MockContactor, MockMeter, MockLock, MockReader, MockPowerModule,
              MockExternalLimit (the station-wide limit of an energy manager / grid operator)
- station.py  MockStation: all EVSEs by id, the commands, snapshots
- register.py RegisterFile: a meter's register kept on disk across restarts, as a real
              meter keeps it across a power cut
- real_power.py ReportedPowerModule: a real power-module driver ([evse.power]) in place of
              the simulated one; the EV takes what the real modules report
"""

from hal.drivers.mock.devices import (MockContactor, MockExternalLimit, MockLock, MockMeter,
                                      MockPilot, MockPowerModule, MockReader)
from hal.drivers.mock.ev import MockEvseSpec, SimulatedEv
from hal.drivers.mock.station import MockStation, UnknownEvse

__all__ = ["MockContactor", "MockEvseSpec", "MockExternalLimit", "MockLock", "MockMeter",
           "MockPilot", "MockPowerModule", "MockReader", "MockStation", "SimulatedEv",
           "UnknownEvse"]
