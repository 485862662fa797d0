"""A whole mock station: one SimulatedEv and one set of mock devices per EVSE, and the
commands a person (through `station-agent sim`) or a test gives the simulated world.

An AC EVSE has a socket with a lock (a detachable cable, sType2); a DC EVSE a fixed cable
and a power module: the simulated one, or a real driver's (`power`, real_power.py). With
STATION_AGENT_TRANSITION_LOG set, every transition of every EVSE goes to that file
(recorder.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

from hal.api import (Clock, EvseDevices, ExternalLimitSignal, PowerModule, PresentedToken,
                     TransitionObserver)
from hal.drivers.mock.devices import (MockContactor, MockExternalLimit, MockLock, MockMeter,
                                      MockPilot, MockPowerModule, MockReader)
from hal.drivers.mock.ev import FAULT_TEXT, MockEvseSpec, SimulatedEv
from hal.drivers.mock.real_power import ReportedPowerModule
from hal.drivers.mock.recorder import TransitionLog, from_env
from hal.drivers.mock.register import RegisterFile


def register_path(state_dir: Path, evse_id: int) -> Path:
    """Where the mock meter of `evse_id` keeps its register under the state directory."""
    return Path(state_dir) / f"mock-meter-evse{evse_id}.wh"


class EvseLike(Protocol):
    """What MockStation needs of an EVSE description (the agent's EvseConfig fits)."""

    id: int
    max_current_a: float
    phases: int
    nominal_voltage_v: float


class UnknownEvse(KeyError, ValueError):
    """An EVSE id the station does not have. Both a KeyError (a lookup that failed) and a
    ValueError (a bad argument), so callers may catch whichever they think of; str() is
    the plain message, not KeyError's quoted repr."""

    def __init__(self, evse_id: object) -> None:
        super().__init__(f"unknown EVSE {evse_id}")
        self.evse_id = evse_id

    def __str__(self) -> str:
        return str(self.args[0])


class _Evse:
    def __init__(self, spec: MockEvseSpec, clock: Clock, meter_poll_s: float,
                 state_dir: Path | None, real_power: PowerModule | None = None) -> None:
        register = RegisterFile(register_path(state_dir, spec.id) if state_dir is not None else None)
        self.ev = SimulatedEv(spec, clock, register)
        self.reader = MockReader()
        power: PowerModule | None = None
        if real_power is not None:
            power = ReportedPowerModule(real_power, self.ev, clock, meter_poll_s)
        elif spec.dc:
            power = MockPowerModule(self.ev)
        self.devices = EvseDevices(
            meter=MockMeter(self.ev, clock, meter_poll_s), contactor=MockContactor(self.ev),
            pilot=MockPilot(self.ev), lock=MockLock(self.ev) if spec.has_lock else None,
            reader=self.reader, power=power)


class MockStation:
    """The mock hardware of all EVSEs, addressed by EVSE id.

    Commands are synchronous: they change the simulated world at once, and the devices
    notify their listeners from inside the call (so call them on the event loop).

    `state_dir`: where the meters keep their registers across restarts, as real meters
    do (register.py); None keeps them in memory (every start at 0 Wh).
    `power`: real power-module drivers (not started) by DC EVSE id, in place of the
    simulated module: the EV takes what they report (real_power.py).
    """

    def __init__(self, evses: Iterable[EvseLike], clock: Clock, *, meter_poll_s: float = 1.0,
                 state_dir: Path | None = None,
                 power: Mapping[int, PowerModule] | None = None) -> None:
        self._evses: dict[int, _Evse] = {}
        power = dict(power or {})
        for e in evses:
            # A DC EVSE's output has no phases (its supply's do not matter here).
            spec = e if isinstance(e, MockEvseSpec) else MockEvseSpec(
                e.id, e.max_current_a, 0 if getattr(e, "dc", False) else e.phases,
                e.nominal_voltage_v)
            if spec.id in self._evses:
                raise ValueError(f"duplicate EVSE id {spec.id}")
            real_power = power.pop(spec.id, None)
            if real_power is not None and not spec.dc:
                raise ValueError(f"EVSE {spec.id} is an AC EVSE: it takes no power module")
            self._evses[spec.id] = _Evse(spec, clock, meter_poll_s, state_dir, real_power)
        if not self._evses:
            raise ValueError("a mock station needs at least one EVSE")
        if power:
            raise ValueError(f"power modules for EVSEs the station does not have: "
                             f"{', '.join(map(str, sorted(power)))}")
        # One for the whole station, as an energy manager or a grid operator's box caps the
        # connection point, not an EVSE. Nothing to start or stop: it only holds a value.
        self.external_limit = MockExternalLimit()
        self.recorder: TransitionLog | None = from_env()
        if self.recorder is not None:
            self.observe(self.recorder)

    def observe(self, observer: TransitionObserver) -> None:
        """`observer(transition)` for every change of every EVSE from now on."""
        for evse in self._evses.values():
            evse.ev.observe(observer)

    @property
    def evse_ids(self) -> list[int]:
        return sorted(self._evses)

    def devices(self, evse_id: int) -> EvseDevices:
        return self._get(evse_id).devices

    def ev(self, evse_id: int) -> SimulatedEv:
        return self._get(evse_id).ev

    async def start(self) -> None:
        """Start every device. Idempotent per device, so the daemon's EVSE supervisor may
        start them again (or instead) without harm."""
        for evse in self._evses.values():
            for device in evse.devices.all():
                await device.start()

    async def stop(self) -> None:
        """Stop every device, energy off in the safe order first (no offer, module off,
        then the contactor), as the EVSE supervisor does; a test's shortcut."""
        for evse in self._evses.values():
            devices = evse.devices
            if devices.pilot is not None:
                await devices.pilot.offer(None)
            if devices.power is not None:
                await devices.power.enable(False)
            if devices.contactor is not None:
                await devices.contactor.open()
            for device in devices.all():
                await device.stop()

    # -- the simulated world's commands ---------------------------------------------------

    def plug(self, evse_id: int) -> None:
        self._get(evse_id).ev.set_plugged(True)

    def unplug(self, evse_id: int) -> None:
        self._get(evse_id).ev.set_plugged(False)

    def suspend(self, evse_id: int) -> None:
        """The EV stops drawing (pilot C -> B: SuspendedEV). ValueError with no EV plugged in."""
        self._get(evse_id).ev.set_suspended(True)

    def resume(self, evse_id: int) -> None:
        self._get(evse_id).ev.set_suspended(False)

    def set_ev_max(self, evse_id: int, amps: float) -> None:
        """The most current per phase the EV draws (it starts at the EVSE's max); kept
        across plug-ins, since it is a setting of the simulation, not of one session."""
        self._get(evse_id).ev.set_ev_max(amps)

    def fault(self, evse_id: int) -> None:
        self._get(evse_id).ev.set_fault(FAULT_TEXT)

    def clear(self, evse_id: int) -> None:
        self._get(evse_id).ev.set_fault(None)

    def lock_fail(self, evse_id: int) -> None:
        """The socket's lock jams: it stays where it is and reports that it did not move.
        ValueError on an EVSE with a fixed cable (no lock)."""
        self._lock_of(evse_id).set_lock_jammed(True)

    def lock_ok(self, evse_id: int) -> None:
        """The jam is gone (someone freed the lock): it moves again when told."""
        self._lock_of(evse_id).set_lock_jammed(False)

    def set_module_ramp_down(self, evse_id: int, seconds: float) -> None:
        """How long the DC power module keeps delivering after it is switched off
        (math.inf: never, a module that ignores its off command). ValueError on an AC
        EVSE or for a negative time."""
        evse = self._get(evse_id)
        if not evse.ev.spec.dc:
            raise ValueError(f"EVSE {evse_id} is an AC EVSE: it has no power module")
        if isinstance(evse.devices.power, ReportedPowerModule):
            raise ValueError(f"EVSE {evse_id} has a real power module: it ramps down as it does")
        evse.ev.set_module_ramp_down(seconds)

    def replace_meter(self, evse_id: int, register_wh: float = 0.0) -> None:
        """A technician swaps (or resets) the EVSE's meter: its register shows
        `register_wh` from now on, lower than before as a rule. ValueError for a value no
        register shows."""
        self._get(evse_id).ev.replace_meter(register_wh)

    def swipe(self, uid: str, type: str = "ISO14443", evse_id: int | None = None) -> PresentedToken:
        """A card at the reader of `evse_id`, by default the lowest-numbered EVSE's (a
        station with one reader has it there)."""
        target = self._get(self.default_evse() if evse_id is None else evse_id)
        return target.reader.present(uid, type)

    def set_external_limit(self, limit_w: float | None, source: str = "EMS",
                           grid_critical: bool = False) -> None:
        """A station-wide limit in W from outside OCPP (None: no limit). ValueError, and
        nothing changes, for a value a real input could not give (ExternalLimitSignal
        checks)."""
        self.external_limit.set(ExternalLimitSignal(limit_w, source, grid_critical))

    def default_evse(self) -> int:
        return min(self._evses)

    def snapshot(self, evse_id: int) -> dict[str, Any]:
        """The simulated world of one EVSE as plain JSON values."""
        ev = self._get(evse_id).ev
        return {
            "plugged": ev.plugged,
            "contactor_closed": ev.contactor_closed,
            "offered_current_a": ev.offer_a,
            "power_w": ev.power_w,
            "energy_wh": ev.energy_wh(),
            "pilot": ev.pilot.value,
            "suspended": ev.suspended,
            "ev_max_a": ev.ev_max_a,
            "fault": ev.fault,
            "locked": ev.locked if ev.spec.has_lock else None,
            "lock_jammed": ev.lock_jammed,
        }

    def _lock_of(self, evse_id: int) -> SimulatedEv:
        ev = self._get(evse_id).ev
        if not ev.spec.has_lock:
            raise ValueError(f"EVSE {evse_id} has a fixed cable: there is no lock")
        return ev

    def _get(self, evse_id: int) -> _Evse:
        # bool is an int in Python; EVSE True is a caller's mistake, not EVSE 1.
        if isinstance(evse_id, bool) or not isinstance(evse_id, int) or evse_id not in self._evses:
            raise UnknownEvse(evse_id)
        return self._evses[evse_id]

