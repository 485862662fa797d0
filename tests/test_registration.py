"""Registration, heartbeat and reconnection on the injectable clock.

The agent runs in this process (same code as the daemon) on a ManualClock, against the
real CSMS peer over loopback: time moves only when the test says so.
"""

import asyncio
import logging
import re
from datetime import datetime, timedelta, timezone

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


# ---- variables of registration, clock and reset that must do what they say --------------

def test_tx_before_accepted_enabled_decides_a_local_session_while_pending(tmp_path):
    """TxCtrlr.TxBeforeAcceptedEnabled (appendix 3): until the CSMS has accepted the
    station, a session starts only when it is true; its events wait for Accepted. A remote
    start is refused either way (TC_B_02)."""
    from tests.conformance.rig import VALID_TOKEN, station
    from tests.conformance.rig import run as run_case

    async def case():
        async with station(tmp_path, boot_status="Pending") as rig:
            await rig.configure({("AuthCtrlr", "OfflineTxForUnknownIdEnabled"): "true",
                                 ("TxCtrlr", "TxBeforeAcceptedEnabled"): "false"})
            await rig.plug()
            await rig.present(VALID_TOKEN)
            await rig.advance(5)
            assert not rig.snapshot()["contactor_closed"]
            answer = await rig.call("RequestStartTransaction", {
                "idToken": VALID_TOKEN, "evseId": 1, "remoteStartId": 3})
            assert answer["status"] == "Rejected"
            # Allowed: the card starts a session at once; the CSMS hears of it later.
            await rig.configure({("TxCtrlr", "TxBeforeAcceptedEnabled"): "true"})
            await rig.present(VALID_TOKEN)
            await rig.advance(5)
            assert rig.snapshot()["contactor_closed"]
            assert rig.sent("TransactionEvent") == []
            rig.csms.boot_status = "Accepted"
            assert (await rig.call("TriggerMessage", {
                "requestedMessage": "BootNotification"}))["status"] == "Accepted"
            started = await rig.expect("TransactionEvent", where=lambda p: (
                p["eventType"] == "Started"))
            assert started["evse"]["id"] == 1
    run_case(case())


def test_time_source_prefers_a_synchronized_host_clock_to_the_csms(tmp_path, monkeypatch):
    """ClockCtrlr.TimeSource: "NTP,Heartbeat" keeps the host's clock while the kernel says
    it is synchronized, and takes the CSMS's time when it is not; "Heartbeat" always
    takes the CSMS's."""
    from agent.blocks import provisioning
    from tests.conformance.rig import station
    from tests.conformance.rig import run as run_case
    synced = [True]
    monkeypatch.setattr(provisioning, "ntp_synchronized", lambda: synced[0])

    async def heartbeat_at(rig, csms_time):
        rig.csms.now = lambda: csms_time
        assert (await rig.call("TriggerMessage", {"requestedMessage": "Heartbeat"}))[
            "status"] == "Accepted"
        await rig.expect("Heartbeat")
        await rig.settle()
        return abs((rig.clock.now() - csms_time).total_seconds()) < 5

    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("ClockCtrlr", "TimeSource"): "NTP,Heartbeat"})
            assert not await heartbeat_at(rig, datetime(2031, 5, 1, tzinfo=timezone.utc))
            synced[0] = False   # the host lost its NTP server: Heartbeat is next in line
            assert await heartbeat_at(rig, datetime(2031, 5, 2, tzinfo=timezone.utc))
            synced[0] = True
            await rig.configure({("ClockCtrlr", "TimeSource"): "Heartbeat"})
            assert await heartbeat_at(rig, datetime(2031, 5, 3, tzinfo=timezone.utc))
    run_case(case())


class _FailingBuilds:
    """Runtime builds that fail `failures` times after the first (a Reset's rebuild)."""

    def __init__(self, monkeypatch, failures):
        from agent import daemon
        real = daemon.Runtime
        self.builds = 0
        outer = self

        def build(*args, **kwargs):
            outer.builds += 1
            if 1 < outer.builds <= 1 + failures:
                raise OSError("storage not ready")
            return real(*args, **kwargs)
        monkeypatch.setattr(daemon, "Runtime", build)


def test_reset_retries_tries_a_failed_reset_again(tmp_path, monkeypatch):
    """OCPPCommCtrlr.ResetRetries: a Reset whose restart fails is tried again that many
    times (RESET_RETRY_WAIT_S apart), and the station comes back."""
    from agent.daemon import RESET_RETRY_WAIT_S
    from tests.conformance.rig import station
    from tests.conformance.rig import run as run_case
    builds = _FailingBuilds(monkeypatch, failures=2)

    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("OCPPCommCtrlr", "ResetRetries"): "2"})
            assert (await rig.call("Reset", {"type": "Immediate"}))["status"] == "Accepted"
            await rig.settle()
            assert builds.builds == 2
            await rig.advance(RESET_RETRY_WAIT_S)
            assert builds.builds == 3
            await rig.advance(RESET_RETRY_WAIT_S)
            await rig.new_link()
            boot = await rig.expect("BootNotification")
            assert boot["reason"] == "RemoteReset" and builds.builds == 4
    run_case(case())


