"""The DC stop order on every path that ends energy: the power module switched off and
its read-back current below SWITCH_CURRENT_A before the contactor opens.

A DC EVSE of the mock station (200 A, the module's 1000 V ceiling) charges an EV that
draws 50 A: 50 kW. Each test ends the energy one way and reads the order from the
transitions the mock recorded (the safety monitor's log, tests/safety_monitor.py), where
each transition carries the current that flowed at that instant. Where the mock's module
is given a ramp-down (it keeps delivering for a while after it is switched off, as real
modules do), the test also sees the contactor held closed until the current has gone.

The agent runs in this process on a ManualClock (tests/harness.py InProcessAgent),
except for SIGTERM, which only the real process can receive.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest

from agent.clock import ManualClock
from agent.demo.csms import Csms
from hal.api import Transition
from hal.drivers.mock import MockEvseSpec, MockStation
from hal.drivers.mock.recorder import read
from hal.evse import RAMP_DOWN_TIMEOUT_S, SWITCH_CURRENT_A, EvseHardware
from tests.harness import PASSWORD, AgentProcess, quiesce, write_config
from tests.test_firmware import (connected as firmware_connected, file_server, install_root,
                                 publish, statuses_until, update_request)
from tests.firmware_pki import make_firmware_pki
from tests.test_sim_agent import sim_async, wait_for_socket
from tests.test_smart_charging_agent import Agent, connected, csms_and_clock, profile

STATION = "CS-SMART"        # the smart-charging suite's Agent and CSMS helpers
EV_A = 50.0                 # what the EV draws: 50 A at 1000 V, 50 kW
RAMP_S = 0.5                # the mock module's ramp-down where a test gives it one


def run(coro: Any, timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def quiet() -> None:
    assert await quiesce(), "the agent never went quiet"


@pytest.fixture
def ramp(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """Give the in-process daemon's mock power module a ramp-down: {"s": seconds}."""
    from agent import daemon
    setting = {"s": RAMP_S}
    build = daemon.build_hardware

    def build_with_ramp(config: Any, clock: Any) -> Any:
        hardware = build(config, clock)
        hardware.mock.set_module_ramp_down(1, setting["s"])
        return hardware
    monkeypatch.setattr(daemon, "build_hardware", build_with_ramp)
    return setting


def opened(log: Any) -> list[tuple[int, list[Transition]]]:
    """Indexes of the contactor openings of EVSE 1 in the log, with the log."""
    ts = list(read(log))
    return [(i, ts) for i, t in enumerate(ts)
            if t.evse_id == 1 and t.cause == "contactor" and t.before.contactor_closed
            and not t.after.contactor_closed]


def assert_safe_dc_stop(log: Any, *, flowing_a: float = EV_A, ramp_s: float = 0.0) -> None:
    """The last opening of EVSE 1's contactor: the module was switched off while
    `flowing_a` flowed, and the contactor opened only with the module off and its
    current below the threshold (`ramp_s` later at least)."""
    openings = opened(log)
    assert openings, "the contactor never opened"
    i, ts = openings[-1]
    opening = ts[i]
    assert opening.before.module_on is False
    assert opening.before.current_a is not None and opening.before.current_a < SWITCH_CURRENT_A
    off = [t for t in ts[:i] if t.source == opening.source and t.cause == "module"
           and t.before.module_on and not t.after.module_on]
    assert off, "the module was never switched off"
    assert off[-1].before.current_a == pytest.approx(flowing_a)
    assert opening.at - off[-1].at >= ramp_s
    if ramp_s:
        assert off[-1].after.current_a == pytest.approx(flowing_a), "it ramps down"


async def dc_session(agent: Agent, link: Any, *, token: dict[str, str] | None = None) -> str:
    """A DC session at 50 kW; its transaction id."""
    await agent.sim("ev-max", 1, amps=EV_A)
    if token is None:
        answer = await link.call("RequestStartTransaction", {
            "idToken": {"idToken": "TOKEN1", "type": "ISO14443"}, "remoteStartId": 1,
            "evseId": 1})
        assert answer["status"] == "Accepted", answer
    else:
        await agent.sim("swipe", 1, token=token["idToken"])
        await link.expect_call("Authorize")
    await agent.sim("plug", 1)
    started = await link.expect_call("TransactionEvent", where=lambda p: p["eventType"] == "Started")
    await quiet()
    status = await agent.evse(1)
    assert status["contactor_closed"] and status["power_w"] == EV_A * 1000
    return started["transactionInfo"]["transactionId"]


