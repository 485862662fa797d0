"""Part 6, L Firmware Management: the Charging Station cases of Core (Part 5), as the
2023-12 errata restructured them (6.1.24: the reboot is the reusable state
RebootBeforeFirmwareActivation; steps after the reconnection may come in any order; a
station may set its connectors Unavailable before installing; TC_L_08 ends with the
security event FirmwareUpdated even though the install failed; 6.1.25: TC_L_05 expects
the InvalidFirmwareSigningCertificate security event).

The images are mock firmware (hal/drivers/mock/installer.py) signed by a throw-away
manufacturer PKI (tests/firmware_pki.py) and served over HTTP on 127.0.0.1
(tests/file_servers.py). After InstallRebooting the daemon returns "reexec" and is started
again from the same storage (`Rig.reexec`), as `station-agent run` re-executes itself:
Part 6's RebootBeforeFirmwareActivation.

What this station is, for the conditional cases: it can cancel an update while
downloading (C-60: TC_L_10, not TC_L_11); it implements AllowNewSessionsPendingFirmware-
Update (C-20); it downloads while a transaction runs (AQ-7: TC_L_14/15, not TC_L_12/13)
but installs only when none runs (not C-43: not TC_L_16).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from agent.clock import format_datetime
from hal.drivers.mock.installer import mock_image
from tests.conformance.rig import STATION, VALID_TOKEN, Rig, run, station
from tests.file_servers import FileServer
from tests.firmware_pki import FirmwarePki, make_firmware_pki, other_root, sign_file
from tests.harness import until_logged

NEW_VERSION = "2.0.0"


# -- the lab's set-up ----------------------------------------------------------------------

def lab(rig: Rig) -> FirmwarePki:
    """The OCTT's clock is the station's (so Heartbeat does not set the station back
    while the test moves time), and a manufacturer PKI valid now."""
    rig.csms.now = rig.clock.now
    return make_firmware_pki("ec", now=rig.clock.now().replace(microsecond=0))


def publish(server: FileServer, tmp_path: Path, pki: FirmwarePki, *,
            name: str = "/fw/station-2.0.0.img", fail: bool = False,
            version: str = NEW_VERSION) -> tuple[str, str]:
    """<Configured firmware_location> and <Configured signature>: a signed mock image."""
    path = tmp_path / name.rsplit("/", 1)[-1]
    path.write_bytes(mock_image(version, fail=fail, padding=200_000))
    server.files[name] = path.read_bytes()
    return server.url(name), sign_file(pki, path)


def update_request(rig: Rig, request_id: int, url: str, signature: str, pki: FirmwarePki, *,
                   retrieve: timedelta = timedelta(hours=-2),
                   install: timedelta | None = timedelta(hours=-2),
                   signing_certificate: str | None = None, signed: bool = True) -> dict:
    """UpdateFirmwareRequest with dates relative to the station's <Current DateTime>."""
    now = rig.clock.now()
    firmware = {"location": url, "retrieveDateTime": format_datetime(now + retrieve)}
    if install is not None:
        firmware["installDateTime"] = format_datetime(now + install)
    if signed:
        firmware["signingCertificate"] = signing_certificate or pki.signing_cert_pem
        firmware["signature"] = signature
    return {"requestId": request_id, "firmware": firmware}


async def install_root(rig: Rig, pki: FirmwarePki) -> None:
    answer = await rig.call("InstallCertificate", {
        "certificateType": "ManufacturerRootCertificate", "certificate": pki.root_pem})
    assert answer["status"] == "Accepted"


def history(rig: Rig) -> list[tuple[str, dict]]:
    """Every CALL the station sent on the current link, in order."""
    assert rig.link is not None
    calls = []
    for frame in rig.link.frames:
        if frame.direction != "in":
            continue
        message = json.loads(frame.text)
        if message[0] == 2:
            calls.append((message[2], message[3]))
    return calls


