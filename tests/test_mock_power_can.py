"""A mock station with a real power-module driver: `[evse.power] driver = "can_power"`
under `hal.driver = "mock"` (hal/drivers/mock/real_power.py).

The real CAN driver talks to two simulated InfyPower-style modules (tests/infy_module_sim.py,
written from the public protocol descriptions) on python-can's `virtual` bus; the mock EV
takes what the modules report as their output and the mock meter integrates it. The VM rig
runs the same setup on a real kernel's vcan0 with the packaged service
(tests/vm/service_checks.py).

Time is a ManualClock shared by the agent's side and the simulated modules; what a test
waits for in real time is python-can's reader threads handing frames over (`eventually`).
No test advances the clock past an answer's timeout while frames are under way.
"""

from __future__ import annotations

import asyncio
import itertools
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import can
import pytest

from agent.clock import ManualClock
from agent.config import ConfigError, load_config
from agent.demo.csms import Csms
from agent.hardware import build_hardware
from hal.drivers.can_power import CanPowerModule
from hal.drivers.mock import MockEvseSpec, MockStation
from hal.drivers.mock.real_power import ReportedPowerModule
from hal.drivers.mock.recorder import read
from hal.evse import SWITCH_CURRENT_A, EvseHardware
from tests.harness import PASSWORD, InProcessAgent, quiesce, write_config
from tests.infy_module_sim import SimModule

_channels = itertools.count()
RATING_A = 60.0          # the DC EVSE's rating; two modules of 100 A / 30 kW feed it
CEILING_V = 1000.0       # the modules' highest voltage: the agent's ceiling (no ISO 15118)


def run(scenario: Any, timeout: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(scenario, timeout))


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait (real time, bounded) for frames to cross python-can's reader threads."""
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting for {what}")


def sims_on(channel: str, clock: ManualClock, addresses: tuple[int, ...] = (1, 2)) -> list[SimModule]:
    sims = [SimModule(can.Bus(interface="virtual", channel=channel), address, clock=clock)
            for address in addresses]
    for sim in sims:
        sim.start()
    return sims


def driver_on(channel: str, clock: ManualClock) -> CanPowerModule:
    return CanPowerModule.from_config({"interface": "virtual", "channel": channel,
                                       "modules": [1, 2]}, clock=clock)


@asynccontextmanager
async def station() -> AsyncIterator[tuple[MockStation, EvseHardware, list[SimModule], ManualClock]]:
    """A mock station with one DC EVSE whose power module is the real driver on a virtual
    bus with two simulated modules; its EVSE supervisor started."""
    clock = ManualClock()
    channel = f"mock-power-test-{next(_channels)}"
    sims = sims_on(channel, clock)
    mock = MockStation([MockEvseSpec(1, RATING_A, phases=0)], clock,
                       power={1: driver_on(channel, clock)})
    hw = EvseHardware(1, mock.devices(1), clock=clock, rating_a=RATING_A)
    await hw.start()
    try:
        yield mock, hw, sims, clock
    finally:
        await hw.stop()
        for sim in sims:
            sim.stop()


def openings(log: Path) -> list[tuple[int, list[Any]]]:
    ts = list(read(log))
    return [(i, ts) for i, t in enumerate(ts) if t.cause == "contactor"
            and t.before.contactor_closed and not t.after.contactor_closed]


# -- the station's devices ------------------------------------------------------------------

def test_the_ev_takes_what_the_modules_report_and_the_meter_integrates_it(safety_monitor):
    async def scenario() -> None:
        async with station() as (mock, hw, sims, clock):
            power = mock.devices(1).power
            assert isinstance(power, ReportedPowerModule)
            meter = mock.devices(1).meter
            assert meter is not None
            mock.plug(1)
            assert await hw.close_contactor()
            await hw.set_module_output(CEILING_V, 40)
            # Told, not yet on: the modules hold their shares and deliver nothing.
            assert [s.current_ma for s in sims] == [20_000, 20_000]
            assert mock.snapshot(1)["power_w"] == 0
            assert await hw.switch_module_on()
            assert all(s.on for s in sims)
            assert mock.snapshot(1)["power_w"] == 40_000      # 2 x 20 A at 1000 V
            start = (await meter.read()).energy_import_wh
            await clock.advance(0.5)        # short of every timer: nothing polls meanwhile
            assert (await meter.read()).energy_import_wh == pytest.approx(start + 40_000 * 0.5 / 3600)
            await hw.set_module_output(CEILING_V, 10)
            assert [s.current_ma for s in sims] == [5_000, 5_000]
            assert mock.snapshot(1)["power_w"] == 10_000
            await clock.advance(0.25)
            assert (await meter.read()).energy_import_wh == pytest.approx(
                start + (40_000 * 0.5 + 10_000 * 0.25) / 3600)
            # An EV that takes less than the modules offer takes only that.
            mock.set_ev_max(1, 3)
            assert mock.snapshot(1)["power_w"] == 3_000
    run(scenario())