async def ramping_down(agent: Agent) -> None:
    """Halfway through the module's ramp-down the contactor is still closed under the
    current; once it is over the contactor opens."""
    await agent.advance(RAMP_S / 2)
    status = await agent.evse(1)
    assert status["contactor_closed"] and status["power_w"] == EV_A * 1000
    await agent.advance(RAMP_S / 2 + 0.1)
    status = await agent.evse(1)
    assert not status["contactor_closed"] and status["power_w"] == 0


# -- the paths ---------------------------------------------------------------------------------

def test_sigterm_of_the_real_process(tmp_path, safety_monitor):
    async def main():
        async with Csms(passwords={"CS-TEST": PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            config.write_text(config.read_text().replace(
                "max_current_a = 32\n", "max_current_a = 200\ndc = true\n", 1))
            async with AgentProcess(config) as agent:
                link = await csms.wait_station("CS-TEST", timeout=10)
                await link.expect_call("StatusNotification", timeout=10)
                await wait_for_socket(config)
                assert (await sim_async(config, "ev-max", "1", "50")).returncode == 0
                assert (await link.call("RequestStartTransaction", {
                    "idToken": {"idToken": "TOKEN1", "type": "ISO14443"},
                    "remoteStartId": 1, "evseId": 1}))["status"] == "Accepted"
                assert (await sim_async(config, "plug", "1")).returncode == 0
                await link.expect_call("TransactionEvent", timeout=10,
                                       where=lambda p: p["eventType"] == "Started")
                status = json.loads((await sim_async(config, "status")).stdout)["evses"]["1"]
                assert status["power_w"] == EV_A * 1000
                assert await agent.stop() == 0
            assert csms.schema_errors == []
        assert_safe_dc_stop(safety_monitor)
        # Stopped: every device released with the energy already off.
        stops = [t for t in read(safety_monitor) if t.cause == "stop"]
        assert stops and all(not t.before.contactor_closed and not t.before.module_on
                             for t in stops)
    run(main())


def test_device_fault_holds_the_session_and_switches_off_first(tmp_path, safety_monitor, ramp):
    """A fault (pilot F, set by the station) switches off in the order, the EV still
    plugged in: the session is held (SuspendedEVSE), not ended, and charges again once
    the fault clears."""
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock, dc=True) as agent:
                link = await connected(csms)
                tx_id = await dc_session(agent, link)
                await agent.sim("fault", 1)
                await quiet()
                await ramping_down(agent)
                assert_safe_dc_stop(safety_monitor, ramp_s=RAMP_S)
                suspended = await link.expect_call("TransactionEvent", where=lambda p: (
                    p["transactionInfo"].get("chargingState") == "SuspendedEVSE"))
                assert suspended["eventType"] == "Updated"
                assert suspended["transactionInfo"]["transactionId"] == tx_id
                status = await agent.evse(1)
                assert status["state"] == "Faulted" and status["transaction_id"] == tx_id
                await agent.sim("clear", 1)
                await quiet()
                status = await agent.evse(1)
                assert status["transaction_id"] == tx_id and status["power_w"] == EV_A * 1000
                assert not [p for p in link.calls("TransactionEvent") if p["eventType"] == "Ended"]
                # (Ended before the agent stops: its stop would wait for the ramp-down on
                # a clock no one moves.)
                await link.call("RequestStopTransaction", {"transactionId": tx_id})
                await quiet()
                await ramping_down(agent)
            assert csms.schema_errors == []
    run(main())


@pytest.mark.parametrize("kind", ["OnIdle", "Immediate"])
def test_reset(tmp_path, safety_monitor, ramp, kind):
    """Reset during a DC session. Immediate ends the transaction first (ResetCommand,
    ImmediateReset: B12) and switches the module off in the order before the restart;
    OnIdle is Scheduled and waits for the session's end, which switches off in the order."""
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock, dc=True) as agent:
                link = await connected(csms)
                tx_id = await dc_session(agent, link)
                answer = await link.call("Reset", {"type": kind})
                if kind == "OnIdle":
                    assert answer["status"] == "Scheduled"
                    await quiet()
                    assert (await agent.evse(1))["power_w"] == EV_A * 1000   # still charging
                    await link.call("RequestStopTransaction", {"transactionId": tx_id})
                else:
                    assert answer["status"] == "Accepted"
                await quiet()
                await ramping_down(agent)
                assert_safe_dc_stop(safety_monitor, ramp_s=RAMP_S)
                ended = await link.expect_call("TransactionEvent",
                                               where=lambda p: p["eventType"] == "Ended")
                assert ended["transactionInfo"]["transactionId"] == tx_id
                if kind == "Immediate":
                    assert ended["triggerReason"] == "ResetCommand"
                    assert ended["transactionInfo"]["stoppedReason"] == "ImmediateReset"
                await connected(csms, after=link)
            assert csms.schema_errors == []
    run(main())