def firmware_statuses(rig: Rig, request_id: int | None = None) -> list[str]:
    return [p["status"] for action, p in history(rig) if action == "FirmwareStatusNotification"
            and (request_id is None or p.get("requestId") == request_id)]


async def until_status(rig: Rig, request_id: int, status: str, timeout: float = 20) -> None:
    await rig.expect("FirmwareStatusNotification", timeout=timeout, where=lambda p: (
        p["status"] == status and p.get("requestId") == request_id))
    await rig.settle()


def connector_statuses(calls: list[tuple[str, dict]]) -> list[str]:
    return [p["connectorStatus"] for action, p in calls if action == "StatusNotification"]


async def installed_and_rebooted(rig: Rig, request_id: int) -> None:
    """From Installing on, the tool validations every successful case shares (errata):
    InstallRebooting, the reboot with reason FirmwareUpdate, connectors Available again,
    Installed and the security event FirmwareUpdated (these last in any order)."""
    if "InstallRebooting" not in firmware_statuses(rig, request_id):
        await until_status(rig, request_id, "InstallRebooting")
    old = history(rig)
    # Before installing, and after the status that explains it, the station took its
    # connectors out of service ("notifies the CSMS about the current state of all
    # connectors": Unavailable).
    installing = next(i for i, (a, p) in enumerate(old) if a == "FirmwareStatusNotification"
                      and p["status"] == "Installing")
    ready = max(i for i, (a, p) in enumerate(old[:installing])
                if a == "FirmwareStatusNotification"
                and p["status"] in ("SignatureVerified", "InstallScheduled"))
    assert "Unavailable" in connector_statuses(old[ready:installing])
    await rig.reexec()
    boot = rig.sent("BootNotification")[0]
    assert boot["reason"] == "FirmwareUpdate"
    assert boot["chargingStation"]["firmwareVersion"] == NEW_VERSION
    for evse_id in range(1, rig.evses + 1):
        status = [p for p in rig.sent("StatusNotification") if p["evseId"] == evse_id][-1]
        assert status["connectorStatus"] == "Available"
    await until_status(rig, request_id, "Installed")
    await rig.expect("SecurityEventNotification",
                     where=lambda p: p["type"] == "FirmwareUpdated")
    assert firmware_statuses(rig) == ["Installed"]


# -- the cases -----------------------------------------------------------------------------

def test_TC_L_01(tmp_path):
    """Secure Firmware Update - Installation successful."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki)
                await install_root(rig, pki)
                answer = await rig.call("UpdateFirmware",
                                        update_request(rig, 1, url, signature, pki))
                assert answer["status"] == "Accepted"
                await until_status(rig, 1, "InstallRebooting")
                assert firmware_statuses(rig, 1) == [
                    "Downloading", "Downloaded", "SignatureVerified", "Installing",
                    "InstallRebooting"]
                await installed_and_rebooted(rig, 1)
    run(case())


def test_TC_L_02(tmp_path):
    """Secure Firmware Update - InstallScheduled: installDateTime in the future."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki)
                await install_root(rig, pki)
                answer = await rig.call("UpdateFirmware", update_request(
                    rig, 2, url, signature, pki, install=timedelta(minutes=10)))
                assert answer["status"] == "Accepted"
                await until_status(rig, 2, "InstallScheduled")
                assert firmware_statuses(rig, 2) == [
                    "Downloading", "Downloaded", "SignatureVerified", "InstallScheduled"]
                await rig.advance(590, step=60)
                assert firmware_statuses(rig, 2)[-1] == "InstallScheduled", \
                    "installing before installDateTime"
                await rig.advance(10)
                await until_status(rig, 2, "InstallRebooting")
                assert firmware_statuses(rig, 2)[-2:] == ["Installing", "InstallRebooting"]
                await installed_and_rebooted(rig, 2)
    run(case())


