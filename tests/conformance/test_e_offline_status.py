"""Part 6, E Transactions: transaction status (E14), message retries (E13), offline
behaviour (E08, E11, E12) and a transaction deauthorized after an offline start (E05/E06).
How the OCTT goes offline: tests/conformance/offline.py. Part 6's general tool rules for
TransactionEvents (first Started, seqNo without gaps, nothing after Ended) are checked
at the end of every case (tx_rules.py). The station has a Local Authorization List: the
Memory State IdTokenLocalAuthList "(If implemented)" of TC_E_16, TC_E_45 and of
TransactionEventsInQueueEnded (TC_E_43) is applied (tests/conformance/local_list.py),
after IdTokenCached."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Callable

from ocpp.exceptions import InternalError

from tests.conformance.local_list import id_token_local_auth_list
from tests.conformance.offline import (BACKOFF_S, OFFLINE_SETTINGS, HeldAnswers, Offline,
                                       cache_token, prepare)
from tests.conformance.rig import CONNECTOR, EVSE, VALID_TOKEN, Rig, run
from tests.conformance.tx_rules import station

METER_INTERVAL_S = 10   # <Configured transaction_updated_metervalues_interval>
METER_SETTINGS = {
    ("SampledDataCtrlr", "TxUpdatedInterval"): str(METER_INTERVAL_S),
    ("SampledDataCtrlr", "TxUpdatedMeasurands"): "Energy.Active.Import.Register",
}
GROUP = {"idToken": "FLEET-7", "type": "Central"}   # <Configured GroupIdToken>
TOKEN2 = {"idToken": "04A1B2C4", "type": "ISO14443"}  # <Configured valid idtoken fields2>


async def stop_and_leave(rig: Rig, token: dict = VALID_TOKEN) -> None:
    """StopAuthorized (local: the same card) then EVDisconnected."""
    await rig.present(token)
    await rig.unplug()


def offline_queue(rig: Rig, transaction_id: str) -> list[dict]:
    """The transaction's events sent on the current link (after the reconnection)."""
    assert rig.link is not None
    return [e for e in rig.sent("TransactionEvent")
            if e["transactionInfo"]["transactionId"] == transaction_id]


def _at(event: dict) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


def assert_seq_unbroken(rig: Rig, transaction_id: str) -> None:
    seqs = [e["seqNo"] for e in rig.transaction_events(transaction_id)]
    assert sorted(set(seqs)) == list(range(len(set(seqs)))), seqs


# ---- E14 Check transaction status -----------------------------------------------------


def test_TC_E_28(tmp_path):
    """Check Transaction status - TransactionId unknown"""
    async def case():
        async with station(tmp_path) as rig:
            answer = await rig.call("GetTransactionStatus", {"transactionId": str(uuid.uuid4())})
            assert answer["ongoingIndicator"] is False
            assert answer["messagesInQueue"] is False
    run(case())


async def _status_after_offline_updates(tmp_path, with_id: bool) -> None:
    async with station(tmp_path) as rig:
        await prepare(rig, METER_SETTINGS, OFFLINE_SETTINGS)
        started = await rig.energy_transfer_started()
        tx_id = started["transactionInfo"]["transactionId"]
        offline = Offline(rig)
        await offline.start()
        await offline.wait(BACKOFF_S - 5)
        held = HeldAnswers()
        rig.answer("TransactionEvent", held.respond)
        await offline.reconnect()
        request = {"transactionId": tx_id} if with_id else {}
        answer = await rig.call("GetTransactionStatus", request)
        if with_id:
            assert answer["ongoingIndicator"] is True
        else:
            assert "ongoingIndicator" not in answer
        assert answer["messagesInQueue"] is True
        held.release()
        await rig.settle()
        events = offline_queue(rig, tx_id)
        assert len(events) >= (BACKOFF_S - 5) // METER_INTERVAL_S - 1
        for event in events:
            assert event["eventType"] == "Updated"
            assert event["meterValue"]
            assert event["offline"] is True
        assert_seq_unbroken(rig, tx_id)
        answer = await rig.call("GetTransactionStatus", request)
        assert answer["messagesInQueue"] is False


