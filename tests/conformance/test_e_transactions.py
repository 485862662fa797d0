"""Part 6, E Transactions: the start and stop options (E01, E02, E03, E06, E07, E09, E10)
of Core (Part 5, 4.2), with the 2023-12 errata.

The station's transaction settings, as a lab reads them from its device model:
- TxCtrlr.TxStartPoint and TxStopPoint are ReadWrite (C-51, C-52) with the values
  EVConnected, Authorized, PowerPathClosed, EnergyTransfer (C-09.1/.2/.4/.5,
  C-10.1/.2/.3/.4). No parking-bay sensor (ParkingBayOccupancy, C-09.6 / C-10.5) and no
  signing meter (DataSigned, C-09.3): TC_E_11, TC_E_12 and TC_E_19 do not apply.
- StopTxOnEVSideDisconnect is ReadOnly true: an EV unplugged on its side always ends the
  transaction (C-06.2, not C-06.1), so the "suspend transaction" cases TC_E_26 / TC_E_27
  (which need it false) do not apply; TC_E_27 also needs a fixed cable.
- UnlockOnEVSideDisconnect is ReadWrite (detachable cable with a lock: C-12.1, C-12.2).
- An AC EVSE charges IEC 61851-1 EVs (AQ-9); a DC EVSE (dc = true) is the station's DC
  support (HFS-4) for TC_E_54.
- AQ-2 is "no": the socket's lock locks only once the EV is plugged in and authorized,
  so a driver can always plug in first.
Each case sets the start and stop points its preparations name (the lab does the same
through SetVariables); the rest keep the station's defaults (TxStartPoint
PowerPathClosed, TxStopPoint EVConnected,Authorized).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from agent.clock import ManualClock
from agent.config import load_config
from agent.demo.csms import Csms
from tests.conformance.rig import (CONNECTOR, EVSE, STATION, VALID_TOKEN, Rig, run,
                                   station)
from tests.harness import PASSWORD, write_config

#: <Configured ev_connection_timeout> (TxCtrlr.EVConnectionTimeOut).
EV_CONNECTION_TIMEOUT = 30
#: <Configured Transaction Duration>: how long the OCTT lets a session run (longer than
#: the default EVConnectionTimeOut, which must not end a session whose EV was plugged in).
TRANSACTION_DURATION = 180
#: <Configured message timeout>: how long the OCTT waits for what must not come.
MESSAGE_TIMEOUT = 30


# ---- the OCTT's view


class Since:
    """What the station sent from now on (one step of a case)."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.marks = {a: len(rig.sent_on_all_links(a))
                      for a in ("Authorize", "TransactionEvent", "StatusNotification")}

    def __call__(self, action: str) -> list[dict]:
        return self.rig.sent_on_all_links(action)[self.marks[action]:]

    async def expect(self, action: str, where: Callable[[dict], bool] = lambda p: True) -> dict:
        """The first `action` sent from now on matching `where` (waiting for it)."""
        old = {id(p) for p in self.rig.sent_on_all_links(action)[:self.marks[action]]}
        return await self.rig.expect(action, where=lambda p: id(p) not in old and where(p))


async def points(rig: Rig, start: str | None = None, stop: str | None = None) -> None:
    """Configuration State: TxStartPoint / TxStopPoint (both ReadWrite here)."""
    settings = {}
    if start is not None:
        settings[("TxCtrlr", "TxStartPoint")] = start
    if stop is not None:
        settings[("TxCtrlr", "TxStopPoint")] = stop
    await rig.configure(settings)


async def ended(since: Since) -> dict:
    return await since.expect("TransactionEvent", lambda p: p["eventType"] == "Ended")


async def until_charging(rig: Rig, since: Since) -> dict:
    """EnergyTransferStarted's last step: the EV draws energy; returns that event."""
    await rig.advance(1)
    event = await since.expect("TransactionEvent", lambda p: (
        p["transactionInfo"].get("chargingState") == "Charging"))
    snap = rig.snapshot()
    assert snap["contactor_closed"] and snap["power_w"] > 0, snap
    return event


