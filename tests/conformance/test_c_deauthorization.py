"""Part 6, C Authorization: a cached token the CSMS refuses after an offline start
(C12 with StopTxOnInvalidId / MaxEnergyOnInvalidId, E05) and the master pass (C16).

The station has no display or other user interface (Part 5 C-07 "Master Pass with UI" is
not a feature of it): a master pass stops every transaction (C-08, C16.FR.02).

It has a Local Authorization List: TC_C_15..18's Memory State "A known valid idToken is
configured in the Local auth list (if implemented) and auth cache (if implemented)" puts
the token in both (tests/conformance/local_list.py); the list's entry then decides
offline, as it comes first (C13/C14), and the CSMS's Invalid applies to it all the same."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import AsyncIterator

import pytest

from tests.conformance.local_list import id_token_local_auth_list
from tests.conformance.offline import OFFLINE_SETTINGS, Offline, cache_token, prepare
from tests.conformance.rig import VALID_TOKEN, Rig, run, station
from tests.conformance.tx_rules import check_transaction_events

TRANSACTION_DURATION_S = 20   # <Configured Transaction Duration>
MESSAGE_TIMEOUT_S = 30        # <Configured message timeout>
CACHE_SETTINGS = {
    ("AuthCacheCtrlr", "Enabled"): "true",
    ("AuthCtrlr", "LocalPreAuthorize"): "true",
    ("AuthCtrlr", "LocalAuthorizeOffline"): "true",
    ("AuthCtrlr", "OfflineTxForUnknownIdEnabled"): "true",
}
MASTER_GROUP = "MASTER-GROUP-1"                               # <Configured masterPassGroupId>
MASTER_TOKEN = {"idToken": "0A0B0C0D", "type": "ISO14443"}    # <Configured masterpass_idtoken>
VALID_TOKEN2 = {"idToken": "04A1B2C5", "type": "ISO14443"}    # <Configured valid_idtoken2>


@contextlib.asynccontextmanager
async def c_station(tmp_path: Path, evses: int = 1) -> AsyncIterator[Rig]:
    """The rig's station, and at the end Part 6's general tool rules for every
    TransactionEvent the station sent (section 2.1: seqNo, Started first, Ended last)."""
    async with station(tmp_path, evses=evses) as rig:
        yield rig
        check_transaction_events(rig)


def invalid_for_token(payload: dict) -> dict:
    """The OCTT's TransactionEvent answer: Invalid wherever there is an idToken."""
    return {"idTokenInfo": {"status": "Invalid"}} if "idToken" in payload else {}


async def offline_cached_start(rig: Rig, stop_tx: bool, max_energy_wh: int,
                               settings: dict[tuple[str, str], str] | None = None
                               ) -> tuple[str, int]:
    """The steps 1-4 of TC_C_15..18: the cached token starts a transaction offline; the
    OCTT answers the queued TransactionEvent with the idToken Invalid. `settings`: the
    case's own Configuration State besides. Returns the transaction id and how many
    events were sent before the answer."""
    await prepare(rig, CACHE_SETTINGS, OFFLINE_SETTINGS, {
        ("TxCtrlr", "StopTxOnInvalidId"): "true" if stop_tx else "false",
        ("TxCtrlr", "MaxEnergyOnInvalidId"): str(max_energy_wh)}, settings or {})
    await cache_token(rig, VALID_TOKEN)                 # IdTokenCached
    await id_token_local_auth_list(rig, VALID_TOKEN)    # ... and in the Local auth list
    await rig.ev_connected_pre_session()
    offline = Offline(rig)
    await offline.start()
    await rig.present()
    await offline.wait(TRANSACTION_DURATION_S)
    assert rig.snapshot()["contactor_closed"] is True   # authorized from the list
    assert rig.snapshot()["power_w"] > 0
    rig.answer("TransactionEvent", invalid_for_token)
    await offline.reconnect()
    await rig.settle()
    events = rig.sent("TransactionEvent")
    queued = [e for e in events if e.get("offline") is True]
    assert queued, "the queue was not delivered"
    tx_id = queued[0]["transactionInfo"]["transactionId"]
    # Step 2/3: what the queue held.
    authorized = [e for e in queued if e["triggerReason"] == "Authorized"]
    for event in authorized:   # optional, but when there: the cached token, offline
        assert event["idToken"] == VALID_TOKEN
        assert event["offline"] is True
    with_token = [e for e in queued if "idToken" in e]
    assert with_token and with_token[0]["idToken"] == VALID_TOKEN
    assert any(e["triggerReason"] == "ChargingStateChanged" for e in queued)
    return tx_id, len(queued)


