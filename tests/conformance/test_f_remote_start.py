"""Part 6, F Remote control: the remote start cases (F01, F02) of Core (Part 5, 4.2),
with the 2023-12 errata.

The station: AuthCtrlr.AuthorizeRemoteStart is ReadWrite (C-48.1 and C-48.2), no cable
lock that keeps a cable out before authorization (AQ-2 "no", see test_e_transactions), and
TxStartPoint ReadWrite with Authorized among its values (C-09.2: TC_F_04 applies, errata
5.1.7). Each case runs with the station's default start point (PowerPathClosed) unless its
preparations name one; TC_F_01 also runs with TxStartPoint EVConnected, where the plug-in
has started the transaction that RequestStartTransaction then authorizes.
"""

from __future__ import annotations

from tests.conformance.rig import EVSE, VALID_TOKEN, Rig, run, station
from tests.conformance.test_e_transactions import (EV_CONNECTION_TIMEOUT, Since, points,
                                                   until_charging)

REMOTE_START_ID = 42


async def request_start(rig: Rig, remote_start_id: int = REMOTE_START_ID) -> dict:
    """Authorized, main B, steps 1-2: RequestStartTransaction for the configured EVSE."""
    answer = await rig.call("RequestStartTransaction", {
        "idToken": VALID_TOKEN, "evseId": EVSE, "remoteStartId": remote_start_id})
    await rig.settle()
    return answer


def assert_remote_start(event: dict, remote_start_id: int = REMOTE_START_ID) -> None:
    """Authorized, main B, step 7: triggerReason RemoteStart, remoteStartId, idToken."""
    assert event["triggerReason"] == "RemoteStart"
    assert event["transactionInfo"]["remoteStartId"] == remote_start_id
    assert event["idToken"]["idToken"] == VALID_TOKEN["idToken"]
    assert event["idToken"]["type"] == VALID_TOKEN["type"]


async def authorize_remote_start(rig: Rig, value: bool) -> None:
    await rig.configure({("AuthCtrlr", "AuthorizeRemoteStart"): "true" if value else "false"})


def test_TC_F_01(tmp_path):
    """Remote start transaction - Cable plugin first"""
    async def case():
        async with station(tmp_path) as rig:
            await authorize_remote_start(rig, True)
            since = Since(rig)
            status = await rig.ev_connected_pre_session()    # State is EVConnectedPreSession
            assert status["connectorStatus"] == "Occupied"
            assert since("TransactionEvent") == []           # TxStartPoint PowerPathClosed
            answer = await request_start(rig)                # 1. Authorized (remote)
            assert answer["status"] == "Accepted"
            assert "transactionId" not in answer             # none had started
            authorize = await since.expect("Authorize")
            assert authorize["idToken"] == VALID_TOKEN
            event = await since.expect("TransactionEvent")
            assert event["eventType"] == "Started"           # PowerPathClosed, from EVConnectedPreSession
            assert_remote_start(event)
            await until_charging(rig, since)                 # 2. EnergyTransferStarted
    run(case())