def test_firmware_reexec(tmp_path, safety_monitor):
    """UpdateFirmware during a session: the install waits for it; the session's end
    switches off in the order, and the re-exec after the install finds the energy off."""
    pki = make_firmware_pki("ec")

    async def main():
        async with csms_and_clock() as (csms, clock), file_server() as server:
            url, signature = publish(server, tmp_path, pki)
            async with Agent(tmp_path, csms, clock, dc=True) as agent:
                link = await connected(csms)
                await install_root(link, pki)
                tx_id = await dc_session(agent, link)
                answer = await link.call("UpdateFirmware", update_request(3, url, signature, pki))
                assert answer["status"] == "Accepted"
                await statuses_until(link, 3, "InstallScheduled")
                assert (await agent.evse(1))["power_w"] == EV_A * 1000
                await link.call("RequestStopTransaction", {"transactionId": tx_id})
                assert await statuses_until(link, 3, "InstallRebooting") == [
                    "Installing", "InstallRebooting"]
                await firmware_connected(csms, after=link, station=STATION)
            assert agent.outcomes == ["reexec", "stop"]
            assert csms.schema_errors == []
        assert_safe_dc_stop(safety_monitor)
        sources = {t.source for t in read(safety_monitor)}
        assert len(sources) == 2, "the re-exec built the hardware anew"
    run(main())


def test_unplug(tmp_path, safety_monitor):
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock, dc=True) as agent:
                link = await connected(csms)
                await dc_session(agent, link)
                await agent.sim("unplug", 1)
                ended = await link.expect_call("TransactionEvent",
                                               where=lambda p: p["eventType"] == "Ended")
                assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
                await quiet()
            assert csms.schema_errors == []
        # The EV left with its contactors: nothing flowed once it was gone.
        assert_safe_dc_stop(safety_monitor, flowing_a=0)
    run(main())


def test_deauthorized_by_the_transaction_event_answer(tmp_path, safety_monitor, ramp):
    """StopTxOnInvalidId: the CSMS answers the Started event Invalid, late, while 50 kW
    flow."""
    async def main():
        async with csms_and_clock() as (csms, clock):
            verdict = asyncio.Event()

            async def answer(payload: dict) -> dict:
                if payload["eventType"] != "Started":
                    return {}
                await verdict.wait()
                return {"idTokenInfo": {"status": "Invalid"}}
            csms.responders["TransactionEvent"] = answer
            async with Agent(tmp_path, csms, clock, dc=True) as agent:
                link = await connected(csms)
                await dc_session(agent, link)
                verdict.set()
                await quiet()
                await ramping_down(agent)
                ended = await link.expect_call("TransactionEvent",
                                               where=lambda p: p["eventType"] == "Ended")
                assert ended["transactionInfo"]["stoppedReason"] == "DeAuthorized"
            assert csms.schema_errors == []
        assert_safe_dc_stop(safety_monitor, ramp_s=RAMP_S)
    run(main())


def test_request_stop_transaction(tmp_path, safety_monitor, ramp):
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock, dc=True) as agent:
                link = await connected(csms)
                tx_id = await dc_session(agent, link)
                answer = await link.call("RequestStopTransaction", {"transactionId": tx_id})
                assert answer["status"] == "Accepted"
                await quiet()
                await ramping_down(agent)
                ended = await link.expect_call("TransactionEvent",
                                               where=lambda p: p["eventType"] == "Ended")
                assert ended["triggerReason"] == "RemoteStop"
            assert csms.schema_errors == []
        assert_safe_dc_stop(safety_monitor, ramp_s=RAMP_S)
    run(main())


def test_charging_limit_of_zero(tmp_path, safety_monitor, ramp):
    """A TxProfile with limit 0 W pauses the session: the same order, the transaction
    goes on (SuspendedEVSE)."""
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock, dc=True) as agent:
                link = await connected(csms)
                tx_id = await dc_session(agent, link)
                answer = await link.call("SetChargingProfile", {"evseId": 1, "chargingProfile":
                                         profile(5, "TxProfile", [(0, 0)], unit="W",
                                                 start=clock.now(), transaction_id=tx_id)})
                assert answer["status"] == "Accepted"
                await quiet()
                await ramping_down(agent)
                await link.expect_call("TransactionEvent", where=lambda p: p[
                    "transactionInfo"].get("chargingState") == "SuspendedEVSE")
                assert (await agent.evse(1))["transaction_id"] == tx_id
            assert csms.schema_errors == []
        assert_safe_dc_stop(safety_monitor, ramp_s=RAMP_S)
    run(main())


