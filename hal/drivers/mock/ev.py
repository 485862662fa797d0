"""The physics of one simulated EVSE: the cable, the vehicle and what flows between them.

Everything observable on the mock devices of an EVSE derives from this one object, so
the devices can never disagree with each other (a pilot in C with no EV plugged, a meter
counting while the contactor is open). Power is piecewise constant: it changes only
when a command changes an input, so energy is integrated exactly by accumulating the
old power over the elapsed clock time *before* every change and before every reading.
That keeps the energy right for any pattern of clock advances, polled or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from hal.api import Clock, PilotState
from hal.drivers.mock.register import RegisterFile

# IEC 61851-1: a PWM duty below 10 % (under 6 A) is not a current offer; above 80 A the
# table ends.
MIN_OFFER_A = 6.0
MAX_OFFER_A = 80.0
# A DC power module's output range (typical for CCS chargers).
DC_MIN_VOLTAGE_V = 150.0
DC_MAX_VOLTAGE_V = 1000.0
FAULT_TEXT = "simulated hardware fault (control pilot in state F)"


@dataclass(frozen=True)
class MockEvseSpec:
    """One EVSE of the mock station. phases 0 is a DC EVSE (it gets a power module)."""

    id: int
    max_current_a: float
    phases: int = 3
    nominal_voltage_v: float = 230.0

    def __post_init__(self) -> None:
        if self.phases not in (0, 1, 3):
            raise ValueError(f"EVSE {self.id}: phases must be 0 (DC), 1 or 3, got {self.phases}")

    @property
    def dc(self) -> bool:
        return self.phases == 0


class SimulatedEv:
    """One EVSE's world: the EV (plugged, suspended, its own current limit) and the
    station's outputs as the devices set them (PWM offer, contactor, DC set-point)."""

    def __init__(self, spec: MockEvseSpec, clock: Clock,
                 register: RegisterFile | None = None) -> None:
        self.spec = spec
        self._clock = clock
        self._watchers: list[Callable[[], None]] = []
        # The vehicle.
        self.plugged = False
        self.suspended = False
        self.ev_max_a = float(spec.max_current_a)
        self.fault: str | None = None
        # What the station's devices drive.
        self.offered_a: float | None = None
        self.contactor_closed = False
        self.locked = False
        self.dc_on = False
        self.dc_voltage_v = 0.0
        self.dc_current_a = 0.0
        # The meter's register: where it was when the mock last ran (register.py).
        self._register = register or RegisterFile(None)
        self._energy_wh = self._register.load()
        self._since = clock.monotonic()

    def watch(self, callback: Callable[[], None]) -> None:
        """Called after every change of an input; devices compare and notify their own listeners."""
        self._watchers.append(callback)

    # -- derived quantities -------------------------------------------------------------

    @property
    def pilot(self) -> PilotState:
        if self.fault is not None:
            return PilotState.F
        if not self.plugged:
            return PilotState.A
        # A DC EV talks over the pilot digitally (5 % duty), which the mock skips: the
        # power module's set-point is the offer there, so a ready DC EV is simply in C.
        if self.suspended or (not self.spec.dc and self.offered_a is None):
            return PilotState.B
        return PilotState.C

    @property
    def current_a(self) -> float:
        """Current per phase the EV draws now."""
        if self.pilot is not PilotState.C or not self.contactor_closed:
            return 0.0
        if self.spec.dc:
            return min(self.ev_max_a, self.dc_current_a) if self.dc_on else 0.0
        return min(self.ev_max_a, self.offered_a or 0.0)

    @property
    def voltage_v(self) -> float:
        if self.spec.dc:
            return self.dc_voltage_v if self.dc_on else 0.0
        return self.spec.nominal_voltage_v

    @property
    def power_w(self) -> float:
        return self.current_a * max(self.spec.phases, 1) * self.voltage_v

    @property
    def offer_a(self) -> float | None:
        """What the station offers the EV: the PWM offer (AC) or the DC current set-point."""
        if self.spec.dc:
            return self.dc_current_a if self.dc_on else None
        return self.offered_a

    def energy_wh(self) -> float:
        """The meter's import register now. On disk before it is returned: no one can
        have seen a value that a restart would take back (register.py)."""
        self._accumulate()
        self._register.save(self._energy_wh)
        return self._energy_wh

    # -- inputs -------------------------------------------------------------------------

    def set_plugged(self, plugged: bool) -> None:
        def apply() -> None:
            self.plugged = plugged
            self.suspended = False  # the next EV arrives ready
        self._change(apply)

    def set_suspended(self, suspended: bool) -> None:
        if not self.plugged:
            raise ValueError(f"EVSE {self.spec.id}: no EV plugged in")
        self._change(lambda: setattr(self, "suspended", suspended))

    def set_ev_max(self, amps: float) -> None:
        if isinstance(amps, bool) or not isinstance(amps, (int, float)) or not math.isfinite(amps) \
                or amps < 0:
            raise ValueError(f"EV max current must be a number of amps, 0 or more, got {amps!r}")
        self._change(lambda: setattr(self, "ev_max_a", float(amps)))

    def set_fault(self, fault: str | None) -> None:
        def apply() -> None:
            self.fault = fault
            if fault is not None:
                # The EVSE's safety circuit drops the relays at once, whatever the agent does.
                self.contactor_closed = False
        self._change(apply)

    def replace_meter(self, register_wh: float) -> None:
        """The meter swapped (or reset) for one whose register shows `register_wh`, as a
        technician may do between, or during, sessions. ValueError for a value no
        register shows (negative, not a number)."""
        if isinstance(register_wh, bool) or not isinstance(register_wh, (int, float)) \
                or not math.isfinite(register_wh) or register_wh < 0:
            raise ValueError(f"a register shows 0 Wh or more, got {register_wh!r}")

        def apply() -> None:
            self._energy_wh = float(register_wh)
            self._register.save(self._energy_wh)
        self._change(apply)

    def set_offer(self, current_a: float | None) -> None:
        if current_a is None or current_a < MIN_OFFER_A:
            offer = None
        else:
            offer = min(float(current_a), MAX_OFFER_A)
        self._change(lambda: setattr(self, "offered_a", offer))

    def set_contactor(self, closed: bool) -> None:
        # The interlock keeps the relays open during a fault.
        self._change(lambda: setattr(self, "contactor_closed", closed and self.fault is None))

    def set_locked(self, locked: bool) -> None:
        self._change(lambda: setattr(self, "locked", locked))

    def set_dc_output(self, voltage_v: float, current_a: float) -> None:
        voltage = min(max(float(voltage_v), DC_MIN_VOLTAGE_V), DC_MAX_VOLTAGE_V)
        current = min(max(float(current_a), 0.0), float(self.spec.max_current_a))

        def apply() -> None:
            self.dc_voltage_v = voltage
            self.dc_current_a = current
        self._change(apply)

    def set_dc_on(self, on: bool) -> None:
        self._change(lambda: setattr(self, "dc_on", on))

    # -- internals ----------------------------------------------------------------------

    def _accumulate(self) -> None:
        now = self._clock.monotonic()
        elapsed = now - self._since
        if elapsed > 0:
            self._energy_wh += self.power_w * elapsed / 3600.0
            self._since = now

    def _change(self, apply: Callable[[], None]) -> None:
        self._accumulate()  # the old power up to now, before the new one starts
        apply()
        for callback in list(self._watchers):
            callback()
