"""The agent does nothing while nothing is due: no busy loop in any state.

The in-process agent and the CSMS share one event loop on a ManualClock, so "idle" is
exact: after the clock moves, every task must go back to waiting (tests/harness.py
quiesce). A task that keeps itself ready — a timer computed as already due and never
served — would spin a core on a real station for as long as the state lasts. One did:
the EVConnectionTimeOut deadline of an authorization that had long become a charging
session, two minutes into every session.
"""

import asyncio
from datetime import datetime, timezone

from agent.clock import ManualClock
from agent.demo.csms import Csms
from tests.harness import PASSWORD, InProcessAgent, quiesce, write_config

STATION = "CS-IDLE"


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_no_task_spins_while_charging_past_every_deadline(tmp_path):
    async def main():
        clock = ManualClock(datetime.now(timezone.utc).replace(microsecond=0))
        async with Csms(passwords={STATION: PASSWORD}, now=clock.now) as csms:
            config = write_config(tmp_path, csms.url, station_id=STATION)
            async with InProcessAgent(config, clock) as agent:
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("StatusNotification", timeout=10)
                assert await quiesce(timeout=3), "busy while idle and connected"
                # Authorized, waiting for the cable: the EVConnectionTimeOut timer runs.
                await agent.sim("swipe", 1, token="04A2B3C4")
                assert await quiesce(timeout=3), "busy while waiting for the cable"
                await agent.sim("plug", 1)
                await link.expect_call("TransactionEvent",
                                       where=lambda p: p["eventType"] == "Started")
                # Far past EVConnectionTimeOut (120 s), across sampling and aligned
                # intervals, paused by the EV and resumed.
                for seconds in (60, 61, 600, 3600):
                    await clock.advance(seconds)
                    assert await quiesce(timeout=3), f"busy {seconds} s further into charging"
                await agent.sim("suspend", 1)
                await clock.advance(900)
                assert await quiesce(timeout=3), "busy while the EV is suspended"
                await agent.sim("resume", 1)
                await agent.sim("unplug", 1)
                await link.expect_call("TransactionEvent",
                                       where=lambda p: p["eventType"] == "Ended")
                await clock.advance(3600)
                assert await quiesce(timeout=3), "busy after the session ended"
            assert csms.schema_errors == []
    run(main())