async def charging_session(rig: Rig, *, remote: bool = False) -> str:
    """EnergyTransferStarted from idle (Authorized first, then the plug-in); returns the
    transaction id."""
    since = Since(rig)
    if remote:
        answer = await rig.authorized_remote()
        assert answer["status"] == "Accepted"
    else:
        await rig.authorized_local()
    await rig.ev_connected_pre_session()
    event = await until_charging(rig, since)
    return event["transactionInfo"]["transactionId"]


async def energy_transfer_suspended(rig: Rig) -> dict:
    """EnergyTransferSuspended (with the errata's 6.1.32): the EV stops drawing."""
    since = Since(rig)
    await rig.advance(TRANSACTION_DURATION, step=10)
    rig.mock.suspend(EVSE)
    await rig.settle()
    await rig.advance(1)
    event = await since.expect("TransactionEvent", lambda p: (
        p["transactionInfo"].get("chargingState") in ("EVConnected", "SuspendedEV")))
    if event["transactionInfo"]["chargingState"] == "SuspendedEV":
        assert event["triggerReason"] == "ChargingStateChanged"
    assert event["eventType"] in ("Ended", "Updated")
    if event["eventType"] == "Ended":
        assert event["transactionInfo"]["stoppedReason"] == "StoppedByEV"
    assert rig.snapshot()["power_w"] == 0
    return event


def assert_started(event: dict) -> None:
    """evse must be provided, evse.connectorId must be provided."""
    assert event["eventType"] == "Started"
    assert event["evse"]["id"] == EVSE
    assert event["evse"]["connectorId"] == CONNECTOR


def assert_token(event: dict) -> None:
    assert event["idToken"]["idToken"] == VALID_TOKEN["idToken"]
    assert event["idToken"]["type"] == VALID_TOKEN["type"]


async def status_available(since: Since) -> None:
    """The connector's status change to Available (StatusNotification)."""
    status = await since.expect("StatusNotification",
                                lambda p: p["connectorStatus"] == "Available")
    assert (status["evseId"], status["connectorId"]) == (EVSE, CONNECTOR)


@contextlib.asynccontextmanager
async def dc_station(tmp_path: Path) -> AsyncIterator[Rig]:
    """`station()` with EVSE 1 a DC EVSE (a power module on CAN, mock)."""
    async with Csms(passwords={STATION: PASSWORD}) as csms:
        config_path = write_config(tmp_path, csms.url)
        config_path.write_text(config_path.read_text().replace(
            "id = 1\nmax_current_a = 32\n", "id = 1\nmax_current_a = 200\ndc = true\n"))
        load_config(config_path)   # a bad edit fails here, not as a hang
        rig = Rig(tmp_path, csms, ManualClock(), config_path, 1)
        try:
            await rig.start()
            yield rig
        finally:
            await rig.shutdown()
        assert csms.schema_errors == [], csms.schema_errors


# ---- Start transaction options (E01)


def test_TC_E_01(tmp_path):
    """Start transaction options - PowerPathClosed"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="PowerPathClosed")
            since = Since(rig)
            await rig.authorized_local()                     # State is Authorized
            assert since("TransactionEvent") == []           # not started before the cable
            status = await rig.ev_connected_pre_session()    # 1. EVConnectedPreSession
            assert (status["evseId"], status["connectorId"]) == (EVSE, CONNECTOR)
            event = await since.expect("TransactionEvent")
            assert_started(event)                            # Started: PowerPathClosed and Authorized
            assert event["triggerReason"] in ("CablePluggedIn", "ChargingStateChanged",
                                              "RemoteStart")
            assert event["transactionInfo"]["chargingState"] in (
                "EVConnected", "SuspendedEVSE", "Charging")
            await until_charging(rig, since)
    run(case())


def test_TC_E_02(tmp_path):
    """Start transaction options - EnergyTransfer"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="EnergyTransfer")
            since = Since(rig)
            await rig.authorized_local()
            await rig.plug()
            await rig.advance(1)
            status = await since.expect("StatusNotification")
            assert status["connectorStatus"] == "Occupied"
            event = await since.expect("TransactionEvent")
            assert_started(event)
            assert event["triggerReason"] in ("ChargingStateChanged", "Authorized")
            assert_token(event)
            assert event["transactionInfo"]["chargingState"] == "Charging"
            assert rig.snapshot()["power_w"] > 0
    run(case())


