"""Firmware update across kill -9 on the real agent process: during the download (it
resumes where it stopped) and during the install (the version that runs afterwards
decides: Installed, or InstallationFailed — never Installed for what did not happen).
The install path also exercises the real process restarting itself (exec) after an
install, and a command installer from the config."""

import asyncio
import contextlib
import os
import signal
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.clock import format_datetime
from agent.demo.csms import Csms
from hal.drivers.mock.installer import mock_image
from tests.file_servers import FileServer
from tests import test_firmware as firmware_flow
from tests.firmware_pki import make_firmware_pki, sign_file
from tests.harness import PASSWORD, AgentProcess, write_config
from tests.test_firmware import statuses_until

STATION = "CS-FWPC"

# The install command: says it started, waits for the test's go, then "installs" the
# version named in the image by writing it where version_command reads it.
INSTALLER = '''
import pathlib, sys, time
image, state = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(state / "installer.pid").write_text(str(__import__("os").getpid()))
deadline = time.monotonic() + 30
while not (state / "go").exists():
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.02)
version = image.read_bytes().split(b"\\n", 1)[0].rsplit(b" ", 1)[1].decode()
(state / "version").write_text(version + "\\n")
'''


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def config(tmp_path, csms, *, installer=False):
    extra = ""
    if installer:
        script = tmp_path / "installer.py"
        script.write_text(INSTALLER)
        (tmp_path / "version").write_text("1.0.0\n")
        extra = (f'\n[firmware]\ninstall_command = "{sys.executable} {script} {{file}} {tmp_path}"\n'
                 f'version_command = "cat {tmp_path / "version"}"\n')
    path = write_config(tmp_path, csms.url, station_id=STATION, extra=extra)
    path.write_text(path.read_text().replace(
        'serial_number = "0001"\n', 'serial_number = "0001"\nfirmware_version = "1.0.0"\n'))
    return path


@contextlib.contextmanager
def file_server():
    with FileServer() as server:
        yield server


async def connected(csms, after=None):
    return await firmware_flow.connected(csms, after, station=STATION, timeout=20)


async def start_update(link, pki, server, tmp_path, request_id):
    answer = await link.call("InstallCertificate", {
        "certificateType": "ManufacturerRootCertificate", "certificate": pki.root_pem})
    assert answer["status"] == "Accepted"
    image = tmp_path / "station-2.0.0.img"
    image.write_bytes(mock_image("2.0.0", padding=400_000))
    server.files["/fw/station-2.0.0.img"] = image.read_bytes()
    past = format_datetime(datetime.now(timezone.utc) - timedelta(hours=1))
    answer = await link.call("UpdateFirmware", {"requestId": request_id, "firmware": {
        "location": server.url("/fw/station-2.0.0.img"), "retrieveDateTime": past,
        "installDateTime": past, "signingCertificate": pki.signing_cert_pem,
        "signature": sign_file(pki, image)}})
    assert answer["status"] == "Accepted"


async def wait_until(check, what, timeout=15):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.02)


async def wait_file(path):
    await wait_until(path.exists, f"{path} to appear")


