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

Every step's TransactionEvent is taken as the station's NEXT one (`next_event`), as the
OCTT reads them, not the first one that happens to match: an extra event in between
fails the case. Periodic and clock-aligned meter values are the exception (they come
when they are due, whatever the step). Part 6's general tool rules (first event Started,
seqNo without gaps, nothing after Ended) are checked at the end of every case
(tx_rules.py).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

from agent.clock import ManualClock
from agent.config import load_config
from agent.demo.csms import Csms
from tests.conformance.rig import CONNECTOR, EVSE, STATION, VALID_TOKEN, Rig, run
from tests.conformance.tx_rules import Since, check_transaction_events, points, station
from tests.harness import PASSWORD, write_config

#: <Configured ev_connection_timeout> (TxCtrlr.EVConnectionTimeOut).
EV_CONNECTION_TIMEOUT = 30
#: <Configured Transaction Duration>: how long the OCTT lets a session run (longer than
#: the default EVConnectionTimeOut, which must not end a session whose EV was plugged in).
TRANSACTION_DURATION = 180
#: <Configured message timeout>: how long the OCTT waits for what must not come.
MESSAGE_TIMEOUT = 30
#: The preparations most cases list: "AuthCtrlr.AuthEnabled is true (If implemented AND
#: ReadWrite)", "AuthCtrlr.DisableRemoteAuthorization is false (If implemented)"; both
#: are ReadWrite here, so the lab sets them.
AUTH_PREPARATION = {("AuthCtrlr", "Enabled"): "true",
                    ("AuthCtrlr", "DisableRemoteAuthorization"): "false"}
#: Meter values sent when due, whatever step a case is at.
SAMPLES = ("MeterValuePeriodic", "MeterValueClock")


# ---- the OCTT's view


async def next_event(since: Since) -> dict:
    """The station's next TransactionEvent (not yet taken by a step of this case), meter
    values that fell due aside."""
    return await since.expect("TransactionEvent", lambda p: p["triggerReason"] not in SAMPLES)


def events_of(since: Since) -> list[dict]:
    """This step's TransactionEvents so far, meter values that fell due aside."""
    return [e for e in since("TransactionEvent") if e["triggerReason"] not in SAMPLES]


async def authorize_step(since: Since) -> None:
    """Authorized, step 1 (main A) / step 3 (main B): the AuthorizeRequest."""
    authorize = await since.expect("Authorize")
    assert authorize["idToken"]["idToken"] == VALID_TOKEN["idToken"]
    assert authorize["idToken"]["type"] == VALID_TOKEN["type"]


async def until_charging(rig: Rig, since: Since) -> dict:
    """EnergyTransferStarted, part 2 step 9: the EV draws energy; returns that event."""
    await rig.advance(1)
    event = await next_event(since)
    assert event["eventType"] == "Updated"
    assert event["triggerReason"] == "ChargingStateChanged"
    assert event["transactionInfo"]["chargingState"] == "Charging"
    snap = rig.snapshot()
    assert snap["contactor_closed"] and snap["power_w"] > 0, snap
    return event


async def charging_session(rig: Rig) -> str:
    """EnergyTransferStarted from idle with the default TxStartPoint PowerPathClosed,
    its validations included: Authorized (local), part 1 (the plug-in: Occupied, no
    event yet) and part 2 (step 7: Started, ChargingStateChanged, SuspendedEVSE; step 9:
    Charging); returns the transaction id."""
    since = Since(rig)
    await rig.authorized_local()
    await authorize_step(since)
    assert events_of(since) == []
    occupied = await rig.ev_connected_pre_session()
    assert (occupied["evseId"], occupied["connectorId"]) == (EVSE, CONNECTOR)
    started = await next_event(since)
    assert_started(started)
    assert_token(started)
    assert started["triggerReason"] == "ChargingStateChanged"
    assert started["transactionInfo"]["chargingState"] == "SuspendedEVSE"
    await until_charging(rig, since)
    return started["transactionInfo"]["transactionId"]


