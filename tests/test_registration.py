"""Registration, heartbeat and reconnection on the injectable clock.

The agent runs in this process (same code as the daemon) on a ManualClock, against the
real CSMS peer over loopback: time moves only when the test says so.
"""

import asyncio
import logging
import re
from datetime import datetime, timezone

import pytest

from agent.clock import ManualClock
from agent.config import load_config
from agent.daemon import run_daemon
from agent.demo.csms import CallErrorReceived, Csms
from tests.harness import PASSWORD, quiesce, write_config

STATION = "CS-TEST"


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def quiet():
    """Until the agent (in this loop) has done whatever it would do now: round trips
    with the CSMS peer finished, every task waiting again."""
    assert await quiesce(), "the agent never went quiet"


async def advance(agent, seconds):
    """Move the agent's clock, once the answers already on their way have arrived: a
    real round trip takes real time, and a jump past MessageTimeout would fail it."""
    await quiet()
    await agent.clock.advance(seconds)


class Agent:
    def __init__(self, tmp_path, csms, evses=1):
        self.config = load_config(write_config(tmp_path, csms.url, evses=evses))
        self.clock = ManualClock()
        self.stop = asyncio.Event()
        self.task = None

    async def __aenter__(self):
        self.task = asyncio.ensure_future(run_daemon(self.config, self.stop, clock=self.clock))
        return self

    async def __aexit__(self, *exc):
        self.stop.set()
        await asyncio.wait_for(self.task, 5)


