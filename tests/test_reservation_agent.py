"""Reservations on the real agent process, driven through `station-agent sim`, against
the CSMS peer: a Reserved EVSE refuses another card and serves its own; reservations
survive `kill -9`, and one that expired while the station was down is reported Expired
after the restart."""

import asyncio
import datetime as dt
import json

from agent.demo.csms import Csms
from agent.clock import format_datetime
from tests.harness import PASSWORD, AgentProcess, write_config
from tests.test_sim_agent import sim_async, wait_for_socket

STATION = "CS-TEST"
OWN = {"idToken": "04A1B2C3", "type": "ISO14443"}
OTHER = {"idToken": "0BADCAFE", "type": "ISO14443"}


def station_calls(link) -> list[tuple]:
    """(action, evse or reservation id, status) of the station's StatusNotification and
    ReservationStatusUpdate CALLs on this link, in the order sent."""
    seen = []
    for frame in link.frames:
        message = json.loads(frame.text)
        if frame.direction == "in" and message[0] == 2:
            p = message[3]
            if message[2] == "StatusNotification":
                seen.append((message[2], p["evseId"], p["connectorStatus"]))
            elif message[2] == "ReservationStatusUpdate":
                seen.append((message[2], p["reservationId"], p["reservationUpdateStatus"]))
    return seen


async def status(config) -> dict:
    return json.loads((await sim_async(config, "status")).stdout)["evses"]


async def boot(csms, config, after=None):
    agent = await AgentProcess(config).start()
    link = await csms.wait_station(STATION, timeout=10, after=after)
    await link.expect_call("BootNotification", timeout=10)
    await wait_for_socket(config)
    return agent, link


def test_reserved_evse_refuses_another_card(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            agent, link = await boot(csms, config)
            try:
                await link.expect_call("StatusNotification", timeout=10)
                answer = await link.call("ReserveNow", {
                    "id": 11, "evseId": 1, "idToken": OWN,
                    "expiryDateTime": format_datetime(csms.now() + dt.timedelta(hours=1))})
                assert answer["status"] == "Accepted"
                await link.expect_call("StatusNotification", timeout=10, where=lambda p: (
                    p["connectorStatus"] == "Reserved"))
                assert (await status(config))["1"]["state"] == "Reserved"
                # Another card: the CSMS accepts it, the reservation does not.
                assert (await sim_async(config, "swipe", OTHER["idToken"], "--evse",
                                        "1")).returncode == 0
                await link.expect_call("Authorize", timeout=10, where=lambda p: (
                    p["idToken"]["idToken"] == OTHER["idToken"]))
                assert (await sim_async(config, "plug", "1")).returncode == 0
                evse = (await status(config))["1"]
                assert evse["plugged"] is True and evse["state"] == "Reserved"
                # Its own card: the session starts on it, with the reservation's id.
                assert (await sim_async(config, "swipe", OWN["idToken"], "--evse",
                                        "1")).returncode == 0
                started = await link.expect_call("TransactionEvent", timeout=10,
                                                 where=lambda p: p["eventType"] == "Started")
                assert started["reservationId"] == 11
                assert started["idToken"]["idToken"] == OWN["idToken"]
                # Nothing was started for the other card before it.
                assert link.calls("TransactionEvent")[0] is started
                await link.expect_call("StatusNotification", timeout=10, where=lambda p: (
                    p["connectorStatus"] == "Occupied"))
                evse = (await status(config))["1"]
                assert evse["state"] == "Occupied"
                assert evse["transaction_id"] == started["transactionInfo"]["transactionId"]
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))


def test_reservation_expires_across_a_kill(tmp_path):
    """kill -9 with two reservations; the station comes back two hours later by the
    CSMS's clock (its time source): the one that expired meanwhile is reported Expired
    and its EVSE is Available, the other is still Reserved."""
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url, evses=2)
            agent, link = await boot(csms, config)
            try:
                start = csms.now()
                for rid, evse, hours in ((1, 1, 1), (2, 2, 24)):
                    answer = await link.call("ReserveNow", {
                        "id": rid, "evseId": evse, "idToken": OWN,
                        "expiryDateTime": format_datetime(start + dt.timedelta(hours=hours))})
                    assert answer["status"] == "Accepted"
                states = await status(config)
                assert states["1"]["state"] == states["2"]["state"] == "Reserved"
                await agent.kill()   # SIGKILL: no clean stop
                assert agent.proc.returncode == -9
                csms.now = lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
                agent, link = await boot(csms, config, after=link)
                update = await link.expect_call("ReservationStatusUpdate", timeout=10)
                assert update == {"reservationId": 1, "reservationUpdateStatus": "Expired"}
                await link.expect_call("StatusNotification", timeout=10, where=lambda p: (
                    p["evseId"] == 1 and p["connectorStatus"] == "Available"))
                # The status that shows the end first, then the end (TC_H_07's order).
                sent = station_calls(link)
                assert sent.index(("StatusNotification", 1, "Available")) < \
                    sent.index(("ReservationStatusUpdate", 1, "Expired"))
                states = await status(config)
                assert states["1"]["state"] == "Available"
                assert states["2"]["state"] == "Reserved"
                # Reported once: a clean restart does not repeat it.
                assert (await agent.stop()) == 0
                agent, link = await boot(csms, config, after=link)
                await link.expect_call("StatusNotification", timeout=10, where=lambda p: (
                    p["evseId"] == 2 and p["connectorStatus"] == "Reserved"))
                assert link.calls("ReservationStatusUpdate") == []
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 90))


def test_a_reservation_used_without_a_cable_is_reported_removed(tmp_path):
    """The reserved driver swipes (the reservation is used: Available) and never plugs
    in: when the authorization lapses (EVConnectionTimeOut, 1 s here) no transaction will
    name the reservation, so the CSMS hears Removed, after the status that shows it."""
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            agent, link = await boot(csms, config)
            try:
                await link.expect_call("StatusNotification", timeout=10)
                answer = await link.call("SetVariables", {"setVariableData": [{
                    "component": {"name": "TxCtrlr"},
                    "variable": {"name": "EVConnectionTimeOut"}, "attributeValue": "1"}]})
                assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
                answer = await link.call("ReserveNow", {
                    "id": 21, "evseId": 1, "idToken": OWN,
                    "expiryDateTime": format_datetime(csms.now() + dt.timedelta(hours=1))})
                assert answer["status"] == "Accepted"
                await link.expect_call("StatusNotification", timeout=10, where=lambda p: (
                    p["connectorStatus"] == "Reserved"))
                assert (await sim_async(config, "swipe", OWN["idToken"], "--evse",
                                        "1")).returncode == 0
                update = await link.expect_call("ReservationStatusUpdate", timeout=10)
                assert update == {"reservationId": 21, "reservationUpdateStatus": "Removed"}
                assert station_calls(link)[-2:] == [
                    ("StatusNotification", 1, "Available"),
                    ("ReservationStatusUpdate", 21, "Removed")]
                assert link.calls("TransactionEvent") == []
                assert (await status(config))["1"]["state"] == "Available"
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))
