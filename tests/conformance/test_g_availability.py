"""Part 6, G Availability: the Charging Station cases of Core (Part 5, 4.2).

The station reports a connector's state with StatusNotification (Part 6 accepts it or a
NotifyEvent on AvailabilityState); the tests assert the StatusNotification fields and
that the device model's AvailabilityState (what a NotifyEvent would carry) agrees.
Cases that say "all connectors" or "the other EVSEs" run on a station with two EVSEs,
so a change that reaches one EVSE only shows.
"""

from __future__ import annotations

from typing import Any, Callable

from tests.conformance.rig import CONNECTOR, EVSE, VALID_TOKEN, Rig, run, station

OTHER_EVSE = 2


def status_is(evse: int, status: str, connector: int = CONNECTOR) -> Callable[[dict], bool]:
    return lambda p: (p["evseId"], p["connectorId"], p["connectorStatus"]) == (
        evse, connector, status)


async def change(rig: Rig, operational_status: str, evse: int | None = None,
                 connector: int | None = None) -> dict:
    """The OCTT's ChangeAvailabilityRequest; the station's answer, once what it causes
    has been reported."""
    request: dict[str, Any] = {"operationalStatus": operational_status}
    if evse is not None:
        request["evse"] = {"id": evse} | ({"connectorId": connector} if connector else {})
    answer = await rig.call("ChangeAvailability", request)
    await rig.settle()
    return answer


async def availability_state(rig: Rig, name: str, evse: int | None = None,
                             connector: int | None = None) -> str | None:
    component: dict[str, Any] = {"name": name}
    if evse is not None:
        component["evse"] = {"id": evse} | ({"connectorId": connector} if connector else {})
    answer = await rig.call("GetVariables", {"getVariableData": [{
        "component": component, "variable": {"name": "AvailabilityState"}}]})
    return answer["getVariableResult"][0].get("attributeValue")


def statuses(rig: Rig) -> list[tuple[int, int, str]]:
    """Every StatusNotification on the current link, as (evse, connector, status)."""
    return [(p["evseId"], p["connectorId"], p["connectorStatus"])
            for p in rig.sent("StatusNotification")]


def assert_well_formed(rig: Rig) -> None:
    """Part 6's "evseId not 0, connectorId not 0" for every StatusNotification."""
    for evse, connector, _ in statuses(rig):
        assert evse != 0 and connector != 0


async def unavailable(rig: Rig, evse: int | None = None, connector: int | None = None) -> None:
    """Reusable State Unavailable (for the station, an EVSE or a connector): Accepted, and
    every connector it covers reported Unavailable."""
    answer = await change(rig, "Inoperative", evse, connector)
    assert answer["status"] == "Accepted"
    for e in ([evse] if evse is not None else range(1, rig.evses + 1)):
        await rig.expect("StatusNotification", where=status_is(e, "Unavailable"))


def test_TC_G_01(tmp_path):
    """Connector status Notification - Available to Occupied."""
    async def case():
        async with station(tmp_path) as rig:
            status = await rig.ev_connected_pre_session()
            assert (status["evseId"], status["connectorId"]) == (EVSE, CONNECTOR)
            assert status["connectorStatus"] == "Occupied"
            # Step 3 of EVConnectedPreSession only with TxStartPoint EVConnected (or
            # ParkingBayOccupancy/Authorized); the station's default is PowerPathClosed,
            # so a plug-in alone starts no transaction.
            assert await rig.get_variable("TxCtrlr", "TxStartPoint") == "PowerPathClosed"
            assert rig.transaction_events() == []
            assert await availability_state(rig, "Connector", EVSE, CONNECTOR) == "Occupied"
    run(case())


def test_TC_G_02(tmp_path):
    """Connector status Notification - Occupied to Available."""
    async def case():
        async with station(tmp_path) as rig:
            await rig.ev_connected_pre_session()
            await rig.unplug()
            status = await rig.expect("StatusNotification", where=status_is(EVSE, "Available"))
            assert status["connectorStatus"] == "Available"
            assert await availability_state(rig, "Connector", EVSE, CONNECTOR) == "Available"
    run(case())