def test_TC_E_29(tmp_path):
    """Check Transaction status - Transaction with id ongoing - with message in queue"""
    run(_status_after_offline_updates(tmp_path, with_id=True))


def test_TC_E_30(tmp_path):
    """Check Transaction status - Transaction with id ongoing - without message in queue"""
    async def case():
        async with station(tmp_path) as rig:
            started = await rig.energy_transfer_started()
            answer = await rig.call("GetTransactionStatus", {
                "transactionId": started["transactionInfo"]["transactionId"]})
            assert answer["ongoingIndicator"] is True
            assert answer["messagesInQueue"] is False
    run(case())


def test_TC_E_31(tmp_path):
    """Check Transaction status - Transaction with id ended - with message in queue"""
    async def case():
        async with station(tmp_path) as rig:
            # Errata 6.1.19: the sampled meter values too. Its RetryBackOffWaitMinimum
            # (<configured> + Transaction Duration) only has to outlast the manual actions
            # and the Transaction Duration below: BACKOFF_S (60 s) does.
            await prepare(rig, METER_SETTINGS, OFFLINE_SETTINGS)
            started = await rig.energy_transfer_started()
            tx_id = started["transactionInfo"]["transactionId"]
            offline = Offline(rig)
            await offline.start()
            await offline.wait(METER_INTERVAL_S * 2)
            await stop_and_leave(rig)
            assert rig.snapshot()["contactor_closed"] is False
            await offline.wait(10)   # <Configured Transaction Duration>
            held = HeldAnswers()
            rig.answer("TransactionEvent", held.respond)
            await offline.reconnect()
            answer = await rig.call("GetTransactionStatus", {"transactionId": tx_id})
            assert answer["ongoingIndicator"] is False
            assert answer["messagesInQueue"] is True
            held.release()
            await rig.settle()
            events = offline_queue(rig, tx_id)
            assert all(e["offline"] is True for e in events)
            # StopAuthorized (TxStopPoint Authorized: the transaction ends there) ...
            ended = [e for e in events if e["eventType"] == "Ended"]
            assert len(ended) == 1
            assert ended[0]["triggerReason"] == "StopAuthorized"
            assert ended[0]["transactionInfo"].get("stoppedReason", "Local") == "Local"
            assert ended[0].get("idToken", VALID_TOKEN) == VALID_TOKEN
            assert events[-1] is ended[0]
            # ... EVDisconnected: the connector is Available again.
            status = await rig.expect("StatusNotification", where=lambda p: (
                p["evseId"] == EVSE and p["connectorStatus"] == "Available"))
            assert status["connectorId"] == CONNECTOR
            assert_seq_unbroken(rig, tx_id)
    run(case())


def test_TC_E_32(tmp_path):
    """Check Transaction status - Transaction with id ended - without message in queue"""
    async def case():
        async with station(tmp_path) as rig:
            started = await rig.energy_transfer_started()
            tx_id = started["transactionInfo"]["transactionId"]
            await stop_and_leave(rig)                        # through ParkingBayUnoccupied
            assert [e["eventType"] for e in rig.transaction_events(tx_id)][-1] == "Ended"
            answer = await rig.call("GetTransactionStatus", {"transactionId": tx_id})
            assert answer["ongoingIndicator"] is False
            assert answer["messagesInQueue"] is False
    run(case())


def test_TC_E_33(tmp_path):
    """Check Transaction status - Without transactionId - with message in queue"""
    run(_status_after_offline_updates(tmp_path, with_id=False))


def test_TC_E_34(tmp_path):
    """Check Transaction status - Without transactionId - without message in queue"""
    async def case():
        async with station(tmp_path) as rig:
            answer = await rig.call("GetTransactionStatus", {})
            assert "ongoingIndicator" not in answer
            assert answer["messagesInQueue"] is False
    run(case())


# ---- E11 / E12 / E08 Offline behaviour ------------------------------------------------


