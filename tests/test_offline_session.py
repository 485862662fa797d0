"""A session across a CSMS outage: events queue durably and arrive in order afterwards,
marked offline where they were created offline. Time on the injectable clock."""

import asyncio
import contextlib
import json

from agent.clock import ManualClock
from agent.config import load_config
from agent.daemon import run_daemon
from agent.demo.csms import Csms
from tests.harness import PASSWORD, write_config
from tests.test_registration import quiet
from tests.test_sim_agent import sim_async, wait_for_socket

STATION = "CS-TEST"


@contextlib.asynccontextmanager
async def in_process_agent(tmp_path, csms):
    """The daemon in this process on a ManualClock, registered, its control socket up."""
    path = write_config(tmp_path, csms.url)
    clock = ManualClock()
    stop = asyncio.Event()
    daemon = asyncio.ensure_future(run_daemon(load_config(path), stop, clock=clock))
    try:
        link = await csms.wait_station(STATION, timeout=10)
        await link.expect_call("StatusNotification", timeout=10)
        await wait_for_socket(path)
        yield path, clock, link
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 10)


def test_transaction_across_an_outage(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            async with in_process_agent(tmp_path, csms) as (path, clock, link):
                await sim_async(path, "plug", "1")
                await link.call("RequestStartTransaction", {
                    "idToken": {"idToken": "R1", "type": "Central"}, "remoteStartId": 1, "evseId": 1})
                started = await link.expect_call("TransactionEvent", where=lambda p: p["eventType"] == "Started")
                assert "offline" not in started
                await quiet()
                # The CSMS goes away: the link drops and reconnections are refused.
                csms.passwords = {STATION: "not-the-station-password"}
                await link.close()
                await quiet()
                await clock.advance(61)                      # a periodic sample, offline
                await sim_async(path, "suspend", "1")        # EV stops drawing, offline
                await quiet()
                await sim_async(path, "unplug", "1")         # the session ends, offline
                await quiet()
                status = json.loads((await sim_async(path, "status")).stdout)
                assert status["connected"] is False and status["evses"]["1"]["transaction_id"] is None
                csms.passwords = {STATION: PASSWORD}
                # Past the back-off, a few seconds at a time: a jump would also expire
                # the MessageTimeout of the first CALL on the new link.
                for _ in range(40):
                    if len(csms.links[STATION]) > 1 and not csms.links[STATION][-1].closed.is_set():
                        break
                    await clock.advance(2)
                    await quiet()
                again = await csms.wait_station(STATION, timeout=10, after=link)
                ended = await again.expect_call("TransactionEvent", timeout=10,
                                                where=lambda p: p["eventType"] == "Ended")
                assert ended["offline"] is True
                tx_id = started["transactionInfo"]["transactionId"]
                events = [p for l in csms.links[STATION] for p in l.calls("TransactionEvent")
                          if p["transactionInfo"]["transactionId"] == tx_id]
                assert [p["seqNo"] for p in events] == list(range(len(events)))
                offline = [p for p in again.calls("TransactionEvent")]
                assert offline and all(p.get("offline") is True for p in offline)
                assert any(p["triggerReason"] == "MeterValuePeriodic" for p in offline)
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))


def test_authorization_expires_after_ev_connection_timeout(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            async with in_process_agent(tmp_path, csms) as (path, clock, link):
                await sim_async(path, "swipe", "0CA4D001")
                await link.expect_call("Authorize", timeout=10)
                await quiet()
                await clock.advance(119)   # EVConnectionTimeOut is 120 s
                await quiet()
                status = json.loads((await sim_async(path, "status")).stdout)["evses"]["1"]
                assert status["state"] == "Available"
                await clock.advance(2)
                await quiet()
                await sim_async(path, "plug", "1")
                await quiet()
                status = json.loads((await sim_async(path, "status")).stdout)["evses"]["1"]
                assert status["offered_current_a"] is None, "the authorization had expired"
                assert link.calls("TransactionEvent") == []
    asyncio.run(asyncio.wait_for(main(), 60))
