"""Two faults the VM rig's install cuts found on a real kernel under systemd
(tests/vm/install_cuts.py), held here on the host.

1. After a firmware install the agent execs itself and keeps its PID. It told systemd
   STOPPING=1 first, so systemd waited TimeoutStopSec for that PID to exit and then
   SIGKILLed the freshly started agent (and restarted it as a failure): every install
   ended with the new agent killed ten seconds later. Now it says RELOADING=1, and the
   new process's READY=1 ends the reload.
2. The boot time came from /proc/stat, which the shipped unit hides (ProcSubset=pid), so
   a restart after a power cut was reported as ApplicationReset, not PowerUp.
"""

import asyncio
import builtins
import time
from datetime import datetime, timedelta, timezone

from agent.blocks import provisioning
from agent.clock import format_datetime
from agent.demo.csms import Csms
from hal.drivers.mock.installer import mock_image
from tests.file_servers import FileServer
from tests.firmware_pki import make_firmware_pki, sign_file
from tests.harness import PASSWORD, AgentProcess, write_config
from tests.test_firmware import connected, statuses_until
from tests.test_service_notify import NotifySocket

STATION = "CS-TEST"


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_the_exec_after_an_install_is_a_reload_for_systemd_not_a_stop(tmp_path):
    pki = make_firmware_pki("ec")

    async def main():
        notify = NotifySocket(tmp_path / "notify")
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            with FileServer() as server:
                config = write_config(tmp_path, csms.url, station_id=STATION)
                agent = await AgentProcess(config, env={"NOTIFY_SOCKET": notify.path}).start()
                try:
                    await notify.until(lambda m: m.get("READY") == "1")
                    pid = agent.proc.pid
                    link = await connected(csms, station=STATION, timeout=20)
                    answer = await link.call("InstallCertificate", {
                        "certificateType": "ManufacturerRootCertificate",
                        "certificate": pki.root_pem})
                    assert answer["status"] == "Accepted"
                    image = tmp_path / "station-2.0.0.img"
                    image.write_bytes(mock_image("2.0.0", padding=1000))
                    server.files["/fw/station-2.0.0.img"] = image.read_bytes()
                    past = format_datetime(datetime.now(timezone.utc) - timedelta(hours=1))
                    answer = await link.call("UpdateFirmware", {"requestId": 7, "firmware": {
                        "location": server.url("/fw/station-2.0.0.img"),
                        "retrieveDateTime": past, "signingCertificate": pki.signing_cert_pem,
                        "signature": sign_file(pki, image)}})
                    assert answer["status"] == "Accepted"
                    assert (await statuses_until(link, 7, "InstallRebooting"))[-1] == \
                        "InstallRebooting"
                    # The same process, exec'd into the new firmware, says it is ready.
                    again = await connected(csms, after=link, station=STATION, timeout=20)
                    assert await statuses_until(again, 7, "Installed") == ["Installed"]
                    await notify.until(lambda m: m.get("READY") == "1")
                    assert agent.proc.pid == pid and agent.proc.returncode is None
                    said = [m for m in notify.messages if "WATCHDOG" not in m]
                    # Nothing told systemd the service was going away...
                    assert not any("STOPPING" in m for m in said), said
                    # ...it was told the service reloads, and the reload ended with READY.
                    reloading = next(i for i, m in enumerate(said) if m.get("RELOADING") == "1")
                    assert any(m.get("READY") == "1" for m in said[reloading + 1:]), said
                finally:
                    assert await agent.stop() == 0
                await notify.quiet_for(0.3)
                assert {"STOPPING": "1", "STATUS": "stopping"} in notify.messages
            assert csms.schema_errors == []
        notify.close()
    run(main())


def test_the_boot_time_is_known_without_proc_stat(monkeypatch):
    """As under the shipped unit's ProcSubset=pid: /proc/stat is not there."""
    with open("/proc/stat", encoding="ascii") as f:
        btime = next(float(line.split()[1]) for line in f if line.startswith("btime "))
    real_open = builtins.open

    def no_proc_stat(path, *args, **kwargs):
        if str(path) == "/proc/stat":
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc_stat)
    booted = provisioning.system_boot_time()
    assert booted is not None
    assert abs(booted - btime) < 2          # btime is whole seconds
    # So a start after the machine booted again is a power-up, whatever the last run did.
    assert provisioning.decide_boot_reason(None, booted - 60, False, booted) == "PowerUp"
    assert provisioning.decide_boot_reason(None, time.time(), False, booted) == \
        "ApplicationReset"
