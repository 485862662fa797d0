"""`station-agent sim` against a running agent: the CSMS hears what the mock hardware does."""

import asyncio
import json
import subprocess
import sys

from agent.demo.csms import Csms
from tests.harness import PASSWORD, AgentProcess, write_config

STATION = "CS-TEST"


def sim(config, *args):
    return subprocess.run([sys.executable, "-m", "agent", "sim", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=20)


async def sim_async(config, *args):
    return await asyncio.to_thread(sim, config, *args)


async def wait_for_socket(config):
    for _ in range(100):
        result = await sim_async(config, "status")
        if result.returncode == 0:
            return json.loads(result.stdout)
        await asyncio.sleep(0.1)
    raise AssertionError("control socket never came up")


def test_sim_commands_reach_the_csms_and_status(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url, evses=2)
            async with AgentProcess(config) as agent:
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("StatusNotification", where=lambda p: p["evseId"] == 2)
                status = await wait_for_socket(config)
                assert status["connected"] is True
                assert status["evses"]["1"] == {
                    "state": "Available", "plugged": False, "contactor_closed": False,
                    "offered_current_a": None, "power_limit_w": None, "power_w": 0,
                    "energy_wh": 0, "transaction_id": None, "locked": False}
                assert (await sim_async(config, "plug", "1")).returncode == 0
                await link.expect_call("StatusNotification", where=lambda p: (
                    p["evseId"] == 1 and p["connectorStatus"] == "Occupied"))
                status = json.loads((await sim_async(config, "status")).stdout)
                assert status["evses"]["1"]["plugged"] is True
                assert status["evses"]["1"]["state"] == "Occupied"
                assert (await sim_async(config, "fault", "2")).returncode == 0
                await link.expect_call("StatusNotification", where=lambda p: (
                    p["evseId"] == 2 and p["connectorStatus"] == "Faulted"))
                assert (await sim_async(config, "clear", "2")).returncode == 0
                await link.expect_call("StatusNotification", where=lambda p: (
                    p["evseId"] == 2 and p["connectorStatus"] == "Available"))
                assert (await sim_async(config, "unplug", "1")).returncode == 0
                await link.expect_call("StatusNotification", where=lambda p: (
                    p["evseId"] == 1 and p["connectorStatus"] == "Available"))
                bad = await sim_async(config, "plug", "9")
                assert bad.returncode != 0 and "unknown EVSE 9" in bad.stderr
                assert await agent.stop() == 0
            gone = await sim_async(config, "status")
            assert gone.returncode != 0 and "not running" in gone.stderr
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))


def test_sim_tells_when_the_agent_ignores_an_external_limit(tmp_path):
    """ExternalControlSignalsEnabled is false by default: `sim external-limit` sets the
    input yet says it has no effect (exit 1), and how to give it one."""
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            async with AgentProcess(config) as agent:
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("StatusNotification")
                await wait_for_socket(config)
                ignored = await sim_async(config, "external-limit", "4200")
                assert (ignored.returncode, ignored.stdout) == (1, "")
                assert ignored.stderr.strip() == (
                    "station-agent sim: external limit input set to 4200 W from EMS, but the "
                    "agent ignores it: SmartChargingCtrlr.ExternalControlSignalsEnabled is "
                    "false; the limit applies once the CSMS sets it to true (SetVariables)")
                answer = await link.call("SetVariables", {"setVariableData": [{
                    "component": {"name": "SmartChargingCtrlr"},
                    "variable": {"name": "ExternalControlSignalsEnabled"},
                    "attributeValue": "true"}]})
                assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
                # The input set while ignored applies as soon as the agent honours it.
                note = await link.expect_call("NotifyChargingLimit")
                assert note["chargingLimit"]["chargingLimitSource"] == "EMS"
                applied = await sim_async(config, "external-limit", "3000", "--source", "SO")
                assert (applied.returncode, applied.stderr) == (0, "")
                assert applied.stdout.strip() == "external limit set: 3000 W from SO"
                cleared = await sim_async(config, "external-limit", "clear")
                assert (cleared.returncode, cleared.stdout.strip()) == (0, "external limit cleared")
                await link.expect_call("ClearedChargingLimit")
                again = await sim_async(config, "external-limit", "clear")
                assert again.returncode == 1 and "nothing to clear" in again.stderr
                assert await agent.stop() == 0
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))


def test_sim_refuses_what_is_meaningless_and_the_csms_hears_nothing(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            async with AgentProcess(config) as agent:
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("StatusNotification")
                await wait_for_socket(config)
                results = [await sim_async(config, *args) for args in (
                    ("unplug", "1"), ("clear", "1"), ("resume", "1"), ("ev-max", "1", "1e9"),
                    ("swipe", "nothex!!"), ("swipe", "AB12"))]
                assert [r.returncode for r in results] == [1, 1, 1, 1, 2, 2]
                assert all(r.stdout == "" and r.stderr.strip() for r in results)
                # A good card still works: the CSMS is asked about it, and only about it.
                assert (await sim_async(config, "swipe", "04a2b3c4")).returncode == 0
                authorize = await link.expect_call("Authorize")
                assert authorize["idToken"] == {"idToken": "04A2B3C4", "type": "ISO14443"}
                assert len(link.calls("Authorize")) == 1
                status = json.loads((await sim_async(config, "status")).stdout)["evses"]["1"]
                assert status["plugged"] is False and status["state"] == "Available"
                assert await agent.stop() == 0
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))