def after(rig: Rig, count: int) -> list[dict]:
    """The TransactionEvents sent on the current link after the first `count`."""
    return rig.sent("TransactionEvent")[count:]


async def assert_energy_stopped(rig: Rig) -> None:
    snapshot = rig.snapshot()
    assert snapshot["contactor_closed"] is False
    assert snapshot["offered_current_a"] is None
    energy = snapshot["energy_wh"]
    await rig.advance(30, step=5)
    assert rig.snapshot()["energy_wh"] == pytest.approx(energy, abs=0.01)


def test_TC_C_15(tmp_path):
    """Authorization through authorization cache - StopTxOnInvalidId = false,
    MaxEnergyOnInvalidId > 0 (errata 2023-12: 10.000 Wh)"""
    async def case():
        async with c_station(tmp_path) as rig:
            # The errata's step 3 refuses any "triggerReason ChargingStateChanged and
            # chargingState SuspendedEVSE", which Part 6's own EnergyTransferStarted (step 7)
            # asks for when TxStartPoint has PowerPathClosed (the default). TxStartPoint is
            # ReadWrite: the case runs with one that has Authorized, where both hold
            # literally (and the optional Authorized message is there to check).
            tx_id, queued = await offline_cached_start(rig, stop_tx=False, max_energy_wh=10_000,
                                                       settings={
                ("TxCtrlr", "TxStartPoint"): "EVConnected,Authorized"})
            assert [e["triggerReason"] for e in rig.transaction_events(tx_id)
                    if e.get("offline")][:1] == ["Authorized"]
            refused_at_wh = rig.snapshot()["energy_wh"]
            # Not deauthorized, energy not stopped: the transaction goes on.
            await rig.advance(TRANSACTION_DURATION_S, step=5)
            assert rig.snapshot()["contactor_closed"] is True
            assert rig.snapshot()["energy_wh"] > refused_at_wh
            events = rig.transaction_events(tx_id)
            assert not [e for e in events if e["triggerReason"] == "Deauthorized"]
            assert events[0]["eventType"] == "Started"
            assert not [e for e in events if e["triggerReason"] == "ChargingStateChanged"
                        and e["transactionInfo"]["chargingState"] == "SuspendedEVSE"]
            assert all(e["eventType"] != "Ended" for e in events)
            # Post scenario: only MaxEnergyOnInvalidId is delivered from the refusal on;
            # then the EVSE stops offering, and the transaction stays open.
            for _ in range(40):
                await rig.advance(60, step=20)
                if not rig.snapshot()["contactor_closed"]:
                    break
            delivered = rig.snapshot()["energy_wh"] - refused_at_wh
            assert 10_000 - 20 <= delivered <= 10_000 + 20, delivered
            suspended = [e for e in after(rig, queued) if e["transactionInfo"].get(
                "chargingState") == "SuspendedEVSE"]
            assert suspended and suspended[0]["triggerReason"] == "ChargingStateChanged"
            assert suspended[0]["eventType"] == "Updated"
            await assert_energy_stopped(rig)
            assert all(e["eventType"] != "Ended" for e in rig.transaction_events(tx_id))
            # The EV leaves (EVDisconnected): the transaction ends then, as any does.
            await rig.unplug()
            ended = rig.transaction_events(tx_id)[-1]
            assert ended["eventType"] == "Ended"
            assert ended["triggerReason"] == "EVCommunicationLost"
            assert ended["transactionInfo"]["chargingState"] == "Idle"
    run(case(), timeout=120)


