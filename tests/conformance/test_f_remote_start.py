"""Part 6, F Remote control: the remote start cases (F01, F02) of Core (Part 5, 4.2),
with the 2023-12 errata.

The station: AuthCtrlr.AuthorizeRemoteStart is ReadWrite, default false (C-48.1 and
C-48.2), no cable lock that keeps a cable out before authorization (AQ-2 "no", see
test_e_transactions), and TxStartPoint ReadWrite with Authorized among its values
(C-09.2: TC_F_04 applies, errata 5.1.7 / 6.1.21). Each case runs with the station's
default start point (PowerPathClosed) unless its preparations name one; the cases also
run with the other start points a lab may find configured (EVConnected: the plug-in has
started the transaction that RequestStartTransaction then authorizes; Authorized: the
remote start starts it), since the reusable states Authorized (main B) and
EnergyTransferStarted validate each way differently.

Every case applies its Configuration State as the OCTT does (AuthCtrlr.Enabled true,
DisableRemoteAuthorization false: both implemented and ReadWrite here) and asserts the
tool validations of the reusable states it executes (tables 236, 237 main B, 239).
"""

from __future__ import annotations

from tests.conformance.fj_steps import EV_CONNECTION_TIMEOUT, Since, points, station
from tests.conformance.rig import CONNECTOR, EVSE, VALID_TOKEN, Rig, run

REMOTE_START_ID = 42


async def preparations(rig: Rig, authorize_remote_start: bool | None = None) -> None:
    """The F cases' Configuration State: AuthCtrlr.AuthEnabled true, AuthCtrlr.
    DisableRemoteAuthorization false, and AuthorizeRemoteStart where the case names it
    (None: the station's default is left, as TC_F_01 and TC_F_04 do)."""
    settings = {("AuthCtrlr", "Enabled"): "true",
                ("AuthCtrlr", "DisableRemoteAuthorization"): "false"}
    if authorize_remote_start is not None:
        settings[("AuthCtrlr", "AuthorizeRemoteStart")] = str(authorize_remote_start).lower()
    await rig.configure(settings)


async def authorize_remote_start(rig: Rig) -> bool:
    return await rig.get_variable("AuthCtrlr", "AuthorizeRemoteStart") == "true"


async def request_start(rig: Rig, remote_start_id: int = REMOTE_START_ID) -> dict:
    """Authorized, main B, steps 1-2: RequestStartTransaction for the configured EVSE."""
    answer = await rig.call("RequestStartTransaction", {
        "idToken": VALID_TOKEN, "evseId": EVSE, "remoteStartId": remote_start_id})
    await rig.settle()
    return answer


async def assert_authorize_step(rig: Rig, since: Since) -> None:
    """Authorized, main B, step 3: an AuthorizeRequest for the token exactly when
    AuthorizeRemoteStart is true (the token is not cached: nothing was presented), and
    none otherwise (F01.FR.02 / TC_F_03)."""
    if await authorize_remote_start(rig):
        assert [a["idToken"] for a in since("Authorize")] == [VALID_TOKEN]
    else:
        assert since("Authorize") == []


def assert_remote_start(event: dict, event_type: str,
                        remote_start_id: int = REMOTE_START_ID) -> None:
    """Authorized, main B, step 7 (its validation says "Step 5"): eventType,
    triggerReason RemoteStart, the remoteStartId of the request, the idToken."""
    assert event["eventType"] == event_type
    assert event["triggerReason"] == "RemoteStart"
    assert event["transactionInfo"]["remoteStartId"] == remote_start_id
    assert event["idToken"]["idToken"] == VALID_TOKEN["idToken"]
    assert event["idToken"]["type"] == VALID_TOKEN["type"]


def assert_on_evse(event: dict) -> None:
    """The Started event names the configured EVSE and connector (table 236 step 3)."""
    assert event["evse"] == {"id": EVSE, "connectorId": CONNECTOR}


def assert_occupied(status: dict) -> None:
    """EVConnectedPreSession / EnergyTransferStarted step 1."""
    assert status["connectorStatus"] == "Occupied"
    assert (status["evseId"], status["connectorId"]) == (EVSE, CONNECTOR)


async def energy_flows(rig: Rig, since: Since, tx_id: str) -> None:
    """EnergyTransferStarted, part 2, step 9: ChargingStateChanged to Charging, of this
    transaction, and the EV draws energy."""
    await rig.advance(1)
    event = await since.expect("TransactionEvent", lambda p: (
        p["transactionInfo"].get("chargingState") == "Charging"))
    assert event["eventType"] == "Updated"
    assert event["triggerReason"] == "ChargingStateChanged"
    assert event["transactionInfo"]["transactionId"] == tx_id
    snap = rig.snapshot()
    assert snap["contactor_closed"] and snap["power_w"] > 0, snap