def test_TC_L_03(tmp_path):
    """Secure Firmware Update - DownloadScheduled: retrieveDateTime in the future."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki)
                await install_root(rig, pki)
                answer = await rig.call("UpdateFirmware", update_request(
                    rig, 3, url, signature, pki, retrieve=timedelta(minutes=10)))
                assert answer["status"] == "Accepted"
                await until_status(rig, 3, "DownloadScheduled")
                await rig.advance(590, step=60)
                assert firmware_statuses(rig, 3) == ["DownloadScheduled"]
                assert not server.requests, "downloading before retrieveDateTime"
                await rig.advance(10)
                await until_status(rig, 3, "InstallRebooting")
                assert firmware_statuses(rig, 3) == [
                    "DownloadScheduled", "Downloading", "Downloaded", "SignatureVerified",
                    "Installing", "InstallRebooting"]
                await installed_and_rebooted(rig, 3)
    run(case())


def test_TC_L_05(tmp_path):
    """Secure Firmware Update - InvalidCertificate: a signing certificate that does not
    chain to the installed manufacturer root (errata 6.1.25: and the security event)."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki)
                await install_root(rig, pki)
                invalid = other_root(pki)
                answer = await rig.call("UpdateFirmware", update_request(
                    rig, 5, url, signature, pki, signing_certificate=invalid.signing_cert_pem))
                assert answer["status"] in ("InvalidCertificate", "RevokedCertificate")
                await rig.expect("SecurityEventNotification", where=lambda p: (
                    p["type"] == "InvalidFirmwareSigningCertificate"))
                await rig.advance(5)
                assert firmware_statuses(rig) == [] and not server.requests
    run(case())


def test_TC_L_06(tmp_path):
    """Secure Firmware Update - InvalidSignature: a real signature, of another file."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                pki = lab(rig)
                url, _ = publish(server, tmp_path, pki)
                _, other_signature = publish(server, tmp_path, pki, name="/fw/other.img",
                                             fail=True)
                await install_root(rig, pki)
                answer = await rig.call("UpdateFirmware",
                                        update_request(rig, 6, url, other_signature, pki))
                assert answer["status"] == "Accepted"
                await until_status(rig, 6, "InvalidSignature")
                assert firmware_statuses(rig, 6) == ["Downloading", "Downloaded",
                                                     "InvalidSignature"]
                await rig.expect("SecurityEventNotification",
                                 where=lambda p: p["type"] == "InvalidFirmwareSignature")
                assert "Unavailable" not in connector_statuses(history(rig))
    run(case())


def test_TC_L_07(tmp_path, caplog):
    """Secure Firmware Update - DownloadFailed: the location does not exist. The request
    leaves retries to the station (3, 60 s apart): DownloadFailed after the last."""
    caplog.set_level(logging.WARNING)

    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki)
                await install_root(rig, pki)
                answer = await rig.call("UpdateFirmware", update_request(
                    rig, 7, url + "_does_not_exist", signature, pki))
                assert answer["status"] == "Accepted"
                for attempt in range(1, 4):
                    await until_logged(caplog, f"download {attempt}/4 failed")
                    await rig.settle()
                    assert firmware_statuses(rig, 7) == ["Downloading"]
                    await rig.advance(60)
                await until_status(rig, 7, "DownloadFailed")
                assert firmware_statuses(rig, 7) == ["Downloading", "DownloadFailed"]
                assert len(server.requests) == 4
                # Nothing was installed: the station never left service.
                assert "Unavailable" not in connector_statuses(history(rig))
    run(case())


def failed_install_logged(rig: Rig) -> None:
    """Errata 6.1.24, TC_L_08 step 20: after InstallationFailed or InstallVerification-
    Failed the station sends SecurityEventNotification FirmwareUpdated (not optional
    there). This station logs every install attempt so; its techInfo says it failed."""
    events = [p for p in rig.sent("SecurityEventNotification")
              if p["type"] == "FirmwareUpdated"]
    assert len(events) == 1, events
    assert "failed" in events[0].get("techInfo", "")


def test_TC_L_08(tmp_path):
    """Secure Firmware Update - InstallVerificationFailed or InstallationFailed: a signed
    image the installer refuses. The station does not reboot (nothing was installed), so
    RebootBeforeFirmwareActivation (step 14) is skipped as the case allows. Step 15 ("the
    OCTT waits for the Charging Station to reconnect ... should at least reconnect to
    reestablish the protocol version handshake") is read as applying to a station that
    changed its firmware: this one still runs the version it connected with, so it keeps
    its connection (the lab's own image, per the prerequisite, takes the reboot path of
    test_TC_L_08_verification)."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki, name="/fw/broken.img",
                                         fail=True)
                await install_root(rig, pki)
                answer = await rig.call("UpdateFirmware",
                                        update_request(rig, 8, url, signature, pki))
                assert answer["status"] == "Accepted"
                await until_status(rig, 8, "InstallationFailed")
                assert firmware_statuses(rig, 8) == [
                    "Downloading", "Downloaded", "SignatureVerified", "Installing",
                    "InstallationFailed"]
                calls = history(rig)
                verified = next(i for i, (a, p) in enumerate(calls)
                                if a == "FirmwareStatusNotification"
                                and p["status"] == "SignatureVerified")
                installing = next(i for i, (a, p) in enumerate(calls)
                                  if a == "FirmwareStatusNotification"
                                  and p["status"] == "Installing")
                # Steps 9 and 16 are optional: the installer refused at once, so the
                # connector's moment out of service may go unreported; if it was
                # reported (before Installing), Available must follow.
                await rig.expect("SecurityEventNotification",
                                 where=lambda p: p["type"] == "FirmwareUpdated")
                await rig.advance(1)
                reported = connector_statuses(history(rig)[verified:])
                assert reported in ([], ["Unavailable", "Available"]), reported
                if reported:
                    assert "Unavailable" in connector_statuses(calls[verified:installing])
                failed_install_logged(rig)
                # In service again: a driver can plug in.
                status = await rig.ev_connected_pre_session()
                assert status["connectorStatus"] == "Occupied"
                assert rig.sent("BootNotification")[0]["reason"] != "FirmwareUpdate"
                assert len(rig.csms.links[STATION]) == 1
    run(case())