def test_reset_retries_spent_ends_the_process_for_the_supervisor(tmp_path, monkeypatch):
    """ResetRetries 1 and two failures: the daemon gives up with the error, and systemd
    (Restart=) starts the process anew; no endless loop of failing rebuilds."""
    from agent.daemon import RESET_RETRY_WAIT_S
    from tests.conformance.rig import station
    from tests.conformance.rig import run as run_case
    builds = _FailingBuilds(monkeypatch, failures=2)

    async def case():
        with pytest.raises(OSError, match="storage not ready"):
            async with station(tmp_path) as rig:
                await rig.configure({("OCPPCommCtrlr", "ResetRetries"): "1"})
                assert (await rig.call("Reset", {"type": "OnIdle"}))["status"] == "Accepted"
                await rig.settle()
                await rig.advance(RESET_RETRY_WAIT_S)
                await rig.advance(RESET_RETRY_WAIT_S)
        assert builds.builds == 3
    run_case(case())


def test_time_adjustments_above_the_threshold_are_security_events(tmp_path):
    """ClockCtrlr.TimeAdjustmentReportingThreshold: a correction from the CSMS larger
    than it is reported as SettingSystemTime; a smaller one is not, and 0 reports none."""
    from tests.conformance.rig import station
    from tests.conformance.rig import run as run_case

    async def heartbeat_moving(rig, seconds):
        before = len([e for e in rig.sent("SecurityEventNotification")
                      if e["type"] == "SettingSystemTime"])
        rig.csms.now = lambda: rig.clock.now() + timedelta(seconds=seconds)
        await rig.call("TriggerMessage", {"requestedMessage": "Heartbeat"})
        await rig.expect("Heartbeat")
        await rig.settle()
        return [e for e in rig.sent("SecurityEventNotification")
                if e["type"] == "SettingSystemTime"][before:]

    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("ClockCtrlr", "TimeAdjustmentReportingThreshold"): "120"})
            assert await heartbeat_moving(rig, 100) == []
            [event] = await heartbeat_moving(rig, 600)
            assert "+600" in event.get("techInfo", "")
            await rig.configure({("ClockCtrlr", "TimeAdjustmentReportingThreshold"): "0"})
            assert await heartbeat_moving(rig, 3600) == []
    run_case(case())


def test_before_accepted_gates_every_new_session_but_not_a_running_one():
    """BeforeAccepted: a token for a new session, or a session without any token
    (AuthCtrlr.Enabled false), waits for Accepted unless TxBeforeAcceptedEnabled; a token
    presented where a transaction runs (to stop it) is asked as usual."""
    from agent.blocks.provisioning import BeforeAccepted

    class Registration:
        allowed = False

        def tx_allowed(self):
            return self.allowed

    class Inner:
        def without_token(self):
            return {"idToken": "", "type": "NoAuthorization"}

        async def authorize(self, id_token, *, evse_id=None):
            return "asked"

        def same_group(self, a, b):
            return a == b

    registration = Registration()
    gate = BeforeAccepted(Inner(), registration, busy=lambda evse_id: evse_id == 2)
    card = {"idToken": "04A1B2C3", "type": "ISO14443"}
    refused = asyncio.run(gate.authorize(card, evse_id=1))
    assert refused.status == "NotAtThisTime" and not refused.accepted
    assert asyncio.run(gate.authorize(card, evse_id=2)) == "asked"   # stops its session
    assert gate.without_token() is None
    assert gate.same_group(1, 1)   # the rest is the authorization's own
    registration.allowed = True
    assert asyncio.run(gate.authorize(card, evse_id=1)) == "asked"
    assert gate.without_token() == {"idToken": "", "type": "NoAuthorization"}


def test_a_station_accepted_before_charges_when_it_restarts_offline(tmp_path):
    """TxBeforeAcceptedEnabled false guards a station the CSMS has not accepted: one it
    accepted at its last answer still charges when it restarts during an outage; one it
    answered Rejected does not, until it is accepted again."""
    from tests.conformance.rig import STATION, VALID_TOKEN, station
    from tests.conformance.rig import run as run_case

    async def restart_offline(rig):
        rig.csms.passwords[STATION] = "not-the-password-0000"   # the CSMS is unreachable
        await rig.shutdown()
        await rig.start(wait_booted=False)
        await rig.settle()

    async def charges(rig):
        await rig.plug()
        await rig.present(VALID_TOKEN)
        await rig.advance(5)
        return rig.snapshot()["contactor_closed"]

    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("AuthCtrlr", "OfflineTxForUnknownIdEnabled"): "true"})
            assert await rig.get_variable("TxCtrlr", "TxBeforeAcceptedEnabled") == "false"
            await restart_offline(rig)
            assert await charges(rig)
            # The CSMS rejects the station at its next boot; offline again after that.
            rig.csms.passwords[STATION] = PASSWORD
            rig.csms.boot_status = "Rejected"
            await rig.shutdown()
            await rig.start()
            await restart_offline(rig)
            assert not await charges(rig)
    run_case(case())