async def energy_transfer_suspended(rig: Rig) -> dict:
    """EnergyTransferSuspended (with the errata's 6.1.32): the EV stops drawing; its next
    event says so."""
    await rig.advance(TRANSACTION_DURATION, step=10)
    since = Since(rig)
    rig.mock.suspend(EVSE)
    await rig.settle()
    await rig.advance(1)
    event = await next_event(since)
    state = event["transactionInfo"].get("chargingState")
    assert state in ("EVConnected", "SuspendedEV"), event
    if state == "SuspendedEV":
        assert event["triggerReason"] == "ChargingStateChanged"
    assert event["eventType"] in ("Ended", "Updated")
    if event["eventType"] == "Ended":
        assert event["transactionInfo"]["stoppedReason"] == "StoppedByEV"
    assert rig.snapshot()["power_w"] == 0
    return event


def assert_started(event: dict) -> None:
    """eventType Started; evse must be provided, evse.connectorId must be provided."""
    assert event["eventType"] == "Started"
    assert event["evse"]["id"] == EVSE
    assert event["evse"]["connectorId"] == CONNECTOR


def assert_token(event: dict) -> None:
    assert event["idToken"]["idToken"] == VALID_TOKEN["idToken"]
    assert event["idToken"]["type"] == VALID_TOKEN["type"]


def assert_stop_authorized(event: dict, tx_id: str) -> None:
    """StopAuthorized (main A) step 1: triggerReason StopAuthorized; idToken omitted or
    the token that started it."""
    assert event["transactionInfo"]["transactionId"] == tx_id
    assert event["triggerReason"] == "StopAuthorized"
    if "idToken" in event:
        assert_token(event)


def assert_ended_after_stop_authorized(event: dict, tx_id: str) -> None:
    """StopAuthorized (main A) step 3: ChargingStateChanged, EVConnected, Ended, Local
    or omitted."""
    assert event["transactionInfo"]["transactionId"] == tx_id
    assert event["eventType"] == "Ended"
    assert event["triggerReason"] == "ChargingStateChanged"
    assert event["transactionInfo"]["chargingState"] == "EVConnected"
    assert event["transactionInfo"].get("stoppedReason", "Local") == "Local"


async def status(since: Since, connector_status: str) -> dict:
    """The connector's StatusNotification with this status, on the configured EVSE and
    connector."""
    note = await since.expect("StatusNotification",
                              lambda p: p["connectorStatus"] == connector_status)
    assert (note["evseId"], note["connectorId"]) == (EVSE, CONNECTOR)
    return note


async def status_available(since: Since) -> None:
    """The connector's status change to Available (StatusNotification)."""
    await status(since, "Available")


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
            check_transaction_events(rig)
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
            await rig.authorized_local()                     # State is Authorized (A)
            await authorize_step(since)
            assert events_of(since) == []                    # not started before the cable
            occupied = await rig.ev_connected_pre_session()  # 1. EVConnectedPreSession
            assert (occupied["evseId"], occupied["connectorId"]) == (EVSE, CONNECTOR)
            event = await next_event(since)                  # its step 3
            assert_started(event)                            # PowerPathClosed and Authorized
            assert event["triggerReason"] in ("CablePluggedIn", "ChargingStateChanged",
                                              "RemoteStart")
            assert event["transactionInfo"]["chargingState"] in (
                "EVConnected", "SuspendedEVSE", "Charging")
            assert_token(event)                              # first event after the card
            await until_charging(rig, since)
    run(case())


