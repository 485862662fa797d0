"""Charging sessions on the real agent process, driven through `station-agent sim`."""

import asyncio
import json

from agent.demo.csms import Csms
from tests.harness import PASSWORD, AgentProcess, write_config
from tests.test_sim_agent import sim_async, wait_for_socket

STATION = "CS-TEST"
ROUNDS = 10  # kill -9 moments per run of the power-cut test


def tx_events(link):
    return link.calls("TransactionEvent")


async def session_setup(csms, tmp_path):
    config = write_config(tmp_path, csms.url)
    agent = await AgentProcess(config).start()
    link = await csms.wait_station(STATION, timeout=10)
    await link.expect_call("StatusNotification", timeout=10)
    await wait_for_socket(config)
    return config, agent, link


def test_card_then_plug_then_unplug(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config, agent, link = await session_setup(csms, tmp_path)
            try:
                assert (await sim_async(config, "swipe", "04a1b2c3")).returncode == 0
                auth = await link.expect_call("Authorize", timeout=10)
                assert auth["idToken"] == {"idToken": "04A1B2C3", "type": "ISO14443"}
                assert (await sim_async(config, "plug", "1")).returncode == 0
                started = await link.expect_call("TransactionEvent", timeout=10,
                                                 where=lambda p: p["eventType"] == "Started")
                assert started["seqNo"] == 0
                assert started["evse"] == {"id": 1, "connectorId": 1}
                assert started["idToken"]["idToken"] == "04A1B2C3"
                tx_id = started["transactionInfo"]["transactionId"]
                status = json.loads((await sim_async(config, "status")).stdout)["evses"]["1"]
                assert status["contactor_closed"] is True and status["offered_current_a"] == 32
                assert status["transaction_id"] == tx_id
                assert (await sim_async(config, "unplug", "1")).returncode == 0
                ended = await link.expect_call("TransactionEvent", timeout=10,
                                               where=lambda p: p["eventType"] == "Ended")
                assert ended["transactionInfo"]["transactionId"] == tx_id
                assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
                assert ended["triggerReason"] == "EVCommunicationLost"
                begin = started["meterValue"][0]["sampledValue"]
                end = ended["meterValue"][-1]["sampledValue"]
                assert any(v["context"] == "Transaction.Begin" and
                           v["measurand"] == "Energy.Active.Import.Register" for v in begin)
                assert any(v["context"] == "Transaction.End" and
                           v["measurand"] == "Energy.Active.Import.Register" for v in end)
                events = [p for p in tx_events(link) if p["transactionInfo"]["transactionId"] == tx_id]
                assert [p["seqNo"] for p in events] == list(range(len(events)))
                status = json.loads((await sim_async(config, "status")).stdout)["evses"]["1"]
                assert status["contactor_closed"] is False and status["transaction_id"] is None
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))


def test_remote_start_and_remote_stop(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config, agent, link = await session_setup(csms, tmp_path)
            try:
                assert (await sim_async(config, "plug", "1")).returncode == 0
                answer = await link.call("RequestStartTransaction", {
                    "idToken": {"idToken": "REMOTE1", "type": "Central"}, "remoteStartId": 42,
                    "evseId": 1})
                assert answer["status"] == "Accepted"
                started = await link.expect_call("TransactionEvent", timeout=10,
                                                 where=lambda p: p["eventType"] == "Started")
                assert started["transactionInfo"]["remoteStartId"] == 42
                tx_id = started["transactionInfo"]["transactionId"]
                status = await link.call("GetTransactionStatus", {"transactionId": tx_id})
                assert status["ongoingIndicator"] is True
                assert (await link.call("RequestStopTransaction", {"transactionId": tx_id}))[
                    "status"] == "Accepted"
                ended = await link.expect_call("TransactionEvent", timeout=10,
                                               where=lambda p: p["eventType"] == "Ended")
                assert ended["triggerReason"] == "RemoteStop"
                assert ended["transactionInfo"]["stoppedReason"] == "Remote"
                unknown = await link.call("RequestStopTransaction", {"transactionId": "nope"})
                assert unknown["status"] == "Rejected"
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))


def test_kill_9_during_a_transaction_loses_nothing(tmp_path):
    """kill -9 at a random moment of a session; after the restart the CSMS has every event
    of the transaction exactly once, seqNo without gaps, ending with PowerLoss."""
    import random

    async def main():
        rng = random.Random(7)
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            for round_ in range(ROUNDS):
                agent = await AgentProcess(config).start()
                link = await csms.wait_station(STATION, timeout=10,
                                               after=csms.links[STATION][-1] if csms.links.get(STATION) else None)
                await wait_for_socket(config)
                await sim_async(config, "plug", "1")
                await link.call("RequestStartTransaction", {
                    "idToken": {"idToken": f"R{round_}", "type": "Central"}, "remoteStartId": round_,
                    "evseId": 1})
                await link.expect_call("TransactionEvent", timeout=10,
                                       where=lambda p: p["eventType"] == "Started")
                await asyncio.sleep(rng.uniform(0, 0.3))
                agent.proc.kill()
                await agent.proc.wait()
                await sim_async(config, "status")  # (the socket is gone with the agent)
                agent = await AgentProcess(config).start()
                again = await csms.wait_station(STATION, timeout=10, after=link)
                ended = await again.expect_call("TransactionEvent", timeout=10,
                                                where=lambda p: p["eventType"] == "Ended")
                assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
                await agent.stop()
            events = [p for l in csms.links[STATION] for p in l.calls("TransactionEvent")]
            by_tx = {}
            for p in events:
                by_tx.setdefault(p["transactionInfo"]["transactionId"], []).append(p["seqNo"])
            assert len(by_tx) == ROUNDS
            for seqs in by_tx.values():
                # Every seqNo arrives; a repeat is allowed only as a retry of the same one.
                assert sorted(set(seqs)) == list(range(max(seqs) + 1))
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 120))


