"""Part 6, F Remote control: the Charging Station cases of Core (Part 5, 4.2) from
TC_F_05 on (UnlockConnector, RequestStopTransaction, TriggerMessage).

The station has a detachable cable held by a connector lock on every EVSE (the mock's
AC EVSEs), so the UnlockConnector cases apply; it serves TriggerMessage for MeterValues,
TransactionEvent, LogStatusNotification, FirmwareStatusNotification, Heartbeat,
StatusNotification and BootNotification, so those cases apply too.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from agent.clock import format_datetime
from hal.drivers.mock.installer import mock_image
from tests.conformance.fj_steps import TRANSACTION_DURATION, station
from tests.conformance.rig import CONNECTOR, EVSE, VALID_TOKEN, Rig, run
from tests.file_servers import FileServer
from tests.firmware_pki import make_firmware_pki, sign_file

OTHER_EVSE = 2
OTHER_TOKEN = {"idToken": "04A1B2C4", "type": "ISO14443"}


async def trigger(rig: Rig, requested_message: str, evse: int | None = None,
                  connector: int | None = None) -> dict:
    request: dict = {"requestedMessage": requested_message}
    if evse is not None:
        request["evse"] = {"id": evse} | ({"connectorId": connector} if connector else {})
    return await rig.call("TriggerMessage", request)


async def unlock(rig: Rig, evse: int = EVSE, connector: int = CONNECTOR) -> dict:
    answer = await rig.call("UnlockConnector", {"evseId": evse, "connectorId": connector})
    await rig.settle()
    return answer


# ---- UnlockConnector (F05)

def test_TC_F_05(tmp_path):
    """Remote unlock Connector - With ongoing transaction."""
    async def case():
        async with station(tmp_path) as rig:
            started = await rig.energy_transfer_started()
            assert rig.snapshot()["locked"] is True
            answer = await unlock(rig)
            assert answer["status"] == "OngoingAuthorizedTransaction"
            # The request is ignored: the cable stays locked, the energy keeps flowing.
            snapshot = rig.snapshot()
            assert snapshot["locked"] is True and snapshot["contactor_closed"] is True
            transaction_id = started["transactionInfo"]["transactionId"]
            assert [e["eventType"] for e in rig.transaction_events(transaction_id)
                    if e["eventType"] == "Ended"] == []
    run(case())


def test_TC_F_06(tmp_path):
    """Remote unlock Connector - Without ongoing transaction - Accepted (Part 6's steps:
    a cable in the socket, no transaction; the request unlocks it)."""
    async def case():
        async with station(tmp_path) as rig:
            await rig.ev_connected_pre_session()     # TxStartPoint PowerPathClosed: no tx
            assert rig.transaction_events() == []
            answer = await unlock(rig)
            assert answer["status"] == "Unlocked"
            assert rig.snapshot()["locked"] is False
            assert rig.transaction_events() == []    # nothing started or ended by it
    run(case())


def test_TC_F_06_jammed_lock(tmp_path):
    """Remote unlock Connector - Without ongoing transaction - Accepted: the case's
    purpose, a cable the lock did not release at the end of a session (tension on the
    cable), freed by the CSO's request once the jam is gone."""
    async def case():
        async with station(tmp_path) as rig:
            started = await rig.energy_transfer_started()
            transaction_id = started["transactionInfo"]["transactionId"]
            rig.mock.lock_fail(EVSE)                 # tension on the cable: the lock jams
            stop = await rig.call("RequestStopTransaction", {"transactionId": transaction_id})
            assert stop["status"] == "Accepted"
            await rig.settle()
            await rig.expect("TransactionEvent", where=lambda p: p["eventType"] == "Ended")
            assert rig.snapshot()["locked"] is True, "the jammed lock should still hold"
            rig.mock.lock_ok(EVSE)                   # the driver eases the cable
            answer = await unlock(rig)
            assert answer["status"] == "Unlocked"
            assert rig.snapshot()["locked"] is False
    run(case())


