"""The safety monitor itself (tests/safety_monitor.py, tests/conftest.py): each invariant
is caught, what the world does is given time to be answered, and a deliberately broken
stop order fails a test that the monitor watches."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.clock import ManualClock
from hal.api import EvseOutputs, Transition
from hal.drivers.mock import MockEvseSpec, MockStation
from hal.drivers.mock.recorder import TransitionLog, read
from hal.evse import EvseHardware
from tests.safety_monitor import INVARIANTS, LINGER_S, check

ROOT = Path(__file__).resolve().parent.parent
INNER = "STATION_AGENT_TEST_INNER"     # set only by the test that runs the inner tests

IDLE = EvseOutputs(contactor_closed=False, current_a=0.0, module_on=None, module_set_a=None,
                   offered_a=None, plugged=True, faulted=False, locked=True, rating_a=32.0)
CHARGING = dataclasses.replace(IDLE, contactor_closed=True, current_a=16.0, offered_a=16.0)
DC_IDLE = dataclasses.replace(IDLE, module_on=False, module_set_a=100.0, locked=None)
DC_CHARGING = dataclasses.replace(DC_IDLE, contactor_closed=True, current_a=50.0,
                                  module_on=True)


def t(cause: str, before: EvseOutputs, after: EvseOutputs, at: float = 0.0,
      requested: float | None = None) -> Transition:
    return Transition(1, at, cause, before, after, requested, "test")


def broken(*transitions: Transition) -> list[str]:
    return [v.invariant for v in check(transitions)]


def test_each_invariant_is_caught() -> None:
    dc_open_on = dataclasses.replace(DC_CHARGING, contactor_closed=False, current_a=0.0)
    cases = {
        "switch-under-load": [t("contactor", CHARGING, dataclasses.replace(
            CHARGING, contactor_closed=False, current_a=0.0))],
        "module-on-while-open": [t("module", DC_IDLE, dataclasses.replace(DC_IDLE, module_on=True))],
        "offer-over-rating": [t("offer", IDLE, dataclasses.replace(IDLE, offered_a=40.0),
                                requested=40.0)],
        "offer-without-ev": [t("offer", dataclasses.replace(IDLE, plugged=False),
                               dataclasses.replace(IDLE, plugged=False, offered_a=16.0))],
        "energised-unlocked": [t("lock", CHARGING, dataclasses.replace(CHARGING, locked=False))],
        "energised-on-fault": [t("contactor", dataclasses.replace(IDLE, plugged=False),
                                 dataclasses.replace(IDLE, plugged=False, contactor_closed=True))],
        "unsafe-at-stop": [t("stop", CHARGING, CHARGING)],
    }
    assert set(cases) == set(INVARIANTS)
    for invariant, transitions in cases.items():
        assert broken(*transitions) == [invariant], invariant
    # Opening a DC contactor with the module on is two faults at once.
    assert broken(t("contactor", DC_CHARGING, dc_open_on)) == [
        "switch-under-load", "module-on-while-open"]


def test_the_safe_orders_pass() -> None:
    ac_stop = [
        t("offer", CHARGING, dataclasses.replace(CHARGING, offered_a=None, current_a=0.0)),
        t("contactor", dataclasses.replace(CHARGING, offered_a=None, current_a=0.0), IDLE),
        t("lock", IDLE, dataclasses.replace(IDLE, locked=False)),
        t("stop", dataclasses.replace(IDLE, locked=False), dataclasses.replace(IDLE, locked=False)),
    ]
    off = dataclasses.replace(DC_CHARGING, module_on=False, current_a=0.0)
    dc_stop = [t("module", DC_CHARGING, off), t("contactor", off, DC_IDLE)]
    assert check(ac_stop + dc_stop) == []


def test_the_world_gets_time_to_be_answered() -> None:
    """An unplug leaves an offer and a closed contactor for an instant: the station has
    LINGER_S to end them, measured on the recorded clock."""
    unplugged = dataclasses.replace(CHARGING, plugged=False, current_a=0.0)
    withdrawn = dataclasses.replace(unplugged, offered_a=None)
    answered = [t("plug", CHARGING, unplugged, at=10.0),
                t("offer", unplugged, withdrawn, at=10.5),
                t("contactor", withdrawn, dataclasses.replace(withdrawn, contactor_closed=False),
                  at=10.5)]
    assert check(answered) == []
    ignored = [t("plug", CHARGING, unplugged, at=10.0),
               t("ev-max", unplugged, unplugged, at=10.0 + LINGER_S + 1)]
    assert sorted(broken(*ignored)) == ["energised-on-fault", "offer-without-ev"]


def test_the_log_carries_transitions_across_processes(tmp_path: Path) -> None:
    log = TransitionLog(tmp_path / "log.jsonl")
    first = t("offer", IDLE, CHARGING, at=1.5, requested=16.0)
    log(first)
    log(t("stop", IDLE, IDLE))
    log.close()
    back = list(read(tmp_path / "log.jsonl"))
    assert [x.cause for x in back] == ["offer", "stop"]
    assert dataclasses.replace(back[0], source="test") == first
    assert back[0].source == log.source and str(os.getpid()) in log.source


# -- a broken stop order, watched --------------------------------------------------------------

async def dc_at_50_kw() -> tuple[MockStation, EvseHardware]:
    station = MockStation([MockEvseSpec(1, max_current_a=200, phases=0)], ManualClock())
    station.set_ev_max(1, 50)
    hw = EvseHardware(1, station.devices(1), rating_a=200)
    await hw.start()
    station.plug(1)
    assert await hw.close_contactor()
    await hw.set_module_output(1000, 200)
    assert await hw.switch_module_on()
    assert station.snapshot(1)["power_w"] == 50_000
    return station, hw


def contactor_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The order `hal/evse.py` had before issue 15: the contactor first."""
    async def switch_off(self: EvseHardware, *, withdraw_offer: bool = True) -> None:
        await self.devices.contactor.open()
        if self.devices.power is not None:
            await self.devices.power.enable(False)
    monkeypatch.setattr(EvseHardware, "switch_off", switch_off)