def test_TC_E_09(tmp_path):
    """Start transaction options - EVConnected"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="EVConnected")
            since = Since(rig)
            await rig.plug()
            status = await since.expect("StatusNotification")
            assert status["connectorStatus"] == "Occupied"
            event = await since.expect("TransactionEvent")
            assert_started(event)
            assert event["triggerReason"] in ("CablePluggedIn", "ChargingStateChanged")
            assert event["transactionInfo"]["chargingState"] == "EVConnected"
            assert not rig.snapshot()["contactor_closed"]    # not authorized: no energy
    run(case())


def test_TC_E_10(tmp_path):
    """Start transaction options - Authorized - Local"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="Authorized")
            since = Since(rig)
            await rig.present()
            authorize = await since.expect("Authorize")
            assert authorize["idToken"] == VALID_TOKEN
            event = await since.expect("TransactionEvent")
            assert event["eventType"] == "Started"
            assert event["triggerReason"] == "Authorized"
            assert_token(event)
    run(case())


def test_TC_E_11(tmp_path):
    """Start transaction options - DataSigned"""
    pytest.skip("not applicable: no signing meter; TxStartPoint does not offer DataSigned "
                "(C-09.3)")


def test_TC_E_12(tmp_path):
    """Start transaction options - ParkingBayOccupied"""
    pytest.skip("not applicable: no parking-bay sensor; TxStartPoint does not offer "
                "ParkingBayOccupancy (C-09.6)")


def test_TC_E_13(tmp_path):
    """Start transaction options - Authorized - Remote"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="Authorized")
            await rig.configure({("AuthCtrlr", "AuthorizeRemoteStart"): "true"})
            since = Since(rig)
            answer = await rig.call("RequestStartTransaction", {
                "idToken": VALID_TOKEN, "evseId": EVSE, "remoteStartId": 7})
            assert answer["status"] == "Accepted"
            authorize = await since.expect("Authorize")
            assert authorize["idToken"] == VALID_TOKEN
            event = await since.expect("TransactionEvent")
            assert event["eventType"] == "Started"
            assert event["triggerReason"] == "RemoteStart"
            assert_token(event)
            assert event["transactionInfo"]["remoteStartId"] == 7
    run(case())


# ---- Local start transaction (E02, E03)


def test_TC_E_03(tmp_path):
    """Local start transaction - Cable plugin first - Success"""
    async def case():
        async with station(tmp_path) as rig:
            since = Since(rig)
            await rig.ev_connected_pre_session()             # State is EVConnectedPreSession
            assert since("TransactionEvent") == []           # TxStartPoint PowerPathClosed
            await rig.authorized_local()                     # 1. Authorized (local)
            authorize = await since.expect("Authorize")
            assert authorize["idToken"] == VALID_TOKEN
            # 2. EnergyTransferStarted, part 2: the power path closes, then energy flows.
            started = await since.expect("TransactionEvent")
            assert started["eventType"] == "Started"
            assert started["triggerReason"] == "ChargingStateChanged"
            assert started["transactionInfo"]["chargingState"] == "SuspendedEVSE"
            assert_token(started)
            charging = await until_charging(rig, since)
            assert charging["triggerReason"] == "ChargingStateChanged"
    run(case())


def test_TC_E_04(tmp_path):
    """Local start transaction - Authorization first - Success"""
    async def case():
        async with station(tmp_path) as rig:
            since = Since(rig)
            await rig.authorized_local()                     # 1. Authorized (local)
            assert (await since.expect("Authorize"))["idToken"] == VALID_TOKEN
            status = await rig.ev_connected_pre_session()    # 2. EnergyTransferStarted
            assert status["connectorStatus"] == "Occupied"
            started = await since.expect("TransactionEvent")
            assert_started(started)
            assert_token(started)
            await until_charging(rig, since)
    run(case())


def test_TC_E_05(tmp_path):
    """Local start transaction - Authorization first - Cable plugin timeout"""
    async def case():
        async with station(tmp_path) as rig:
            # The lab runs it with a start point before the cable, so that step 1 is seen.
            await points(rig, start="Authorized")
            await rig.configure({("TxCtrlr", "EVConnectionTimeOut"): str(EV_CONNECTION_TIMEOUT),
                                 ("AuthCacheCtrlr", "Enabled"): "false",
                                 ("AuthCtrlr", "LocalPreAuthorize"): "false"})
            since = Since(rig)
            await rig.authorized_local()
            started = await since.expect("TransactionEvent")
            assert started["triggerReason"] == "Authorized"
            await rig.advance(EV_CONNECTION_TIMEOUT - 1)
            assert [e["eventType"] for e in since("TransactionEvent")] == ["Started"]
            await rig.advance(1)
            event = await ended(since)                       # 1. TransactionEvent
            assert event["triggerReason"] == "EVConnectTimeout"
            assert event["transactionInfo"]["stoppedReason"] == "Timeout"  # TxStopPoint has Authorized
            # 3., 4. The EVSE is ready for the next session.
            since = Since(rig)
            await rig.authorized_local()
            await rig.ev_connected_pre_session()
            again = await since.expect("TransactionEvent", lambda p: p["eventType"] == "Started")
            assert again["transactionInfo"]["transactionId"] != \
                started["transactionInfo"]["transactionId"]
            await until_charging(rig, since)
    run(case())


def test_TC_E_05_default_points(tmp_path):
    """Local start transaction - Authorization first - Cable plugin timeout (the default
    TxStartPoint PowerPathClosed: step 1 is not sent, the authorization lapses, and the
    EVSE is ready for the next session)"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("TxCtrlr", "EVConnectionTimeOut"): str(EV_CONNECTION_TIMEOUT),
                                 ("AuthCacheCtrlr", "Enabled"): "false",
                                 ("AuthCtrlr", "LocalPreAuthorize"): "false"})
            since = Since(rig)
            await rig.authorized_local()
            await rig.advance(EV_CONNECTION_TIMEOUT, step=5)
            assert since("TransactionEvent") == []
            await rig.plug()                                 # too late: no energy
            await rig.advance(5)
            assert rig.snapshot()["offered_current_a"] is None
            await rig.unplug()
            since = Since(rig)                               # 3., 4.
            await rig.authorized_local()
            await rig.ev_connected_pre_session()
            started = await since.expect("TransactionEvent")
            assert_started(started)
            assert_token(started)
            await until_charging(rig, since)
    run(case())


