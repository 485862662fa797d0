"""The connector lock of an AC socket (a detachable cable): locked before any energy,
released only with the contactor open, kept or released on an EV-side unplug as
OCPPCommCtrlr.UnlockOnEVSideDisconnect says (TC_E_24 / TC_E_25), a lock that does not
lock means no energy and a NotifyEvent on ConnectorPlugRetentionLock.Problem (G05,
TC_G_20), UnlockConnector as F05 (TC_F_05..07); and a fault that is not an unplug.

The agent runs in this process on a ManualClock; `station-agent sim` drives the mock
(its lock-fail / lock-ok commands among them); the order of what the hardware did is read
from the safety monitor's log.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agent.demo.csms import Csms
from hal.drivers.mock.recorder import read
from tests.harness import PASSWORD, InProcessAgent, quiesce, write_config
from tests.test_sim_agent import sim_async
from tests.test_smart_charging_agent import Agent, connected, csms_and_clock

CARD = "04A2B3C4"


def run(coro: Any, timeout: float = 60) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def quiet() -> None:
    assert await quiesce(), "the agent never went quiet"


async def charging(agent: Agent, link: Any) -> str:
    await agent.sim("swipe", 1, token=CARD)
    await agent.sim("plug", 1)
    started = await link.expect_call("TransactionEvent", where=lambda p: p["eventType"] == "Started")
    await quiet()
    status = await agent.evse(1)
    assert status["locked"] is True and status["contactor_closed"] and status["power_w"] > 0
    return started["transactionInfo"]["transactionId"]


def lock_moves(log: Any) -> list[tuple[str, bool, bool | None]]:
    """(cause, contactor closed after, locked after) of the lock and contactor moves."""
    return [(t.cause, t.after.contactor_closed, t.after.locked) for t in read(log)
            if t.cause in ("lock", "contactor")]


async def set_variable(link: Any, component: str, variable: str, value: str) -> None:
    answer = await link.call("SetVariables", {"setVariableData": [{
        "component": {"name": component}, "variable": {"name": variable},
        "attributeValue": value}]})
    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted", answer


async def lock_problem(link: Any) -> str:
    answer = await link.call("GetVariables", {"getVariableData": [{
        "component": {"name": "ConnectorPlugRetentionLock", "evse": {"id": 1, "connectorId": 1}},
        "variable": {"name": "Problem"}}]})
    return answer["getVariableResult"][0]["attributeValue"]


def test_locked_before_energy_and_released_after_the_contactor(tmp_path, safety_monitor):
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock) as agent:
                link = await connected(csms)
                assert (await agent.evse(1))["locked"] is False
                tx_id = await charging(agent, link)
                await link.call("RequestStopTransaction", {"transactionId": tx_id})
                await quiet()
                status = await agent.evse(1)
                assert not status["contactor_closed"] and status["locked"] is False
                assert status["plugged"], "the session ended, the EV is still there"
            assert csms.schema_errors == []
        assert lock_moves(safety_monitor) == [
            ("lock", False, True), ("contactor", True, True),      # lock, then energy
            ("contactor", False, True), ("lock", False, False)]    # open, then unlock
    run(main())


def test_an_ev_side_unplug_unlocks_by_default(tmp_path, safety_monitor):
    """UnlockOnEVSideDisconnect is true unless the CSMS says otherwise (TC_E_24)."""
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock) as agent:
                link = await connected(csms)
                await charging(agent, link)
                await agent.sim("unplug", 1)
                await link.expect_call("TransactionEvent", where=lambda p: p["eventType"] == "Ended")
                await quiet()
                assert (await agent.evse(1))["locked"] is False
        assert lock_moves(safety_monitor)[-2:] == [("contactor", False, True),
                                                   ("lock", False, False)]
    run(main())


def test_unlock_on_ev_side_disconnect_false_keeps_the_cable_for_its_card(tmp_path):
    """TC_E_25: the cable stays locked in the socket after the EV side is unplugged,
    until the card that started the session is presented again; UnlockConnector frees
    it too (the second round)."""
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock) as agent:
                link = await connected(csms)
                await set_variable(link, "OCPPCommCtrlr", "UnlockOnEVSideDisconnect", "false")
                await charging(agent, link)
                await agent.sim("unplug", 1)
                await link.expect_call("TransactionEvent", where=lambda p: p["eventType"] == "Ended")
                await quiet()
                status = await agent.evse(1)
                assert status["locked"] is True and not status["contactor_closed"]
                authorizes = len(link.calls("Authorize"))
                await agent.sim("swipe", 1, token=CARD)
                await quiet()
                assert (await agent.evse(1))["locked"] is False
                assert len(link.calls("Authorize")) == authorizes, "a release, not a new session"

                await agent.sim("swipe", 1, token="0A0B0C0D")
                await agent.sim("plug", 1)
                await link.expect_call("TransactionEvent", where=lambda p: (
                    p["eventType"] == "Started" and p["idToken"]["idToken"] == "0A0B0C0D"))
                await agent.sim("unplug", 1)
                await quiet()
                assert (await agent.evse(1))["locked"] is True
                answer = await link.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
                assert answer == {"status": "Unlocked"}
                await quiet()
                assert (await agent.evse(1))["locked"] is False
            assert csms.schema_errors == []
    run(main())


def test_a_lock_that_fails_means_no_energy_and_a_reported_problem(tmp_path):
    """G05 / TC_G_20: NotifyEvent ConnectorPlugRetentionLock.Problem "true" (trigger
    Delta); no offer, no contactor. Not tried again in the same session; once the lock is
    freed (it says so) it is, and the problem clears."""
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock) as agent:
                link = await connected(csms)
                assert await lock_problem(link) == "false"
                failed = await sim_async(agent.config.path, "lock-fail", "1")
                assert (failed.returncode, failed.stdout.strip()) == (
                    0, "EVSE 1: the connector lock jams")
                again = await sim_async(agent.config.path, "lock-fail", "1")
                assert again.returncode == 1 and "failing already" in again.stderr
                await agent.sim("swipe", 1, token=CARD)
                await agent.sim("plug", 1)
                event = await link.expect_call("NotifyEvent")
                data = event["eventData"]
                assert [(d["component"], d["variable"]["name"], d["actualValue"], d["trigger"],
                         d["techCode"]) for d in data] == [
                    ({"name": "ConnectorPlugRetentionLock", "evse": {"id": 1, "connectorId": 1}},
                     "Problem", "true", "Delta", "lock")]
                assert "did not lock" in data[0]["techInfo"]
                await quiet()
                status = await agent.evse(1)
                assert (status["locked"], status["offered_current_a"], status["contactor_closed"],
                        status["transaction_id"]) == (False, None, False, None)
                assert status["state"] == "Occupied", "a lock problem is not a Faulted connector"
                assert await lock_problem(link) == "true"
                await agent.advance(60)                  # nothing retries by itself ...
                assert len(link.calls("NotifyEvent")) == 1
                assert (await agent.evse(1))["contactor_closed"] is False
                ok = await sim_async(agent.config.path, "lock-ok", "1")
                assert (ok.returncode, ok.stdout.strip()) == (0, "EVSE 1: the connector lock works again")
                cleared = await link.expect_call("NotifyEvent", where=lambda p: p["eventData"][0]
                                                 .get("cleared") is True)  # ... freed, it does
                assert cleared["eventData"][0]["actualValue"] == "false"
                await link.expect_call("TransactionEvent", where=lambda p: p["eventType"] == "Started")
                await quiet()
                status = await agent.evse(1)
                assert status["locked"] is True and status["contactor_closed"]
                assert await lock_problem(link) == "false"
            assert csms.schema_errors == []
    run(main())


def test_unlock_connector_follows_f05(tmp_path):
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock) as agent:
                link = await connected(csms)
                tx_id = await charging(agent, link)
                answer = await link.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
                assert answer["status"] == "OngoingAuthorizedTransaction"        # TC_F_05
                assert (await agent.evse(1))["locked"] is True
                await link.call("RequestStopTransaction", {"transactionId": tx_id})
                await quiet()
                answer = await link.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
                assert answer == {"status": "Unlocked"}                           # TC_F_06
                await agent.sim("unplug", 1)
                await quiet()
                answer = await link.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
                assert answer == {"status": "Unlocked"}                           # TC_F_07
                await agent.sim("lock-fail", 1)
                # A jammed lock that must stay locked: the CSMS's retry fails honestly.
                await agent.sim("swipe", 1, token=CARD)
                await agent.sim("lock-ok", 1)
                await agent.sim("plug", 1)
                await link.expect_call("TransactionEvent", where=lambda p: (
                    p["eventType"] == "Started" and p["transactionInfo"]["transactionId"] != tx_id))
                await agent.sim("lock-fail", 1)
                await agent.sim("swipe", 1, token=CARD)                  # stop: the lock jams
                await link.expect_call("TransactionEvent", where=lambda p: (
                    p["eventType"] == "Ended" and p["triggerReason"] == "StopAuthorized"))
                await quiet()
                assert (await agent.evse(1))["locked"] is True
                answer = await link.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
                assert answer["status"] == "UnlockFailed"
                assert "did not unlock" in answer["statusInfo"]["additionalInfo"]
                await agent.sim("lock-ok", 1)
                await quiet()
                answer = await link.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
                assert answer == {"status": "Unlocked"}
            assert csms.schema_errors == []
    run(main())


def test_a_fault_is_not_an_unplug(tmp_path, safety_monitor):
    """Pilot F is the station's signal: the EV counts as plugged in, the session is held
    (SuspendedEVSE) with its cable locked, the energy off in the order, and it charges
    again once the fault clears; an EV that left during the fault is seen gone after."""
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock) as agent:
                link = await connected(csms)
                tx_id = await charging(agent, link)
                await agent.sim("fault", 1)
                await quiet()
                status = await agent.evse(1)
                assert (status["state"], status["contactor_closed"], status["offered_current_a"],
                        status["locked"], status["transaction_id"]) == (
                    "Faulted", False, None, True, tx_id)
                held = await link.expect_call("TransactionEvent", where=lambda p: p[
                    "transactionInfo"].get("chargingState") == "SuspendedEVSE")
                assert held["eventType"] == "Updated"
                await agent.sim("clear", 1)
                await quiet()
                status = await agent.evse(1)
                assert status["contactor_closed"] and status["transaction_id"] == tx_id
                # Unplugged during a fault: seen only once the pilot works again.
                await agent.sim("fault", 1)
                await agent.sim("unplug", 1)
                await quiet()
                assert (await agent.evse(1))["transaction_id"] == tx_id
                await agent.sim("clear", 1)
                ended = await link.expect_call("TransactionEvent",
                                               where=lambda p: p["eventType"] == "Ended")
                assert ended["triggerReason"] == "EVCommunicationLost"
            assert csms.schema_errors == []
        causes = [t.cause for t in read(safety_monitor)
                  if t.cause in ("fault", "offer", "contactor")]
        assert causes[causes.index("fault"):][:3] == ["fault", "offer", "contactor"]
    run(main())


def test_a_power_path_lost_to_a_fault_ends_as_abnormal(tmp_path):
    """With PowerPathClosed a stop point, the fault that opens it ends the transaction
    as the station's doing (AbnormalCondition), not the EV's (StoppedByEV)."""
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock) as agent:
                link = await connected(csms)
                await set_variable(link, "TxCtrlr", "TxStopPoint", "PowerPathClosed")
                await charging(agent, link)
                await agent.sim("fault", 1)
                ended = await link.expect_call("TransactionEvent",
                                               where=lambda p: p["eventType"] == "Ended")
                assert ended["triggerReason"] == "AbnormalCondition"
                assert ended["transactionInfo"]["stoppedReason"] == "Other"
            assert csms.schema_errors == []
    run(main())


def test_sockets_have_a_lock_in_the_device_model_fixed_cables_none(tmp_path):
    async def main():
        async with Csms(passwords={"CS-TEST": PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url, evses=2)
            config.write_text(config.read_text().replace(
                "id = 2\nmax_current_a = 32\n", "id = 2\nmax_current_a = 200\ndc = true\n"))
            async with InProcessAgent(config):
                link = await csms.wait_station("CS-TEST", timeout=10)
                await link.expect_call("StatusNotification")
                answer = await link.call("GetVariables", {"getVariableData": [
                    {"component": {"name": name, "evse": {"id": evse, "connectorId": 1}},
                     "variable": {"name": variable}}
                    for name, evse, variable in (
                        ("ConnectorPlugRetentionLock", 1, "Enabled"),
                        ("ConnectorPlugRetentionLock", 2, "Enabled"),
                        ("Connector", 1, "ConnectorType"), ("Connector", 2, "ConnectorType"))]})
                results = [(r["attributeStatus"], r.get("attributeValue"))
                           for r in answer["getVariableResult"]]
                assert results == [("Accepted", "true"), ("UnknownComponent", None),
                                   ("Accepted", "sType2"), ("Accepted", "cCCS2")]
                status = json.loads((await sim_async(config, "status")).stdout)["evses"]
                assert (status["1"]["locked"], status["2"]["locked"]) == (False, None)
                fixed = await sim_async(config, "lock-fail", "2")
                assert fixed.returncode == 1
                assert fixed.stderr.strip() == ("station-agent sim: EVSE 2 has a fixed cable: "
                                                "there is no lock")
            assert csms.schema_errors == []
    run(main())