def test_TC_L_08_verification(tmp_path):
    """Secure Firmware Update - InstallVerificationFailed or InstallationFailed, the way
    the case's prerequisite describes (an image "that causes an InstallVerification-
    Failed"): the installer reports success, the station reboots (RebootBefore-
    FirmwareActivation), and the version that runs is still the old one."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                running = rig.sent("BootNotification")[0]["chargingStation"]["firmwareVersion"]
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki, name="/fw/same.img",
                                         version=running)
                await install_root(rig, pki)
                answer = await rig.call("UpdateFirmware",
                                        update_request(rig, 8, url, signature, pki))
                assert answer["status"] == "Accepted"
                await until_status(rig, 8, "InstallRebooting")
                assert firmware_statuses(rig, 8) == [
                    "Downloading", "Downloaded", "SignatureVerified", "Installing",
                    "InstallRebooting"]
                calls = history(rig)
                verified = next(i for i, (a, p) in enumerate(calls)
                                if a == "FirmwareStatusNotification"
                                and p["status"] == "SignatureVerified")
                installing = next(i for i, (a, p) in enumerate(calls)
                                  if a == "FirmwareStatusNotification"
                                  and p["status"] == "Installing")
                assert connector_statuses(calls[verified:installing]) == ["Unavailable"]
                await rig.reexec()
                boot = rig.sent("BootNotification")[0]
                assert boot["reason"] == "FirmwareUpdate"
                assert boot["chargingStation"]["firmwareVersion"] == running
                assert connector_statuses(history(rig)) == ["Available"]
                await until_status(rig, 8, "InstallVerificationFailed")
                assert firmware_statuses(rig) == ["InstallVerificationFailed"]
                await rig.expect("SecurityEventNotification",
                                 where=lambda p: p["type"] == "FirmwareUpdated")
                failed_install_logged(rig)
    run(case())


def test_TC_L_10(tmp_path):
    """Secure Firmware Update - AcceptedCanceled: a second request while downloading."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki)
                await install_root(rig, pki)
                server.behaviour.stall_after = 50_000   # the first download hangs
                answer = await rig.call("UpdateFirmware",
                                        update_request(rig, 1, url, signature, pki))
                assert answer["status"] == "Accepted"
                await until_status(rig, 1, "Downloading")
                assert await asyncio.to_thread(server.stalled.wait, 5)
                server.behaviour.stall_after = None
                answer = await rig.call("UpdateFirmware",
                                        update_request(rig, 10, url, signature, pki))
                assert answer["status"] == "AcceptedCanceled"
                await until_status(rig, 10, "InstallRebooting")
                # From here on every status is of the second request.
                assert firmware_statuses(rig) == [
                    "Downloading", "Downloading", "Downloaded", "SignatureVerified",
                    "Installing", "InstallRebooting"]
                assert firmware_statuses(rig, 10) == firmware_statuses(rig)[1:]
                server.release.set()
                await installed_and_rebooted(rig, 10)
    run(case())


