"""The hardware interfaces and their values. Knows nothing of OCPP.

Modelled on python-can: one small abstract interface per kind of device, many
interchangeable backends chosen by name from the config (hal/drivers/). A backend never
lets a device error reach its caller as an exception from a read: it reports a fault
(`Device.fault`) and returns what it has, so the daemon keeps running and the EVSE
supervisor (hal/evse.py) can open the contactor.
"""

from __future__ import annotations

import abc
import enum
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Mapping, Protocol

Listener = Callable[[], None]


class Clock(Protocol):
    """The injectable clock (the agent's `agent.clock.Clock` has this shape)."""

    def now(self) -> datetime: ...
    def monotonic(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class HalConfigError(Exception):
    """A driver setting that cannot work; `key` names it (e.g. 'port'), message says why."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class Device(abc.ABC):
    """What every backend is: started and stopped by the daemon, able to report a fault.

    `fault` is None while the device works, else a short text for the operator ("no
    answer from meter at address 1", "contactor welded"). Listeners are called (from the
    event loop) whenever the fault or any other observable state changes.
    """

    def __init__(self) -> None:
        self.fault: str | None = None
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        """The listener's owner ends (the agent's runtime after a Reset); the device lives on."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    def _set_fault(self, fault: str | None) -> None:
        if fault != self.fault:
            self.fault = fault
            self._changed()

    async def start(self) -> None:
        """Open ports, begin polling. Failing to reach the device is a fault, not an error."""

    async def stop(self) -> None:
        """Leave the hardware safe (contactor open, module off) and release it."""


# -- energy meter --------------------------------------------------------------------------

@dataclass(frozen=True)
class MeterReading:
    """One reading. None where the meter does not measure that quantity.

    Energy registers are the meter's own, monotonic, in Wh. Per-phase tuples are
    (L1, L2, L3); a single-phase meter gives (x, None, None).
    """

    timestamp: datetime
    energy_import_wh: float | None = None
    energy_export_wh: float | None = None
    power_w: float | None = None
    voltage_v: tuple[float | None, float | None, float | None] = (None, None, None)
    current_a: tuple[float | None, float | None, float | None] = (None, None, None)
    frequency_hz: float | None = None


class EnergyMeter(Device):
    """A meter polled by its driver; `latest` is the last good reading."""

    def __init__(self) -> None:
        super().__init__()
        self.latest: MeterReading | None = None

    @abc.abstractmethod
    async def read(self) -> MeterReading | None:
        """Poll once now. None (and `fault` set) when the meter did not answer properly."""


# -- DC power module -----------------------------------------------------------------------

@dataclass(frozen=True)
class PowerCapabilities:
    min_voltage_v: float
    max_voltage_v: float
    max_current_a: float
    max_power_w: float


@dataclass(frozen=True)
class PowerReadback:
    voltage_v: float
    current_a: float
    on: bool
    faults: frozenset[str] = frozenset()


class PowerModule(Device):
    """A DC output (one module or a group sharing the output)."""

    @abc.abstractmethod
    async def capabilities(self) -> PowerCapabilities: ...

    @abc.abstractmethod
    async def set_output(self, voltage_v: float, current_a: float) -> None:
        """Set-point; clamped to the capabilities."""

    @abc.abstractmethod
    async def enable(self, on: bool) -> None: ...

    @abc.abstractmethod
    async def read(self) -> PowerReadback | None:
        """Present output; None (and `fault` set) when the module does not answer."""


# -- RFID ------------------------------------------------------------------------------------

# The token types a reader may report: OCPP's IdTokenEnumType, named here so drivers and
# the mock check against one list (hal does not import the agent's OCPP definitions).
ID_TOKEN_TYPES = ("Central", "eMAID", "ISO14443", "ISO15693", "KeyCode", "Local",
                  "MacAddress", "NoAuthorization")


@dataclass(frozen=True)
class PresentedToken:
    uid: str                  # uppercase hex, no separators
    type: str = "ISO14443"    # OCPP IdTokenEnumType names, e.g. ISO14443, ISO15693, Local


class IdTokenReader(Device):
    """Cards as they are presented; the same card held still is reported once."""

    @abc.abstractmethod
    def tokens(self) -> AsyncIterator[PresentedToken]: ...


# -- contactor (relays) ----------------------------------------------------------------------

class ContactorState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"
    WELDED = "welded"          # commanded open, feedback says closed
    STUCK_OPEN = "stuck_open"  # commanded closed, feedback says open


