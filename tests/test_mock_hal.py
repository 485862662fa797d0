"""The mock hardware's simulated EV: what the agent sees through the hal.api devices."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from agent.clock import ManualClock
from hal.api import ContactorState, ExternalLimitSignal, PilotState, PresentedToken
from hal.drivers.mock import MockEvseSpec, MockExternalLimit, MockStation, UnknownEvse

AC3 = MockEvseSpec(1, max_current_a=32, phases=3, nominal_voltage_v=230)
AC1 = MockEvseSpec(2, max_current_a=16, phases=1, nominal_voltage_v=230)
DC = MockEvseSpec(3, max_current_a=200, phases=0, nominal_voltage_v=400)


def run(test: Callable[[MockStation, ManualClock], Awaitable[Any]],
        specs: tuple[MockEvseSpec, ...] = (AC3, AC1), state_dir: Path | None = None) -> Any:
    async def main() -> Any:
        clock = ManualClock()
        station = MockStation(specs, clock, state_dir=state_dir)
        await station.start()
        try:
            return await test(station, clock)
        finally:
            await station.stop()
    return asyncio.run(main())


async def charging(station: MockStation, evse_id: int = 1, offer: float = 16) -> None:
    """Plug in, lock, offer a current and close the contactor, as the agent would."""
    devices = station.devices(evse_id)
    station.plug(evse_id)
    assert devices.lock is not None and await devices.lock.lock()
    await devices.pilot.offer(offer)
    await devices.contactor.close()


def test_plug_offer_and_unplug_move_the_pilot() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        pilot = station.devices(1).pilot
        assert pilot.state is PilotState.A
        station.plug(1)
        assert pilot.state is PilotState.B
        await pilot.offer(5)  # under 6 A is no offer (IEC 61851-1): the EV waits
        assert pilot.state is PilotState.B and pilot.offered_a is None
        await pilot.offer(16)
        assert pilot.state is PilotState.C and pilot.offered_a == 16
        await pilot.offer(None)
        assert pilot.state is PilotState.B
        await pilot.offer(16)
        station.unplug(1)
        assert pilot.state is PilotState.A
        assert station.snapshot(1)["plugged"] is False
    run(test)


def test_pilot_listeners_hear_each_change_once() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        pilot = station.devices(1).pilot
        heard: list[PilotState] = []
        pilot.subscribe(lambda: heard.append(pilot.state))
        station.plug(1)
        await pilot.offer(16)
        await pilot.offer(16)      # nothing new
        station.set_ev_max(1, 10)  # not the pilot's business
        station.unplug(1)
        assert heard == [PilotState.B, PilotState.C, PilotState.A]
    run(test)


def test_ev_draws_the_lesser_of_its_max_and_the_offer_only_with_the_contactor_closed() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        devices = station.devices(1)
        station.plug(1)
        assert devices.lock is not None and await devices.lock.lock()
        await devices.pilot.offer(16)
        assert station.snapshot(1)["power_w"] == 0  # C, but the contactor is open
        await devices.contactor.close()
        assert devices.contactor.state is ContactorState.CLOSED
        assert station.snapshot(1)["power_w"] == 16 * 3 * 230
        station.set_ev_max(1, 10)
        assert station.snapshot(1)["power_w"] == 10 * 3 * 230
        await devices.pilot.offer(8)
        assert station.snapshot(1)["power_w"] == 8 * 3 * 230
        reading = await devices.meter.read()
        assert reading.current_a == (8, 8, 8) and reading.voltage_v == (230, 230, 230)
        assert reading.frequency_hz == 50 and reading.power_w == 8 * 3 * 230
        await devices.pilot.offer(None)    # no offer: the EV stops drawing (B) ...
        assert station.snapshot(1)["power_w"] == 0
        assert (await devices.meter.read()).current_a == (0, 0, 0)
        await devices.contactor.open()     # ... before the contactor opens
        await devices.pilot.offer(16)
        assert station.snapshot(1)["power_w"] == 0, "C again, but the contactor is open"
    run(test)


@pytest.mark.breaks_safety("offer-over-rating",
                           reason="offers 40 A on a 32 A EVSE to show the EV's own limit")
def test_ev_max_defaults_to_the_evse_max_and_outlives_the_session() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        assert station.snapshot(1)["ev_max_a"] == 32
        await charging(station, offer=40)
        assert station.snapshot(1)["power_w"] == 32 * 3 * 230
        station.set_ev_max(1, 20)
        station.unplug(1)
        station.plug(1)
        assert station.snapshot(1)["ev_max_a"] == 20
        for bad in (-1, float("nan"), "16", True):
            with pytest.raises(ValueError):
                station.set_ev_max(1, bad)  # type: ignore[arg-type]
    run(test)


@pytest.mark.breaks_safety("offer-over-rating",
                           reason="offers 32 A on a 16 A EVSE to show the EV's own limit")
def test_single_phase_draws_on_l1_only() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        await charging(station, evse_id=2, offer=32)  # ev_max = the EVSE's 16 A
        reading = await station.devices(2).meter.read()
        assert reading.current_a == (16, None, None) and reading.voltage_v == (230, None, None)
        assert reading.power_w == 16 * 230
    run(test)


def test_energy_is_power_times_clock_time_for_any_advance_pattern() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        meter = station.devices(1).meter
        await charging(station, offer=16)  # 11040 W
        await clock.advance(1800)
        assert station.snapshot(1)["energy_wh"] == pytest.approx(5520)
        await clock.advance(0.25)
        await clock.advance(0.5)
        await clock.advance(1799.25)  # an hour in all, mostly between polls
        assert station.snapshot(1)["energy_wh"] == pytest.approx(11040)
        assert meter.latest is not None and meter.latest.energy_import_wh == pytest.approx(11040)
        station.set_ev_max(1, 8)      # half the power from here
        await clock.advance(450.5)
        station.suspend(1)            # none at all
        await clock.advance(1000)
        energy = (await meter.read()).energy_import_wh
        assert energy == pytest.approx(11040 + 5520 * 450.5 / 3600)
    run(test)


def test_meter_polls_on_the_clock_monotonic_and_quiet_when_idle() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        meter = station.devices(1).meter
        changes: list[float] = []
        meter.subscribe(lambda: changes.append(meter.latest.energy_import_wh))
        await clock.advance(10)
        assert changes == []  # nothing new to report from an idle EVSE
        await charging(station)
        await asyncio.sleep(0)  # the poller wakes and arms its timer
        await clock.advance(5)
        assert len(changes) == 5 and changes == sorted(changes) and changes[0] > 0
        assert meter.latest.timestamp == clock.now()
        station.suspend(1)                          # the EV stops drawing, then the
        await station.devices(1).contactor.open()   # contactor opens
        await clock.advance(5)
        assert len(changes) == 6 and meter.latest.power_w == 0  # the stop, reported once
        assert changes[-1] == pytest.approx(11040 * 5 / 3600)
        assert clock.sleepers == 0  # idle meters wait for the world, not the clock
        await clock.advance(86400)
        assert len(changes) == 6
    run(test)


def test_suspend_and_resume() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        pilot = station.devices(1).pilot
        await charging(station)
        station.suspend(1)
        assert pilot.state is PilotState.B and station.snapshot(1)["power_w"] == 0
        station.resume(1)
        assert pilot.state is PilotState.C and station.snapshot(1)["power_w"] > 0
        await pilot.offer(None)
        station.suspend(1)
        station.resume(1)  # resumes, but stays in B without an offer
        assert pilot.state is PilotState.B
        station.unplug(1)
        with pytest.raises(ValueError, match="no EV plugged in"):
            station.suspend(1)
    run(test)


def test_a_new_ev_arrives_ready() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        await charging(station)
        station.suspend(1)
        station.unplug(1)
        station.plug(1)
        assert station.devices(1).pilot.state is PilotState.C
    run(test)


def test_fault_stops_the_ac_ev_and_sets_a_device_fault_until_cleared() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        devices = station.devices(1)
        heard: list[str | None] = []
        devices.pilot.subscribe(lambda: heard.append(devices.pilot.fault))
        await charging(station)
        heard.clear()
        station.fault(1)
        assert devices.pilot.state is PilotState.F
        assert [d.fault for d in devices.all() if d.fault] == [devices.pilot.fault]
        assert "fault" in heard[0]
        # An AC EV stops drawing at state F; switching off is the station's job (the
        # mock's relays do not drop under load by themselves).
        assert station.snapshot(1)["power_w"] == 0
        assert devices.contactor.state is ContactorState.CLOSED
        assert station.snapshot(1)["plugged"] is True, "a fault is not an unplug"
        await devices.pilot.offer(None)
        await devices.contactor.open()
        await devices.contactor.close()  # the interlock holds it open
        assert devices.contactor.state is ContactorState.OPEN
        assert station.devices(2).pilot.fault is None  # only that EVSE
        station.clear(1)
        assert devices.pilot.fault is None and devices.pilot.state is PilotState.B
        assert devices.contactor.state is ContactorState.OPEN  # closing again is the agent's call
    run(test)


def test_a_dc_fault_leaves_the_current_to_the_station() -> None:
    """On DC the module pushes the current, not the EV: a fault (pilot F) does not stop it;
    only the module switched off does, and only then may the contactor open."""
    async def test(station: MockStation, clock: ManualClock) -> None:
        devices = station.devices(3)
        assert devices.power is not None and devices.lock is None  # a fixed cable
        station.plug(3)
        await devices.contactor.close()
        await devices.power.set_output(500, 100)
        await devices.power.enable(True)
        station.fault(3)
        assert devices.pilot.state is PilotState.F
        assert station.snapshot(3)["power_w"] == 500 * 100
        await devices.power.enable(False)
        assert (await devices.power.read()).current_a == 0
        await devices.contactor.open()
    run(test, specs=(AC3, DC))


def test_a_dc_module_ramps_down_after_it_is_switched_off() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        devices = station.devices(3)
        power = devices.power
        assert power is not None
        with pytest.raises(ValueError, match="no power module"):
            station.set_module_ramp_down(1, 1)
        for bad in (-1, float("nan"), "1"):
            with pytest.raises(ValueError):
                station.set_module_ramp_down(3, bad)  # type: ignore[arg-type]
        station.set_module_ramp_down(3, 0.5)
        station.plug(3)
        await devices.contactor.close()
        await power.set_output(500, 100)
        await power.enable(True)
        await clock.advance(3600)
        await power.enable(False)
        readback = await power.read()
        assert (readback.on, readback.current_a) == (False, 100)   # still delivering
        await clock.advance(0.25)
        assert (await power.read()).current_a == 100
        await clock.advance(0.25)
        assert (await power.read()).current_a == 0
        # Energy exact across the ramp: an hour and a half second at 50 kW.
        await clock.advance(10)
        assert station.snapshot(3)["energy_wh"] == pytest.approx(50_000 * (1 + 0.5 / 3600))
        await devices.contactor.open()
    run(test, specs=(AC3, DC))


def test_swipe_yields_uppercased_tokens_at_the_chosen_reader() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        first = station.devices(1).reader.tokens()
        second = station.devices(2).reader.tokens()
        station.swipe("ab12cd")
        station.swipe("04a2", type="ISO15693", evse_id=2)
        assert await asyncio.wait_for(first.__anext__(), 1) == PresentedToken("AB12CD", "ISO14443")
        assert await asyncio.wait_for(second.__anext__(), 1) == PresentedToken("04A2", "ISO15693")
        waiting = asyncio.ensure_future(first.__anext__())
        await asyncio.sleep(0)
        assert not waiting.done()
        station.swipe("CAFE")
        assert await asyncio.wait_for(waiting, 1) == PresentedToken("CAFE")
        for uid in ("", "A" * 37, "AB 12"):
            with pytest.raises(ValueError):
                station.swipe(uid)
        with pytest.raises(ValueError, match="idToken type"):
            station.swipe("AB", type="Magic")
    run(test)


def test_lock_obeys_with_feedback_and_a_jammed_one_does_not_move() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        lock = station.devices(1).lock
        assert lock is not None
        heard: list[bool | None] = []
        lock.subscribe(lambda: heard.append(lock.locked))
        assert lock.locked is False
        assert await lock.lock() is True and lock.locked is True
        assert await lock.unlock() is True and lock.locked is False
        assert station.snapshot(1)["locked"] is False
        station.lock_fail(1)
        assert await lock.lock() is False and lock.locked is False
        assert lock.fault is None, "a lock that does not move is the agent's to judge"
        assert station.snapshot(1)["lock_jammed"] is True
        station.lock_ok(1)
        assert await lock.lock() is True and lock.locked is True
        station.lock_fail(1)
        assert await lock.unlock() is False and lock.locked is True
        station.lock_ok(1)
        # Each move and each start and end of a jam (freed: worth trying again).
        assert heard == [True, False, False, False, True, True, True]
    run(test)


def test_a_fixed_cable_has_no_lock() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        assert station.devices(3).lock is None
        assert station.snapshot(3)["locked"] is None
        with pytest.raises(ValueError, match="fixed cable"):
            station.lock_fail(3)
    run(test, specs=(AC3, DC))


def test_dc_evse_draws_from_its_power_module() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        devices = station.devices(3)
        power = devices.power
        assert power is not None and station.devices(1).power is None
        caps = await power.capabilities()
        assert caps.max_current_a == 200
        station.plug(3)
        assert devices.pilot.state is PilotState.C  # no PWM offer on DC
        await devices.contactor.close()
        await power.set_output(400, 100)
        assert station.snapshot(3)["power_w"] == 0  # module off
        await power.enable(True)
        assert station.snapshot(3)["offered_current_a"] == 100
        assert station.snapshot(3)["power_w"] == 400 * 100
        station.set_ev_max(3, 50)
        readback = await power.read()
        assert (readback.voltage_v, readback.current_a, readback.on) == (400, 50, True)
        reading = await devices.meter.read()
        assert reading.current_a == (50, None, None) and reading.frequency_hz is None
        await clock.advance(3600)
        assert station.snapshot(3)["energy_wh"] == pytest.approx(20000)
        await power.set_output(2000, 180)  # clamped to what the module can do
        readback = await power.read()
        assert readback.voltage_v == 1000 and station.snapshot(3)["offered_current_a"] == 180
    run(test, specs=(AC3, DC))


@pytest.mark.breaks_safety("offer-over-rating",
                           reason="asks the module for more than the EVSE's rating")
def test_dc_set_point_is_clamped_to_the_rating() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        power = station.devices(3).power
        assert power is not None
        await power.set_output(500, 999)
        assert station.ev(3).dc_current_a == 200
    run(test, specs=(AC3, DC))


def test_external_limit_starts_unlimited_and_listeners_hear_only_changes() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        limit = station.external_limit
        assert isinstance(limit, MockExternalLimit)
        assert limit.signal == ExternalLimitSignal(None, "EMS", False) and limit.fault is None
        heard: list[ExternalLimitSignal] = []
        limit.subscribe(lambda: heard.append(limit.signal))
        station.set_external_limit(4200, source="SO", grid_critical=True)
        station.set_external_limit(4200.0, source="SO", grid_critical=True)  # the same again
        station.set_external_limit(4200, source="SO")          # no longer grid critical
        station.set_external_limit(3000, source="SO")
        limit.set(ExternalLimitSignal(3000, "SO"))              # the device itself, the same
        station.set_external_limit(None)
        station.set_external_limit(None)
        assert heard == [ExternalLimitSignal(4200, "SO", True), ExternalLimitSignal(4200, "SO"),
                         ExternalLimitSignal(3000, "SO"), ExternalLimitSignal()]
        assert isinstance(heard[0].limit_w, float)
        station.set_external_limit(0, source="Other")  # 0 W: a stop, not "no limit"
        assert limit.signal.limit_w == 0 and limit.signal.source == "Other"
    run(test)


def test_bad_external_limits_raise_and_change_nothing() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        limit = station.external_limit
        station.set_external_limit(5000, source="SO")
        heard: list[ExternalLimitSignal] = []
        limit.subscribe(lambda: heard.append(limit.signal))
        bad: list[dict[str, Any]] = [
            {"limit_w": -1}, {"limit_w": float("nan")}, {"limit_w": float("inf")},
            {"limit_w": "4200"}, {"limit_w": True}, {"limit_w": 10**400},
            {"limit_w": 4200, "source": "CSO"}, {"limit_w": 4200, "source": "ems"},
            {"limit_w": None, "source": 7}, {"limit_w": 4200, "grid_critical": 1}]
        for kwargs in bad:
            with pytest.raises(ValueError):
                station.set_external_limit(**kwargs)
        with pytest.raises(TypeError):
            limit.set(4200)  # type: ignore[arg-type]
        assert limit.signal == ExternalLimitSignal(5000, "SO") and heard == []
    run(test)


def test_snapshot_has_the_status_fields() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        await charging(station)
        snap = station.snapshot(1)
        assert {k: snap[k] for k in ("plugged", "contactor_closed", "offered_current_a",
                                     "power_w", "energy_wh")} == {
            "plugged": True, "contactor_closed": True, "offered_current_a": 16,
            "power_w": 11040, "energy_wh": 0}
    run(test)


def test_unknown_evse_is_a_clear_error() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        for call in (lambda: station.plug(9), lambda: station.devices(9),
                     lambda: station.snapshot(9), lambda: station.swipe("AB", evse_id=9),
                     lambda: station.set_ev_max(9, 10), lambda: station.fault(True)):
            with pytest.raises(UnknownEvse) as info:
                call()
            assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
        assert str(UnknownEvse(9)) == "unknown EVSE 9"
    run(test)


def test_stop_leaves_the_hardware_safe_and_start_is_idempotent() -> None:
    async def test(station: MockStation, clock: ManualClock) -> None:
        await station.start()  # again
        await charging(station)
        await asyncio.sleep(0)
        assert clock.sleepers == 1  # one poller on the charging EVSE; the idle one waits
        await clock.advance(3)
        assert clock.sleepers == 1
        await station.stop()
        assert station.snapshot(1)["contactor_closed"] is False
        assert clock.sleepers == 0
    run(test)


def test_station_accepts_config_like_evse_descriptions() -> None:
    class EvseConfig:  # the agent's dataclass has these four fields
        id, max_current_a, phases, nominal_voltage_v = 1, 32.0, 3, 230.0

    station = MockStation([EvseConfig()], ManualClock())
    assert station.evse_ids == [1]
    with pytest.raises(ValueError):
        MockStation([], ManualClock())
    with pytest.raises(ValueError):
        MockStation([AC3, AC3], ManualClock())


# -- the meter's register survives restarts (hal/drivers/mock/register.py) -----------------

def in_dir(state_dir: Path, test: Callable[[MockStation, ManualClock], Awaitable[Any]]) -> Any:
    """One life of a mock station keeping its registers in `state_dir`. Its stop()
    writes nothing, so the next life sees what a kill -9 would have left."""
    return run(test, (AC3,), state_dir)


def test_register_survives_a_restart_and_no_value_seen_is_taken_back(tmp_path: Path) -> None:
    seen: list[float] = []

    async def first_life(station: MockStation, clock: ManualClock) -> None:
        meter = station.devices(1).meter
        await charging(station, offer=32)             # 22080 W
        await asyncio.sleep(0)
        for _ in range(7):
            await clock.advance(1)
            seen.append(meter.latest.energy_import_wh)
        await clock.advance(0.5)                      # between polls: counted, not seen
        seen.append(station.snapshot(1)["energy_wh"])  # sim status sees it too

    async def second_life(station: MockStation, clock: ManualClock) -> None:
        meter = station.devices(1).meter
        assert meter.latest.energy_import_wh == pytest.approx(22080 * 7.5 / 3600)
        assert meter.latest.energy_import_wh >= max(seen)
        assert station.snapshot(1)["energy_wh"] == meter.latest.energy_import_wh
        await charging(station, offer=16)
        await asyncio.sleep(0)
        await clock.advance(360)                      # and it counts on from there
        assert meter.latest.energy_import_wh == pytest.approx(22080 * 7.5 / 3600 + 1104)

    in_dir(tmp_path, first_life)
    assert seen == sorted(seen) and seen[0] > 0
    in_dir(tmp_path, second_life)
    assert float((tmp_path / "mock-meter-evse1.wh").read_text()) == pytest.approx(
        22080 * 7.5 / 3600 + 1104)


def test_register_is_written_only_when_it_moved(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import hal.drivers.mock.register as register
    writes: list[str] = []
    original = register.replace_durably
    monkeypatch.setattr(register, "replace_durably", lambda path, text: (
        writes.append(str(path)), original(path, text)))

    async def test(station: MockStation, clock: ManualClock) -> None:
        await clock.advance(3600)                     # idle: nothing flows, nothing written
        station.snapshot(1)
        assert writes == []
        await charging(station)
        await asyncio.sleep(0)
        await clock.advance(10)                       # one write per poll while charging
        assert 9 <= len(writes) <= 11
        await station.devices(1).pilot.offer(None)    # stopped: the EV first, then
        await station.devices(1).contactor.open()     # the contactor
        await clock.advance(1)
        count = len(writes)
        await clock.advance(3600)
        station.snapshot(1)
        assert len(writes) == count                   # stopped: nothing more to write

    in_dir(tmp_path, test)


def test_a_register_file_that_is_not_a_register_starts_at_zero_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "mock-meter-evse1.wh").write_text("garbage\n")

    async def test(station: MockStation, clock: ManualClock) -> None:
        assert station.devices(1).meter.latest.energy_import_wh == 0

    with caplog.at_level(logging.WARNING):
        in_dir(tmp_path, test)
    assert any("not a register" in r.getMessage() for r in caplog.records)


def test_a_register_that_cannot_be_written_leaves_the_meter_working(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")                            # the state dir is a file: no writes

    async def test(station: MockStation, clock: ManualClock) -> None:
        await charging(station)
        await asyncio.sleep(0)
        await clock.advance(5)
        assert station.devices(1).meter.latest.energy_import_wh == pytest.approx(11040 * 5 / 3600)

    with caplog.at_level(logging.WARNING):
        in_dir(blocked, test)
    warnings = [r for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(warnings) == 1                         # once, not every poll


def test_replace_meter_sets_a_new_register_and_keeps_it(tmp_path: Path) -> None:
    async def first_life(station: MockStation, clock: ManualClock) -> None:
        await charging(station)
        await asyncio.sleep(0)
        await clock.advance(60)
        station.replace_meter(1, 12.5)
        for bad in (-1, float("nan"), float("inf"), True, "3"):
            with pytest.raises(ValueError):
                station.replace_meter(1, bad)
        await clock.advance(1)                        # the meter's next poll shows it
        assert station.devices(1).meter.latest.energy_import_wh == pytest.approx(
            12.5 + 11040 / 3600)
        with pytest.raises(UnknownEvse):
            station.replace_meter(9, 0)

    async def second_life(station: MockStation, clock: ManualClock) -> None:
        assert station.devices(1).meter.latest.energy_import_wh == pytest.approx(
            12.5 + 11040 / 3600)

    in_dir(tmp_path, first_life)
    in_dir(tmp_path, second_life)


def test_without_a_state_dir_every_start_is_at_zero() -> None:
    async def charge(station: MockStation, clock: ManualClock) -> None:
        await charging(station)
        await asyncio.sleep(0)
        await clock.advance(60)
        assert station.devices(1).meter.latest.energy_import_wh > 0

    async def zero(station: MockStation, clock: ManualClock) -> None:
        assert station.devices(1).meter.latest.energy_import_wh == 0

    run(charge)
    run(zero)
