"""The physics of one simulated EVSE: the cable, the vehicle and what flows between them.

Everything observable on the mock devices of an EVSE derives from this one object, so
the devices can never disagree with each other (a pilot in C with no EV plugged, a meter
counting while the contactor is open). Power is piecewise constant: it changes only
when a command changes an input, or when a power module that was switched off stops
delivering (its ramp-down, below), so energy is integrated exactly by accumulating the
old power over the elapsed clock time *before* every change and before every reading.
That keeps the energy right for any pattern of clock advances, polled or not.

Every change is also a `Transition` (hal.api) for whoever observes the EVSE: the safety
monitor of the test suite reads them (hal/drivers/mock/recorder.py), with the current
that flowed at the very instant, before and after.

AC and DC differ where the vehicle does: an AC EV stops drawing the moment the pilot
stops offering (state B, E or F), so a fault stops AC current at once; a DC EV takes
what the power module pushes while its own contactors are closed (plugged in and not
suspended), so on a DC EVSE only switching the module off ends the current, after the
module's ramp-down.

A DC EVSE may also have a real power module (a driver such as `can_power` in a mock
station, real_power.py): then the module's own reported output is what flows, not the
set-point (`use_reported_output`, `set_reported_output`); the EV still takes no more
than its maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from hal.api import Clock, EvseOutputs, PilotState, Transition, TransitionObserver
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
    """One EVSE of the mock station. phases 0 is a DC EVSE (it gets a power module and a
    fixed cable); an AC EVSE has a socket for a detachable cable, with a lock."""

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

    @property
    def has_lock(self) -> bool:
        """A socket (sType2) holds the cable with a lock; a fixed cable (DC: cCCS2) has none."""
        return not self.dc


class SimulatedEv:
    """One EVSE's world: the EV (plugged, suspended, its own current limit) and the
    station's outputs as the devices set them (PWM offer, contactor, DC set-point, lock)."""

    def __init__(self, spec: MockEvseSpec, clock: Clock,
                 register: RegisterFile | None = None) -> None:
        self.spec = spec
        self._clock = clock
        self._watchers: list[Callable[[], None]] = []
        self._observers: list[TransitionObserver] = []
        # The vehicle.
        self.plugged = False
        self.suspended = False
        self.ev_max_a = float(spec.max_current_a)
        self.fault: str | None = None
        # What the station's devices drive.
        self.offered_a: float | None = None
        self.contactor_closed = False
        self.locked = False
        self.lock_jammed = False          # the lock's motor or latch stuck: it does not move
        self.dc_on = False
        self.dc_voltage_v = 0.0
        self.dc_current_a = 0.0
        # A power module switched off keeps delivering for this long (a real one ramps
        # down; math.inf: one that ignores its off command). 0: at once.
        self.module_ramp_down_s = 0.0
        self._ramp_end: float | None = None     # when the output of a switched-off module ends
        # A real module's output as it last reported it (volts, amperes); None: the
        # simulated module, whose output is its set-point.
        self._reported: tuple[float, float] | None = None
        # The meter's register: where it was when the mock last ran (register.py).
        self._register = register or RegisterFile(None)
        self._energy_wh = self._register.load()
        self._since = clock.monotonic()

    def watch(self, callback: Callable[[], None]) -> None:
        """Called after every change of an input; devices compare and notify their own listeners."""
        self._watchers.append(callback)

    def observe(self, observer: TransitionObserver) -> None:
        """`observer(transition)` for every change, with the outputs before and after."""
        self._observers.append(observer)

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
    def module_output_on(self) -> bool:
        """The DC module delivers: switched on, or switched off but still ramping down
        (a real module: it reports an output)."""
        if self._reported is not None:
            return self._reported[0] > 0 or self._reported[1] > 0
        return self.dc_on or (self._ramp_end is not None
                              and self._clock.monotonic() < self._ramp_end)

    @property
    def current_a(self) -> float:
        """Current per phase the EV draws now (DC: what the module pushes into it)."""
        if not self.contactor_closed:
            return 0.0
        if self.spec.dc:
            # The EV's contactors are closed while it is plugged in and not suspended; a
            # fault (pilot F) does not stop a module that is still on.
            if not self.plugged or self.suspended or not self.module_output_on:
                return 0.0
            delivered = self.dc_current_a if self._reported is None else self._reported[1]
            return min(self.ev_max_a, delivered)
        if self.pilot is not PilotState.C:
            return 0.0
        return min(self.ev_max_a, self.offered_a or 0.0)

    @property
    def voltage_v(self) -> float:
        if self.spec.dc:
            if self._reported is not None:
                return self._reported[0]
            return self.dc_voltage_v if self.module_output_on else 0.0
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

    def outputs(self) -> EvseOutputs:
        """This instant as a safety monitor sees it."""
        dc = self.spec.dc
        return EvseOutputs(
            contactor_closed=self.contactor_closed, current_a=self.current_a,
            module_on=self.dc_on if dc else None,
            module_set_a=self.dc_current_a if dc else None,
            offered_a=None if dc else self.offered_a, plugged=self.plugged,
            faulted=self.fault is not None,
            locked=self.locked if self.spec.has_lock else None,
            rating_a=float(self.spec.max_current_a))

    # -- inputs -------------------------------------------------------------------------

    def set_plugged(self, plugged: bool) -> None:
        def apply() -> None:
            self.plugged = plugged
            self.suspended = False  # the next EV arrives ready
        self._change(apply, "plug")

    def set_suspended(self, suspended: bool) -> None:
        if not self.plugged:
            raise ValueError(f"EVSE {self.spec.id}: no EV plugged in")
        self._change(lambda: setattr(self, "suspended", suspended), "suspend")

    def set_ev_max(self, amps: float) -> None:
        if isinstance(amps, bool) or not isinstance(amps, (int, float)) or not math.isfinite(amps) \
                or amps < 0:
            raise ValueError(f"EV max current must be a number of amps, 0 or more, got {amps!r}")
        self._change(lambda: setattr(self, "ev_max_a", float(amps)), "ev-max")

    def set_fault(self, fault: str | None) -> None:
        # The station sees the fault (pilot F, the pilot device's fault) and must switch
        # off in the safe order itself: the mock does not drop the relays under load.
        self._change(lambda: setattr(self, "fault", fault), "fault")

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
        self._change(apply, "meter")

    def set_lock_jammed(self, jammed: bool) -> None:
        self._change(lambda: setattr(self, "lock_jammed", jammed), "lock-jam")

    def set_module_ramp_down(self, seconds: float) -> None:
        """How long the power module keeps delivering after it is switched off (0 to
        math.inf); ValueError for anything else."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or math.isnan(seconds) or seconds < 0:
            raise ValueError(f"a ramp-down is 0 s or more, got {seconds!r}")
        self.module_ramp_down_s = float(seconds)

    def set_offer(self, current_a: float | None) -> None:
        if current_a is None or current_a < MIN_OFFER_A:
            offer = None
        else:
            offer = min(float(current_a), MAX_OFFER_A)
        self._change(lambda: setattr(self, "offered_a", offer), "offer", current_a)

    def set_contactor(self, closed: bool) -> None:
        # The interlock keeps the relays from closing during a fault.
        self._change(lambda: setattr(self, "contactor_closed", closed and self.fault is None),
                     "contactor")

    def set_locked(self, locked: bool) -> bool:
        """Drive the lock; False (and nothing moves) while it is jammed."""
        if self.lock_jammed:
            return False
        self._change(lambda: setattr(self, "locked", locked), "lock")
        return True

    def set_dc_output(self, voltage_v: float, current_a: float) -> None:
        voltage = min(max(float(voltage_v), DC_MIN_VOLTAGE_V), DC_MAX_VOLTAGE_V)
        current = min(max(float(current_a), 0.0), float(self.spec.max_current_a))

        def apply() -> None:
            self.dc_voltage_v = voltage
            self.dc_current_a = current
        self._change(apply, "setpoint", current_a)

    def use_reported_output(self) -> None:
        """From now on the output is what a real module reports (set_reported_output),
        nothing until it has; the set-point and on/off are then only what it was told."""
        if not self.spec.dc:
            raise ValueError(f"EVSE {self.spec.id} is an AC EVSE: it has no power module")
        self._change(lambda: setattr(self, "_reported", (0.0, 0.0)), "module-output")

    def set_reported_output(self, voltage_v: float, current_a: float) -> None:
        """What the real module measures at its terminals now (use_reported_output)."""
        if self._reported is None:
            raise ValueError(f"EVSE {self.spec.id}: its power module is the simulated one")
        reported = (max(float(voltage_v), 0.0), max(float(current_a), 0.0))
        if reported != self._reported:
            self._change(lambda: setattr(self, "_reported", reported), "module-output")

    def set_dc_on(self, on: bool) -> None:
        def apply() -> None:
            if self.dc_on and not on and self.module_ramp_down_s > 0:
                self._ramp_end = self._clock.monotonic() + self.module_ramp_down_s
            elif on:
                self._ramp_end = None
            self.dc_on = on
        self._change(apply, "module")

    def note(self, cause: str) -> None:
        """A moment worth recording that changes nothing (a device stopped)."""
        if self._observers:
            outputs = self.outputs()
            self._emit(cause, outputs, outputs, None)

    # -- internals ----------------------------------------------------------------------

    def _accumulate(self) -> None:
        now = self._clock.monotonic()
        end = self._ramp_end
        if end is not None and self._since < end <= now:
            # A switched-off module stopped delivering in between: the old power up to then.
            self._energy_wh += self._power_while_ramping() * (end - self._since) / 3600.0
            self._since = end
        if end is not None and end <= now:
            self._ramp_end = None
        elapsed = now - self._since
        if elapsed > 0:
            self._energy_wh += self.power_w * elapsed / 3600.0
            self._since = now

    def _power_while_ramping(self) -> float:
        """The power that flowed until a ramp-down ended (the module still delivering)."""
        saved, self._ramp_end = self._ramp_end, math.inf
        try:
            return self.power_w
        finally:
            self._ramp_end = saved

    def _change(self, apply: Callable[[], None], cause: str,
                requested: float | None = None) -> None:
        self._accumulate()  # the old power up to now, before the new one starts
        before = self.outputs() if self._observers else None
        apply()
        if before is not None:
            after = self.outputs()
            if after != before:   # a command that changes nothing is no transition
                self._emit(cause, before, after, requested)
        for callback in list(self._watchers):
            callback()

    def _emit(self, cause: str, before: EvseOutputs, after: EvseOutputs,
              requested: float | None) -> None:
        transition = Transition(self.spec.id, self._clock.monotonic(), cause, before, after,
                                requested)
        for observer in list(self._observers):
            observer(transition)