def test_TC_F_07(tmp_path):
    """Remote unlock Connector - Without ongoing transaction - No cable connected."""
    async def case():
        async with station(tmp_path) as rig:
            assert rig.snapshot()["plugged"] is False
            answer = await unlock(rig)
            assert answer["status"] == "Unlocked"
            assert rig.snapshot()["locked"] is False
    run(case())


def test_TC_F_10(tmp_path):
    """Remote unlock Connector - Without ongoing transaction - UnknownConnector."""
    async def case():
        async with station(tmp_path) as rig:
            answer = await unlock(rig, EVSE, 999)
            assert answer["status"] == "UnknownConnector"
    run(case())


# ---- RequestStopTransaction (F03)

def test_TC_F_08(tmp_path):
    """Remote stop transaction - Success."""
    async def case():
        async with station(tmp_path) as rig:
            started = await rig.energy_transfer_started()
            transaction_id = started["transactionInfo"]["transactionId"]
            # StopAuthorized: the OCTT waits <Configured Transaction Duration> first.
            await rig.advance(TRANSACTION_DURATION, step=10)
            before = len(rig.transaction_events(transaction_id))
            # StopAuthorized, main B.
            answer = await rig.call("RequestStopTransaction", {"transactionId": transaction_id})
            assert answer["status"] == "Accepted"                  # step 2
            await rig.settle()
            after = rig.transaction_events(transaction_id)[before:]
            assert after, "no TransactionEvent after RequestStopTransaction"
            # Step 3: the next TransactionEvent is the remote stop. TxStopPoint (default
            # EVConnected,Authorized) contains Authorized, so it ends the transaction in
            # the same message (F03.FR.03 as corrected by the errata 2.6.1: Ended,
            # triggerReason RemoteStop, stoppedReason Remote).
            event = after[0]
            assert event["triggerReason"] == "RemoteStop"
            assert event["eventType"] == "Ended"
            assert event["transactionInfo"]["stoppedReason"] == "Remote"
            assert event["seqNo"] == rig.transaction_events(transaction_id)[before - 1]["seqNo"] + 1
            assert len(after) == 1                                 # nothing after the Ended
            assert rig.snapshot()["contactor_closed"] is False
            assert rig.snapshot()["power_w"] == 0
    run(case())


def test_TC_F_09(tmp_path):
    """Remote stop transaction - Rejected."""
    async def case():
        async with station(tmp_path) as rig:
            started = await rig.energy_transfer_started()
            transaction_id = started["transactionInfo"]["transactionId"]
            other = str(uuid.uuid4())
            assert other != transaction_id
            answer = await rig.call("RequestStopTransaction", {"transactionId": other})
            assert answer["status"] == "Rejected"
            await rig.advance(5)
            assert [e for e in rig.transaction_events(transaction_id)
                    if e["eventType"] == "Ended"] == []
            assert rig.snapshot()["contactor_closed"] is True
    run(case())


# ---- TriggerMessage (F06)