def test_TC_E_02(tmp_path):
    """Start transaction options - EnergyTransfer"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="EnergyTransfer")
            since = Since(rig)
            await rig.authorized_local()                     # State is Authorized (A)
            await authorize_step(since)
            assert events_of(since) == []
            await rig.plug()                                 # Connect the EV and EVSE
            await rig.advance(1)
            await status(since, "Occupied")                  # 1.
            event = await next_event(since)                  # 3.
            assert_started(event)
            assert event["triggerReason"] in ("ChargingStateChanged", "Authorized")
            assert_token(event)
            assert event["transactionInfo"]["chargingState"] == "Charging"
            assert rig.snapshot()["power_w"] > 0
    run(case())


async def _start_options_remote(tmp_path: Path, start: str) -> dict:
    """TC_E_01 / TC_E_02 with the OCTT configured to authorize remotely (Authorized main
    B): the transaction's first event says RemoteStart with the remoteStartId (general
    tool rules), wherever the start point puts it; returns it."""
    async with station(tmp_path) as rig:
        await points(rig, start=start)
        since = Since(rig)
        answer = await rig.call("RequestStartTransaction", {
            "idToken": VALID_TOKEN, "evseId": EVSE, "remoteStartId": 11})
        assert answer["status"] == "Accepted"
        await rig.settle()
        assert since("Authorize") == []                      # AuthorizeRemoteStart false
        assert events_of(since) == []                        # not before the cable
        await rig.plug()
        await rig.advance(1)
        await status(since, "Occupied")
        event = await next_event(since)
        assert_started(event)
        assert event["triggerReason"] == "RemoteStart"
        assert event["transactionInfo"]["remoteStartId"] == 11
        assert_token(event)
        if event["transactionInfo"]["chargingState"] != "Charging":
            await until_charging(rig, since)
        return event


def test_TC_E_01_remote(tmp_path):
    """Start transaction options - PowerPathClosed (State Authorized by
    RequestStartTransaction)"""
    event = run(_start_options_remote(tmp_path, "PowerPathClosed"))
    assert event["transactionInfo"]["chargingState"] in (
        "EVConnected", "SuspendedEVSE", "Charging")


def test_TC_E_02_remote(tmp_path):
    """Start transaction options - EnergyTransfer (State Authorized by
    RequestStartTransaction: triggerReason RemoteStart)"""
    event = run(_start_options_remote(tmp_path, "EnergyTransfer"))
    assert event["transactionInfo"]["chargingState"] == "Charging"


def test_TC_E_09(tmp_path):
    """Start transaction options - EVConnected"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="EVConnected")
            since = Since(rig)
            await rig.plug()                                 # Connect the EV and EVSE
            await status(since, "Occupied")                  # 1.
            event = await next_event(since)                  # 3.
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
            await rig.configure(AUTH_PREPARATION)
            since = Since(rig)
            await rig.present()                              # Present IdToken
            await authorize_step(since)                      # 1.
            event = await next_event(since)                  # 3.
            assert_started(event)
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
            # Step 3 is run with AuthorizeRemoteStart true (the station's default is
            # false: it would skip the AuthorizeRequest, which Part 6 allows).
            await rig.configure(AUTH_PREPARATION | {("AuthCtrlr", "AuthorizeRemoteStart"): "true"})
            since = Since(rig)
            answer = await rig.call("RequestStartTransaction", {
                "idToken": VALID_TOKEN, "evseId": EVSE, "remoteStartId": 7})
            assert answer["status"] == "Accepted"            # 2.
            await rig.settle()
            await authorize_step(since)                      # 3.
            event = await next_event(since)                  # 5.
            assert_started(event)
            assert event["triggerReason"] == "RemoteStart"
            assert_token(event)
            assert event["transactionInfo"]["remoteStartId"] == 7
    run(case())


# ---- Local start transaction (E02, E03)


def test_TC_E_03(tmp_path):
    """Local start transaction - Cable plugin first - Success"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure(AUTH_PREPARATION)
            since = Since(rig)
            occupied = await rig.ev_connected_pre_session()  # State is EVConnectedPreSession
            assert (occupied["evseId"], occupied["connectorId"]) == (EVSE, CONNECTOR)
            assert events_of(since) == []                    # TxStartPoint PowerPathClosed
            await rig.authorized_local()                     # 1. Authorized (local)
            await authorize_step(since)
            # 2. EnergyTransferStarted, part 2: step 7 (the power path closes: the
            # transaction starts), step 9 (energy flows).
            started = await next_event(since)
            assert_started(started)                          # first event after the plug-in
            assert started["triggerReason"] == "ChargingStateChanged"
            assert started["transactionInfo"]["chargingState"] == "SuspendedEVSE"
            assert_token(started)                            # first event after the card
            await until_charging(rig, since)
    run(case())


def test_TC_E_04(tmp_path):
    """Local start transaction - Authorization first - Success"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure(AUTH_PREPARATION)
            await charging_session(rig)   # 1. Authorized (local), 2. EnergyTransferStarted
    run(case())


