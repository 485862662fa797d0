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
                    "energy_wh": 0, "transaction_id": None}
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