def test_TC_E_04_started_on_plugin(tmp_path):
    """Local start transaction - Authorization first - Success (TxStartPoint EVConnected:
    EnergyTransferStarted part 1, CablePluggedIn and EVConnected, then Charging)"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="EVConnected")
            since = Since(rig)
            await rig.authorized_local()
            assert since("TransactionEvent") == []
            await rig.ev_connected_pre_session()
            started = await since.expect("TransactionEvent")
            assert_started(started)
            assert started["triggerReason"] == "CablePluggedIn"
            assert started["transactionInfo"]["chargingState"] == "EVConnected"
            assert_token(started)
            charging = await until_charging(rig, since)
            assert (charging["eventType"], charging["triggerReason"]) == (
                "Updated", "ChargingStateChanged")
    run(case())


def test_TC_E_38(tmp_path):
    """Local start transaction - EV not ready"""
    async def case():
        async with station(tmp_path) as rig:
            since = Since(rig)
            await rig.authorized_local()                     # State is Authorized
            rig.mock.plug(EVSE)                              # an EV not ready to charge
            rig.mock.suspend(EVSE)
            await rig.settle()
            await rig.advance(1)
            status = await since.expect("StatusNotification")
            assert status["connectorStatus"] == "Occupied"
            event = await since.expect("TransactionEvent", lambda p: (
                p["transactionInfo"].get("chargingState") == "SuspendedEV"))
            assert event["triggerReason"] == "ChargingStateChanged"
            assert not rig.snapshot()["contactor_closed"]
    run(case())


# ---- Stop transaction options (E06)


def test_TC_E_07(tmp_path):
    """Stop transaction options - PowerPathClosed - Local stop"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="PowerPathClosed")
            tx_id = await charging_session(rig)
            await rig.advance(TRANSACTION_DURATION, step=10)
            since = Since(rig)
            await rig.present()                              # StopAuthorized (local)
            stop = await since.expect("TransactionEvent")
            assert stop["triggerReason"] == "StopAuthorized"
            if "idToken" in stop:
                assert_token(stop)
            event = await ended(since)
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "ChargingStateChanged"
            assert event["transactionInfo"]["chargingState"] == "EVConnected"
            assert event["transactionInfo"].get("stoppedReason", "Local") == "Local"
            assert not rig.snapshot()["contactor_closed"]
    run(case())