def test_TC_F_01_started_on_plugin(tmp_path):
    """Remote start transaction - Cable plugin first (TxStartPoint EVConnected: the
    transaction started at the plug-in; RequestStartTransaction authorizes it)"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="EVConnected")
            await authorize_remote_start(rig, True)
            since = Since(rig)
            await rig.ev_connected_pre_session()
            started = await since.expect("TransactionEvent")
            assert (started["eventType"], started["triggerReason"]) == ("Started",
                                                                         "CablePluggedIn")
            assert started["transactionInfo"]["chargingState"] == "EVConnected"
            tx_id = started["transactionInfo"]["transactionId"]
            answer = await request_start(rig)
            assert answer["status"] == "Accepted"
            assert answer["transactionId"] == tx_id
            await since.expect("Authorize")
            event = await since.expect("TransactionEvent", lambda p: p["seqNo"] > 0)
            assert event["eventType"] == "Updated"
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert_remote_start(event)
            charging = await until_charging(rig, since)
            assert charging["transactionInfo"]["transactionId"] == tx_id
    run(case())


def test_TC_F_02(tmp_path):
    """Remote start transaction - Remote start first - AuthorizeRemoteStart is true"""
    async def case():
        async with station(tmp_path) as rig:
            await authorize_remote_start(rig, True)
            since = Since(rig)
            answer = await request_start(rig)                # 1. Authorized (remote)
            assert answer["status"] == "Accepted"
            authorize = await since.expect("Authorize")      # step 3
            assert authorize["idToken"] == VALID_TOKEN
            assert since("TransactionEvent") == []           # not started before the cable
            status = await rig.ev_connected_pre_session()    # 2. EnergyTransferStarted
            assert status["connectorStatus"] == "Occupied"
            event = await since.expect("TransactionEvent")
            assert event["eventType"] == "Started"
            assert_remote_start(event)
            await until_charging(rig, since)
    run(case())


def test_TC_F_03(tmp_path):
    """Remote start transaction - Remote start first - AuthorizeRemoteStart is false"""
    async def case():
        async with station(tmp_path) as rig:
            await authorize_remote_start(rig, False)
            since = Since(rig)
            answer = await request_start(rig)
            assert answer["status"] == "Accepted"
            await rig.ev_connected_pre_session()
            event = await since.expect("TransactionEvent")
            assert event["eventType"] == "Started"
            assert_remote_start(event)
            await until_charging(rig, since)
            assert since("Authorize") == []                  # no AuthorizeRequest
    run(case())


def test_TC_F_04(tmp_path):
    """Remote start transaction - Remote start first - Cable plugin timeout"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="Authorized")
            await rig.configure({("TxCtrlr", "EVConnectionTimeOut"): str(EV_CONNECTION_TIMEOUT)})
            since = Since(rig)
            assert (await request_start(rig))["status"] == "Accepted"   # Authorized (remote)
            started = await since.expect("TransactionEvent")
            assert started["eventType"] == "Started"
            assert_remote_start(started)
            await rig.advance(EV_CONNECTION_TIMEOUT - 1)
            assert len(since("TransactionEvent")) == 1
            await rig.advance(1)
            event = await since.expect("TransactionEvent", lambda p: p["seqNo"] > 0)
            assert event["triggerReason"] == "EVConnectTimeout"
            assert event["eventType"] == "Ended"
            assert event["transactionInfo"]["stoppedReason"] == "Timeout"
            assert rig.snapshot()["offered_current_a"] is None
            # 3. Authorized (remote) again: the EVSE is ready for another session.
            since = Since(rig)
            assert (await request_start(rig, 43))["status"] == "Accepted"
            again = await since.expect("TransactionEvent")
            assert again["eventType"] == "Started"
            assert_remote_start(again, 43)
    run(case())


def test_TC_F_02_started_on_plugin(tmp_path):
    """Remote start transaction - Remote start first - AuthorizeRemoteStart is true
    (TxStartPoint EVConnected: the plug-in starts the transaction, EnergyTransferStarted
    part 1: CablePluggedIn, EVConnected; it carries the remoteStartId)"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="EVConnected")
            await authorize_remote_start(rig, True)
            since = Since(rig)
            assert (await request_start(rig))["status"] == "Accepted"
            await since.expect("Authorize")
            assert since("TransactionEvent") == []
            await rig.ev_connected_pre_session()
            started = await since.expect("TransactionEvent")
            assert (started["eventType"], started["triggerReason"]) == ("Started",
                                                                         "CablePluggedIn")
            assert started["transactionInfo"]["chargingState"] == "EVConnected"
            assert started["transactionInfo"]["remoteStartId"] == REMOTE_START_ID
            assert started["idToken"] == VALID_TOKEN
            await until_charging(rig, since)
    run(case())