async def _stopped_on_invalid(tmp_path, max_energy_wh: int,
                              settings: dict[tuple[str, str], str] | None = None) -> None:
    async with c_station(tmp_path) as rig:
        tx_id, queued = await offline_cached_start(rig, stop_tx=True, max_energy_wh=max_energy_wh,
                                                   settings=settings)
        later = after(rig, queued)
        deauthorized = [e for e in later if e["triggerReason"] == "Deauthorized"]
        assert len(deauthorized) == 1
        event = deauthorized[0]
        assert event["transactionInfo"]["transactionId"] == tx_id
        assert event.get("offline", False) is False
        # TxStopPoint (EVConnected, Authorized) has Authorized: the transaction ends.
        assert event["eventType"] == "Ended"
        assert event["transactionInfo"]["stoppedReason"] == "DeAuthorized"
        # Post scenario: the energy flow stops on receiving status Invalid.
        await assert_energy_stopped(rig)


def test_TC_C_16(tmp_path):
    """Authorization through authorization cache - StopTxOnInvalidId = true"""
    # TC_C_16's Configuration State has no OfflineTxForUnknownIdEnabled (its siblings set
    # it true "if implemented"): left at its default, false, so that only the local data
    # (list and cache) can have authorized the token offline.
    run(_stopped_on_invalid(tmp_path, max_energy_wh=0, settings={
        ("AuthCtrlr", "OfflineTxForUnknownIdEnabled"): "false"}))


def test_TC_C_17(tmp_path):
    """Authorization through authorization cache - StopTxOnInvalidId = false"""
    async def case():
        async with c_station(tmp_path) as rig:
            # Step 2 requires "a message with triggerReason Authorized" here (optional in
            # TC_C_15/16/18): with the default TxStartPoint PowerPathClosed no event has
            # that trigger (the Started one is ChargingStateChanged, EnergyTransferStarted
            # step 7). TxStartPoint is ReadWrite, so the case runs with a start point that
            # has Authorized, where Part 6 can check what it asks for.
            tx_id, queued = await offline_cached_start(rig, stop_tx=False, max_energy_wh=0,
                                                       settings={
                ("TxCtrlr", "TxStartPoint"): "EVConnected,Authorized"})
            authorized = [e for e in rig.transaction_events(tx_id)
                          if e["triggerReason"] == "Authorized"]
            assert len(authorized) == 1, authorized
            assert authorized[0]["offline"] is True
            assert authorized[0]["idToken"] == VALID_TOKEN
            assert authorized[0]["eventType"] == "Updated"      # started on EVConnected
            # MaxEnergyOnInvalidId 0: no more energy once refused; suspended, not ended.
            later = after(rig, queued)
            suspended = [e for e in later
                         if e["transactionInfo"].get("chargingState") == "SuspendedEVSE"]
            assert suspended, later
            assert suspended[0]["triggerReason"] == "ChargingStateChanged"
            assert suspended[0]["eventType"] == "Updated"
            assert not [e for e in later if e["triggerReason"] in ("Deauthorized", "SuspendedEVSE")]
            await assert_energy_stopped(rig)
            assert all(e["eventType"] != "Ended" for e in rig.transaction_events(tx_id))
    run(case())


def test_TC_C_18(tmp_path):
    """Authorization through authorization cache - StopTxOnInvalidId = true,
    MaxEnergyOnInvalidId > 0"""
    run(_stopped_on_invalid(tmp_path, max_energy_wh=500))


# ---- C16 Master pass ------------------------------------------------------------------

def master_pass_answer(payload: dict) -> dict:
    return {"idTokenInfo": {"status": "Accepted", "groupIdToken": {
        "idToken": MASTER_GROUP, "type": "Central"}}}