def test_kill_during_download_resumes_and_installs(tmp_path):
    pki = make_firmware_pki("ec")

    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            with file_server() as server:
                server.behaviour.stall_after = 150_000
                path = config(tmp_path, csms)
                agent = await AgentProcess(path).start()
                try:
                    link = await connected(csms)
                    await start_update(link, pki, server, tmp_path, 50)
                    assert await statuses_until(link, 50, "Downloading") == ["Downloading"]
                    assert await asyncio.to_thread(server.stalled.wait, 10)
                    # Killed once part of the image is on the station's disk.
                    part = tmp_path / "state" / "firmware" / "50" / "station-2.0.0.img.part"
                    await wait_for_size(part)
                    await agent.kill()
                    server.behaviour.stall_after = None
                    server.release.set()
                    await agent.start()
                    again = await connected(csms, after=link)
                    assert again.calls("BootNotification")[0]["reason"] != "FirmwareUpdate"
                    # The download goes on (Downloading was said before the cut).
                    assert await statuses_after_cut(again, 50, "InstallRebooting",
                                                    "Downloading") == [
                        "Downloaded", "SignatureVerified", "Installing", "InstallRebooting"]
                    # The second GET continued the first: a Range from where it stopped.
                    resumed = server.requests[-1].headers.get("Range", "")
                    assert resumed.startswith("bytes=") and resumed != "bytes=0-", resumed
                    # The same process restarts itself into the "new firmware".
                    third = await connected(csms, after=again)
                    boot = third.calls("BootNotification")[0]
                    assert (boot["reason"], boot["chargingStation"]["firmwareVersion"]) == (
                        "FirmwareUpdate", "2.0.0")
                    assert await statuses_until(third, 50, "Installed") == ["Installed"]
                    assert agent.proc.returncode is None
                finally:
                    assert await agent.stop() == 0
            assert csms.schema_errors == []
    run(main())


@pytest.mark.parametrize("installer_finishes", [True, False])
def test_kill_during_install(tmp_path, installer_finishes):
    """Power dies with the installer at work. If the installer still got to the end (it
    runs outside the agent), the new version runs: Installed. If it died too, the old
    one runs: InstallationFailed, never Installed."""
    pki = make_firmware_pki("rsa")

    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            with file_server() as server:
                agent = await AgentProcess(config(tmp_path, csms, installer=True)).start()
                try:
                    link = await connected(csms)
                    await start_update(link, pki, server, tmp_path, 60)
                    assert await statuses_until(link, 60, "Installing") == [
                        "Downloading", "Downloaded", "SignatureVerified", "Installing"]
                    await wait_file(tmp_path / "installer.pid")
                    installer = int((tmp_path / "installer.pid").read_text())
                    await agent.kill()
                    if installer_finishes:
                        (tmp_path / "go").write_text("")
                    else:
                        os.kill(installer, signal.SIGKILL)
                    await _gone(installer)
                    await agent.start()
                    again = await connected(csms, after=link)
                    boot = again.calls("BootNotification")[0]
                    assert boot["reason"] == "FirmwareUpdate"
                    version = boot["chargingStation"]["firmwareVersion"]
                    if installer_finishes:
                        assert version == "2.0.0"
                        assert await statuses_after_cut(again, 60, "Installed",
                                                        "Installing") == ["Installed"]
                        await again.expect_call("SecurityEventNotification",
                                                where=lambda p: p["type"] == "FirmwareUpdated")
                    else:
                        assert version == "1.0.0"
                        assert await statuses_after_cut(again, 60, "InstallationFailed",
                                                        "Installing") == ["InstallationFailed"]
                        # The attempt is in the security log, as failed (Part 6
                        # errata 2023-12, TC_L_08 step 20).
                        event = await again.expect_call(
                            "SecurityEventNotification",
                            where=lambda p: p["type"] == "FirmwareUpdated")
                        assert "failed (InstallationFailed)" in event["techInfo"]
                    # Nothing is left pending: the station is back in normal service.
                    assert again.calls("StatusNotification")[0]["connectorStatus"] == "Available"
                finally:
                    assert await agent.stop() == 0
            assert csms.schema_errors == []
    run(main())


async def statuses_after_cut(link, request_id, last, before_cut):
    """The statuses on the link after a kill, up to `last`, without a repeat of
    `before_cut`: the status sent last before the kill may not have had its answer
    committed when the process died, and then it is sent again (at least once, as OCPP
    allows). Anything else, or a second repeat, stays in the list and fails the test."""
    seen = await statuses_until(link, request_id, last)
    return seen[1:] if seen[0] == before_cut else seen


async def wait_for_size(path):
    await wait_until(lambda: path.exists() and path.stat().st_size > 0, f"{path} to grow")


async def _gone(pid):
    await wait_until(lambda: not Path(f"/proc/{pid}").exists() or "zombie" in _state(pid),
                     f"installer {pid} to end")


def _state(pid):
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"