def test_switch_off_has_the_modules_off_before_the_contactor_opens(safety_monitor):
    async def scenario() -> None:
        async with station() as (mock, hw, sims, clock):
            mock.plug(1)
            assert await hw.close_contactor()
            await hw.set_module_output(CEILING_V, 30)
            assert await hw.switch_module_on()
            assert mock.snapshot(1)["power_w"] == 30_000
            await hw.switch_off()
            assert not any(s.on for s in sims)
            assert not mock.snapshot(1)["contactor_closed"]
            assert mock.snapshot(1)["power_w"] == 0
    run(scenario())
    found = openings(safety_monitor)
    assert len(found) == 1
    i, ts = found[0]
    opening = ts[i]
    # The modules had said they were off, and their reported current was gone.
    assert opening.before.module_on is False
    assert opening.before.current_a is not None and opening.before.current_a < SWITCH_CURRENT_A
    off = [t for t in ts[:i] if t.cause == "module" and t.before.module_on and not t.after.module_on]
    assert off and off[-1].before.current_a == pytest.approx(30)


def test_a_fault_the_modules_report_switches_the_evse_off(safety_monitor):
    async def scenario() -> None:
        async with station() as (mock, hw, sims, clock):
            mock.plug(1)
            assert await hw.close_contactor()
            await hw.set_module_output(CEILING_V, 20)
            assert await hw.switch_module_on()
            for sim in sims:
                sim.faults = {"output_short_circuit"}
            power = mock.devices(1).power
            assert power is not None
            await power.read()              # as its poll would, a second later
            assert power.fault is not None and "short circuit" in power.fault
            assert hw.faults
            await eventually(lambda: not mock.snapshot(1)["contactor_closed"],
                             "the supervisor opening the contactor")
            assert not any(s.on for s in sims)
    run(scenario())


def test_real_power_only_on_a_dc_evse_of_the_station():
    clock = ManualClock()

    async def scenario() -> None:
        real = driver_on(f"mock-power-test-{next(_channels)}", clock)
        with pytest.raises(ValueError, match="AC EVSE"):
            MockStation([MockEvseSpec(1, 32)], clock, power={1: real})
        with pytest.raises(ValueError, match="does not have: 2"):
            MockStation([MockEvseSpec(1, 60, phases=0)], clock, power={2: real})
        mock = MockStation([MockEvseSpec(1, 60, phases=0)], clock, power={1: real})
        with pytest.raises(ValueError, match="real power module"):
            mock.set_module_ramp_down(1, 0.5)   # the real modules ramp down as they do
    run(scenario())


# -- the config -----------------------------------------------------------------------------

POWER_TABLE = """
[evse.power]
driver = "can_power"
interface = "virtual"
channel = "{channel}"
modules = [1, 2]
"""


def dc_config(tmp_path: Path, url: str, channel: str, extra: str = "") -> Path:
    config = write_config(tmp_path, url)
    config.write_text(config.read_text().replace(
        "max_current_a = 32\n", f"max_current_a = {RATING_A:g}\n{extra}", 1)
        + POWER_TABLE.format(channel=channel))
    return config


def test_check_config_takes_a_power_table_on_a_mock_dc_evse(tmp_path):
    config = load_config(dc_config(tmp_path, "ws://127.0.0.1:9/ocpp", "vcan0"))
    evse = config.evses[0]
    assert evse.dc is True       # [evse.power] makes it DC
    assert [(s.role, s.driver) for s in evse.devices] == [("power", "can_power")]
    hardware = build_hardware(config, ManualClock())
    power = hardware.evses[1].devices.power
    assert isinstance(power, ReportedPowerModule) and isinstance(power.real, CanPowerModule)
    assert hardware.mock is not None