inner = pytest.mark.skipif(os.environ.get(INNER) != "1",
                           reason="run by test_a_broken_stop_order_fails_the_test_it_is_in")


@inner
def test_inner_broken_stop_order(monkeypatch: pytest.MonkeyPatch) -> None:
    contactor_first(monkeypatch)

    async def main() -> None:
        station, hw = await dc_at_50_kw()
        await hw.stop()
        assert not station.snapshot(1)["contactor_closed"]   # the test itself sees nothing
    asyncio.run(main())


@inner
@pytest.mark.breaks_safety("switch-under-load", reason="claims a break it does not do")
def test_inner_mark_without_the_break() -> None:
    async def main() -> None:
        station, hw = await dc_at_50_kw()
        await hw.stop()
    asyncio.run(main())


def test_a_broken_stop_order_fails_the_test_it_is_in() -> None:
    """The contactor opened before the module: a test that passes its own asserts fails
    on the monitor, naming the transition; and a mark that claims a break nobody makes
    fails too (a mark is no blanket opt-out)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "inner",
         str(Path(__file__).relative_to(ROOT))],
        cwd=ROOT, env={**os.environ, INNER: "1"}, capture_output=True, text=True, timeout=120)
    out = done.stdout
    assert done.returncode == 1, out
    assert "2 failed" in out, out
    assert "safety monitor: 2 violation(s)" in out, out
    assert "[switch-under-load] EVSE 1" in out and "opened at 50 A" in out, out
    assert "[module-on-while-open] EVSE 1" in out, out
    assert "marked breaks_safety(switch-under-load) but the monitor saw no such violation" \
        in out, out


@pytest.mark.breaks_safety("switch-under-load", "module-on-while-open",
                           reason="the broken order, on purpose")
def test_the_same_break_marked_is_expected(safety_monitor: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    contactor_first(monkeypatch)

    async def main() -> None:
        station, hw = await dc_at_50_kw()
        await hw.stop()
    asyncio.run(main())
    assert sorted({v.invariant for v in check(read(safety_monitor))}) == [
        "module-on-while-open", "switch-under-load"]