def test_TC_E_05(tmp_path):
    """Local start transaction - Authorization first - Cable plugin timeout (TxStartPoint
    Authorized, so that step 1 is sent)"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="Authorized")
            await rig.configure(AUTH_PREPARATION | {
                ("TxCtrlr", "EVConnectionTimeOut"): str(EV_CONNECTION_TIMEOUT),
                ("AuthCacheCtrlr", "Enabled"): "false",
                ("AuthCtrlr", "LocalPreAuthorize"): "false"})
            assert "Authorized" in (await rig.get_variable("TxCtrlr", "TxStopPoint")).split(",")
            since = Since(rig)
            await rig.authorized_local()                     # State is Authorized (local)
            await authorize_step(since)
            started = await next_event(since)
            assert_started(started)
            assert started["triggerReason"] == "Authorized"
            assert_token(started)
            await rig.advance(EV_CONNECTION_TIMEOUT - 1)
            assert events_of(since) == [started]             # not before the time-out
            await rig.advance(1)
            event = await next_event(since)                  # 1.
            assert event["transactionInfo"]["transactionId"] == \
                started["transactionInfo"]["transactionId"]
            assert event["triggerReason"] == "EVConnectTimeout"
            assert event["eventType"] == "Ended"             # TxStopPoint has Authorized
            assert event["transactionInfo"]["stoppedReason"] == "Timeout"
            assert not rig.snapshot()["contactor_closed"]
            # 3. Authorized (local) again: the cache is off, so the CSMS is asked again.
            since = Since(rig)
            await rig.authorized_local()
            await authorize_step(since)
            again = await next_event(since)
            assert_started(again)
            assert again["transactionInfo"]["transactionId"] != \
                started["transactionInfo"]["transactionId"]
            assert again["triggerReason"] == "Authorized"
            assert_token(again)
            # 4. EnergyTransferStarted: part 1 (step 3, the transaction runs already),
            # then part 2 step 9.
            occupied = await rig.ev_connected_pre_session()
            assert (occupied["evseId"], occupied["connectorId"]) == (EVSE, CONNECTOR)
            plugged = await next_event(since)
            assert plugged["eventType"] == "Updated"
            assert plugged["triggerReason"] == "CablePluggedIn"
            assert plugged["transactionInfo"]["chargingState"] == "EVConnected"
            # The first event after the plug-in names the EVSE and connector (general rule).
            assert plugged["evse"] == {"id": EVSE, "connectorId": CONNECTOR}
            await until_charging(rig, since)
    run(case())


def test_TC_E_05_default_points(tmp_path):
    """Local start transaction - Authorization first - Cable plugin timeout (the default
    TxStartPoint PowerPathClosed: step 1 is not sent, the authorization lapses, and the
    EVSE is ready for the next session)"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure(AUTH_PREPARATION | {
                ("TxCtrlr", "EVConnectionTimeOut"): str(EV_CONNECTION_TIMEOUT),
                ("AuthCacheCtrlr", "Enabled"): "false",
                ("AuthCtrlr", "LocalPreAuthorize"): "false"})
            since = Since(rig)
            await rig.authorized_local()
            await authorize_step(since)
            await rig.advance(EV_CONNECTION_TIMEOUT, step=5)
            assert since("TransactionEvent") == []
            await rig.plug()                                 # too late: no energy
            await rig.advance(5)
            assert rig.snapshot()["offered_current_a"] is None
            assert since("TransactionEvent") == []
            await rig.unplug()
            await rig.configure(AUTH_PREPARATION)            # 3., 4.: a new session
            await charging_session(rig)
    run(case())


