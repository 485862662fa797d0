"""The GPIO drivers against fake gpiod modules (tests/fake_gpiod.py), each test run once
with the gpiod 2.x API and once with Debian 12's libgpiod 1.6 API. Time is a ManualClock;
pins are set and read in physical levels, as on the board.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Coroutine

import pytest

from agent.clock import ManualClock
from hal.api import ContactorState, HalConfigError, PilotState
from hal.drivers import DriverSpec, backend, check
from hal.drivers.gpio import GpioContactor, GpioLock, GpioPilot
from hal.drivers.gpio.lines import MISSING
from tests.fake_gpiod import Sim, SimChip, make_v1, make_v2

RELAY, FEEDBACK = 5, 6
PILOT_LINES = [10, 11, 12, 13]
LOCK, UNLOCK, LOCK_FB = 20, 21, 22


@dataclass
class Rig:
    sim: Sim
    chip: SimChip
    chip_path: str
    tmp: Path
    clock: ManualClock

    async def settle(self) -> None:
        """Let an edge reach the driver, then the settle time pass."""
        await self.clock.advance(0)
        await self.clock.advance(0.05)


@pytest.fixture(params=["gpiod2", "libgpiod1.6"])
def rig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    sim = Sim()
    chip_path = tmp_path / "gpiochip0"
    chip_path.touch()  # check_config looks for the device node
    chip = sim.add_chip(str(chip_path))
    module = make_v2(sim) if request.param == "gpiod2" else make_v1(sim)
    monkeypatch.setitem(sys.modules, "gpiod", module)
    yield Rig(sim, chip, str(chip_path), tmp_path, ManualClock())
    sim.close()


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def contactor(rig: Rig, **settings: Any) -> GpioContactor:
    base: dict[str, Any] = {"chip": rig.chip_path, "line": RELAY, "feedback_line": FEEDBACK}
    base.update(settings)
    base = {k: v for k, v in base.items() if v is not None}
    GpioContactor.check_config(base)
    return GpioContactor.from_config(base, clock=rig.clock)


# -- contactor --------------------------------------------------------------------------------

def test_contactor_close_and_open_with_confirming_feedback(rig: Rig) -> None:
    async def body() -> None:
        c = contactor(rig)
        changes: list[ContactorState] = []
        c.subscribe(lambda: changes.append(c.state))
        await c.start()
        assert c.fault is None and rig.chip.claim(RELAY).consumer == "station-agent"
        assert c.state is ContactorState.OPEN and rig.chip.output(RELAY) is False
        await c.close()
        assert rig.chip.output(RELAY) is True and c.state is ContactorState.CLOSED
        rig.chip.set_input(FEEDBACK, True)        # the auxiliary contact follows in 20 ms
        await rig.settle()
        await rig.clock.advance(5)
        assert c.state is ContactorState.CLOSED and c.fault is None
        await c.open()
        rig.chip.set_input(FEEDBACK, False)
        await rig.settle()
        await rig.clock.advance(5)
        assert c.state is ContactorState.OPEN and c.fault is None
        assert rig.chip.output(RELAY) is False
        assert changes == [ContactorState.CLOSED, ContactorState.OPEN]
        await c.stop()
    run(body)


def test_contactor_active_low_relay_and_feedback(rig: Rig) -> None:
    async def body() -> None:
        c = contactor(rig, active_low=True, feedback_active_low=True)
        rig.chip.set_input(FEEDBACK, True)        # inactive: contact open
        await c.start()
        assert rig.chip.output(RELAY) is True     # inactive relay = high pin
        await c.close()
        assert rig.chip.output(RELAY) is False
        rig.chip.set_input(FEEDBACK, False)
        await rig.settle()
        await rig.clock.advance(1)
        assert c.state is ContactorState.CLOSED and c.fault is None
        await c.stop()
        assert rig.chip.claim(RELAY) is None      # released
    run(body)


def test_contactor_stuck_open(rig: Rig) -> None:
    async def body() -> None:
        c = contactor(rig, feedback_timeout_s=0.5)
        await c.start()
        await c.close()
        await rig.clock.advance(0.45)
        assert c.state is ContactorState.CLOSED and c.fault is None   # still within time
        await rig.clock.advance(0.1)
        assert c.state is ContactorState.STUCK_OPEN and c.fault == "contactor stuck open"
        await c.open()                            # what the EVSE supervisor does next
        assert c.state is ContactorState.OPEN and c.fault is None
        await c.stop()
    run(body)


def test_contactor_welded_at_open_stays_until_seen_open(rig: Rig) -> None:
    async def body() -> None:
        c = contactor(rig)
        faults: list[str | None] = []
        c.subscribe(lambda: faults.append(c.fault))
        await c.start()
        await c.close()
        rig.chip.set_input(FEEDBACK, True)
        await rig.settle()
        await c.open()                            # ... and the contacts stay together
        await rig.clock.advance(0.6)
        assert c.state is ContactorState.WELDED and c.fault == "contactor welded"
        await c.open()
        await c.close()                           # agreeing with a weld proves nothing
        await rig.clock.advance(1)
        assert c.state is ContactorState.WELDED
        await c.open()
        rig.chip.set_input(FEEDBACK, False)       # came free
        await rig.settle()
        assert c.state is ContactorState.OPEN and c.fault is None
        assert "contactor welded" in faults and faults[-1] is None
        await c.stop()
    run(body)


def test_contactor_welded_later_while_idle_and_blips_ignored(rig: Rig) -> None:
    async def body() -> None:
        c = contactor(rig, feedback_timeout_s=0.5)
        await c.start()
        await rig.clock.advance(60)
        rig.chip.set_input(FEEDBACK, True)        # a blip shorter than the timeout
        await rig.settle()
        await rig.clock.advance(0.2)
        rig.chip.set_input(FEEDBACK, False)
        await rig.settle()
        await rig.clock.advance(5)
        assert c.state is ContactorState.OPEN and c.fault is None
        rig.chip.set_input(FEEDBACK, True)        # closes by itself and stays closed
        await rig.settle()
        await rig.clock.advance(0.5)
        assert c.state is ContactorState.WELDED and c.fault == "contactor welded"
        await c.stop()
    run(body)


def test_contactor_on_a_chip_without_edges_polls(rig: Rig) -> None:
    rig.chip.edges = False
    async def body() -> None:
        c = contactor(rig, poll_s=0.1)
        await c.start()
        assert c.fault is None and rig.chip.claim(FEEDBACK).edges is False
        rig.chip.set_input(FEEDBACK, True)
        await rig.clock.advance(0.1)              # the next poll sees it
        await rig.clock.advance(0.5)
        assert c.state is ContactorState.WELDED
        await c.stop()
    run(body)


def test_contactor_without_feedback_follows_the_command(rig: Rig) -> None:
    async def body() -> None:
        c = contactor(rig, feedback_line=None)
        await c.start()
        await c.close()
        await rig.clock.advance(10)
        assert c.state is ContactorState.CLOSED and rig.chip.output(RELAY) is True
        await c.stop()
        assert rig.chip.output(RELAY) is False    # stop() opened it
    run(body)


def test_contactor_busy_line_and_failing_writes_are_faults(rig: Rig) -> None:
    async def body() -> None:
        rig.sim.request(rig.chip_path, [], {})
        other = contactor(rig)
        await other.start()                       # holds the lines
        c = contactor(rig)
        await c.start()
        assert "cannot request lines" in c.fault and "busy" in c.fault.lower()
        await c.close()                           # no exception, nothing driven
        assert c.state is ContactorState.OPEN
        await c.stop()

        rig.chip.fail = OSError(5, "Input/output error")
        await other.close()
        assert "cannot drive line 5" in other.fault and other.state is ContactorState.OPEN
        rig.chip.fail = None
        await other.close()
        assert other.state is ContactorState.CLOSED
        await other.stop()
    run(body)


# -- pilot ------------------------------------------------------------------------------------

def pwm_dir(rig: Rig, exported: bool = True) -> Path:
    chip = rig.tmp / "pwm" / "pwmchip0"
    chip.mkdir(parents=True, exist_ok=True)
    (chip / "export").write_text("")
    if exported:
        (chip / "pwm1").mkdir(exist_ok=True)
    return chip / "pwm1"


def pilot(rig: Rig, **settings: Any) -> GpioPilot:
    pwm_dir(rig, exported=settings.pop("exported", True))
    base: dict[str, Any] = {"chip": rig.chip_path, "lines": PILOT_LINES,
                            "pwm_sysfs": str(rig.tmp / "pwm"), "pwm_chip": 0, "pwm_channel": 1}
    base.update(settings)
    GpioPilot.check_config(base)
    return GpioPilot.from_config(base, clock=rig.clock)


def show(rig: Rig, pattern: str, lines: list[int] = PILOT_LINES) -> None:
    for offset, bit in zip(lines, pattern):
        rig.chip.set_input(offset, bit == "1")


def test_pilot_states_from_the_default_thermometer_code(rig: Rig) -> None:
    async def body() -> None:
        show(rig, "1111")
        p = pilot(rig)
        seen: list[PilotState] = []
        p.subscribe(lambda: seen.append(p.state))
        await p.start()
        assert p.state is PilotState.A and p.fault is None
        for pattern, state in [("0111", PilotState.B), ("0011", PilotState.C),
                               ("0001", PilotState.D), ("0000", PilotState.E),
                               ("0111", PilotState.B)]:
            show(rig, pattern)
            await rig.settle()
            assert p.state is state, pattern
        show(rig, "0101")                         # no comparator ladder reads like this
        await rig.settle()
        assert p.state is PilotState.E and "0101" in p.fault
        show(rig, "1111")
        await rig.settle()
        assert p.state is PilotState.A and p.fault is None
        assert seen[:5] == [PilotState.B, PilotState.C, PilotState.D, PilotState.E, PilotState.B]
        await p.stop()
    run(body)


def test_pilot_glitch_shorter_than_settle_is_not_a_state(rig: Rig) -> None:
    async def body() -> None:
        show(rig, "1111")
        p = pilot(rig, settle_s=0.02)
        await p.start()
        show(rig, "0111")
        await rig.clock.advance(0)                # edge seen, settling
        show(rig, "1111")                         # back before the settle time is over
        await rig.clock.advance(0.05)
        assert p.state is PilotState.A
        await p.stop()
    run(body)


def test_pilot_custom_encoding_active_low(rig: Rig) -> None:
    async def body() -> None:
        lines = [10, 11, 12]
        show(rig, "111", lines)                   # all inactive (active low): 000
        p = pilot(rig, lines=lines, active_low=True,
                  states={"000": "A", "100": "B", "010": "C", "110": "D", "001": "E", "101": "F"})
        await p.start()
        assert p.state is PilotState.A
        show(rig, "101", lines)                   # logical 010
        await rig.settle()
        assert p.state is PilotState.C
        show(rig, "010", lines)                   # logical 101
        await rig.settle()
        assert p.state is PilotState.F and p.fault is None
        await p.stop()
    run(body)


@pytest.mark.parametrize("inverted", [False, True])
def test_pilot_pwm_duty_for_offered_current(rig: Rig, inverted: bool) -> None:
    async def body() -> None:
        show(rig, "1111")
        p = pilot(rig, pwm_inverted=inverted)
        d = pwm_dir(rig)
        await p.start()
        assert (d / "period").read_text() == "1000000" and (d / "enable").read_text() == "1"

        def duty() -> int:
            ns = int((d / "duty_cycle").read_text())
            return 1_000_000 - ns if inverted else ns
        assert duty() == 1_000_000 and p.offered_a is None     # 100 %: nothing offered
        for amps, ns, offered in [(6, 100_000, 6), (16, 266_667, 16), (32, 533_333, 32),
                                  (63, 892_000, 63), (None, 1_000_000, None),
                                  (5, 1_000_000, None), (100, 960_000, 80)]:
            await p.offer(amps)
            assert (duty(), p.offered_a) == (ns, offered), amps
        await p.offer(16)
        await p.stop()
        assert duty() == 1_000_000                # stopped: no offer
    run(body)


def test_pilot_pwm_not_exported_is_a_fault_until_it_appears(rig: Rig) -> None:
    async def body() -> None:
        show(rig, "1111")
        p = pilot(rig, exported=False)
        await p.start()
        d = rig.tmp / "pwm" / "pwmchip0" / "pwm1"
        assert (d.parent / "export").read_text() == "1"  # it asked the kernel
        assert "did not appear" in p.fault
        pwm_dir(rig, exported=True)               # e.g. udev was slow
        await p.offer(16)
        assert p.fault is None and p.offered_a == 16
        assert (d / "duty_cycle").read_text() == "266667" and (d / "enable").read_text() == "1"
        await p.stop()
    run(body)


# -- lock -------------------------------------------------------------------------------------

def lock(rig: Rig, **settings: Any) -> GpioLock:
    base: dict[str, Any] = {"chip": rig.chip_path, "lock_line": LOCK, "unlock_line": UNLOCK,
                            "feedback_line": LOCK_FB, "pulse_s": 0.3, "feedback_timeout_s": 0.5}
    base.update(settings)
    base = {k: v for k, v in base.items() if v is not None}
    GpioLock.check_config(base)
    return GpioLock.from_config(base, clock=rig.clock)


def test_lock_pulse_confirmed_by_feedback(rig: Rig) -> None:
    async def body() -> None:
        lk = lock(rig)
        await lk.start()
        assert lk.locked is False
        moving = asyncio.ensure_future(lk.lock())
        await rig.clock.advance(0)                # the task starts: the pulse begins now
        await rig.clock.advance(0.1)
        assert (rig.chip.output(LOCK), rig.chip.output(UNLOCK)) == (True, False)
        await rig.clock.advance(0.2)              # pulse over
        assert rig.chip.output(LOCK) is False
        rig.chip.set_input(LOCK_FB, True)
        await rig.clock.advance(0.05)
        assert await moving is True and lk.locked is True

        moving = asyncio.ensure_future(lk.unlock())
        await rig.clock.advance(0)
        await rig.clock.advance(0.1)
        assert (rig.chip.output(LOCK), rig.chip.output(UNLOCK)) == (False, True)
        rig.chip.set_input(LOCK_FB, False)
        await rig.clock.advance(0.3)
        assert await moving is True and lk.locked is False
        assert rig.chip.output(UNLOCK) is False
        await lk.stop()
    run(body)


def test_lock_fails_when_feedback_does_not_follow(rig: Rig) -> None:
    async def body() -> None:
        lk = lock(rig)
        await lk.start()
        moving = asyncio.ensure_future(lk.lock())
        await rig.clock.advance(0)                # the task starts: the pulse begins now
        await rig.clock.advance(0.3)
        await rig.clock.advance(0.49)
        assert not moving.done()
        await rig.clock.advance(0.02)
        assert await moving is False and lk.locked is False
        assert rig.chip.output(LOCK) is False and lk.fault is None
        await lk.stop()
    run(body)


def test_lock_pulse_cancelled_stops_the_motor(rig: Rig) -> None:
    async def body() -> None:
        lk = lock(rig)
        await lk.start()
        moving = asyncio.ensure_future(lk.lock())
        await rig.clock.advance(0)                # the task starts: the pulse begins now
        await rig.clock.advance(0.1)
        assert rig.chip.output(LOCK) is True
        moving.cancel()
        await asyncio.gather(moving, return_exceptions=True)
        assert rig.chip.output(LOCK) is False
        await lk.stop()
    run(body)


def test_lock_level_mode_without_feedback(rig: Rig) -> None:
    async def body() -> None:
        lk = lock(rig, mode="level", line=LOCK, lock_line=None, unlock_line=None, pulse_s=None,
                  feedback_line=None, active_low=True)
        await lk.start()
        assert lk.locked is None and rig.chip.output(LOCK) is True
        assert await lk.lock() is True and lk.locked is True and rig.chip.output(LOCK) is False
        assert await lk.unlock() is True and lk.locked is False
        await lk.stop()
    run(body)


# -- config and the missing library ------------------------------------------------------------

def test_registry_names_the_gpio_classes() -> None:
    assert backend("contactor", "gpio") is GpioContactor
    assert backend("pilot", "gpio") is GpioPilot
    assert backend("lock", "gpio") is GpioLock


@pytest.mark.parametrize("cls,settings,key", [
    (GpioContactor, {"line": -1}, "line"),
    (GpioContactor, {"line": "5"}, "line"),
    (GpioContactor, {"line": True}, "line"),
    (GpioContactor, {}, "line"),
    (GpioContactor, {"line": 5, "feedback_line": 5}, "feedback_line"),
    (GpioContactor, {"line": 5, "feedback_timeout_s": 0}, "feedback_timeout_s"),
    (GpioContactor, {"line": 5, "active_low": "yes"}, "active_low"),
    (GpioContactor, {"line": 5, "bias": "pullup"}, "bias"),
    (GpioContactor, {"line": 5, "relay": 6}, "relay"),
    (GpioContactor, {"line": 5, "chip": "/nonexistent/gpiochip9"}, "chip"),
    (GpioPilot, {"lines": [1, 2, 3]}, "states"),
    (GpioPilot, {"lines": [1, 2], "states": {"012": "A"}}, "states"),
    (GpioPilot, {"lines": [1, 2], "states": {"01": "X"}}, "states"),
    (GpioPilot, {"lines": [1, 1, 2, 3]}, "lines"),
    (GpioPilot, {"lines": []}, "lines"),
    (GpioPilot, {"lines": [1, 2, 3, 4], "pwm_chip": 7}, "pwm_chip"),
    (GpioPilot, {"lines": [1, 2, 3, 4], "pwm_channel": -1}, "pwm_channel"),
    (GpioLock, {"lock_line": 1}, "unlock_line"),
    (GpioLock, {"mode": "level", "line": 1, "lock_line": 2}, "lock_line"),
    (GpioLock, {"mode": "motor"}, "mode"),
    (GpioLock, {"lock_line": 1, "unlock_line": 1}, "unlock_line"),
])
def test_check_config_names_the_bad_key(rig: Rig, cls: Any, settings: dict[str, Any],
                                        key: str) -> None:
    settings = {"chip": rig.chip_path, **settings}
    if cls is GpioPilot:
        pwm_dir(rig)
        settings.setdefault("pwm_sysfs", str(rig.tmp / "pwm"))
    with pytest.raises(HalConfigError) as err:
        cls.check_config(settings)
    assert err.value.key == key


def test_check_config_through_the_registry(rig: Rig) -> None:
    check(DriverSpec("contactor", "gpio", {"chip": rig.chip_path, "line": 3}))
    check(DriverSpec("lock", "gpio", {"chip": rig.chip_path, "mode": "level", "line": 3,
                                      "feedback_line": 4, "bias": "pull_up"}))


def test_missing_gpiod_is_a_clear_config_error_and_a_fault(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)  # import gpiod -> ImportError
    chip = tmp_path / "gpiochip0"
    chip.touch()
    settings = {"chip": str(chip), "line": 5}
    with pytest.raises(HalConfigError) as err:
        GpioContactor.check_config(settings)
    assert "python3-libgpiod (gpiod) is not installed" in str(err.value) and MISSING in str(err.value)

    async def body() -> None:
        c = GpioContactor.from_config(settings, clock=ManualClock())
        await c.start()
        assert c.fault is not None and "python3-libgpiod (gpiod) is not installed" in c.fault
        await c.close()
        assert c.state is ContactorState.OPEN
        await c.stop()
    run(body)


def test_an_unrelated_gpiod_module_is_refused(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    import types
    monkeypatch.setitem(sys.modules, "gpiod", types.ModuleType("gpiod"))
    chip = tmp_path / "gpiochip0"
    chip.touch()
    with pytest.raises(HalConfigError, match="neither libgpiod 1.6 nor 2.x"):
        GpioContactor.check_config({"chip": str(chip), "line": 5})