def test_TC_C_45(tmp_path):
    """Authorization by GroupId - Master pass - Not able to start transaction + groupId"""
    async def case():
        async with c_station(tmp_path) as rig:
            await prepare(rig, {("TxCtrlr", "TxStartPoint"): "Authorized",
                                ("AuthCtrlr", "MasterPassGroupId"): MASTER_GROUP,
                                ("AuthCtrlr", "LocalPreAuthorize"): "false"})  # general
            rig.answer("Authorize", master_pass_answer)
            await rig.present(MASTER_TOKEN)
            authorize = await rig.expect("Authorize")
            assert authorize["idToken"] == MASTER_TOKEN
            assert rig.sent("TransactionEvent") == []
            status = await rig.ev_connected_pre_session()
            assert status["connectorId"] == 1
            await rig.advance(MESSAGE_TIMEOUT_S, step=5)    # the OCTT waits for step 4
            # No transaction at all, so none Charging (step 4).
            assert rig.sent("TransactionEvent") == []
            assert rig.snapshot()["contactor_closed"] is False
            assert rig.snapshot()["offered_current_a"] is None
    run(case())


def test_TC_C_47(tmp_path):
    """Stop Transaction with a Master Pass - With UI - All transactions"""
    pytest.skip("not applicable: the station has no user interface to choose transactions "
                "with (C-07 Master Pass with UI); without one the master pass stops all "
                "(TC_C_49)")


def test_TC_C_48(tmp_path):
    """Stop Transaction with a Master Pass - With UI - With UI - Specific transactions"""
    pytest.skip("not applicable: the station has no user interface to choose transactions "
                "with (C-07 Master Pass with UI); without one the master pass stops all "
                "(TC_C_49)")


def test_TC_C_49(tmp_path):
    """Stop Transaction with a Master Pass - Without UI"""
    async def case():
        async with c_station(tmp_path, evses=2) as rig:
            await prepare(rig, {("AuthCtrlr", "MasterPassGroupId"): MASTER_GROUP,
                                ("AuthCtrlr", "LocalPreAuthorize"): "false"})  # general
            first = await rig.energy_transfer_started(VALID_TOKEN, evse=1)
            second = await rig.energy_transfer_started(VALID_TOKEN2, evse=2)
            ids = {1: first["transactionInfo"]["transactionId"],
                   2: second["transactionInfo"]["transactionId"]}
            rig.answer("Authorize", master_pass_answer)
            rig.answer("TransactionEvent", lambda p: master_pass_answer(p)
                       if "idToken" in p else {})
            await rig.present(MASTER_TOKEN)
            authorize = await rig.expect("Authorize", where=lambda p: p["idToken"] == MASTER_TOKEN)
            assert authorize["idToken"] == MASTER_TOKEN
            for evse in (1, 2):
                ended = await rig.expect("TransactionEvent", where=lambda p, e=evse: (
                    p["transactionInfo"]["transactionId"] == ids[e]
                    and p["eventType"] == "Ended"))
                assert ended["transactionInfo"]["stoppedReason"] == "MasterPass"
                # "idToken omit or" the master pass; Part 6's general rule (the first event
                # after presenting an idToken MUST contain it) leaves only the latter.
                assert ended["idToken"] == MASTER_TOKEN
                # EVConnectedPostSession: energy stopped, the EV still plugged in.
                assert ended["transactionInfo"]["chargingState"] == "EVConnected"
                assert rig.snapshot(evse)["contactor_closed"] is False
                assert rig.snapshot(evse)["locked"] is False
            assert len(rig.sent("Authorize")) == 3   # two sessions, one master pass
            # EVConnectedPostSession, EVDisconnected for both.
            for evse in (1, 2):
                await rig.unplug(evse)
                status = await rig.expect("StatusNotification", where=lambda p, e=evse: (
                    p["evseId"] == e and p["connectorStatus"] == "Available"))
                assert status["connectorId"] == 1
            # The master pass started nothing.
            assert {e["transactionInfo"]["transactionId"]
                    for e in rig.transaction_events()} == set(ids.values())
    run(case())