def test_TC_E_04_started_on_plugin(tmp_path):
    """Local start transaction - Authorization first - Success (TxStartPoint EVConnected:
    EnergyTransferStarted part 1, CablePluggedIn and EVConnected, then Charging)"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="EVConnected")
            await rig.configure(AUTH_PREPARATION)
            since = Since(rig)
            await rig.authorized_local()
            await authorize_step(since)
            assert events_of(since) == []
            occupied = await rig.ev_connected_pre_session()
            assert (occupied["evseId"], occupied["connectorId"]) == (EVSE, CONNECTOR)
            started = await next_event(since)
            assert_started(started)
            assert started["triggerReason"] == "CablePluggedIn"
            assert started["transactionInfo"]["chargingState"] == "EVConnected"
            assert_token(started)
            await until_charging(rig, since)
    run(case())


def test_TC_E_38(tmp_path):
    """Local start transaction - EV not ready"""
    async def case():
        async with station(tmp_path) as rig:
            since = Since(rig)
            await rig.authorized_local()                     # State is Authorized
            await authorize_step(since)
            rig.mock.plug(EVSE)                              # an EV not ready to charge
            rig.mock.suspend(EVSE)
            await rig.settle()                               # 1. EVConnectedPreSession
            await status(since, "Occupied")
            started = await next_event(since)                # its step 3
            assert_started(started)
            assert started["triggerReason"] in ("CablePluggedIn", "ChargingStateChanged",
                                                "RemoteStart")
            assert started["transactionInfo"]["chargingState"] in (
                "EVConnected", "SuspendedEVSE", "Charging")
            assert_token(started)
            await rig.advance(1)
            event = await next_event(since)                  # 2.
            assert event["eventType"] == "Updated"
            assert event["triggerReason"] == "ChargingStateChanged"
            assert event["transactionInfo"]["chargingState"] == "SuspendedEV"
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
            await rig.present()                              # 1. StopAuthorized (local)
            stop = await next_event(since)                   # its step 1
            assert_stop_authorized(stop, tx_id)
            assert stop["eventType"] == "Updated"
            event = await next_event(since)                  # its step 3
            assert_ended_after_stop_authorized(event, tx_id)
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
            assert answer["status"] == "Accepted"            # 2.
            await rig.settle()
            event = await next_event(since)                  # 3.
            assert event["transactionInfo"]["transactionId"] == tx_id
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
            # "StopTxOnEVSideDisconnect is false (If mutability is ReadWrite)": ReadOnly here.
            assert await rig.get_variable("TxCtrlr", "StopTxOnEVSideDisconnect") == "true"
            tx_id = await charging_session(rig)
            suspended = await energy_transfer_suspended(rig)
            assert suspended["eventType"] == "Updated"       # the power path stays
            since = Since(rig)
            await rig.unplug()                               # EV side
            event = await next_event(since)                  # 1.
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
            stop = await next_event(since)                   # its step 1
            assert_stop_authorized(stop, tx_id)
            assert stop["eventType"] == "Updated"
            # Its step 3, the very next event: the energy stopped, and with it the
            # transaction (no Updated EVConnected before the Ended one).
            event = await next_event(since)
            assert_ended_after_stop_authorized(event, tx_id)
            assert not rig.snapshot()["contactor_closed"]
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
            event = await next_event(since)                  # 1.
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "ChargingStateChanged"
            state = event["transactionInfo"]["chargingState"]
            assert state in ("EVConnected", "SuspendedEV")
            if state == "EVConnected":
                assert event["eventType"] == "Ended"
                assert event["transactionInfo"]["stoppedReason"] == "StoppedByEV"
            else:
                assert event["eventType"] == "Updated"
                # The purpose: the transaction stops with the energy transfer (E06.FR.07).
                event = await next_event(since)
                assert event["transactionInfo"]["transactionId"] == tx_id
                assert event["eventType"] == "Ended"
                assert event["transactionInfo"]["stoppedReason"] == "StoppedByEV"
            assert not rig.snapshot()["contactor_closed"]
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
            stop = await next_event(since)
            assert_stop_authorized(stop, tx_id)
            assert stop["eventType"] == "Updated"
            post = await next_event(since)                   # EVConnectedPostSession
            assert post["eventType"] == "Updated"
            assert post["triggerReason"] == "ChargingStateChanged"
            assert post["transactionInfo"]["chargingState"] == "EVConnected"
            assert not rig.snapshot()["contactor_closed"]
            since = Since(rig)
            await rig.unplug()                               # Disconnect the EV and EVSE
            await status_available(since)                    # 1.
            event = await next_event(since)                  # 3.
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            # Errata 6.1.18: Local, EVDisconnected or omitted.
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
            await rig.settle()
            stop = await next_event(since)
            assert stop["transactionInfo"]["transactionId"] == tx_id
            assert (stop["triggerReason"], stop["eventType"]) == ("RemoteStop", "Updated")
            post = await next_event(since)                   # EVConnectedPostSession
            assert post["triggerReason"] == "ChargingStateChanged"
            assert post["transactionInfo"]["chargingState"] == "EVConnected"
            since = Since(rig)
            await rig.unplug()
            await status_available(since)
            event = await next_event(since)
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            assert event["transactionInfo"]["stoppedReason"] == "Remote"
            assert event["eventType"] == "Ended"
    run(case())


async def _ev_side_disconnect(tmp_path: Path, rig_context: Any, reasons: tuple[str, ...]) -> None:
    """TC_E_20 / TC_E_54: TxStopPoint EVConnected, EnergyTransferSuspended, then the EV
    is unplugged on its side."""
    async with rig_context(tmp_path) as rig:
        await points(rig, stop="EVConnected")
        # "StopTxOnEVSideDisconnect is false (If mutability is ReadWrite)": ReadOnly here.
        assert await rig.get_variable("TxCtrlr", "StopTxOnEVSideDisconnect") == "true"
        tx_id = await charging_session(rig)
        await energy_transfer_suspended(rig)
        since = Since(rig)
        await rig.unplug()                                   # EV side
        event = await next_event(since)                      # 1.
        assert event["transactionInfo"]["transactionId"] == tx_id
        assert event["triggerReason"] == "EVCommunicationLost"
        assert event["transactionInfo"]["chargingState"] == "Idle"
        assert event["transactionInfo"]["stoppedReason"] in reasons
        assert event["eventType"] == "Ended"
        await rig.advance(5)
        assert not rig.snapshot()["contactor_closed"]


def test_TC_E_20(tmp_path):
    """Stop transaction options - EVDisconnected - EV side (able to charge IEC 61851-1 EV)"""
    run(_ev_side_disconnect(tmp_path, station, ("EVDisconnected",)))


def test_TC_E_54(tmp_path):
    """Stop transaction options - EVDisconnected - EV side (not able to charge IEC 61851-1
    EV): run on a DC EVSE (the errata's "DC and/or ISO 15118 support")"""
    run(_ev_side_disconnect(tmp_path, dc_station, ("StoppedByEV", "EVDisconnected")))


def test_TC_E_15(tmp_path):
    """Stop transaction options - StopAuthorized - Local"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="Authorized")
            tx_id = await charging_session(rig)
            await rig.advance(TRANSACTION_DURATION, step=10)
            since = Since(rig)
            await rig.present()                              # Present IdToken
            event = await next_event(since)                  # 1.
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
            assert answer["status"] == "Accepted"            # 2.
            await rig.settle()
            event = await next_event(since)                  # 3.
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "RemoteStop"
            assert event["transactionInfo"]["stoppedReason"] == "Remote"
            assert event["eventType"] == "Ended"
            assert not rig.snapshot()["contactor_closed"]
    run(case())


def test_TC_E_17(tmp_path):
    """Stop transaction options - Deauthorized - EV side disconnect"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, stop="Authorized")
            await rig.configure(AUTH_PREPARATION | {
                ("OCPPCommCtrlr", "UnlockOnEVSideDisconnect"): "false"})
            assert await rig.get_variable("TxCtrlr", "StopTxOnEVSideDisconnect") == "true"
            tx_id = await charging_session(rig)
            await energy_transfer_suspended(rig)
            since = Since(rig)
            await rig.unplug()                               # EV side
            event = await next_event(since)                  # 1.
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            assert event["transactionInfo"]["stoppedReason"] == "EVDisconnected"
            assert event["eventType"] == "Ended"
            assert rig.snapshot()["locked"] is True          # kept locked (detachable cable)
            await rig.present()                              # the token that started it
            assert rig.snapshot()["locked"] is False
            await status_available(since)                    # 3. (the cable is out)
            assert events_of(since) == [event]
    run(case())


def test_TC_E_19(tmp_path):
    """Stop transaction options - ParkingBayUnoccupied"""
    pytest.skip("not applicable: no parking-bay sensor; TxStopPoint does not offer "
                "ParkingBayOccupancy (C-10.5)")


async def _deauthorized_timeout(tmp_path: Path, *, remote: bool) -> None:
    """TC_E_39 with TxStartPoint Authorized (so that step 1 is sent) and TxStopPoint
    Authorized: Authorized (A or B, errata 6.1.16), the time-out, then the late EV."""
    async with station(tmp_path) as rig:
        await points(rig, start="Authorized", stop="Authorized")
        await rig.configure(AUTH_PREPARATION | {
            ("TxCtrlr", "EVConnectionTimeOut"): str(EV_CONNECTION_TIMEOUT)})
        since = Since(rig)
        if remote:
            answer = await rig.call("RequestStartTransaction", {
                "idToken": VALID_TOKEN, "evseId": EVSE, "remoteStartId": 3})
            assert answer["status"] == "Accepted"
            await rig.settle()
        else:
            await rig.authorized_local()
            await authorize_step(since)
        started = await next_event(since)                    # Authorized, its step
        assert_started(started)
        assert_token(started)
        assert started["triggerReason"] == ("RemoteStart" if remote else "Authorized")
        if remote:
            assert started["transactionInfo"]["remoteStartId"] == 3
        tx_id = started["transactionInfo"]["transactionId"]
        await rig.advance(EV_CONNECTION_TIMEOUT - 1)
        assert events_of(since) == [started]                 # not before the time-out
        await rig.advance(1)
        event = await next_event(since)                      # 1.
        assert event["transactionInfo"]["transactionId"] == tx_id
        assert event["triggerReason"] == "EVConnectTimeout"
        assert event["eventType"] == "Ended"
        assert event["transactionInfo"]["stoppedReason"] == "Timeout"
        # The errata's step 3: plugged in afterwards, the EV does not charge; a cable
        # plug-in event is allowed, nothing else.
        since = Since(rig)
        await rig.plug()
        await rig.advance(MESSAGE_TIMEOUT, step=5)
        for late in since("TransactionEvent"):
            assert late["triggerReason"] == "CablePluggedIn"
            assert late["transactionInfo"].get("chargingState") != "Charging"
        snap = rig.snapshot()
        assert not snap["contactor_closed"] and snap["power_w"] == 0


def test_TC_E_39(tmp_path):
    """Stop transaction options - Deauthorized - timeout (Authorized locally; TxStartPoint
    Authorized, so that step 1 is sent)"""
    run(_deauthorized_timeout(tmp_path, remote=False))


def test_TC_E_39_remote(tmp_path):
    """Stop transaction options - Deauthorized - timeout (Authorized by
    RequestStartTransaction, errata 6.1.16)"""
    run(_deauthorized_timeout(tmp_path, remote=True))


def test_TC_E_39_default_points(tmp_path):
    """Stop transaction options - Deauthorized - timeout (the default TxStartPoint
    PowerPathClosed: no transaction started, so none to end; the late EV gets no energy)"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure(AUTH_PREPARATION | {
                ("TxCtrlr", "EVConnectionTimeOut"): str(EV_CONNECTION_TIMEOUT)})
            since = Since(rig)
            await rig.authorized_local()
            await authorize_step(since)
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
            assert await rig.get_variable("TxCtrlr", "StopTxOnEVSideDisconnect") == "true"
            await rig.configure({("OCPPCommCtrlr", "UnlockOnEVSideDisconnect"): "true"})
            tx_id = await charging_session(rig)
            await energy_transfer_suspended(rig)
            assert rig.snapshot()["locked"] is True
            since = Since(rig)
            await rig.unplug()                               # EV side
            event = await next_event(since)                  # 1.
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            assert event["eventType"] == "Ended"             # deauthorized (E09.FR.01)
            assert rig.snapshot()["locked"] is False         # unlocked at once
            await status_available(since)                    # 3. (cable out)
    run(case())


def test_TC_E_25(tmp_path):
    """Disconnect cable on EV-side - Deauthorize transaction - UnlockOnEVSideDisconnect is
    false"""
    async def case():
        async with station(tmp_path) as rig:
            assert await rig.get_variable("TxCtrlr", "StopTxOnEVSideDisconnect") == "true"
            await rig.configure({("OCPPCommCtrlr", "UnlockOnEVSideDisconnect"): "false"})
            tx_id = await charging_session(rig)
            await energy_transfer_suspended(rig)
            since = Since(rig)
            await rig.unplug()                               # EV side
            event = await next_event(since)                  # 1.
            assert event["transactionInfo"]["transactionId"] == tx_id
            assert event["triggerReason"] == "EVCommunicationLost"
            assert event["transactionInfo"]["chargingState"] == "Idle"
            assert event["eventType"] == "Ended"             # deauthorized (E09.FR.01)
            await rig.advance(MESSAGE_TIMEOUT, step=5)
            assert rig.snapshot()["locked"] is True          # the cable stays locked
            await rig.present()                              # the token that started it
            assert rig.snapshot()["locked"] is False
            assert events_of(since) == [event]
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
            event = await next_event(since)
            assert event["eventType"] == "Ended"
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