def test_TC_E_35(tmp_path):
    """Stop transaction options - PowerPathClosed - Remote stop"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="PowerPathClosed")
            tx_id = await charging_session(rig)
            since = Since(rig)
            answer = await rig.call("RequestStopTransaction", {"transactionId": tx_id})
            assert answer["status"] == "Accepted"
            event = await since.expect("TransactionEvent")
            assert event["triggerReason"] == "RemoteStop"
            assert event["transactionInfo"]["stoppedReason"] == "Remote"
            assert event["eventType"] == "Ended"
            assert not rig.snapshot()["contactor_closed"]
    run(case())


def test_TC_E_37(tmp_path):
    """Stop transaction options - PowerPathClosed - EV side disconnect"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="PowerPathClosed")
            tx_id = await charging_session(rig)
            suspended = await energy_transfer_suspended(rig)
            assert suspended["eventType"] == "Updated"       # the power path stays
            since = Since(rig)
            await rig.unplug()                               # EV side
            event = await since.expect("TransactionEvent")
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            assert event["transactionInfo"]["stoppedReason"] == "EVDisconnected"
            assert event["eventType"] == "Ended"
    run(case())


def test_TC_E_08(tmp_path):
    """Stop transaction options - EnergyTransfer stopped - StopAuthorized"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="EnergyTransfer")
            tx_id = await charging_session(rig)
            await rig.advance(TRANSACTION_DURATION, step=10)
            since = Since(rig)
            await rig.present()                              # 1. StopAuthorized (local)
            stop = await since.expect("TransactionEvent")
            assert stop["triggerReason"] == "StopAuthorized"
            event = await ended(since)
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "ChargingStateChanged"
            assert event["transactionInfo"]["chargingState"] == "EVConnected"
            assert event["transactionInfo"].get("stoppedReason", "Local") == "Local"
    run(case())


def test_TC_E_22(tmp_path):
    """Stop transaction options - EnergyTransfer stopped - SuspendedEV"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="EnergyTransfer")
            tx_id = await charging_session(rig)
            since = Since(rig)
            rig.mock.suspend(EVSE)                           # the EV suspends
            await rig.settle()
            await rig.advance(1)
            event = await since.expect("TransactionEvent")
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "ChargingStateChanged"
            state = event["transactionInfo"]["chargingState"]
            assert state in ("EVConnected", "SuspendedEV")
            if state == "EVConnected":
                assert event["eventType"] == "Ended"
                assert event["transactionInfo"]["stoppedReason"] == "StoppedByEV"
            else:
                assert event["eventType"] == "Updated"
    run(case())