def test_TC_F_01(tmp_path):
    """Remote start transaction - Cable plugin first"""
    async def case():
        async with station(tmp_path) as rig:
            await preparations(rig)                           # AuthorizeRemoteStart: default
            assert await authorize_remote_start(rig) is False
            since = Since(rig)
            assert_occupied(await rig.ev_connected_pre_session())  # EVConnectedPreSession
            assert since("TransactionEvent") == []            # TxStartPoint PowerPathClosed
            answer = await request_start(rig)                 # 1. Authorized (remote)
            assert answer["status"] == "Accepted"
            assert "transactionId" not in answer              # none had started
            event = await since.expect("TransactionEvent")
            # Started: PowerPathClosed and State was EVConnectedPreSession (step 7).
            assert_remote_start(event, "Started")
            assert_on_evse(event)
            # The power path closed: EnergyTransferStarted's SuspendedEVSE (step 7) until
            # the EV draws.
            assert event["transactionInfo"]["chargingState"] == "SuspendedEVSE"
            await assert_authorize_step(rig, since)           # step 3: none (false)
            # The connector was Occupied already: no second StatusNotification.
            assert [s["connectorStatus"] for s in since("StatusNotification")] == ["Occupied"]
            await energy_flows(rig, since, event["transactionInfo"]["transactionId"])
    run(case())


def test_TC_F_01_authorize_remote_start(tmp_path):
    """Remote start transaction - Cable plugin first (AuthorizeRemoteStart true: the
    AuthorizeRequest of Authorized main B step 3 comes before the Started event)"""
    async def case():
        async with station(tmp_path) as rig:
            await preparations(rig, authorize_remote_start=True)
            since = Since(rig)
            await rig.ev_connected_pre_session()
            answer = await request_start(rig)
            assert answer["status"] == "Accepted"
            authorize = await since.expect("Authorize")
            assert authorize["idToken"] == VALID_TOKEN
            event = await since.expect("TransactionEvent")
            assert_remote_start(event, "Started")
            assert_on_evse(event)
            await assert_authorize_step(rig, since)
            await energy_flows(rig, since, event["transactionInfo"]["transactionId"])
    run(case())


def test_TC_F_01_started_on_plugin(tmp_path):
    """Remote start transaction - Cable plugin first (TxStartPoint EVConnected: the
    transaction started at the plug-in; RequestStartTransaction authorizes it)"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="EVConnected")
            await preparations(rig, authorize_remote_start=True)
            since = Since(rig)
            assert_occupied(await rig.ev_connected_pre_session())
            started = await since.expect("TransactionEvent")   # table 236 step 3
            assert started["eventType"] == "Started"
            assert started["triggerReason"] == "CablePluggedIn"
            assert started["transactionInfo"]["chargingState"] == "EVConnected"
            assert_on_evse(started)
            assert "idToken" not in started                     # nobody authorized yet
            tx_id = started["transactionInfo"]["transactionId"]
            answer = await request_start(rig)
            assert answer["status"] == "Accepted"
            assert answer["transactionId"] == tx_id             # step 2: already started
            await assert_authorize_step(rig, since)
            event = await since.expect("TransactionEvent", lambda p: p["seqNo"] > 0)
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert_remote_start(event, "Updated")               # step 7: Updated
            await energy_flows(rig, since, tx_id)
            # One transaction: the remote start did not open a second one.
            assert {e["transactionInfo"]["transactionId"]
                    for e in since("TransactionEvent")} == {tx_id}
    run(case())


def test_TC_F_02(tmp_path):
    """Remote start transaction - Remote start first - AuthorizeRemoteStart is true"""
    async def case():
        async with station(tmp_path) as rig:
            await preparations(rig, authorize_remote_start=True)
            since = Since(rig)
            answer = await request_start(rig)                 # 1. Authorized (remote)
            assert answer["status"] == "Accepted"
            authorize = await since.expect("Authorize")       # step 3
            assert authorize["idToken"] == VALID_TOKEN
            assert since("TransactionEvent") == []            # not started before the cable
            assert_occupied(await rig.ev_connected_pre_session())   # 2. EnergyTransferStarted
            event = await since.expect("TransactionEvent")
            assert_remote_start(event, "Started")
            assert_on_evse(event)
            assert event["transactionInfo"]["chargingState"] == "SuspendedEVSE"
            await assert_authorize_step(rig, since)           # one, not one per step
            await energy_flows(rig, since, event["transactionInfo"]["transactionId"])
    run(case())


def test_TC_F_02_started_on_plugin(tmp_path):
    """Remote start transaction - Remote start first - AuthorizeRemoteStart is true
    (TxStartPoint EVConnected: the plug-in starts the transaction, EnergyTransferStarted
    part 1: CablePluggedIn, EVConnected; it carries the remoteStartId)"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="EVConnected")
            await preparations(rig, authorize_remote_start=True)
            since = Since(rig)
            assert (await request_start(rig))["status"] == "Accepted"
            assert (await since.expect("Authorize"))["idToken"] == VALID_TOKEN
            assert since("TransactionEvent") == []
            assert_occupied(await rig.ev_connected_pre_session())
            started = await since.expect("TransactionEvent")
            assert started["eventType"] == "Started"
            assert started["triggerReason"] == "CablePluggedIn"
            assert started["transactionInfo"]["chargingState"] == "EVConnected"
            assert started["transactionInfo"]["remoteStartId"] == REMOTE_START_ID
            assert started["idToken"] == VALID_TOKEN
            assert_on_evse(started)
            await energy_flows(rig, since, started["transactionInfo"]["transactionId"])
    run(case())