def test_TC_E_40(tmp_path):
    """Offline Behaviour - Connection loss during transaction"""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, METER_SETTINGS, OFFLINE_SETTINGS,
                          {("SampledDataCtrlr", "Enabled"): "true"})
            started = await rig.energy_transfer_started()
            tx_id = started["transactionInfo"]["transactionId"]
            offline = Offline(rig)
            await offline.start()
            await offline.wait(BACKOFF_S - 5)
            await offline.reconnect()
            await rig.settle()
            events = offline_queue(rig, tx_id)
            assert len(events) >= (BACKOFF_S - 5) // METER_INTERVAL_S - 1
            for event in events:
                assert event["eventType"] == "Updated"
                assert event["meterValue"]
                assert event["offline"] is True
            # Energy flowed on while offline, and the queued values show it.
            registers = [sv["value"] for e in events for mv in e["meterValue"]
                         for sv in mv["sampledValue"]
                         if sv.get("measurand", "Energy.Active.Import.Register")
                         == "Energy.Active.Import.Register"]
            assert registers == sorted(registers) and registers[-1] > registers[0]
            assert registers[-1] <= rig.snapshot()["energy_wh"] + 1
            assert rig.snapshot()["contactor_closed"] is True
            assert_seq_unbroken(rig, tx_id)
    run(case())


def test_TC_E_43(tmp_path):
    """Offline Behaviour - Transaction during offline period"""
    async def case():
        async with station(tmp_path) as rig:
            # Memory State TransactionEventsInQueueEnded: its configuration state
            # (OfflineTxForUnknownIdEnabled is implemented here) and IdTokenCached.
            await prepare(rig, OFFLINE_SETTINGS,
                          {("AuthCtrlr", "OfflineTxForUnknownIdEnabled"): "true"})
            await cache_token(rig, VALID_TOKEN)
            await id_token_local_auth_list(rig, VALID_TOKEN)
            offline = Offline(rig)
            await offline.start()                            # 1.
            await rig.plug()                                 # Connect the EV and EVSE
            await rig.present()                              # Present idToken
            await offline.wait(5)
            assert rig.snapshot()["contactor_closed"] is True
            await stop_and_leave(rig)                        # the same idToken; disconnect
            assert rig.snapshot()["contactor_closed"] is False
            await offline.reconnect()
            await rig.settle()
            events = rig.sent("TransactionEvent")
            assert events, "the queue was not delivered"
            assert {e["transactionInfo"]["transactionId"] for e in events} == {
                events[0]["transactionInfo"]["transactionId"]}
            assert all(e["offline"] is True for e in events)
            assert [e["eventType"] for e in events].count("Started") == 1
            assert [e["eventType"] for e in events].count("Ended") == 1
            assert events[0]["eventType"] == "Started" and events[-1]["eventType"] == "Ended"
            assert_seq_unbroken(rig, events[0]["transactionInfo"]["transactionId"])
            # Each stamped when it happened, not when the queue went out (billing).
            lasted = _at(events[-1]) - _at(events[0])
            assert 5 <= lasted.total_seconds() <= 5 + 4, lasted
    run(case())


async def _stopped_offline(tmp_path, stop_token: dict) -> None:
    async with station(tmp_path) as rig:
        await prepare(rig, OFFLINE_SETTINGS)
        if stop_token is not VALID_TOKEN:
            # IdTokenCached and IdTokenLocalAuthList for fields2 with the group; then
            # Authorized with the group.
            info = {"status": "Accepted", "groupIdToken": GROUP}
            await cache_token(rig, stop_token, info)
            await id_token_local_auth_list(rig, stop_token, GROUP)
            rig.answer("Authorize", {"idTokenInfo": info})
            rig.answer("TransactionEvent", lambda p: {"idTokenInfo": info} if "idToken" in p else {})
        started = await rig.energy_transfer_started()
        tx_id = started["transactionInfo"]["transactionId"]
        offline = Offline(rig)
        await offline.start()
        await stop_and_leave(rig, stop_token)
        assert rig.snapshot()["contactor_closed"] is False
        await offline.reconnect()
        await rig.settle()
        events = offline_queue(rig, tx_id)
        assert events and all(e["offline"] is True for e in events)
        ended = [e for e in events if e["eventType"] == "Ended"]
        assert len(ended) == 1
        assert ended[0]["triggerReason"] == "StopAuthorized"
        assert ended[0]["transactionInfo"].get("stoppedReason", "Local") == "Local"
        assert_seq_unbroken(rig, tx_id)