def test_plug_then_card_stop_by_the_same_card_and_an_invalid_card(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            csms.responders["Authorize"] = lambda p: {"idTokenInfo": {
                "status": "Blocked" if p["idToken"]["idToken"] == "0BAD0BAD" else "Accepted"}}
            config, agent, link = await session_setup(csms, tmp_path)
            try:
                await sim_async(config, "plug", "1")
                await link.expect_call("StatusNotification", timeout=10,
                                       where=lambda p: p["connectorStatus"] == "Occupied")
                await sim_async(config, "swipe", "0BAD0BAD")
                await link.expect_call("Authorize", timeout=10,
                                       where=lambda p: p["idToken"]["idToken"] == "0BAD0BAD")
                await asyncio.sleep(0.3)
                assert tx_events(link) == [], "a blocked card starts nothing"
                status = json.loads((await sim_async(config, "status")).stdout)["evses"]["1"]
                assert status["offered_current_a"] is None and not status["contactor_closed"]
                await sim_async(config, "swipe", "06000D01")
                started = await link.expect_call("TransactionEvent", timeout=10,
                                                 where=lambda p: p["eventType"] == "Started")
                assert started["idToken"]["idToken"] == "06000D01"
                await sim_async(config, "swipe", "06000D01")   # the same card again: stop
                ended = await link.expect_call("TransactionEvent", timeout=10,
                                               where=lambda p: p["eventType"] == "Ended")
                assert ended["triggerReason"] == "StopAuthorized"
                assert ended["transactionInfo"]["stoppedReason"] == "Local"
                assert ended["idToken"]["idToken"] == "06000D01"
                status = json.loads((await sim_async(config, "status")).stdout)["evses"]["1"]
                assert status["contactor_closed"] is False
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))


def test_remote_start_with_authorize_remote_start(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            csms.responders["Authorize"] = lambda p: {"idTokenInfo": {
                "status": "Invalid" if p["idToken"]["idToken"] == "NOPE" else "Accepted"}}
            config, agent, link = await session_setup(csms, tmp_path)
            try:
                await link.call("SetVariables", {"setVariableData": [{
                    "component": {"name": "AuthCtrlr"}, "variable": {"name": "AuthorizeRemoteStart"},
                    "attributeValue": "true"}]})
                answer = await link.call("RequestStartTransaction", {
                    "idToken": {"idToken": "NOPE", "type": "eMAID"}, "remoteStartId": 1, "evseId": 1})
                assert answer["status"] == "Rejected"
                answer = await link.call("RequestStartTransaction", {
                    "idToken": {"idToken": "YES", "type": "eMAID"}, "remoteStartId": 2, "evseId": 1})
                assert answer["status"] == "Accepted"
                await link.expect_call("Authorize", timeout=10,
                                       where=lambda p: p["idToken"]["idToken"] == "YES")
                await sim_async(config, "plug", "1")
                started = await link.expect_call("TransactionEvent", timeout=10,
                                                 where=lambda p: p["eventType"] == "Started")
                assert started["transactionInfo"]["remoteStartId"] == 2
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))


def test_transaction_from_plug_in_when_tx_start_point_is_ev_connected(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config, agent, link = await session_setup(csms, tmp_path)
            try:
                await link.call("SetVariables", {"setVariableData": [{
                    "component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"},
                    "attributeValue": "EVConnected"}]})
                await sim_async(config, "plug", "1")
                started = await link.expect_call("TransactionEvent", timeout=10,
                                                 where=lambda p: p["eventType"] == "Started")
                assert started["triggerReason"] == "CablePluggedIn"
                assert "idToken" not in started
                assert started["transactionInfo"]["chargingState"] == "EVConnected"
                status = json.loads((await sim_async(config, "status")).stdout)["evses"]["1"]
                assert status["offered_current_a"] is None, "no energy before authorization"
                await sim_async(config, "swipe", "0CA4D009")
                authorized = await link.expect_call("TransactionEvent", timeout=10, where=lambda p: (
                    p["eventType"] == "Updated" and p["triggerReason"] == "Authorized"))
                assert authorized["idToken"]["idToken"] == "0CA4D009"
                await link.expect_call("TransactionEvent", timeout=10, where=lambda p: (
                    p["transactionInfo"]["chargingState"] == "Charging"))
                await sim_async(config, "unplug", "1")
                ended = await link.expect_call("TransactionEvent", timeout=10,
                                               where=lambda p: p["eventType"] == "Ended")
                assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
                seqs = [p["seqNo"] for p in tx_events(link)]
                assert seqs == list(range(len(seqs)))
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))