def test_change_availability_inoperative(tmp_path, safety_monitor, ramp):
    """Inoperative during a session is Scheduled: the energy flows until the session
    ends (here: the same card again), then switches off in the order and the EVSE goes
    Unavailable."""
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock, dc=True) as agent:
                link = await connected(csms)
                await dc_session(agent, link, token={"idToken": "04A2B3C4"})
                answer = await link.call("ChangeAvailability", {
                    "operationalStatus": "Inoperative", "evse": {"id": 1}})
                assert answer["status"] == "Scheduled"
                await quiet()
                assert (await agent.evse(1))["power_w"] == EV_A * 1000
                await agent.sim("swipe", 1, token="04A2B3C4")
                await quiet()
                await ramping_down(agent)
                ended = await link.expect_call("TransactionEvent",
                                               where=lambda p: p["eventType"] == "Ended")
                assert ended["triggerReason"] == "StopAuthorized"
                await link.expect_call("StatusNotification",
                                       where=lambda p: p["connectorStatus"] == "Unavailable")
            assert csms.schema_errors == []
        assert_safe_dc_stop(safety_monitor, ramp_s=RAMP_S)
    run(main())


# -- the supervisor's own stop (hal/evse.py), without the agent ---------------------------------

DC = MockEvseSpec(1, max_current_a=200, phases=0)


async def supervised_dc(ramp_s: float) -> tuple[MockStation, EvseHardware, ManualClock]:
    clock = ManualClock()
    station = MockStation([DC], clock)
    station.set_module_ramp_down(1, ramp_s)
    station.set_ev_max(1, EV_A)
    hw = EvseHardware(1, station.devices(1), clock=clock, rating_a=200)
    await hw.start()
    station.plug(1)
    assert await hw.close_contactor()
    await hw.set_module_output(1000, 200)
    assert await hw.switch_module_on()
    assert station.snapshot(1)["power_w"] == EV_A * 1000
    return station, hw, clock


async def advance(clock: ManualClock, seconds: float) -> None:
    for _ in range(5):
        await asyncio.sleep(0)
    await clock.advance(seconds)


def test_the_supervisors_stop_waits_for_the_module(safety_monitor):
    async def main():
        station, hw, clock = await supervised_dc(RAMP_S)
        stopping = asyncio.ensure_future(hw.stop())
        await advance(clock, RAMP_S / 2)
        assert not stopping.done() and station.snapshot(1)["contactor_closed"]
        assert (await station.devices(1).power.read()).current_a == EV_A
        await advance(clock, RAMP_S / 2 + 0.1)
        await asyncio.wait_for(stopping, 5)
        assert not station.snapshot(1)["contactor_closed"] and hw.faults == []
    run(main())
    assert_safe_dc_stop(safety_monitor, ramp_s=RAMP_S)


@pytest.mark.breaks_safety("switch-under-load",
                           reason="a module that ignores its off command: the last resort")
def test_a_module_that_does_not_ramp_down_is_cut_off_and_reported(safety_monitor):
    """The contactor opens all the same after RAMP_DOWN_TIMEOUT_S (the cable must not
    stay live), and the EVSE keeps a fault that names what happened."""
    async def main():
        station, hw, clock = await supervised_dc(math.inf)
        heard = []
        hw.subscribe(lambda: heard.append(list(hw.faults)))
        stopping = asyncio.ensure_future(hw.switch_off())
        await advance(clock, RAMP_DOWN_TIMEOUT_S - 0.1)
        assert not stopping.done() and station.snapshot(1)["contactor_closed"]
        await advance(clock, 0.2)
        await asyncio.wait_for(stopping, 5)
        assert not station.snapshot(1)["contactor_closed"]
        fault = f"power module still at {EV_A:.1f} A {RAMP_DOWN_TIMEOUT_S:g} s after it was " \
                "switched off: contactor opened under load (restart the agent once it is checked)"
        assert hw.faults == [fault] and heard[-1] == [fault]
        assert hw.faults_by_role() == {"power": fault}
        assert not await hw.close_contactor(), "no session on it until a restart"
        await hw.stop()
    run(main())
    openings = opened(safety_monitor)
    i, ts = openings[-1]
    assert ts[i].before.current_a == EV_A