def test_TC_E_44(tmp_path):
    """Offline Behaviour - Stop transaction during offline period"""
    run(_stopped_offline(tmp_path, VALID_TOKEN))


def test_TC_E_45(tmp_path):
    """Offline Behaviour - Stop transaction during offline period - Same GroupId"""
    run(_stopped_offline(tmp_path, TOKEN2))


# ---- E13 Retries ----------------------------------------------------------------------

ATTEMPTS = 3      # <Configured message_attempts_transaction_event>
INTERVAL_S = 20   # <Configured message_attempts_transaction_event_interval>


class Transmissions:
    """The OCTT's record of each TransactionEvent it receives, with the station's clock
    at that moment; `answer(n, payload)` says what the n-th transmission (from 1) of a
    message gets: a payload, None (no answer) or an exception (a CALLERROR)."""

    def __init__(self, rig: Rig, answer: Callable[[int, dict], Any]) -> None:
        self.rig = rig
        self._answer = answer
        self.log: list[tuple[float, dict]] = []
        rig.answer("TransactionEvent", self.respond)

    def respond(self, payload: dict) -> dict | None:
        self.log.append((self.rig.clock.monotonic(), payload))
        n = sum(1 for _, p in self.log if _key(p) == _key(payload))
        outcome = self._answer(n, payload)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def times_of(self, payload: dict) -> list[float]:
        return [t for t, p in self.log if _key(p) == _key(payload)]


def _key(payload: dict) -> tuple[str, int]:
    return payload["transactionInfo"]["transactionId"], payload["seqNo"]


def _optional_step(payload: dict) -> bool:
    """E13 cases, steps 1 and 3 ("optional", answered as usual): SignedDataReceived, and
    ChargingStateChanged with chargingState SuspendedEVSE (the power path closed)."""
    return payload["triggerReason"] == "SignedDataReceived" or (
        payload["triggerReason"] == "ChargingStateChanged"
        and payload["transactionInfo"].get("chargingState") == "SuspendedEVSE")


async def _retries(tmp_path, *, call_error: bool, answered_at: int | None) -> None:
    """E13: after the optional steps 1 and 3, step 5's TransactionEvent gets no answer (or
    a CALLERROR InternalError) until its `answered_at`-th transmission (None: never)."""
    async with station(tmp_path) as rig:
        answer = await rig.call("GetVariables", {"getVariableData": [{
            "component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": "MessageTimeout", "instance": "Default"}}]})
        timeout = int(answer["getVariableResult"][0]["attributeValue"])
        assert timeout > 0
        # MessageAttemptsTransactionEvent, MessageAttemptIntervalTransactionEvent: the
        # OCPPCommCtrlr variables of instance TransactionEvent.
        answer = await rig.call("SetVariables", {"setVariableData": [
            {"component": {"name": "OCPPCommCtrlr"}, "attributeValue": str(ATTEMPTS),
             "variable": {"name": "MessageAttempts", "instance": "TransactionEvent"}},
            {"component": {"name": "OCPPCommCtrlr"}, "attributeValue": str(INTERVAL_S),
             "variable": {"name": "MessageAttemptInterval", "instance": "TransactionEvent"}}]})
        assert [r["attributeStatus"] for r in answer["setVariableResult"]] == ["Accepted"] * 2

        first: list[dict] = []

        def answer_for(n: int, payload: dict) -> Any:
            if not first and not _optional_step(payload):
                first.append(payload)                        # step 5
            if not first:
                return {"idTokenInfo": {"status": "Accepted"}} if "idToken" in payload else {}
            if _key(payload) != _key(first[0]) or (answered_at is not None and n >= answered_at):
                return {"idTokenInfo": {"status": "Accepted"}} if "idToken" in payload else {}
            return InternalError(description="OCTT") if call_error else None

        sent = Transmissions(rig, answer_for)
        await rig.authorized_local()                         # State is Authorized
        await rig.ev_connected_pre_session()                 # State is EVConnectedPreSession
        await rig.advance(1)
        assert first, "no TransactionEvent after the optional steps"
        # Each retry waits MessageAttemptInterval x the transmissions before it (after the
        # MessageTimeout when the CSMS did not answer); and once more to see it stop.
        per_try = 0 if call_error else timeout
        total = sum(per_try + INTERVAL_S * k for k in range(1, ATTEMPTS + 1)) + per_try
        await rig.advance(total + 5, step=1)
        times = sent.times_of(first[0])
        expected = answered_at if answered_at is not None else ATTEMPTS
        assert len(times) == expected, times
        for k in range(1, len(times)):
            assert times[k] - times[k - 1] == per_try + INTERVAL_S * k, times
        # The identical message each time (same seqNo and content).
        copies = [p for _, p in sent.log if _key(p) == _key(first[0])]
        assert all(p == copies[0] for p in copies)
        # The queue moved on: later events of the transaction were delivered.
        later = [p for _, p in sent.log if p["seqNo"] > first[0]["seqNo"]]
        assert later, "the queue is stuck behind the failed message"
        assert rig.snapshot()["contactor_closed"] is True