def test_TC_G_03(tmp_path):
    """Change Availability EVSE - Operative to inoperative."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await unavailable(rig, EVSE)
            assert_well_formed(rig)
            # Only the EVSE asked for: the other one stays in service, unreported.
            assert (OTHER_EVSE, CONNECTOR, "Unavailable") not in statuses(rig)
            assert await availability_state(rig, "EVSE", EVSE) == "Unavailable"
            assert await availability_state(rig, "EVSE", OTHER_EVSE) == "Available"
            assert await availability_state(rig, "ChargingStation") == "Available"
    run(case())


def test_TC_G_04(tmp_path):
    """Change Availability EVSE - Inoperative to operative."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await unavailable(rig, EVSE)          # Memory State: Unavailable for the EVSE
            answer = await change(rig, "Operative", EVSE)
            assert answer["status"] == "Accepted"
            status = await rig.expect("StatusNotification", where=status_is(EVSE, "Available"))
            assert status["evseId"] == EVSE and status["connectorStatus"] == "Available"
            assert await availability_state(rig, "EVSE", EVSE) == "Available"
            assert await availability_state(rig, "Connector", EVSE, CONNECTOR) == "Available"
            assert_well_formed(rig)
    run(case())


def test_TC_G_05(tmp_path):
    """Change Availability Charging Station - Operative to inoperative."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await unavailable(rig)
            assert_well_formed(rig)
            for evse in (EVSE, OTHER_EVSE):
                assert await availability_state(rig, "EVSE", evse) == "Unavailable"
            assert await availability_state(rig, "ChargingStation") == "Unavailable"
            # Inoperative means no charging: a card and a cable start nothing.
            await rig.present()
            await rig.plug()
            await rig.advance(1)
            assert rig.transaction_events() == []
            assert not rig.snapshot()["contactor_closed"]
    run(case())


def test_TC_G_06(tmp_path):
    """Change Availability Charging Station - Inoperative to operative."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await unavailable(rig)                # State is Unavailable
            answer = await change(rig, "Operative")
            assert answer["status"] == "Accepted"
            for evse in (EVSE, OTHER_EVSE):
                status = await rig.expect("StatusNotification",
                                          where=status_is(evse, "Available"))
                assert status["connectorStatus"] == "Available"
            assert await availability_state(rig, "ChargingStation") == "Available"
            assert_well_formed(rig)
    run(case())


def test_TC_G_07(tmp_path):
    """Change Availability Connector - Operative to inoperative."""
    async def case():
        async with station(tmp_path) as rig:
            await unavailable(rig, EVSE, CONNECTOR)
            assert await availability_state(rig, "Connector", EVSE, CONNECTOR) == "Unavailable"
    run(case())


def test_TC_G_08(tmp_path):
    """Change Availability Connector - Inoperative to operative."""
    async def case():
        async with station(tmp_path) as rig:
            await unavailable(rig, EVSE, CONNECTOR)   # Memory State
            answer = await change(rig, "Operative", EVSE, CONNECTOR)
            assert answer["status"] == "Accepted"
            status = await rig.expect("StatusNotification", where=status_is(EVSE, "Available"))
            assert (status["evseId"], status["connectorId"]) == (EVSE, CONNECTOR)
            assert await availability_state(rig, "Connector", EVSE, CONNECTOR) == "Available"
    run(case())


def test_TC_G_09(tmp_path):
    """Change Availability EVSE - Operative to operative."""
    async def case():
        async with station(tmp_path) as rig:
            before = len(statuses(rig))
            answer = await change(rig, "Operative", EVSE)
            assert answer["status"] == "Accepted"
            assert len(statuses(rig)) == before      # nothing changed, nothing reported
    run(case())