def test_TC_E_14(tmp_path):
    """Stop transaction options - EVDisconnected - Charging Station side"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="EVConnected")
            tx_id = await charging_session(rig)
            await rig.advance(TRANSACTION_DURATION, step=10)
            since = Since(rig)
            await rig.present()                              # StopAuthorized (local)
            stop = await since.expect("TransactionEvent")
            assert (stop["triggerReason"], stop["eventType"]) == ("StopAuthorized", "Updated")
            post = await since.expect("TransactionEvent")    # EVConnectedPostSession
            assert post["triggerReason"] == "ChargingStateChanged"
            assert post["transactionInfo"]["chargingState"] == "EVConnected"
            assert not rig.snapshot()["contactor_closed"]
            since = Since(rig)
            await rig.unplug()                               # Disconnect the EV and EVSE
            await status_available(since)
            event = await since.expect("TransactionEvent")
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            assert event["transactionInfo"].get("stoppedReason", "Local") in (
                "Local", "EVDisconnected")
            assert event["eventType"] == "Ended"
    run(case())


def test_TC_E_14_remote(tmp_path):
    """Stop transaction options - EVDisconnected - Charging Station side (StopAuthorized
    by RequestStopTransaction: stoppedReason Remote)"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="EVConnected")
            tx_id = await charging_session(rig)
            since = Since(rig)
            answer = await rig.call("RequestStopTransaction", {"transactionId": tx_id})
            assert answer["status"] == "Accepted"
            stop = await since.expect("TransactionEvent")
            assert (stop["triggerReason"], stop["eventType"]) == ("RemoteStop", "Updated")
            post = await since.expect("TransactionEvent")
            assert post["transactionInfo"]["chargingState"] == "EVConnected"
            since = Since(rig)
            await rig.unplug()
            await status_available(since)
            event = await since.expect("TransactionEvent")
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            assert event["transactionInfo"]["stoppedReason"] == "Remote"
            assert event["eventType"] == "Ended"
    run(case())