def test_TC_L_11(tmp_path):
    """Secure Firmware Update - Unable to cancel."""
    pytest.skip("not applicable: the station can cancel an update while it downloads "
                "(C-60, TC_L_10); only once the image is with the installer is a new "
                "request Rejected (FwUpdateInProgress)")


def test_TC_L_12(tmp_path):
    """Secure Firmware Update - Unable to download/install firmware with ongoing
    transaction - AllowNewSessionsPendingFirmwareUpdate is true."""
    pytest.skip("not applicable: the station downloads while a transaction runs (AQ-7); "
                "TC_L_14 covers it")


def test_TC_L_13(tmp_path):
    """Secure Firmware Update - Unable to download/install firmware with ongoing
    transaction - AllowNewSessionsPendingFirmwareUpdate is false."""
    pytest.skip("not applicable: the station downloads while a transaction runs (AQ-7); "
                "TC_L_15 covers it")


async def end_transaction(rig: Rig, started: dict) -> None:
    """ParkingBayUnoccupied without a bay sensor, through its reusable states (Part 6
    tables 241-244, the station's default TxStopPoint EVConnected,Authorized):
    StopAuthorized (A) - the driver presents the card that started the transaction;
    EVDisconnected - the driver unplugs. The install may start once all interaction with
    the driver is done (errata TC_L_14 step 13, TC_L_15 step 13)."""
    evse = started["evse"]["id"]
    transaction_id = started["transactionInfo"]["transactionId"]
    before = len(rig.transaction_events(transaction_id))
    await rig.present(evse=evse)
    events = rig.transaction_events(transaction_id)[before:]
    assert events and events[0]["triggerReason"] == "StopAuthorized", events
    if "idToken" in events[0]:
        assert events[0]["idToken"] == VALID_TOKEN
    ended = events[-1]
    assert ended["eventType"] == "Ended", events
    assert ended["triggerReason"] in ("StopAuthorized", "ChargingStateChanged")
    assert ended["transactionInfo"]["chargingState"] == "EVConnected"
    assert ended["transactionInfo"].get("stoppedReason", "Local") == "Local"
    assert not rig.snapshot(evse)["contactor_closed"]
    await rig.unplug(evse)
    # EVDisconnected step 1: the connector is no longer Occupied - Available, or
    # Unavailable when the install takes it (errata TC_L_14/15: the update may start the
    # moment the transaction ends, the EV still plugged in).
    last = [p for p in rig.sent("StatusNotification")
            if (p["evseId"], p["connectorId"]) == (evse, 1)][-1]
    assert last["connectorStatus"] in ("Available", "Unavailable"), last
    assert rig.transaction_events(transaction_id)[-1] is ended, "an event after Ended"