def test_TC_G_10(tmp_path):
    """Change Availability EVSE - Inoperative to inoperative."""
    async def case():
        async with station(tmp_path) as rig:
            await unavailable(rig, EVSE)
            before = len(statuses(rig))
            answer = await change(rig, "Inoperative", EVSE)
            assert answer["status"] == "Accepted"
            assert len(statuses(rig)) == before
            assert await availability_state(rig, "EVSE", EVSE) == "Unavailable"
    run(case())


def history(rig: Rig) -> list[tuple[str, dict]]:
    """Every CALL the station sent on the current link, in order (for "after" checks;
    StationLink.calls() keeps the order of one action only, so this reads its record)."""
    assert rig.link is not None
    return [(c.action, c.payload) for c in rig.link._received]


def reported_after_end(rig: Rig, transaction_id: str, evse: int) -> bool:
    """The connector's Unavailable StatusNotification came after the transaction's Ended
    TransactionEvent, not before it (G03.FR.05 / G04.FR.06: the change waits for the end
    of the transaction)."""
    calls = history(rig)
    ended = next(i for i, (action, p) in enumerate(calls) if action == "TransactionEvent"
                 and p["eventType"] == "Ended"
                 and p["transactionInfo"]["transactionId"] == transaction_id)
    unavailable = [i for i, (action, p) in enumerate(calls) if action == "StatusNotification"
                   and status_is(evse, "Unavailable")(p)]
    return bool(unavailable) and min(unavailable) > ended


async def stop_authorized(rig: Rig, transaction_id: str, *, remote: bool,
                          evse: int = EVSE) -> dict:
    """Reusable State StopAuthorized with its tool validations; returns the Ended event.
    A (local): the same idToken again: a TransactionEvent with triggerReason
    StopAuthorized (idToken omitted or that token), and the Ended one with chargingState
    EVConnected and stoppedReason Local or omitted. B (remote): RequestStopTransaction
    Accepted, the next TransactionEvent with triggerReason RemoteStop. Part 6 names the
    Ended event's trigger ChargingStateChanged in A step 3, written for a TxStopPoint
    without Authorized; with this station's default (EVConnected,Authorized) the
    StopAuthorized event is itself the Ended one, which a lab accepts as steps 1 and 3."""
    before = len(rig.transaction_events(transaction_id))
    if remote:
        stop = await rig.call("RequestStopTransaction", {"transactionId": transaction_id})
        assert stop["status"] == "Accepted"                                    # B step 2
    else:
        await rig.present(evse=evse)
    await rig.settle()
    end = await rig.expect("TransactionEvent", where=lambda p: (
        p["eventType"] == "Ended" and p["transactionInfo"]["transactionId"] == transaction_id))
    new = rig.transaction_events(transaction_id)[before:]
    info = end["transactionInfo"]
    if remote:
        assert new[0]["triggerReason"] == "RemoteStop"                         # B step 3
        assert info.get("stoppedReason") == "Remote"
    else:
        authorized = [e for e in new if e["triggerReason"] == "StopAuthorized"]
        assert authorized, new                                                 # A step 1
        for event in authorized:
            assert event.get("idToken", VALID_TOKEN) == VALID_TOKEN
        assert end["triggerReason"] in ("StopAuthorized", "ChargingStateChanged")
        assert info.get("stoppedReason", "Local") == "Local"                   # A step 3
        assert info.get("chargingState") == "EVConnected"
    return end


