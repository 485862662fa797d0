"""One EVSE's hardware, supervised: the one place that switches its energy, and the
safety rules that hold whatever the drivers are and whatever the agent asks.

Every path that ends energy (a stop, a fault, the end of a session, a pause, a limit of
0, Unavailable) goes through `switch_off`, which keeps this order:
1. the offer goes (AC: no PWM, so the EV stops drawing and leaves state C) and the DC
   power module is switched off;
2. the current stops, checked, on the injected clock and bounded: DC: until the module's
   read-back current is below SWITCH_CURRENT_A (at most RAMP_DOWN_TIMEOUT_S); AC: until
   the EV has left state C/D (at most EV_RELEASE_TIMEOUT_S);
3. only then the contactor opens.
A DC module still delivering when its time is up is a module that ignores its off
command: the contactor opens all the same (the cable must not stay live), and the EVSE
gets a latched fault naming the current it opened under. It lasts as long as this
process (a restart of the agent clears it) so no session runs on a contactor that may be
damaged until someone has looked. An AC EV still in C when its time is up: the contactor
opens all the same, logged, not latched (it had its time to stop drawing, and AC
contactors are rated to break their load). A step that raises (a driver bug) does not
stop the next one: it is logged and latched as a "hardware" fault.

Energy goes on in the reverse order, and refuses what is unsafe (the agent's charging
rules ask; this says no):
- a socket's lock is locked before anything is offered, and never released while the
  contactor is closed; a lock that does not move is a lock problem (`lock_problem`), not
  retried in the same direction until `allow_lock_retry` (a new plug-in or card) or the
  lock itself reports a change (freed);
- no offer during a fault or with no EV (state A); the contactor closes only when
  fault-free, locked (a socket) and with the DC module off; the DC module switches on
  only behind a closed contactor.

Also: a device that reports a fault switches the EVSE off (the watchdog, at once, not
waiting for the agent); a driver that raises while starting or stopping is a fault, never
a crash; `stop` switches off in that order, unlocks, then releases the devices.

An optional observer hears every transition this supervisor makes or sees (hal.api
Transition): the safety monitor's view of real drivers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Awaitable

from hal.api import (Clock, ContactorState, Device, EvseDevices, EvseOutputs, Listener,
                     PilotState, Transition, TransitionObserver)

log = logging.getLogger(__name__)

# Below this a contactor may switch: no arc worth the name (A, per phase or DC).
SWITCH_CURRENT_A = 1.0
# How long a DC power module may take to ramp its output down once switched off.
RAMP_DOWN_TIMEOUT_S = 2.0
# How long an AC EV may take to stop drawing (leave state C) once the PWM is withdrawn.
EV_RELEASE_TIMEOUT_S = 3.0
# How often the module's current (or the pilot) is read while waiting.
POLL_S = 0.05

ROLES = ("meter", "contactor", "pilot", "lock", "reader", "power")
# Faults of these roles stop energy. Not the card reader's: a reader that stops answering
# only keeps new cards from being read (sessions still start and stop remotely or by
# unplugging); cutting a session it cannot harm would be a fault of our own making. It is
# still reported (faults_by_role).
ENERGY_ROLES = tuple(role for role in ROLES if role != "reader")


class _LoopClock:
    """Time for a supervisor given no clock (tests of the devices alone)."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0))