def test_check_config_names_what_a_mock_station_cannot_take(tmp_path):
    def error(path: Path) -> str:
        with pytest.raises(ConfigError) as info:
            load_config(path)
        return str(info.value)

    message = error(dc_config(tmp_path, "ws://127.0.0.1:9/ocpp", "vcan0", extra="dc = false\n"))
    assert "evse[1].dc" in message and "[evse.power]" in message
    bad = dc_config(tmp_path, "ws://127.0.0.1:9/ocpp", "vcan0")
    bad.write_text(bad.read_text().replace('interface = "virtual"', 'interface = "nocan"'))
    assert "evse[1].power.interface" in error(bad)
    meter = dc_config(tmp_path, "ws://127.0.0.1:9/ocpp", "vcan0")
    meter.write_text(meter.read_text() + '[evse.meter]\ndriver = "modbus_meter"\nport = "/dev/null"\n')
    message = error(meter)
    assert "evse[1].meter" in message and "only [evse.power]" in message


# -- the agent --------------------------------------------------------------------------------

def tx_profile(profile_id: int, watts: float, transaction_id: str, start: datetime) -> dict:
    from agent.clock import format_datetime
    return {"id": profile_id, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute", "transactionId": transaction_id,
            "chargingSchedule": [{"id": profile_id, "chargingRateUnit": "W",
                                  "startSchedule": format_datetime(start),
                                  "chargingSchedulePeriod": [{"startPeriod": 0,
                                                              "limit": watts}]}]}


def test_a_dc_session_follows_the_csms_limit_on_the_real_driver(tmp_path, safety_monitor):
    """The agent on the mock station with the CAN driver: a TxProfile from the CSMS sets the
    modules' shares, the EV takes what they deliver, and at the end the modules are off
    before the contactor opens."""
    async def main() -> None:
        clock = ManualClock(datetime.now(timezone.utc).replace(microsecond=0))
        channel = f"mock-power-agent-{next(_channels)}"
        sims = sims_on(channel, clock)
        try:
            async with Csms(passwords={"CS-TEST": PASSWORD}, now=clock.now) as csms:
                config = dc_config(tmp_path, csms.url, channel)
                async with InProcessAgent(config, clock) as agent:
                    link = await csms.wait_station("CS-TEST", timeout=10)
                    await link.expect_call("StatusNotification", timeout=10)
                    answer = await link.call("RequestStartTransaction", {
                        "idToken": {"idToken": "TOKEN1", "type": "ISO14443"},
                        "remoteStartId": 1, "evseId": 1})
                    assert answer["status"] == "Accepted", answer
                    await agent.sim("plug", 1)
                    started = await link.expect_call(
                        "TransactionEvent", where=lambda p: p["eventType"] == "Started")
                    tx = started["transactionInfo"]["transactionId"]
                    # No limit: the modules' 60 kW at 1000 V (the EVSE's 60 A), 30 A each.
                    await eventually(lambda: all(s.on and s.current_ma == 30_000 for s in sims),
                                     "both modules on at 30 A")
                    for limit_w, share_ma in ((20_000, 10_000), (7_000, 3_500)):
                        answer = await link.call("SetChargingProfile", {
                            "evseId": 1, "chargingProfile": tx_profile(   # replaces it
                                1, limit_w, tx, clock.now())})
                        assert answer["status"] == "Accepted", answer
                        await eventually(lambda: all(s.current_ma == share_ma for s in sims),
                                         f"{share_ma} mA a module for {limit_w} W")
                        # The EV takes it once the driver has read the modules' output back.
                        for _ in range(500):
                            status = (await agent.sim("status"))["status"]["evses"]["1"]
                            if status["power_w"] == limit_w:
                                break
                        assert status["power_w"] == limit_w and status["contactor_closed"]
                    await agent.sim("unplug", 1)
                    await link.expect_call("TransactionEvent",
                                           where=lambda p: p["eventType"] == "Ended")
                    assert await quiesce()
                    assert not any(s.on for s in sims)
                assert csms.schema_errors == []
        finally:
            for sim in sims:
                sim.stop()
    run(main(), timeout=60)
    found = openings(safety_monitor)
    assert found, "the contactor never opened"
    i, ts = found[-1]
    assert ts[i].before.module_on is False and ts[i].before.current_a == 0