async def scheduled_until_stopped(rig: Rig, request: dict, *, remote: bool,
                                  evse: int = EVSE) -> None:
    """The "with ongoing transaction" cases: EnergyTransferStarted on `evse`, the
    ChangeAvailabilityRequest answered Scheduled, energy still flowing until
    StopAuthorized ends the transaction, then the connector reported Unavailable, and
    it stays so when the EV leaves (EVConnectedPostSession, EVDisconnected)."""
    started = await rig.energy_transfer_started(evse=evse)
    transaction_id = started["transactionInfo"]["transactionId"]
    answer = await rig.call("ChangeAvailability", request)
    assert answer["status"] == "Scheduled"
    await rig.settle()
    await rig.advance(30)                         # <Configured Transaction Duration>
    assert (evse, CONNECTOR, "Unavailable") not in statuses(rig)
    assert rig.snapshot(evse)["contactor_closed"], "the transaction must go on"
    assert not [e for e in rig.transaction_events(transaction_id) if e["eventType"] == "Ended"]
    await stop_authorized(rig, transaction_id, remote=remote, evse=evse)
    # The transaction ended with the StopAuthorized step (TxStopPoint Authorized): the
    # connector is reported Unavailable after the Ended event, with the EV still plugged
    # in (step 4; steps 7 and 10 only follow a step that ended the transaction).
    status = await rig.expect("StatusNotification", where=status_is(evse, "Unavailable"))
    assert status["evseId"] == evse and status["connectorId"] == CONNECTOR
    assert reported_after_end(rig, transaction_id, evse)
    assert not rig.snapshot(evse)["contactor_closed"]
    # EVDisconnected: still out of service, nothing new to report; its step 3 (a
    # TransactionEvent) only for a transaction not yet ended, which this one is.
    events = len(rig.transaction_events())
    await rig.unplug(evse)
    assert len(rig.transaction_events()) == events
    assert await availability_state(rig, "Connector", evse, CONNECTOR) == "Unavailable"
    assert [s for s in statuses(rig) if s[0] == evse][-1] == (evse, CONNECTOR, "Unavailable")


def test_TC_G_11(tmp_path):
    """Change Availability EVSE - With ongoing transaction."""
    async def case():
        async with station(tmp_path) as rig:
            await scheduled_until_stopped(rig, {"operationalStatus": "Inoperative",
                                                "evse": {"id": EVSE}}, remote=False)
            assert await availability_state(rig, "EVSE", EVSE) == "Unavailable"
            assert_well_formed(rig)
    run(case())


def test_TC_G_12(tmp_path):
    """Change Availability Charging Station - Operative to operative."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            before = len(statuses(rig))
            answer = await change(rig, "Operative")
            assert answer["status"] == "Accepted"
            assert len(statuses(rig)) == before
            assert_well_formed(rig)
    run(case())


def test_TC_G_13(tmp_path):
    """Change Availability Charging Station - Inoperative to inoperative (errata 2023-12:
    no status change, so nothing needs reporting)."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await unavailable(rig)
            before = len(statuses(rig))
            answer = await change(rig, "Inoperative")
            assert answer["status"] == "Accepted"
            assert len(statuses(rig)) == before
            assert await availability_state(rig, "ChargingStation") == "Unavailable"
    run(case())


