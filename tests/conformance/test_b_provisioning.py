"""Part 6, B Provisioning: the Charging Station cases of Core (Part 5, 4.2)."""

from __future__ import annotations

from tests.conformance.rig import run, station


def test_TC_B_01(tmp_path):
    """Cold Boot Charging Station - Accepted: Booted by a power cycle; a message reports
    the state of every connector."""
    async def case():
        async with station(tmp_path, evses=2, booted=False) as rig:
            link = await rig.new_link()
            boot = await rig.expect("BootNotification")
            assert boot["reason"] in ("PowerUp", "ApplicationReset", "FirmwareUpdate",
                                      "LocalReset", "RemoteReset", "ScheduledReset",
                                      "Triggered", "Unknown", "Watchdog")
            for evse in (1, 2):
                status = await rig.expect("StatusNotification",
                                          where=lambda p, e=evse: p["evseId"] == e)
                assert status["connectorStatus"] == "Available"
                assert status["connectorId"] != 0
            event = await rig.expect("SecurityEventNotification")
            assert event["type"] in ("StartupOfTheDevice", "ResetOrReboot")
            assert link is rig.link
    run(case())