def test_TC_E_41(tmp_path):
    """Retry sending transaction message when failed - Max retry count reached"""
    run(_retries(tmp_path, call_error=False, answered_at=None))


def test_TC_E_42(tmp_path):
    """Retry sending transaction message when failed - Success before reaching the max
    retry count"""
    run(_retries(tmp_path, call_error=False, answered_at=2))


def test_TC_E_50(tmp_path):
    """Retry sending transaction message when failed - Max retry count reached - CallError"""
    run(_retries(tmp_path, call_error=True, answered_at=None))


def test_TC_E_51(tmp_path):
    """Retry sending transaction message when failed - Success before reaching the max
    retry count - CallError"""
    run(_retries(tmp_path, call_error=True, answered_at=2))


# ---- E05 / E06 Deauthorized after an offline start -------------------------------------


def test_TC_E_16(tmp_path):
    """Stop transaction options - Deauthorized - Invalid idToken"""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, OFFLINE_SETTINGS, {
                ("TxCtrlr", "TxStopPoint"): "PowerPathClosed,Authorized",
                ("AuthCtrlr", "Enabled"): "true",
                ("AuthCtrlr", "DisableRemoteAuthorization"): "false",
                ("AuthCtrlr", "OfflineTxForUnknownIdEnabled"): "true",
                ("TxCtrlr", "StopTxOnInvalidId"): "true"})
            await cache_token(rig, VALID_TOKEN)                 # IdTokenCached
            await id_token_local_auth_list(rig, VALID_TOKEN)    # IdTokenLocalAuthList
            # StartOfflineTransaction
            offline = Offline(rig)
            await offline.start()
            await rig.present()
            await rig.plug()
            await offline.wait(5)
            assert rig.snapshot()["contactor_closed"] is True
            rig.answer("TransactionEvent", lambda p: (
                {"idTokenInfo": {"status": "Invalid"}} if "idToken" in p else {}))
            await offline.reconnect()
            await rig.settle()
            events = rig.sent("TransactionEvent")
            assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
            queued, ended = events[:-1], events[-1]
            # 1. The queue, every message of it offline (a periodic meter value that fell
            # due once the link was back is sent as online); the Started one carries the
            # idToken (answered Invalid).
            assert queued and all(e.get("offline") is True for e in queued
                                  if e["triggerReason"] != "MeterValuePeriodic")
            assert queued[0]["eventType"] == "Started"
            assert queued[0]["idToken"] == VALID_TOKEN
            # 3. After the queue was emptied, and only once.
            assert ended["eventType"] == "Ended"
            assert ended["triggerReason"] == "Deauthorized"
            assert ended["transactionInfo"]["stoppedReason"] == "DeAuthorized"
            assert [e["eventType"] for e in events].count("Ended") == 1
            assert rig.snapshot()["contactor_closed"] is False
            assert rig.snapshot()["offered_current_a"] is None
    run(case())