class EvseHardware:
    def __init__(self, evse_id: int, devices: EvseDevices, *, clock: Clock | None = None,
                 observer: TransitionObserver | None = None, rating_a: float | None = None,
                 ramp_down_timeout_s: float = RAMP_DOWN_TIMEOUT_S,
                 ev_release_timeout_s: float = EV_RELEASE_TIMEOUT_S) -> None:
        self.evse_id = evse_id
        self.devices = devices
        self._clock: Clock = clock or _LoopClock()
        self._observer = observer
        self._rating_a = rating_a
        self._ramp_down_timeout_s = ramp_down_timeout_s
        self._ev_release_timeout_s = ev_release_timeout_s
        self._listeners: list[Listener] = []
        self._start_faults: dict[str, str] = {}     # by role
        self._latched: dict[str, str] = {}          # by role: lasts as long as this process
        self._safety: asyncio.Task[None] | None = None
        self._switching: asyncio.Lock | None = None
        # What the power module was last told (a device that has just started is off).
        self._module_on = False
        self._module_set_a: float | None = None
        self._module_current_a: float | None = None
        # The lock: a move that failed, by direction (True: lock), and its text.
        self._lock_failed: bool | None = None
        self._lock_moving = False
        self.lock_problem: str | None = None
        self._seen = self.outputs()
        for device in devices.all():
            device.subscribe(self._on_change)
        if devices.lock is not None:
            devices.lock.subscribe(self.allow_lock_retry)

    def subscribe(self, listener: Listener) -> None:
        """Called whenever any device of this EVSE changes (state, fault, reading)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def observe(self, observer: TransitionObserver | None) -> None:
        """Report every transition to `observer` from now on (None: to no one)."""
        self._observer = observer
        self._seen = self.outputs()

    # -- what the hardware says -----------------------------------------------------------

    @property
    def faults(self) -> list[str]:
        """The faults that keep energy off (every role's but the card reader's)."""
        return [text for role, text in self.faults_by_role().items() if role in ENERGY_ROLES]

    def faults_by_role(self) -> dict[str, str]:
        """The faults now by device role ("meter", "power", ...): the device's own, a
        start that failed, a latched one of this supervisor."""
        found: dict[str, str] = {}
        for role in ROLES:
            device = getattr(self.devices, role)
            texts = [device.fault] if device is not None and device.fault else []
            texts += [t for t in (self._start_faults.get(role), self._latched.get(role)) if t]
            if texts:
                found[role] = "; ".join(texts)
        return found

    @property
    def contactor_closed(self) -> bool:
        """Closed, or welded: either way the power path may carry current."""
        contactor = self.devices.contactor
        return contactor is not None and contactor.state in (ContactorState.CLOSED,
                                                             ContactorState.WELDED)

    @property
    def module_on(self) -> bool:
        return self._module_on

    def outputs(self) -> EvseOutputs:
        """This EVSE's outputs as the supervisor knows them (the EV's AC draw: unknown)."""
        d = self.devices
        pilot_state = d.pilot.state if d.pilot is not None else None
        return EvseOutputs(
            contactor_closed=self.contactor_closed,
            current_a=self._module_current_a if d.power is not None else None,
            module_on=self._module_on if d.power is not None else None,
            module_set_a=self._module_set_a if d.power is not None else None,
            offered_a=d.pilot.offered_a if d.pilot is not None else None,
            plugged=None if pilot_state in (None, PilotState.E, PilotState.F)
            else pilot_state.plugged,
            faulted=bool(self.faults),
            locked=d.lock.locked if d.lock is not None else None,
            rating_a=self._rating_a)

    # -- start and stop -------------------------------------------------------------------

    async def start(self) -> None:
        for role in ROLES:
            device = getattr(self.devices, role)
            if device is None:
                continue
            try:
                await device.start()
            except Exception as exc:  # noqa: BLE001 - a driver bug is a fault, not a crash
                log.exception("EVSE %d: %s failed to start", self.evse_id, type(device).__name__)
                self._start_faults[role] = f"{type(device).__name__} failed to start: {exc}"
        self._on_change()

    async def stop(self) -> None:
        """Energy off in the safe order, the lock released, then every device released
        (the contactor first: should a step above have failed, it still opens)."""
        try:
            await self.switch_off()
            await self.release_lock()
        except Exception:  # noqa: BLE001 - the devices' own stop still leaves them safe
            log.exception("EVSE %d: switching off at stop failed", self.evse_id)
        self._record("stop", self.outputs())   # the monitor checks it is safe by now
        ordered: list[Device] = self.devices.all()
        if self.devices.contactor is not None:
            ordered.remove(self.devices.contactor)
            ordered.insert(0, self.devices.contactor)
        for device in ordered:
            try:
                await device.stop()
            except Exception:  # noqa: BLE001
                log.exception("EVSE %d: %s failed to stop", self.evse_id, type(device).__name__)
        if self._safety is not None:
            await asyncio.gather(self._safety, return_exceptions=True)

    # -- energy off ---------------------------------------------------------------------

    async def switch_off(self, *, withdraw_offer: bool = True) -> None:
        """End the energy in the safe order (module docstring). `withdraw_offer` False:
        the EV has stopped asking on its own (state B) and keeps its offer for later."""
        async with self._lock():
            pilot, power = self.devices.pilot, self.devices.power
            if withdraw_offer and pilot is not None and pilot.offered_a is not None:
                await self._guarded("withdraw the offer", self._offer(None))
            if power is not None and self._module_on:
                await self._guarded("switch the power module off", self._enable(False))
            if not self.contactor_closed:
                return
            if power is not None:
                await self._ramped_down()
            elif pilot is not None and withdraw_offer:
                await self._ev_released()
            await self._guarded("open the contactor", self._open())

    async def _ramped_down(self) -> None:
        """Until the module's read-back says it is off and its current is below
        SWITCH_CURRENT_A, or the time is up (then latch the fault: the contactor opens
        under load). Off as well as no current: with the EV gone the current is 0 at once,
        while the module may not yet have taken the off command (a CAN bus under load)."""
        power = self.devices.power
        assert power is not None
        deadline = self._clock.monotonic() + self._ramp_down_timeout_s
        told_again = False
        while True:
            readback = None
            try:
                readback = await power.read()
            except Exception:  # noqa: BLE001 - a module that cannot say is not yet off
                log.exception("EVSE %d: power module read failed", self.evse_id)
            if readback is not None:
                self._module_current_a = readback.current_a
                if readback.current_a < SWITCH_CURRENT_A and not readback.on:
                    return
                if readback.on and not told_again:
                    # It says it is still on: the off command may have been lost.
                    told_again = True
                    await self._guarded("switch the power module off", self._enable(False))
            if self._clock.monotonic() >= deadline:
                break
            await self._clock.sleep(POLL_S)
        what = (f"still at {readback.current_a:.1f} A" if readback is not None
                else "not reporting its current")
        text = (f"power module {what} {self._ramp_down_timeout_s:g} s after it was switched "
                "off: contactor opened under load (restart the agent once it is checked)")
        log.error("EVSE %d: %s", self.evse_id, text)
        self._latched["power"] = text
        self._on_change()

    async def _ev_released(self) -> None:
        pilot = self.devices.pilot
        assert pilot is not None
        deadline = self._clock.monotonic() + self._ev_release_timeout_s
        while pilot.state.wants_power:
            if self._clock.monotonic() >= deadline:
                log.warning("EVSE %d: the EV still asks for power %g s after the offer "
                            "ended: opening the contactor anyway", self.evse_id,
                            self._ev_release_timeout_s)
                return
            await self._clock.sleep(POLL_S)

    # -- energy on ----------------------------------------------------------------------

    async def offer(self, current_a: float | None) -> bool:
        """Offer this current on the pilot (None: none); False, and no offer, during a
        fault, with no EV (state A) or with a socket not locked."""
        async with self._lock():
            pilot = self.devices.pilot
            if current_a is not None and pilot is not None and pilot.state is PilotState.A:
                log.warning("EVSE %d: no offer with no EV plugged in", self.evse_id)
                current_a = None
            if current_a is not None and (self.faults or not self._lock_holds()):
                log.warning("EVSE %d: no offer %s", self.evse_id, self._why_not())
                current_a = None
            await self._offer(current_a)
            return current_a is not None

    async def close_contactor(self) -> bool:
        async with self._lock():
            if self.contactor_closed:
                return True
            if self.faults or not self._lock_holds() or self._module_on:
                log.warning("EVSE %d: contactor not closed %s", self.evse_id,
                            "(the power module is on)" if self._module_on else self._why_not())
                return False
            contactor = self.devices.contactor
            if contactor is None:
                return False
            before = self.outputs()
            await contactor.close()
            self._record("contactor", before)
            return self.contactor_closed

    async def set_module_output(self, voltage_v: float, current_a: float) -> None:
        power = self.devices.power
        if power is None:
            return
        async with self._lock():
            before = self.outputs()
            await power.set_output(voltage_v, current_a)
            self._module_set_a = current_a
            self._record("setpoint", before, current_a)

    async def switch_module_on(self) -> bool:
        """On only behind a closed contactor, fault-free."""
        async with self._lock():
            contactor = self.devices.contactor
            if self.devices.power is None:
                return False
            if self.faults or (contactor is not None
                               and contactor.state is not ContactorState.CLOSED):
                log.warning("EVSE %d: power module not switched on (%s)", self.evse_id,
                            "fault" if self.faults else "contactor open")
                return False
            await self._enable(True)
            return True

    # -- the connector lock ----------------------------------------------------------------

    async def engage_lock(self) -> bool:
        """Lock a socket before energy; True when it is locked (or there is no lock)."""
        lock = self.devices.lock
        if lock is None or (lock.locked is True and not self._lock_moving):
            return True
        if self._lock_failed is True or self._lock_moving:
            return False   # it did not move last time: not again until allowed
        return await self._move_lock(True)

    async def release_lock(self) -> bool:
        """Unlock a socket once the contactor is open; True when it is unlocked (or
        there is no lock). Never under load; not retried after a failure until allowed."""
        lock = self.devices.lock
        if lock is None or lock.locked is False:
            return True
        if self.contactor_closed or self._lock_failed is False or self._lock_moving:
            return False
        return await self._move_lock(False)

    async def unlock_connector(self) -> bool:
        """UnlockConnector: unlock now, whatever failed before (the CSMS's request is
        the retry). False under load; a driver error is raised."""
        if self.devices.lock is None or self.contactor_closed:
            return False
        return await self._move_lock(False, raise_errors=True)

    def allow_lock_retry(self) -> None:
        """A lock that did not move may be tried again (a new plug-in or card, or the
        lock reported a change: someone freed it)."""
        if self._lock_failed is not None:
            self._lock_failed = None
            self._notify()

    async def _move_lock(self, locked: bool, *, raise_errors: bool = False) -> bool:
        lock = self.devices.lock
        assert lock is not None
        verb = "lock" if locked else "unlock"
        before = self.outputs()
        error: Exception | None = None
        self._lock_moving = True
        try:
            confirmed = await (lock.lock() if locked else lock.unlock())
        except Exception as exc:  # noqa: BLE001 - a driver error is a lock that did not move
            error, confirmed = exc, False
        finally:
            self._lock_moving = False
        self._record("lock", before)
        if confirmed:
            if self._lock_failed is not None or self.lock_problem is not None:
                log.info("EVSE %d: connector lock works again", self.evse_id)
            self._lock_failed, self.lock_problem = None, None
        else:
            detail = lock.fault or (str(error) if error else "its feedback did not confirm")
            self._lock_failed = locked
            self.lock_problem = f"the connector lock did not {verb}: {detail}"[:500]
            log.warning("EVSE %d: %s", self.evse_id, self.lock_problem)
        self._notify()
        if error is not None and raise_errors:
            raise error
        return confirmed

    def _lock_holds(self) -> bool:
        # A lock on its way (an unlock the CSMS asked for) holds nothing.
        lock = self.devices.lock
        return lock is None or (lock.locked is True and not self._lock_moving)

    def _why_not(self) -> str:
        if self.faults:
            return f"(fault: {self.faults[0]})"
        return "(the connector lock is not locked)"

    # -- the device commands, recorded ------------------------------------------------------

    async def _offer(self, current_a: float | None) -> None:
        pilot = self.devices.pilot
        if pilot is None:
            return
        before = self.outputs()
        await pilot.offer(current_a)
        self._record("offer", before, current_a)

    async def _enable(self, on: bool) -> None:
        power = self.devices.power
        assert power is not None
        before = self.outputs()
        # Marked off before the command: should it fail, the module counts as
        # possibly on only until its read-back says otherwise.
        self._module_on = on
        await power.enable(on)
        self._record("module", before)

    async def _open(self) -> None:
        contactor = self.devices.contactor
        if contactor is None:
            return
        before = self.outputs()
        await contactor.open()
        self._record("contactor", before)

    async def _guarded(self, what: str, step: Awaitable[None]) -> None:
        try:
            await step
        except Exception as exc:  # noqa: BLE001 - the next step of the safe order still runs
            log.exception("EVSE %d: could not %s", self.evse_id, what)
            self._latched.setdefault("hardware", f"could not {what}: {exc}"[:500])

    def _lock(self) -> asyncio.Lock:
        if self._switching is None:
            self._switching = asyncio.Lock()
        return self._switching

    def _record(self, cause: str, before: EvseOutputs, requested: float | None = None) -> None:
        if self._observer is None:
            return
        after = self.outputs()
        self._seen = after
        self._observer(Transition(self.evse_id, self._clock.monotonic(), cause, before, after,
                                  requested))

    # -- the watchdog ---------------------------------------------------------------------

    def _on_change(self) -> None:
        if self._observer is not None:
            now = self.outputs()
            if now != self._seen:
                before, self._seen = self._seen, now
                self._observer(Transition(self.evse_id, self._clock.monotonic(), "device",
                                          before, now))
        if self.faults and (self._safety is None or self._safety.done()) and (
                self.contactor_closed or self._module_on or self._offering()):
            self._safety = asyncio.ensure_future(self._switch_off_on_fault())
        self._notify()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    def _offering(self) -> bool:
        pilot = self.devices.pilot
        return pilot is not None and pilot.offered_a is not None

    async def _switch_off_on_fault(self) -> None:
        try:
            await self.switch_off()
        except Exception:  # noqa: BLE001
            log.exception("EVSE %d: could not switch off after a fault", self.evse_id)