class Contactor(Device):
    """Main relay(s) of an EVSE with optional feedback (auxiliary contact)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def open(self) -> None: ...

    @property
    @abc.abstractmethod
    def state(self) -> ContactorState: ...


# -- control pilot (AC, IEC 61851-1) ----------------------------------------------------------

class PilotState(enum.Enum):
    A = "A"  # no vehicle
    B = "B"  # vehicle connected, not ready
    C = "C"  # vehicle ready, charging
    D = "D"  # charging with ventilation
    E = "E"  # no power / short circuit of CP
    F = "F"  # EVSE fault (-12 V)

    @property
    def plugged(self) -> bool:
        return self in (PilotState.B, PilotState.C, PilotState.D)

    @property
    def wants_power(self) -> bool:
        return self in (PilotState.C, PilotState.D)


def duty_cycle_for(current_a: float | None) -> float:
    """PWM duty (percent) that offers `current_a` (IEC 61851-1 table A.7); 100 = no PWM."""
    if current_a is None or current_a < 6:
        return 100.0
    if current_a <= 51:
        return current_a / 0.6
    return min(current_a, 80) / 2.5 + 64


class ControlPilot(Device):
    """Pilot state in; offered current (PWM duty) out."""

    @property
    @abc.abstractmethod
    def state(self) -> PilotState: ...

    @abc.abstractmethod
    async def offer(self, current_a: float | None) -> None:
        """Offer this current per phase (None: no PWM, the EV may not draw)."""

    @property
    @abc.abstractmethod
    def offered_a(self) -> float | None: ...


# -- connector lock --------------------------------------------------------------------------

class ConnectorLock(Device):
    @abc.abstractmethod
    async def lock(self) -> bool:
        """True when the feedback confirms it locked."""

    @abc.abstractmethod
    async def unlock(self) -> bool:
        """True when the feedback confirms it unlocked."""

    @property
    @abc.abstractmethod
    def locked(self) -> bool | None: ...


# -- external limit (energy manager, grid operator) -------------------------------------------

# Who set an external limit: OCPP's ChargingLimitSourceEnumType without CSO (that is the
# CSMS itself, never a hardware input). EMS: a local energy manager; SO: the system
# operator (a grid operator's control box or ripple-control receiver); Other.
LIMIT_SOURCES = ("EMS", "SO", "Other")


@dataclass(frozen=True)
class ExternalLimitSignal:
    """A limit on the whole station's power from outside OCPP. limit_w None: no limit."""

    limit_w: float | None = None
    source: str = "EMS"
    grid_critical: bool = False

    def __post_init__(self) -> None:
        """Every caller (a driver, the mock, the control socket) gets the same checks: a
        ValueError for anything a real input could not say, and limit_w as a float."""
        if self.source not in LIMIT_SOURCES:
            raise ValueError(f"limit source must be one of {', '.join(LIMIT_SOURCES)}, "
                             f"got {self.source!r}")
        if not isinstance(self.grid_critical, bool):
            raise ValueError(f"grid_critical must be true or false, got {self.grid_critical!r}")
        if self.limit_w is None:
            return
        bad = ValueError(f"limit must be a number of watts, 0 or more, got {self.limit_w!r}")
        # bool is an int, but True is not 1 W; an int beyond any float is no limit either.
        if isinstance(self.limit_w, bool) or not isinstance(self.limit_w, (int, float)):
            raise bad
        try:
            watts = float(self.limit_w)
        except OverflowError:
            raise bad from None
        if not 0 <= watts < math.inf:
            raise bad
        object.__setattr__(self, "limit_w", watts)   # frozen: set once, here


class ExternalLimit(Device):
    """An input that caps the station (an EMS over Modbus, a grid operator's relay
    contact). Listeners are called whenever `signal` changes."""

    @property
    @abc.abstractmethod
    def signal(self) -> ExternalLimitSignal: ...


# -- one EVSE's hardware ---------------------------------------------------------------------

@dataclass
class EvseDevices:
    """The devices of one EVSE, as the config names them; absent ones are None."""

    meter: EnergyMeter | None = None
    contactor: Contactor | None = None
    pilot: ControlPilot | None = None
    lock: ConnectorLock | None = None
    reader: IdTokenReader | None = None
    power: PowerModule | None = None

    def all(self) -> list[Device]:
        return [d for d in (self.meter, self.contactor, self.pilot, self.lock, self.reader,
                            self.power) if d is not None]


@dataclass(frozen=True)
class DriverSpec:
    """One `[evse.<role>]` table of the config: which driver, with which settings."""

    role: str                      # meter, contactor, pilot, lock, reader, power
    driver: str                    # name in the registry, e.g. "modbus_meter"
    settings: Mapping[str, Any] = field(default_factory=dict)


# -- firmware ------------------------------------------------------------------------------

@dataclass(frozen=True)
class InstallOutcome:
    ok: bool
    detail: str     # one line for the operator: what the installer said or why it failed


class FirmwareInstaller(abc.ABC):
    """Hands a verified firmware image to whatever updates this system (a package manager,
    an A/B updater); the agent never writes partitions itself. Knows nothing of OCPP:
    download, signature checks and reporting are the agent's."""

    @abc.abstractmethod
    async def install(self, image: Path) -> InstallOutcome:
        """Install the image; return when the installer has finished (not raise)."""

    @abc.abstractmethod
    def running_version(self) -> str | None:
        """The firmware version running now, as the installer knows it; None when the
        agent's own configured/package version is the truth."""


# -- what a safety monitor sees -----------------------------------------------------------

@dataclass(frozen=True)
class EvseOutputs:
    """What one EVSE's hardware does at one instant, as a safety monitor sees it.

    None where the observer cannot know: a supervisor over real drivers has no sensor for
    the EV's AC draw at the moment a contactor moves (its meter is polled), and an EVSE
    without a power module or a lock has neither state."""

    contactor_closed: bool
    current_a: float | None        # through the contactor now: the EV's AC draw per phase,
                                   # or the DC power module's output
    module_on: bool | None         # the DC power module switched on (None: no module)
    module_set_a: float | None     # its current set-point
    offered_a: float | None        # the pilot's PWM offer (None: no PWM)
    plugged: bool | None           # an EV on the cable (None: unknown)
    faulted: bool
    locked: bool | None            # the socket's lock (None: no lock, a fixed cable)
    rating_a: float | None         # the EVSE's rating (max_current_a), if known


@dataclass(frozen=True)
class Transition:
    """One change of an EVSE's hardware: `cause` names the input that changed (the
    station's commands: offer, contactor, module, setpoint, lock, stop; the world's: plug,
    suspend, ev-max, fault, lock-jam, meter, module-output: what a real power module in a
    mock station reports), `requested` the value a command asked for
    (before a device clamped it), `at` the injected clock's monotonic seconds."""

    evse_id: int
    at: float
    cause: str
    before: EvseOutputs
    after: EvseOutputs
    requested: float | None = None
    source: str = ""               # which recorder (a process and station), for grouping


TransitionObserver = Callable[[Transition], None]
