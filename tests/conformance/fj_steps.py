"""The OCTT's steps the F (remote start) and J (meter values) cases share: what the
station sent during one step, the start/stop points, EnergyTransferStarted from idle.

Kept apart from test_e_transactions (whose helpers follow the E cases) so that each
group's cases change on their own. The station of every case here also passes Part 6's
general tool rules for TransactionEvents at its end (tx_rules.py: first event Started,
seqNo without gaps, nothing after Ended).
"""

from __future__ import annotations

from tests.conformance.rig import CONNECTOR, EVSE, VALID_TOKEN, Rig
from tests.conformance.tx_rules import Since, points, station  # noqa: F401 (shared)

#: <Configured ev_connection_timeout> (TxCtrlr.EVConnectionTimeOut).
EV_CONNECTION_TIMEOUT = 30
#: <Configured Transaction Duration>: how long the OCTT lets a session run.
TRANSACTION_DURATION = 180


async def charging_session(rig: Rig) -> str:
    """EnergyTransferStarted from idle with the default TxStartPoint PowerPathClosed and
    its validations: Authorized (local, main A: the AuthorizeRequest, no event yet), part
    1 (Occupied), part 2 (step 7: Started, SuspendedEVSE; step 9: ChargingStateChanged to
    Charging); returns the transaction id."""
    since = Since(rig)
    await rig.authorized_local()
    authorize = await since.expect("Authorize")
    assert authorize["idToken"] == VALID_TOKEN
    assert since("TransactionEvent") == []
    occupied = await rig.ev_connected_pre_session()
    assert (occupied["evseId"], occupied["connectorId"]) == (EVSE, CONNECTOR)
    started = await since.expect("TransactionEvent")
    assert started["eventType"] == "Started"
    assert started["evse"] == {"id": EVSE, "connectorId": CONNECTOR}
    assert started["idToken"] == VALID_TOKEN
    assert started["triggerReason"] == "ChargingStateChanged"
    assert started["transactionInfo"]["chargingState"] == "SuspendedEVSE"
    await rig.advance(1)
    charging = await since.expect("TransactionEvent", lambda p: p["seqNo"] == 1)
    assert charging["eventType"] == "Updated"
    assert charging["triggerReason"] == "ChargingStateChanged"
    assert charging["transactionInfo"]["chargingState"] == "Charging"
    snap = rig.snapshot()
    assert snap["contactor_closed"] and snap["power_w"] > 0, snap
    return started["transactionInfo"]["transactionId"]
