"""Charging sessions on the real agent process, driven through `station-agent sim`."""

import asyncio
import json

from agent.demo.csms import Csms
from tests.harness import PASSWORD, AgentProcess, write_config
from tests.test_sim_agent import sim_async, wait_for_socket

STATION = "CS-TEST"


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
                assert ended["triggerReason"] == "EVDeparted"
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