def test_pending_then_accepted(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}, boot_status="Pending",
                        heartbeat_interval=60) as csms:
            async with Agent(tmp_path, csms) as agent:
                link = await csms.wait_station(STATION)
                await link.expect_call("BootNotification")
                # While Pending the CSMS may configure the station, and gets answers.
                got = await link.call("GetVariables", {"getVariableData": [
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
                assert got["getVariableResult"][0]["attributeStatus"] == "Accepted"
                assert (await link.call("GetBaseReport", {"requestId": 3, "reportBase": "SummaryInventory"}))["status"] == "Accepted"
                await link.expect_call("NotifyReport", where=lambda p: p["requestId"] == 3)
                await advance(agent, 59)
                await quiet()
                # Nothing but BootNotification (and the report asked for) before Accepted.
                assert [c for c in ("StatusNotification", "Heartbeat") if link.calls(c)] == []
                assert len(link.calls("BootNotification")) == 1
                csms.boot_status = "Accepted"
                await advance(agent, 1)
                await link.expect_call("BootNotification")
                await link.expect_call("StatusNotification")
            assert csms.schema_errors == []
    run(main())


def test_rejected_refuses_csms_calls_with_security_error(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}, boot_status="Rejected",
                        heartbeat_interval=120) as csms:
            async with Agent(tmp_path, csms) as agent:
                link = await csms.wait_station(STATION)
                await link.expect_call("BootNotification")
                with pytest.raises(CallErrorReceived) as err:
                    await link.call("GetVariables", {"getVariableData": [
                        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
                assert err.value.code == "SecurityError"
                csms.boot_status = "Accepted"
                await advance(agent, 119)
                await quiet()
                assert len(link.calls("BootNotification")) == 1
                await advance(agent, 1)
                await link.expect_call("BootNotification")
                await link.expect_call("StatusNotification")
                got = await link.call("GetVariables", {"getVariableData": [
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
                assert got["getVariableResult"][0]["attributeValue"] == "120"
            assert csms.schema_errors == []
    run(main())


def test_heartbeat_at_the_interval_only_when_nothing_else_was_sent(tmp_path):
    async def main():
        csms_time = datetime(2030, 6, 1, 12, 0, tzinfo=timezone.utc)
        async with Csms(passwords={STATION: PASSWORD}, heartbeat_interval=100,
                        now=lambda: csms_time) as csms:
            async with Agent(tmp_path, csms, evses=2) as agent:
                link = await csms.wait_station(STATION)
                await link.expect_call("StatusNotification", where=lambda p: p["evseId"] == 2)
                # The station takes the CSMS's time (its own clock said 2026).
                assert abs((agent.clock.now() - csms_time).total_seconds()) < 1
                await advance(agent, 50)
                # Other traffic at t=50: a Reset of EVSE 2 makes two StatusNotifications.
                assert (await link.call("Reset", {"type": "Immediate", "evseId": 2}))["status"] == "Accepted"
                await link.expect_call("StatusNotification", where=lambda p: p["connectorStatus"] == "Available" and p["evseId"] == 2)
                await advance(agent, 60)  # t=110: 60 s since the last CALL
                await quiet()
                assert link.calls("Heartbeat") == []
                await advance(agent, 40)  # t=150: 100 s quiet
                await link.expect_call("Heartbeat")
                await advance(agent, 99)
                await quiet()
                assert len(link.calls("Heartbeat")) == 1
                await advance(agent, 1)
                await link.expect_call("Heartbeat")
                # A new interval through SetVariables applies at once.
                await link.call("SetVariables", {"setVariableData": [
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
                     "attributeValue": "30"}]})
                await advance(agent, 30)
                await link.expect_call("Heartbeat")
            assert csms.schema_errors == []
    run(main())


def test_reconnects_with_back_off_and_no_new_boot(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent.ocpp.connection")

    async def back_off_chosen():
        await quiet()   # the close is seen and the reconnection scheduled
        for record in caplog.records:
            match = re.match(r"reconnecting in ([0-9.]+) s", record.getMessage())
            if match:
                return float(match.group(1))
        raise AssertionError("the agent did not schedule a reconnection")

    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            async with Agent(tmp_path, csms) as agent:
                link = await csms.wait_station(STATION)
                await link.expect_call("StatusNotification")
                await link.close()
                delay = await back_off_chosen()
                # RetryBackOffWaitMinimum 10 s + up to RetryBackOffRandomRange 10 s.
                assert 10 <= delay <= 20
                await advance(agent, delay - 0.2)
                await quiet()
                assert len(csms.links[STATION]) == 1, "reconnected before the back-off"
                await advance(agent, 0.3)
                again = await csms.wait_station(STATION, after=link)
                await quiet()
                # Part 4, 5.3: a reconnect is no reason for a BootNotification.
                assert again.calls("BootNotification") == []
                got = await again.call("GetVariables", {"getVariableData": [
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "RetryBackOffWaitMinimum"}}]})
                assert got["getVariableResult"][0]["attributeValue"] == "10"
            assert csms.schema_errors == []
    run(main())


def test_unanswered_call_times_out_and_the_line_frees(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}, heartbeat_interval=100) as csms:
            csms.responders["Heartbeat"] = lambda payload: None  # the CSMS never answers
            async with Agent(tmp_path, csms) as agent:
                link = await csms.wait_station(STATION)
                await link.expect_call("StatusNotification")
                await advance(agent, 100)
                await link.expect_call("Heartbeat")
                del csms.responders["Heartbeat"]
                # MessageTimeout (30 s) frees the line; the next Heartbeat goes out and is answered.
                await advance(agent, 30)
                await advance(agent, 100)
                await link.expect_call("Heartbeat")
                assert link.handshake is not None and not link.closed.is_set()
    run(main())


def test_a_huge_interval_from_the_csms_is_held_to_heartbeat_intervals_range(tmp_path):
    """interval is any 32-bit integer on the wire; HeartbeatInterval takes at most a
    week. Taken as sent, it made the Accepted boot fail (the value out of range) every
    time: the station never registered."""
    async def main():
        async with Csms(passwords={STATION: PASSWORD}, heartbeat_interval=2**31 - 1) as csms:
            async with Agent(tmp_path, csms):
                link = await csms.wait_station(STATION)
                await link.expect_call("StatusNotification")
                got = await link.call("GetVariables", {"getVariableData": [{
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"}}]})
                assert got["getVariableResult"][0]["attributeValue"] == "604800"
    run(main())