def test_TC_F_11(tmp_path):
    """Trigger message - MeterValues - Specific EVSE."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            answer = await trigger(rig, "MeterValues", EVSE)
            assert answer["status"] == "Accepted"
            values = await rig.expect("MeterValues")
            assert values["evseId"] == EVSE
            assert values["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
            await rig.settle()
            assert [p["evseId"] for p in rig.sent("MeterValues")] == [EVSE]
    run(case())


def test_TC_F_12(tmp_path):
    """Trigger message - MeterValues - All EVSE."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            answer = await trigger(rig, "MeterValues")
            assert answer["status"] == "Accepted"
            for evse in (EVSE, OTHER_EVSE):
                values = await rig.expect("MeterValues", where=lambda p, e=evse: p["evseId"] == e)
                assert values["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"
    run(case())


def assert_triggered_event(event: dict, evse: int, transaction_id: str) -> None:
    """TC_F_13 / TC_F_14 step 3, and F06.FR.07: an Updated event of that EVSE's
    transaction."""
    assert event["eventType"] == "Updated"
    assert event["transactionInfo"]["transactionId"] == transaction_id
    assert event.get("evse", {"id": evse})["id"] == evse
    assert event["triggerReason"] == "Trigger"
    assert event["transactionInfo"]["chargingState"] == "Charging"
    assert event["meterValue"], "meterValue must be present"
    assert event["meterValue"][0]["sampledValue"][0]["context"] == "Trigger"


def test_TC_F_13(tmp_path):
    """Trigger message - TransactionEvent - Specific EVSE."""
    async def case():
        async with station(tmp_path) as rig:
            started = await rig.energy_transfer_started()
            answer = await trigger(rig, "TransactionEvent", EVSE)
            assert answer["status"] == "Accepted"
            event = await rig.expect("TransactionEvent",
                                     where=lambda p: p["triggerReason"] == "Trigger")
            assert_triggered_event(event, EVSE, started["transactionInfo"]["transactionId"])
            await rig.settle()
            assert len([e for e in rig.transaction_events()
                        if e["triggerReason"] == "Trigger"]) == 1
    run(case())


def test_TC_F_14(tmp_path):
    """Trigger message - TransactionEvent - All EVSE."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            first = await rig.energy_transfer_started(VALID_TOKEN, EVSE)
            second = await rig.energy_transfer_started(OTHER_TOKEN, OTHER_EVSE)
            transactions = {EVSE: first["transactionInfo"]["transactionId"],
                            OTHER_EVSE: second["transactionInfo"]["transactionId"]}
            answer = await trigger(rig, "TransactionEvent")
            assert answer["status"] == "Accepted"
            for evse in (EVSE, OTHER_EVSE):
                event = await rig.expect("TransactionEvent", where=lambda p, e=evse: (
                    p["triggerReason"] == "Trigger" and p.get("evse", {}).get("id") == e))
                assert event["evse"]["id"] == evse                # evse.id must be given
                assert_triggered_event(event, evse, transactions[evse])
            await rig.settle()
            assert len([e for e in rig.transaction_events()
                        if e["triggerReason"] == "Trigger"]) == 2   # one per EVSE
    run(case())


def test_TC_F_15(tmp_path):
    """Trigger message - LogStatusNotification - Idle."""
    async def case():
        async with station(tmp_path) as rig:
            answer = await trigger(rig, "LogStatusNotification")
            assert answer["status"] == "Accepted"
            status = await rig.expect("LogStatusNotification")
            assert status["status"] == "Idle"
    run(case())


def test_TC_F_16(tmp_path):
    """Trigger message - LogStatusNotification - Uploading."""
    async def case():
        with FileServer() as server:
            # The upload is under way for the rest of the case: the server holds it.
            server.behaviour.stall_before_answer = True
            async with station(tmp_path) as rig:
                answer = await rig.call("GetLog", {
                    "logType": "DiagnosticsLog", "requestId": 16,
                    "log": {"remoteLocation": server.url("/logs/")}})
                assert answer["status"] == "Accepted"
                first = await rig.expect("LogStatusNotification")
                assert first["status"] == "Uploading"
                await _until(server.stalled)
                answer = await trigger(rig, "LogStatusNotification")
                assert answer["status"] == "Accepted"
                again = await rig.expect("LogStatusNotification")
                assert again["status"] == "Uploading"
                assert again.get("requestId") == 16
                server.release.set()
    run(case())


def test_TC_F_17(tmp_path):
    """Trigger message - FirmwareStatusNotification - Specific EVSE not relevant."""
    async def case():
        async with station(tmp_path) as rig:
            answer = await trigger(rig, "FirmwareStatusNotification", EVSE)
            assert answer["status"] == "Accepted"
            status = await rig.expect("FirmwareStatusNotification")
            assert status["status"] == "Idle"
    run(case())


def test_TC_F_18(tmp_path):
    """Trigger message - FirmwareStatusNotification - Idle."""
    async def case():
        async with station(tmp_path) as rig:
            answer = await trigger(rig, "FirmwareStatusNotification")
            assert answer["status"] == "Accepted"
            status = await rig.expect("FirmwareStatusNotification")
            assert status["status"] == "Idle"
    run(case())


def test_TC_F_19(tmp_path):
    """Trigger message - FirmwareStatusNotification - Downloading."""
    async def case():
        pki = make_firmware_pki()
        image = tmp_path / "station-2.0.0.img"
        image.write_bytes(mock_image("2.0.0", padding=300_000))
        with FileServer() as server:
            server.files["/fw/station-2.0.0.img"] = image.read_bytes()
            server.behaviour.stall_after = 1000      # the download stays under way
            async with station(tmp_path) as rig:
                installed = await rig.call("InstallCertificate", {
                    "certificateType": "ManufacturerRootCertificate",
                    "certificate": pki.root_pem})
                assert installed["status"] == "Accepted"
                answer = await rig.call("UpdateFirmware", {"requestId": 19, "firmware": {
                    "location": server.url("/fw/station-2.0.0.img"),
                    "retrieveDateTime": format_datetime(rig.clock.now() - timedelta(hours=2)),
                    "signingCertificate": pki.signing_cert_pem,
                    "signature": sign_file(pki, image)}})
                assert answer["status"] == "Accepted"
                first = await rig.expect("FirmwareStatusNotification")
                assert first["status"] == "Downloading"
                await _until(server.stalled)
                answer = await trigger(rig, "FirmwareStatusNotification")
                assert answer["status"] == "Accepted"
                again = await rig.expect("FirmwareStatusNotification")
                assert again["status"] == "Downloading"
                assert again.get("requestId") == 19
                await rig.shutdown()     # before the held download goes on
    run(case())


def test_TC_F_20(tmp_path):
    """Trigger message - Heartbeat."""
    async def case():
        async with station(tmp_path) as rig:
            before = len(rig.sent("Heartbeat"))
            answer = await trigger(rig, "Heartbeat")
            assert answer["status"] == "Accepted"
            await rig.expect("Heartbeat")
            await rig.settle()
            assert len(rig.sent("Heartbeat")) == before + 1
    run(case())


def test_TC_F_23(tmp_path):
    """Trigger message - StatusNotification - Specific EVSE - Available."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            before = len(rig.sent("StatusNotification"))
            answer = await trigger(rig, "StatusNotification", EVSE, CONNECTOR)
            assert answer["status"] == "Accepted"
            await rig.settle()
            [status] = rig.sent("StatusNotification")[before:]
            assert status["connectorStatus"] == "Available"
            assert (status["evseId"], status["connectorId"]) == (EVSE, CONNECTOR)
    run(case())


def test_TC_F_24(tmp_path):
    """Trigger message - StatusNotification - Specific EVSE - Occupied."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await rig.ev_connected_pre_session()
            before = len(rig.sent("StatusNotification"))
            answer = await trigger(rig, "StatusNotification", EVSE, CONNECTOR)
            assert answer["status"] == "Accepted"
            await rig.settle()
            [status] = rig.sent("StatusNotification")[before:]
            assert status["connectorStatus"] == "Occupied"
            assert (status["evseId"], status["connectorId"]) == (EVSE, CONNECTOR)
    run(case())


def test_TC_F_26(tmp_path):
    """Trigger message - BootNotification - Rejected."""
    async def case():
        async with station(tmp_path) as rig:
            answer = await trigger(rig, "BootNotification")
            assert answer["status"] == "Rejected"
            await rig.settle()
            assert len(rig.sent("BootNotification")) == 1     # the one of the start
    run(case())


def test_TC_F_27(tmp_path):
    """Trigger message - NotImplemented (SignCombinedCertificate: no ISO 15118 here)."""
    async def case():
        async with station(tmp_path) as rig:
            answer = await trigger(rig, "SignCombinedCertificate")
            assert answer["status"] == "NotImplemented"
            await rig.settle()
            assert rig.sent("SignCertificate") == []
    run(case())


async def _until(event, timeout: float = 10) -> None:
    """Until a threading.Event of a test server is set (it runs in its own thread)."""
    await asyncio.wait_for(asyncio.to_thread(event.wait, timeout), timeout + 1)
    assert event.is_set()