def test_TC_G_14(tmp_path):
    """Change Availability Charging Station - With ongoing transaction."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            started = await rig.energy_transfer_started(evse=EVSE)
            answer = await rig.call("ChangeAvailability", {"operationalStatus": "Inoperative"})
            assert answer["status"] == "Scheduled"
            await rig.settle()
            # Step 3: the EVSE without a transaction goes out of service at once.
            await rig.expect("StatusNotification", where=status_is(OTHER_EVSE, "Unavailable"))
            assert (EVSE, CONNECTOR, "Unavailable") not in statuses(rig)
            assert rig.snapshot(EVSE)["contactor_closed"]
            await rig.advance(30)                 # <Configured Transaction Duration>
            assert (EVSE, CONNECTOR, "Unavailable") not in statuses(rig)
            transaction_id = started["transactionInfo"]["transactionId"]
            assert rig.snapshot(EVSE)["contactor_closed"], "the transaction must go on"
            await stop_authorized(rig, transaction_id, remote=True)              # step 5
            status = await rig.expect("StatusNotification", where=status_is(EVSE, "Unavailable"))
            assert status["evseId"] != 0 and status["connectorId"] != 0          # step 7
            assert reported_after_end(rig, transaction_id, EVSE)
            assert not rig.snapshot(EVSE)["contactor_closed"]
            await rig.unplug(EVSE)
            assert statuses(rig)[-1] == (EVSE, CONNECTOR, "Unavailable")
            assert await availability_state(rig, "ChargingStation") == "Unavailable"
    run(case())


def test_TC_G_15(tmp_path):
    """Change Availability Connector - Operative to operative."""
    async def case():
        async with station(tmp_path) as rig:
            before = len(statuses(rig))
            answer = await change(rig, "Operative", EVSE, CONNECTOR)
            assert answer["status"] == "Accepted"
            assert len(statuses(rig)) == before
    run(case())


def test_TC_G_16(tmp_path):
    """Change Availability Connector - Inoperative to inoperative."""
    async def case():
        async with station(tmp_path) as rig:
            await unavailable(rig, EVSE, CONNECTOR)
            before = len(statuses(rig))
            answer = await change(rig, "Inoperative", EVSE, CONNECTOR)
            assert answer["status"] == "Accepted"
            assert len(statuses(rig)) == before
    run(case())


def test_TC_G_17(tmp_path):
    """Change Availability Connector - With ongoing transaction."""
    async def case():
        async with station(tmp_path) as rig:
            await scheduled_until_stopped(rig, {
                "operationalStatus": "Inoperative",
                "evse": {"id": EVSE, "connectorId": CONNECTOR}}, remote=True)
    run(case())


async def booted_again(rig: Rig, *, reset: bool) -> None:
    """Reusable State Booted (a power cycle) or Booting (ResetRequest Immediate), up to
    the BootNotification of the new start."""
    if reset:
        answer = await rig.call("Reset", {"type": "Immediate"})
        assert answer["status"] == "Accepted"
        await rig.new_link()
    else:
        await rig.shutdown()
        await rig.start(wait_booted=False)
        await rig.new_link()
    await rig.expect("BootNotification")


async def reported_after_boot(rig: Rig) -> dict[int, str]:
    """Step "the Charging Station reports the status of all its connectors", then the
    SecurityEventNotification of the start; returns the status of each EVSE."""
    seen = {}
    for evse in range(1, rig.evses + 1):
        status = await rig.expect("StatusNotification", where=lambda p, e=evse: p["evseId"] == e)
        assert status["connectorId"] != 0 and status["evseId"] != 0
        seen[evse] = status["connectorStatus"]
    event = await rig.expect("SecurityEventNotification")
    assert event["type"] in ("StartupOfTheDevice", "ResetOrReboot")
    await rig.settle()
    return seen


def test_TC_G_18(tmp_path):
    """Change Availability EVSE - state persists across reboot."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await unavailable(rig, EVSE)
            assert (OTHER_EVSE, CONNECTOR, "Unavailable") not in statuses(rig)
            await booted_again(rig, reset=False)
            assert await reported_after_boot(rig) == {EVSE: "Unavailable",
                                                      OTHER_EVSE: "Available"}
            assert await availability_state(rig, "EVSE", EVSE) == "Unavailable"
    run(case())


def test_TC_G_19(tmp_path):
    """Change Availability Connector - state persists across reboot."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await unavailable(rig, EVSE, CONNECTOR)
            await booted_again(rig, reset=True)
            assert await reported_after_boot(rig) == {EVSE: "Unavailable",
                                                      OTHER_EVSE: "Available"}
            assert await availability_state(rig, "Connector", EVSE, CONNECTOR) == "Unavailable"
    run(case())


def test_TC_G_21(tmp_path):
    """Change Availability Charging Station - state persists across reboot."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await unavailable(rig)
            await booted_again(rig, reset=True)
            assert await reported_after_boot(rig) == {EVSE: "Unavailable",
                                                      OTHER_EVSE: "Unavailable"}
            assert await availability_state(rig, "ChargingStation") == "Unavailable"
    run(case())