def test_TC_F_02_started_on_authorized(tmp_path):
    """Remote start transaction - Remote start first - AuthorizeRemoteStart is true
    (TxStartPoint Authorized: Authorized main B step 7 is the Started event, then
    EnergyTransferStarted part 1 step 3: Updated CablePluggedIn, EVConnected)"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="Authorized")
            await preparations(rig, authorize_remote_start=True)
            since = Since(rig)
            assert (await request_start(rig))["status"] == "Accepted"
            assert (await since.expect("Authorize"))["idToken"] == VALID_TOKEN
            started = await since.expect("TransactionEvent")
            assert_remote_start(started, "Started")
            assert_on_evse(started)
            tx_id = started["transactionInfo"]["transactionId"]
            assert_occupied(await rig.ev_connected_pre_session())
            plugged = await since.expect("TransactionEvent", lambda p: p["seqNo"] > 0)
            assert plugged["eventType"] == "Updated"
            assert plugged["triggerReason"] == "CablePluggedIn"
            assert plugged["transactionInfo"]["chargingState"] == "EVConnected"
            assert plugged["transactionInfo"]["transactionId"] == tx_id
            await energy_flows(rig, since, tx_id)
    run(case())


def test_TC_F_03(tmp_path):
    """Remote start transaction - Remote start first - AuthorizeRemoteStart is false"""
    async def case():
        async with station(tmp_path) as rig:
            await preparations(rig, authorize_remote_start=False)
            since = Since(rig)
            answer = await request_start(rig)
            assert answer["status"] == "Accepted"
            assert since("TransactionEvent") == []
            assert_occupied(await rig.ev_connected_pre_session())
            event = await since.expect("TransactionEvent")
            assert_remote_start(event, "Started")
            assert_on_evse(event)
            await energy_flows(rig, since, event["transactionInfo"]["transactionId"])
            assert since("Authorize") == []                   # no AuthorizeRequest at all
    run(case())


def test_TC_F_04(tmp_path):
    """Remote start transaction - Remote start first - Cable plugin timeout"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="Authorized")
            await rig.configure({("TxCtrlr", "EVConnectionTimeOut"): str(EV_CONNECTION_TIMEOUT)})
            await preparations(rig)
            since = Since(rig)
            assert (await request_start(rig))["status"] == "Accepted"   # Authorized (remote)
            await assert_authorize_step(rig, since)
            started = await since.expect("TransactionEvent")
            assert_remote_start(started, "Started")
            assert_on_evse(started)
            tx_id = started["transactionInfo"]["transactionId"]
            await rig.advance(EV_CONNECTION_TIMEOUT - 1)
            assert len(since("TransactionEvent")) == 1        # not before the timeout
            await rig.advance(1)
            event = await since.expect("TransactionEvent", lambda p: p["seqNo"] > 0)
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "EVConnectTimeout"      # step 1
            assert event["eventType"] == "Ended"
            assert event["transactionInfo"]["stoppedReason"] == "Timeout"   # E03.FR.05
            assert rig.snapshot()["offered_current_a"] is None
            # Optionally a StatusNotification Available: never anything else.
            assert all(s["connectorStatus"] == "Available" for s in since("StatusNotification"))
            # 3. Authorized (remote) again: the EVSE is ready for another session.
            since = Since(rig)
            assert (await request_start(rig, 43))["status"] == "Accepted"
            await assert_authorize_step(rig, since)
            again = await since.expect("TransactionEvent")
            assert_remote_start(again, "Started", 43)
            assert_on_evse(again)
            assert again["transactionInfo"]["transactionId"] != tx_id
    run(case())
