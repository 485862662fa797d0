"""Part 6, B Provisioning: status changes during an offline period (B04, TC_B_51/52).

The OCTT closes the connection and "does not accept a reconnect": here the station's
reconnection back-off runs on the rig's clock, so it stays offline exactly as long as
the test lets time pass (RetryBackOffWaitMinimum, RetryBackOffRandomRange 0). Both cases
run on two EVSEs: only then do "every connector" and "the changed ones" differ.
"""

from __future__ import annotations

from tests.conformance.rig import CONNECTOR, EVSE, Rig, run, station

OTHER_EVSE = 2
OFFLINE_THRESHOLD = 60       # <Configured offlineThreshold>


async def offline_with_plug_in(rig: Rig, offline_s: int) -> None:
    """Steps 1-3: the OCTT closes the connection, the EV is connected while the station
    is offline, and the station reconnects after `offline_s` seconds."""
    await rig.configure({
        ("OCPPCommCtrlr", "OfflineThreshold"): str(OFFLINE_THRESHOLD),
        ("OCPPCommCtrlr", "RetryBackOffWaitMinimum"): str(offline_s),
        ("OCPPCommCtrlr", "RetryBackOffRandomRange"): "0",
    })
    old = rig.link
    assert old is not None
    await old.close()
    await rig.settle()
    await rig.plug(EVSE)                       # Manual Action: Connect the EV and EVSE
    await rig.advance(offline_s - 1, step=1)
    assert rig.csms.links[rig.link.station_id][-1] is old, "reconnected too early"
    await rig.advance(1)
    await rig.new_link()
    await rig.settle()


def test_TC_B_51(tmp_path):
    """Status change during offline period - > Offline Threshold."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await offline_with_plug_in(rig, OFFLINE_THRESHOLD + 2)
            # Step 4: every connector, the changed one and the unchanged one.
            occupied = await rig.expect("StatusNotification", where=lambda p: p["evseId"] == EVSE)
            assert occupied["connectorStatus"] == "Occupied"
            assert (occupied["evseId"], occupied["connectorId"]) == (EVSE, CONNECTOR)
            other = await rig.expect("StatusNotification",
                                     where=lambda p: p["evseId"] == OTHER_EVSE)
            assert other["connectorStatus"] == "Available"
            assert other["connectorId"] == CONNECTOR
            # Registered already: a reconnect is not a boot.
            assert rig.sent("BootNotification") == []
    run(case())


def test_TC_B_52(tmp_path):
    """Status change during offline period - < Offline Threshold."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await offline_with_plug_in(rig, OFFLINE_THRESHOLD - 2)
            occupied = await rig.expect("StatusNotification")
            assert occupied["connectorStatus"] == "Occupied"
            assert (occupied["evseId"], occupied["connectorId"]) == (EVSE, CONNECTOR)
            # Only the connector whose status changed while offline.
            assert [p["evseId"] for p in rig.sent("StatusNotification")] == [EVSE]
    run(case())