def test_TC_L_14(tmp_path):
    """Secure Firmware Update - Unable to install firmware with ongoing transaction -
    AllowNewSessionsPendingFirmwareUpdate is true: a second session may still start."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path, evses=2) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki)
                await install_root(rig, pki)
                await rig.configure({("ChargingStation",
                                      "AllowNewSessionsPendingFirmwareUpdate"): "true"})
                first = await rig.energy_transfer_started(evse=1)
                answer = await rig.call("UpdateFirmware",
                                        update_request(rig, 14, url, signature, pki))
                assert answer["status"] == "Accepted"
                await until_status(rig, 14, "InstallScheduled")
                assert firmware_statuses(rig, 14) == [
                    "Downloading", "Downloaded", "SignatureVerified", "InstallScheduled"]
                # Step 11: a second transaction is allowed meanwhile.
                assert "Unavailable" not in connector_statuses(history(rig))
                second = await rig.energy_transfer_started(evse=2)
                await end_transaction(rig, first)
                await rig.advance(1)
                assert firmware_statuses(rig, 14)[-1] == "InstallScheduled"
                await end_transaction(rig, second)
                await until_status(rig, 14, "InstallRebooting")
                assert firmware_statuses(rig, 14)[-2:] == ["Installing", "InstallRebooting"]
                await installed_and_rebooted(rig, 14)
    run(case())


def test_TC_L_15(tmp_path):
    """Secure Firmware Update - Unable to install firmware with ongoing transaction -
    AllowNewSessionsPendingFirmwareUpdate is false: free connectors go Unavailable."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path, evses=2) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki)
                await install_root(rig, pki)
                await rig.configure({("ChargingStation",
                                      "AllowNewSessionsPendingFirmwareUpdate"): "false"})
                first = await rig.energy_transfer_started(evse=1)
                answer = await rig.call("UpdateFirmware",
                                        update_request(rig, 15, url, signature, pki))
                assert answer["status"] == "Accepted"
                await until_status(rig, 15, "InstallScheduled")
                await rig.settle()
                calls = history(rig)
                scheduled = next(i for i, (a, p) in enumerate(calls)
                                 if a == "FirmwareStatusNotification"
                                 and p["status"] == "InstallScheduled")
                # Step 11: the Available connector (EVSE 2) goes Unavailable.
                after = [p for a, p in calls[scheduled:] if a == "StatusNotification"]
                assert [(p["evseId"], p["connectorStatus"]) for p in after] == [
                    (2, "Unavailable")]
                await rig.present(evse=2)
                await rig.plug(2)
                assert not [e for e in rig.transaction_events()
                            if e.get("evse", {}).get("id") == 2], "a session on EVSE 2"
                await rig.advance(1)
                assert not rig.snapshot(2)["contactor_closed"], "energy on EVSE 2"
                await rig.unplug(2)
                # Step 13/14: the transaction ends; its connector goes Unavailable too.
                await end_transaction(rig, first)
                await until_status(rig, 15, "InstallRebooting")
                old = history(rig)
                installing = next(i for i, (a, p) in enumerate(old)
                                  if a == "FirmwareStatusNotification"
                                  and p["status"] == "Installing")
                assert (1, "Unavailable") in [(p["evseId"], p["connectorStatus"])
                                              for a, p in old[:installing]
                                              if a == "StatusNotification"]
                await installed_and_rebooted(rig, 15)
    run(case())


def test_TC_L_16(tmp_path):
    """Secure Firmware Update - Able to update firmware with ongoing transaction."""
    pytest.skip("not applicable: the station installs only when no transaction runs "
                "(not C-43): it reboots to activate the image, which would end the session")


def test_TC_L_18(tmp_path):
    """Secure Firmware Update - Missing firmware signing certificate and signature."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki)
                await install_root(rig, pki)
                answer = await rig.call("UpdateFirmware", update_request(
                    rig, 18, url, signature, pki, signed=False))
                assert answer["status"] in ("Rejected", "InvalidCertificate")
                await rig.advance(5)
                assert firmware_statuses(rig) == [] and not server.requests
    run(case())