def test_TC_E_20(tmp_path):
    """Stop transaction options - EVDisconnected - EV side (able to charge IEC 61851-1 EV)"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="EVConnected")
            tx_id = await charging_session(rig)
            await energy_transfer_suspended(rig)
            since = Since(rig)
            await rig.unplug()                               # EV side
            event = await since.expect("TransactionEvent")
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            assert event["transactionInfo"]["stoppedReason"] == "EVDisconnected"
            assert event["eventType"] == "Ended"
    run(case())


def test_TC_E_54(tmp_path):
    """Stop transaction options - EVDisconnected - EV side (not able to charge IEC 61851-1
    EV): run on a DC EVSE (the errata's "DC and/or ISO 15118 support")"""
    async def case():
        async with dc_station(tmp_path) as rig:
            await points(rig, stop="EVConnected")
            tx_id = await charging_session(rig)
            await energy_transfer_suspended(rig)
            since = Since(rig)
            await rig.unplug()
            event = await since.expect("TransactionEvent")
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            assert event["transactionInfo"]["stoppedReason"] in ("StoppedByEV", "EVDisconnected")
            assert event["eventType"] == "Ended"
            await rig.advance(5)
            assert not rig.snapshot()["contactor_closed"]
    run(case())


def test_TC_E_15(tmp_path):
    """Stop transaction options - StopAuthorized - Local"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="Authorized")
            tx_id = await charging_session(rig)
            await rig.advance(TRANSACTION_DURATION, step=10)
            since = Since(rig)
            await rig.present()
            event = await since.expect("TransactionEvent")
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "StopAuthorized"
            assert event["transactionInfo"]["stoppedReason"] == "Local"
            assert event["eventType"] == "Ended"
            assert not rig.snapshot()["contactor_closed"]
    run(case())


def test_TC_E_21(tmp_path):
    """Stop transaction options - StopAuthorized - Remote"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="Authorized")
            tx_id = await charging_session(rig)
            since = Since(rig)
            answer = await rig.call("RequestStopTransaction", {"transactionId": tx_id})
            assert answer["status"] == "Accepted"
            event = await since.expect("TransactionEvent")
            assert event["triggerReason"] == "RemoteStop"
            assert event["transactionInfo"]["stoppedReason"] == "Remote"
            assert event["eventType"] == "Ended"
    run(case())


def test_TC_E_17(tmp_path):
    """Stop transaction options - Deauthorized - EV side disconnect"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="Authorized")
            await rig.configure({("OCPPCommCtrlr", "UnlockOnEVSideDisconnect"): "false"})
            assert await rig.get_variable("TxCtrlr", "StopTxOnEVSideDisconnect") == "true"
            tx_id = await charging_session(rig)
            await energy_transfer_suspended(rig)
            since = Since(rig)
            await rig.unplug()                               # EV side
            event = await since.expect("TransactionEvent")
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            assert event["transactionInfo"]["stoppedReason"] == "EVDisconnected"
            assert event["eventType"] == "Ended"
            assert rig.snapshot()["locked"] is True          # kept locked (detachable cable)
            await rig.present()                              # the token that started it
            assert rig.snapshot()["locked"] is False
            await status_available(since)                    # the cable is out (step 3)
    run(case())


def test_TC_E_19(tmp_path):
    """Stop transaction options - ParkingBayUnoccupied"""
    pytest.skip("not applicable: no parking-bay sensor; TxStopPoint does not offer "
                "ParkingBayOccupancy (C-10.5)")


def test_TC_E_39(tmp_path):
    """Stop transaction options - Deauthorized - timeout (Authorized locally; TxStartPoint
    Authorized, so that step 1 is sent)"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="Authorized", stop="Authorized")
            await rig.configure({("TxCtrlr", "EVConnectionTimeOut"): str(EV_CONNECTION_TIMEOUT)})
            since = Since(rig)
            await rig.authorized_local()
            started = await since.expect("TransactionEvent")
            assert started["triggerReason"] == "Authorized"
            await rig.advance(EV_CONNECTION_TIMEOUT, step=5)
            event = await since.expect("TransactionEvent", lambda p: p["seqNo"] > 0)
            assert event["triggerReason"] == "EVConnectTimeout"
            assert event["eventType"] == "Ended"
            assert event["transactionInfo"]["stoppedReason"] == "Timeout"
            # The errata's step 3: plugged in afterwards, the EV does not charge.
            since = Since(rig)
            await rig.plug()
            await rig.advance(MESSAGE_TIMEOUT, step=5)
            for late in since("TransactionEvent"):
                assert late["triggerReason"] == "CablePluggedIn"
                assert late["transactionInfo"].get("chargingState") != "Charging"
            snap = rig.snapshot()
            assert not snap["contactor_closed"] and snap["power_w"] == 0
    run(case())


def test_TC_E_39_remote(tmp_path):
    """Stop transaction options - Deauthorized - timeout (Authorized by
    RequestStartTransaction, errata 6.1.16)"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="Authorized", stop="Authorized")
            await rig.configure({("TxCtrlr", "EVConnectionTimeOut"): str(EV_CONNECTION_TIMEOUT)})
            since = Since(rig)
            assert (await rig.authorized_remote())["status"] == "Accepted"
            started = await since.expect("TransactionEvent")
            assert started["triggerReason"] == "RemoteStart"
            await rig.advance(EV_CONNECTION_TIMEOUT, step=5)
            event = await ended(since)
            assert event["triggerReason"] == "EVConnectTimeout"
            assert event["transactionInfo"]["stoppedReason"] == "Timeout"
    run(case())


def test_TC_E_39_default_points(tmp_path):
    """Stop transaction options - Deauthorized - timeout (the default TxStartPoint
    PowerPathClosed: no transaction started, so none to end; the late EV gets no energy)"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("TxCtrlr", "EVConnectionTimeOut"): str(EV_CONNECTION_TIMEOUT)})
            since = Since(rig)
            await rig.authorized_local()
            await rig.advance(EV_CONNECTION_TIMEOUT, step=5)
            await rig.plug()
            await rig.advance(MESSAGE_TIMEOUT, step=5)
            assert since("TransactionEvent") == []
            snap = rig.snapshot()
            assert not snap["contactor_closed"] and snap["offered_current_a"] is None
    run(case())


# ---- Disconnect cable on EV side (E09, E10)


def test_TC_E_24(tmp_path):
    """Disconnect cable on EV-side - Deauthorize transaction - UnlockOnEVSideDisconnect is
    true"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("OCPPCommCtrlr", "UnlockOnEVSideDisconnect"): "true"})
            await charging_session(rig)
            await energy_transfer_suspended(rig)
            since = Since(rig)
            await rig.unplug()                               # EV side
            event = await since.expect("TransactionEvent")
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            assert rig.snapshot()["locked"] is False         # unlocked at once
            await status_available(since)                    # 3. (cable out)
    run(case())


def test_TC_E_25(tmp_path):
    """Disconnect cable on EV-side - Deauthorize transaction - UnlockOnEVSideDisconnect is
    false"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("OCPPCommCtrlr", "UnlockOnEVSideDisconnect"): "false"})
            await charging_session(rig)
            await energy_transfer_suspended(rig)
            since = Since(rig)
            await rig.unplug()                               # EV side
            event = await since.expect("TransactionEvent")
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            await rig.advance(MESSAGE_TIMEOUT, step=5)
            assert rig.snapshot()["locked"] is True          # the cable stays locked
            await rig.present()                              # the token that started it
            assert rig.snapshot()["locked"] is False
            assert [e["eventType"] for e in since("TransactionEvent")] == ["Ended"]
            await status_available(since)                    # 3. (cable out)
    run(case())


def test_TC_E_26(tmp_path):
    """Disconnect cable on EV-side - Suspend transaction"""
    pytest.skip("not applicable: StopTxOnEVSideDisconnect is ReadOnly true (an unplugged "
                "EV ends the transaction; C-06.1 not supported)")


def test_TC_E_27(tmp_path):
    """Disconnect cable on EV-side - Suspend transaction - Fixed cable connection timeout"""
    pytest.skip("not applicable: no fixed cable (HFS-2) and StopTxOnEVSideDisconnect is "
                "ReadOnly true (C-06.1 not supported)")


# ---- beyond Part 6's steps: a fault is not a departure (E06, issue 16 item 5)


def test_fault_while_plugged_is_abnormal_not_a_departure(tmp_path):
    """A hardware fault with the EV still plugged in holds the session (SuspendedEVSE,
    triggerReason AbnormalCondition, the connector Faulted) and it charges on once the
    fault clears: no EVDeparted, no EVDisconnected, one transaction billed throughout."""
    async def case():
        async with station(tmp_path) as rig:
            tx_id = await charging_session(rig)
            since = Since(rig)
            rig.mock.fault(EVSE)
            await rig.settle()
            await rig.advance(1)
            held = await since.expect("TransactionEvent")
            assert held["transactionInfo"]["transactionId"] == tx_id
            assert held["eventType"] == "Updated"
            assert held["triggerReason"] == "AbnormalCondition"
            assert held["transactionInfo"]["chargingState"] == "SuspendedEVSE"
            status = await since.expect("StatusNotification")
            assert status["connectorStatus"] == "Faulted"
            assert not rig.snapshot()["contactor_closed"]
            rig.mock.clear(EVSE)
            await rig.settle()
            await rig.advance(1)
            again = await since.expect("TransactionEvent", lambda p: (
                p["transactionInfo"].get("chargingState") == "Charging"))
            assert again["transactionInfo"]["transactionId"] == tx_id
            assert all(e["eventType"] != "Ended" for e in since("TransactionEvent"))
    run(case())


def test_fault_with_power_path_stop_point_ends_abnormal(tmp_path):
    """With PowerPathClosed a stop point, the fault that opens it ends the transaction as
    the station's doing (AbnormalCondition), with its end register for billing."""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="PowerPathClosed")
            tx_id = await charging_session(rig)
            await rig.advance(TRANSACTION_DURATION, step=10)
            since = Since(rig)
            rig.mock.fault(EVSE)
            await rig.settle()
            event = await ended(since)
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "AbnormalCondition"
            assert event["transactionInfo"]["stoppedReason"] == "Other"
            end = [v for m in event["meterValue"] for v in m["sampledValue"]
                   if v.get("context") == "Transaction.End"]
            assert end and end[0]["value"] > 0
    run(case())


def test_an_authorization_leaves_with_its_ev(tmp_path):
    """TxStartPoint EnergyTransfer: an authorized EV that never drew and was unplugged
    takes its authorization with it; the next EV plugged in gets no energy without one."""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="EnergyTransfer")
            await rig.authorized_local()
            rig.mock.plug(EVSE)
            rig.mock.suspend(EVSE)                           # plugged, never draws
            await rig.settle()
            await rig.advance(5)
            await rig.unplug()
            await rig.advance(EV_CONNECTION_TIMEOUT)
            since = Since(rig)
            await rig.plug()                                 # another EV, ready to draw
            await rig.advance(5)
            snap = rig.snapshot()
            assert snap["offered_current_a"] is None and not snap["contactor_closed"]
            assert since("TransactionEvent") == []
    run(case())
