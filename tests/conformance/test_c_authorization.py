"""Part 6, C Authorization: the Charging Station cases of Core (Part 5, 4.2), with TC_E_52
and TC_E_06, which test the same card reader.

The station under test has an ISO14443 card reader (C-30), an authorization cache (C-49,
AuthCacheCtrlr with LifeTime, DisablePostAuthorize), DisableRemoteAuthorization (C-58) and
OfflineTxForUnknownIdEnabled (C-02) and a Local Authorization List (LocalAuthListCtrlr,
agent/blocks/local_auth_list.py): the preparations that name the list ("LocalAuthListEnabled
is true (If implemented)", TC_C_26/33/34) are applied (tests/conformance/local_list.py).
The errata's 5.1.3 / 6.1.12 (a station with NoAuthorization only) do not apply: it reads
cards.

AQ-2 ("a cable lock which prevents the EV driver to connect the EV and EVSE before
authorization"): no. The AC socket has a lock, but it holds a cable that is already in;
it locks only once the EV is plugged in and authorized, just before current is offered
(agent/blocks/charging.py), so a driver can always plug in first (EVConnectedPreSession).
Hence TC_C_02/06/07 apply and TC_C_05 (a lock that keeps the cable out) does not.

The lab's OCTT is configured with the station's TxStartPoint. These cases run with
TxStartPoint "EVConnected,Authorized" (TxCtrlr.TxStartPoint is ReadWrite): the start
points whose TransactionEvents ("triggerReason Authorized ... eventType Started or
Updated") the C cases validate; with the default PowerPathClosed those steps are skipped
by Part 6 and the validations would check nothing. TxStopPoint keeps its default
(EVConnected,Authorized).
"""

from __future__ import annotations


import pytest

from agent.clock import format_datetime
from agent.demo.csms import Csms
from tests.conformance.local_list import LIST_ENABLED
from tests.conformance.rig import CONNECTOR, EVSE, INVALID_TOKEN, STATION, VALID_TOKEN, Rig, run
from tests.conformance.tx_rules import Since, station
from tests.harness import PASSWORD, AgentProcess, write_config
from tests.test_sim_agent import sim_async, wait_for_socket

#: Part 6's other configured tokens.
VALID_TOKEN2 = {"idToken": "04A1B2C4", "type": "ISO14443"}
BLOCKED_TOKEN = {"idToken": "0BB10C4D", "type": "ISO14443"}
EXPIRED_TOKEN = {"idToken": "0E1F2A3B", "type": "ISO14443"}
GROUP = {"idToken": "GROUP-0001", "type": "Central"}
TX_START_POINT = "EVConnected,Authorized"
#: <Configured message timeout>: how long the OCTT waits for what must not come.
MESSAGE_TIMEOUT = 30
#: <Configured Transaction Duration>.
TRANSACTION_DURATION = 60


# ---- the OCTT's side


class Tokens:
    """What the OCTT answers about each idToken, in AuthorizeResponse and in the
    TransactionEventResponse of an event that carries one; unknown tokens are Unknown."""

    def __init__(self, rig: Rig, infos: dict[str, dict]) -> None:
        self.infos = {k.lower(): v for k, v in infos.items()}
        rig.answer("Authorize", lambda p: {"idTokenInfo": self.info(p["idToken"])})
        rig.answer("TransactionEvent", lambda p: (
            {"idTokenInfo": self.info(p["idToken"])} if "idToken" in p else {}))

    def info(self, token: dict) -> dict:
        return dict(self.infos.get(token["idToken"].lower(), {"status": "Unknown"}))

    def set(self, token: dict, info: dict) -> None:
        self.infos[token["idToken"].lower()] = info


def accepted(group: dict | None = None) -> dict:
    return {"status": "Accepted"} | ({"groupIdToken": group} if group else {})


async def prepare(rig: Rig, settings: dict[tuple[str, str], str] | None = None) -> None:
    """The lab's configuration for these cases (with Part 6's general pre-condition
    "AuthCtrlr.LocalPreAuthorize is set to false"), then the case's Configuration State."""
    await rig.configure({("TxCtrlr", "TxStartPoint"): TX_START_POINT,
                         ("AuthCtrlr", "LocalPreAuthorize"): "false", **(settings or {})})


async def wait_message_timeout(rig: Rig) -> None:
    """The OCTT waits <Configured message timeout> for a message that must not come."""
    await rig.advance(MESSAGE_TIMEOUT, step=5)


async def until_charging(rig: Rig, since: Since) -> dict:
    """EnergyTransferStarted part 2, step 9 ("triggerReason ChargingStateChanged,
    chargingState Charging"): the EV draws current; returns that event."""
    await rig.advance(1)
    event = await since.expect("TransactionEvent", lambda p: (
        p["transactionInfo"].get("chargingState") == "Charging"))
    assert event["triggerReason"] == "ChargingStateChanged"
    assert event["eventType"] == "Updated"      # started before (EVConnected/Authorized)
    snap = rig.snapshot()
    assert snap["contactor_closed"] and snap["power_w"] > 0, snap
    return event


def assert_no_energy(rig: Rig) -> None:
    snap = rig.snapshot()
    assert not snap["contactor_closed"] and snap["power_w"] == 0, snap


def authorized_event(event: dict, token: dict, *, started: bool) -> None:
    """Part 6's "triggerReason Authorized, idToken ..., eventType Updated if the transaction
    was already started, else Started"."""
    assert event["triggerReason"] == "Authorized"
    assert event["idToken"]["idToken"] == token["idToken"]
    assert event["idToken"]["type"] == token["type"]
    assert event["eventType"] == ("Updated" if started else "Started")


async def ev_connected_pre_session(rig: Rig, *, authorized: bool = False) -> dict:
    """Reusable State EVConnectedPreSession (or EnergyTransferStarted part 1 when already
    `authorized`), with its tool validations: StatusNotification Occupied for the
    configured EVSE/connector, then (TxStartPoint has EVConnected, or the transaction was
    started by Authorized) a TransactionEvent CablePluggedIn / EVConnected for that
    EVSE/connector, Started unless the authorization had started it. Returns that event."""
    since = Since(rig)
    await rig.plug()
    status = await since.expect("StatusNotification")
    assert (status["evseId"], status["connectorId"], status["connectorStatus"]) == (
        EVSE, CONNECTOR, "Occupied")
    event = await since.expect("TransactionEvent")
    assert event["eventType"] == ("Updated" if authorized else "Started")
    assert event["triggerReason"] == "CablePluggedIn"
    assert event["transactionInfo"]["chargingState"] == "EVConnected"
    # Also when the authorization had started the transaction (and its event named the
    # EVSE already): Part 6 lists "evse.id, connector.id" for this step unconditionally.
    assert event["evse"] == {"id": EVSE, "connectorId": CONNECTOR}
    return event


async def stop_authorized(rig: Rig, since: Since, tx_id: str, token: dict) -> dict:
    """Reusable States StopAuthorized (A, local: `token` presented) and
    EVConnectedPostSession, with TxStopPoint Authorized. Part 6 splits this into a
    StopAuthorized event and an Ended ChargingStateChanged one; E07 as corrected by the
    errata 2023-12 (2.5.1, and 2.17.4 for TxStopPoint Authorized) has the station stop the
    energy first and then send ONE event: Ended, triggerReason StopAuthorized,
    stoppedReason Local, chargingState EVConnected. That is what is asserted (a lab
    applies the errata). Returns the Ended event."""
    await rig.present(token)
    ended = await since.expect("TransactionEvent", lambda p: (
        p["transactionInfo"]["transactionId"] == tx_id and p["eventType"] == "Ended"))
    assert ended["triggerReason"] == "StopAuthorized"
    assert ended["transactionInfo"].get("stoppedReason", "Local") == "Local"
    assert ended["transactionInfo"]["chargingState"] == "EVConnected"
    # StopAuthorized allows no idToken; the general rule "The first TransactionEventRequest
    # sent after presenting the idToken MUST contain idToken" does not: required.
    assert ended["idToken"] == token
    assert_no_energy(rig)
    assert rig.snapshot()["locked"] is False    # not a fixed cable: released
    return ended


async def ev_disconnected(rig: Rig, since: Since, ended: dict) -> None:
    """Reusable State EVDisconnected after the transaction ended: StatusNotification
    Available for the configured EVSE/connector, and no more events of that transaction."""
    await rig.unplug()
    status = await since.expect("StatusNotification", lambda p: (
        p["connectorStatus"] == "Available"))
    assert (status["evseId"], status["connectorId"]) == (EVSE, CONNECTOR)
    tx_id = ended["transactionInfo"]["transactionId"]
    assert [e["seqNo"] for e in rig.transaction_events(tx_id)
            if e["seqNo"] > ended["seqNo"]] == []


async def cache_token(rig: Rig, tokens: Tokens, token: dict) -> None:
    """Memory State IdTokenCached: a session with this token, answered as `tokens` says,
    so that the station has cached the answer; back to idle afterwards."""
    assert rig.snapshot()["plugged"] is False
    since = Since(rig)
    plugged = await ev_connected_pre_session(rig)
    tx_id = plugged["transactionInfo"]["transactionId"]
    await rig.present(token)
    if tokens.info(token)["status"] == "Accepted":          # Main A
        await until_charging(rig, since)
        ended = await stop_authorized(rig, since, tx_id, token)
        await ev_disconnected(rig, since, ended)
    else:                                                   # Main B: unplug
        await rig.unplug()
        ended = await since.expect("TransactionEvent", lambda p: (
            p["transactionInfo"]["transactionId"] == tx_id and p["eventType"] == "Ended"))
        # Part 6 writes "EVConnectionLost": the enum value is EVCommunicationLost.
        assert ended["triggerReason"] == "EVCommunicationLost"
        assert ended["transactionInfo"]["chargingState"] == "Idle"
        await since.expect("StatusNotification", lambda p: p["connectorStatus"] == "Available")
    assert not rig.mock.snapshot(EVSE)["plugged"]


async def energy_transfer_started(rig: Rig, token: dict = VALID_TOKEN) -> dict:
    """EnergyTransferStarted from idle: Authorized (local, no cable yet), then part 1 (the
    cable) and part 2 (charging), with their tool validations; returns the Started event."""
    since = Since(rig)
    await rig.present(token)
    request = await since.expect("Authorize")
    assert request["idToken"] == token
    started = await since.expect("TransactionEvent", lambda p: p["eventType"] == "Started")
    authorized_event(started, token, started=False)
    assert started["evse"] == {"id": EVSE, "connectorId": CONNECTOR}
    assert_no_energy(rig)                                   # no cable, no energy
    plugged = await ev_connected_pre_session(rig, authorized=True)
    assert plugged["transactionInfo"]["transactionId"] == (
        started["transactionInfo"]["transactionId"])
    assert plugged["seqNo"] == started["seqNo"] + 1
    await until_charging(rig, since)
    return started


# ---- Local start transaction: a refused card (C01)


async def _refused_at_plugged_station(tmp_path, token: dict, status: str) -> None:
    async with station(tmp_path) as rig:
        await prepare(rig, {("AuthCtrlr", "Enabled"): "true",
                            ("AuthCtrlr", "DisableRemoteAuthorization"): "false"})
        Tokens(rig, {token["idToken"]: {"status": status}})
        await ev_connected_pre_session(rig)
        assert rig.snapshot()["locked"] is False           # AQ-2: plugged in, not locked
        since = Since(rig)
        await rig.present(token)
        request = await since.expect("Authorize")
        assert request["idToken"]["idToken"] == token["idToken"]
        assert request["idToken"]["type"] == token["type"]
        await wait_message_timeout(rig)
        # No TransactionEvent after the AuthorizeRequest, and the EV gets nothing.
        assert since("TransactionEvent") == []
        assert_no_energy(rig)
        assert rig.snapshot()["locked"] is False


def test_TC_C_02(tmp_path):
    """Local start transaction - Authorization Invalid/Unknown."""
    run(_refused_at_plugged_station(tmp_path, INVALID_TOKEN, "Invalid"))


def test_TC_C_05(tmp_path):
    """Local start transaction - Authorization invalid - Cable lock."""
    pytest.skip("not applicable: no cable lock that keeps the EV from being connected before "
                "authorization (AQ-2 no): the socket lock engages on a cable already plugged "
                "in, once authorized; TC_C_02/06/07 run instead")


def test_TC_C_06(tmp_path):
    """Local start transaction - Authorization Blocked."""
    run(_refused_at_plugged_station(tmp_path, BLOCKED_TOKEN, "Blocked"))


def test_TC_C_07(tmp_path):
    """Local start transaction - Authorization Expired."""
    run(_refused_at_plugged_station(tmp_path, EXPIRED_TOKEN, "Expired"))


def test_TC_C_56(tmp_path):
    """Local start transaction - Authorization Unknown."""
    run(_refused_at_plugged_station(tmp_path, INVALID_TOKEN, "Unknown"))


# ---- Local stop (E07)


def test_TC_C_04(tmp_path):
    """Local Stop Transaction - Different idToken."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, {("AuthCtrlr", "Enabled"): "true",
                                ("AuthCtrlr", "DisableRemoteAuthorization"): "false"})
            Tokens(rig, {VALID_TOKEN["idToken"]: accepted(),
                         VALID_TOKEN2["idToken"]: accepted()})
            started = await energy_transfer_started(rig)
            since = Since(rig)
            await rig.present(VALID_TOKEN2)
            request = await since.expect("Authorize", lambda p: (
                p["idToken"]["idToken"] == VALID_TOKEN2["idToken"]))
            assert request["idToken"]["type"] == VALID_TOKEN2["type"]
            await wait_message_timeout(rig)
            # Not stopped: no further AuthorizeRequest, no TransactionEvent at all, and the
            # energy keeps flowing.
            assert len(since("Authorize")) == 1
            assert since("TransactionEvent") == []
            assert rig.snapshot()["contactor_closed"] and rig.snapshot()["power_w"] > 0
            tx_id = started["transactionInfo"]["transactionId"]
            status = await rig.call("GetTransactionStatus", {"transactionId": tx_id})
            assert status["ongoingIndicator"] is True
    run(case())


def test_TC_E_06(tmp_path):
    """Local Stop Transaction - Accepted."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, {("AuthCtrlr", "Enabled"): "true",
                                ("AuthCtrlr", "DisableRemoteAuthorization"): "false"})
            Tokens(rig, {VALID_TOKEN["idToken"]: accepted()})
            started = await energy_transfer_started(rig)
            tx_id = started["transactionInfo"]["transactionId"]
            await rig.advance(TRANSACTION_DURATION, step=10)
            # StopAuthorized (local): the same token, no AuthorizeRequest needed.
            since = Since(rig)
            ended = await stop_authorized(rig, since, tx_id, VALID_TOKEN)
            assert since("Authorize") == []
            # EVConnectedPostSession (ended already), EVDisconnected.
            await ev_disconnected(rig, since, ended)
    run(case())


# ---- Authorization through the authorization cache (C12)


def _cache_settings(extra: dict[tuple[str, str], str] | None = None
                    ) -> dict[tuple[str, str], str]:
    """The C12 cases' Configuration State: the cache on and consulted while online."""
    return {("AuthCacheCtrlr", "Enabled"): "true", ("AuthCtrlr", "LocalPreAuthorize"): "true",
            **(extra or {})}


def test_TC_C_08(tmp_path):
    """Authorization through authorization cache - Accepted."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, _cache_settings())
            tokens = Tokens(rig, {VALID_TOKEN["idToken"]: accepted()})
            await cache_token(rig, tokens, VALID_TOKEN)
            await ev_connected_pre_session(rig)
            since = Since(rig)
            await rig.present(VALID_TOKEN)                 # Authorized, from the cache
            event = await since.expect("TransactionEvent", lambda p: (
                p["triggerReason"] == "Authorized"))
            authorized_event(event, VALID_TOKEN, started=True)
            assert since("Authorize") == []                # the cache answered
            await until_charging(rig, since)               # energy transfer is started
    run(case())


async def _cached_not_accepted(tmp_path, token: dict, status: str) -> None:
    """TC_C_09/10/11: a cached token with another status is asked about again."""
    async with station(tmp_path) as rig:
        await prepare(rig, _cache_settings({("AuthCacheCtrlr", "DisablePostAuthorize"): "false"}))
        tokens = Tokens(rig, {token["idToken"]: {"status": status}})
        await cache_token(rig, tokens, token)
        await ev_connected_pre_session(rig)
        since = Since(rig)
        await rig.present(token)
        request = await since.expect("Authorize", lambda p: (
            p["idToken"]["idToken"] == token["idToken"]))
        assert request["idToken"]["type"] == token["type"]
        await wait_message_timeout(rig)
        assert [e for e in since("TransactionEvent") if "idToken" in e] == []
        assert_no_energy(rig)


def test_TC_C_09(tmp_path):
    """Authorization through authorization cache - Invalid & Not Accepted."""
    run(_cached_not_accepted(tmp_path, INVALID_TOKEN, "Invalid"))


def test_TC_C_10(tmp_path):
    """Authorization through authorization cache - Blocked."""
    run(_cached_not_accepted(tmp_path, BLOCKED_TOKEN, "Blocked"))


def test_TC_C_11(tmp_path):
    """Authorization through authorization cache - Expired."""
    run(_cached_not_accepted(tmp_path, EXPIRED_TOKEN, "Expired"))


def test_TC_C_12(tmp_path):
    """Authorization through authorization cache - Invalid & Accepted."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, _cache_settings({
                ("AuthCacheCtrlr", "DisablePostAuthorize"): "false"}))
            tokens = Tokens(rig, {VALID_TOKEN["idToken"]: {"status": "Invalid"}})
            await cache_token(rig, tokens, VALID_TOKEN)
            await ev_connected_pre_session(rig)
            tokens.set(VALID_TOKEN, accepted())            # the CSMS's status is now valid
            since = Since(rig)
            await rig.present(VALID_TOKEN)
            request = await since.expect("Authorize")
            assert request["idToken"] == VALID_TOKEN
            event = await since.expect("TransactionEvent", lambda p: (
                p["triggerReason"] == "Authorized"))
            authorized_event(event, VALID_TOKEN, started=True)
            await until_charging(rig, since)
    run(case())


def test_TC_C_13(tmp_path):
    """Authorization through authorization cache - Accepted but cable not connected yet."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, _cache_settings())
            tokens = Tokens(rig, {VALID_TOKEN["idToken"]: accepted()})
            await cache_token(rig, tokens, VALID_TOKEN)
            since = Since(rig)
            await rig.present(VALID_TOKEN)
            event = await since.expect("TransactionEvent", lambda p: (
                p["triggerReason"] == "Authorized"))
            authorized_event(event, VALID_TOKEN, started=False)
            assert event["evse"] == {"id": EVSE, "connectorId": CONNECTOR}
            assert since("Authorize") == []
            assert_no_energy(rig)                          # no cable, no energy
            tx_id = event["transactionInfo"]["transactionId"]
            plugged = await ev_connected_pre_session(rig, authorized=True)
            assert plugged["transactionInfo"]["transactionId"] == tx_id
            assert plugged["seqNo"] == event["seqNo"] + 1
            await until_charging(rig, since)
    run(case())


def test_TC_C_57(tmp_path):
    """Authorization through authorization cache - AuthCacheDisablePostAuthorize."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, _cache_settings({
                ("AuthCacheCtrlr", "DisablePostAuthorize"): "true"}))
            tokens = Tokens(rig, {INVALID_TOKEN["idToken"]: {"status": "Invalid"}})
            await cache_token(rig, tokens, INVALID_TOKEN)
            await ev_connected_pre_session(rig)
            since = Since(rig)
            await rig.present(INVALID_TOKEN)
            await wait_message_timeout(rig)
            # No AuthorizeRequest, and refused: no authorization event, no energy.
            assert since("Authorize") == []
            assert [e for e in since("TransactionEvent") if "idToken" in e] == []
            assert_no_energy(rig)
    run(case())


def test_TC_E_52(tmp_path):
    """Local start transaction - Authorization first - DisableRemoteAuthorization."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, {("AuthCtrlr", "Enabled"): "true",
                                ("AuthCtrlr", "DisableRemoteAuthorization"): "true"})
            Tokens(rig, {VALID_TOKEN["idToken"]: accepted()})
            # Memory State: the token is in neither the cache (a fresh station) nor the
            # Local Authorization List (none was ever sent: version 0, D02.FR.02).
            assert await rig.call("GetLocalListVersion", {}) == {"versionNumber": 0}
            since = Since(rig)
            await rig.present(VALID_TOKEN)
            await rig.plug()
            await wait_message_timeout(rig)
            assert since("Authorize") == []
            assert [e for e in since("TransactionEvent") if "idToken" in e] == []
            assert_no_energy(rig)
    run(case())


# ---- Store authorization data in the cache (C10), clear it (C11)


def test_TC_C_32(tmp_path):
    """Store Authorization Data in the Authorization Cache - Persistent over reboot.

    The real process, and the power cycle a power cut (kill -9): the cache must be in
    non-volatile memory, not flushed at a clean stop."""
    async def sim(config, *args: str) -> None:
        assert (await sim_async(config, *args)).returncode == 0

    async def case():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            agent = await AgentProcess(config).start()
            try:
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("StatusNotification", timeout=10)
                await wait_for_socket(config)
                for component, variable, value in (
                        ("TxCtrlr", "TxStartPoint", TX_START_POINT),
                        ("AuthCacheCtrlr", "Enabled", "true"),
                        ("AuthCtrlr", "LocalPreAuthorize", "true")):
                    answer = await link.call("SetVariables", {"setVariableData": [{
                        "component": {"name": component}, "variable": {"name": variable},
                        "attributeValue": value}]})
                    assert answer["setVariableResult"][0]["attributeStatus"] == "Accepted"
                # Memory State IdTokenCached: a session with the valid token.
                await sim(config, "plug", "1")
                await sim(config, "swipe", VALID_TOKEN["idToken"])
                await link.expect_call("Authorize", timeout=10)
                await link.expect_call("TransactionEvent", timeout=10, where=lambda p: (
                    p["transactionInfo"].get("chargingState") == "Charging"))
                await sim(config, "swipe", VALID_TOKEN["idToken"])
                await link.expect_call("TransactionEvent", timeout=10,
                                       where=lambda p: p["eventType"] == "Ended")
                await sim(config, "unplug", "1")
                await link.expect_call("StatusNotification", timeout=10, where=lambda p: (
                    p["connectorStatus"] == "Available"))
                # Booted, by a power cycle.
                agent.proc.kill()
                await agent.proc.wait()
                agent = await AgentProcess(config).start()
                link = await csms.wait_station(STATION, timeout=10, after=link)
                await link.expect_call("BootNotification", timeout=10)
                status = await link.expect_call("StatusNotification", timeout=10)
                assert status["connectorStatus"] == "Available"
                await wait_for_socket(config)
                # Step 2: the cached token starts the transaction; no AuthorizeRequest.
                await sim(config, "swipe", VALID_TOKEN["idToken"])
                event = await link.expect_call("TransactionEvent", timeout=10, where=lambda p: (
                    p["triggerReason"] == "Authorized"))
                authorized_event(event, VALID_TOKEN, started=False)
                assert link.calls("Authorize") == []
                tx_id = event["transactionInfo"]["transactionId"]
                # EVConnectedPreSession, EnergyTransferStarted.
                await sim(config, "plug", "1")
                status = await link.expect_call("StatusNotification", timeout=10,
                                                where=lambda p: p["connectorStatus"] == "Occupied")
                assert (status["evseId"], status["connectorId"]) == (EVSE, CONNECTOR)
                plugged = await link.expect_call("TransactionEvent", timeout=10, where=lambda p: (
                    p["triggerReason"] == "CablePluggedIn"))
                assert plugged["transactionInfo"]["transactionId"] == tx_id
                assert plugged["eventType"] == "Updated"
                assert plugged["transactionInfo"]["chargingState"] == "EVConnected"
                charging = await link.expect_call("TransactionEvent", timeout=10, where=lambda p: (
                    p["transactionInfo"].get("chargingState") == "Charging"))
                assert charging["triggerReason"] == "ChargingStateChanged"
                assert charging["transactionInfo"]["transactionId"] == tx_id
                assert link.calls("Authorize") == []
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    run(case())


def test_TC_C_33(tmp_path):
    """Store Authorization Data in the Authorization Cache - Update on AuthorizeResponse."""
    async def case():
        async with station(tmp_path) as rig:
            # LocalAuthListEnabled is true; the token is not in the list (no Memory State),
            # so the cache is what the case is about.
            await prepare(rig, _cache_settings(LIST_ENABLED))
            tokens = Tokens(rig, {VALID_TOKEN["idToken"]: accepted()})
            plugged = await ev_connected_pre_session(rig)
            tx_id = plugged["transactionInfo"]["transactionId"]
            since = Since(rig)
            await rig.present(VALID_TOKEN)
            request = await since.expect("Authorize")
            assert request["idToken"] == VALID_TOKEN
            event = await since.expect("TransactionEvent", lambda p: (
                p["triggerReason"] == "Authorized"))
            authorized_event(event, VALID_TOKEN, started=True)
            assert event["transactionInfo"]["transactionId"] == tx_id
            await until_charging(rig, since)
            ended = await stop_authorized(rig, since, tx_id, VALID_TOKEN)  # PostSession
            assert len(since("Authorize")) == 1        # the same card stops unasked
            await ev_disconnected(rig, since, ended)
            await ev_connected_pre_session(rig)
            tokens.set(VALID_TOKEN, {"status": "Invalid"})
            again = Since(rig)
            await rig.present(VALID_TOKEN)
            # Step 12: the cached Accepted of step 2 decides: no AuthorizeRequest.
            event = await again.expect("TransactionEvent", lambda p: (
                p["triggerReason"] == "Authorized"))
            authorized_event(event, VALID_TOKEN, started=True)
            assert again("Authorize") == []
    run(case())


def test_TC_C_34(tmp_path):
    """Store Authorization Data in the Authorization Cache - Update on TransactionResponse."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, _cache_settings(LIST_ENABLED))   # and LocalAuthListEnabled
            tokens = Tokens(rig, {VALID_TOKEN["idToken"]: accepted()})
            await cache_token(rig, tokens, VALID_TOKEN)
            await ev_connected_pre_session(rig)
            tokens.set(VALID_TOKEN, {"status": "Invalid"})
            since = Since(rig)
            await rig.present(VALID_TOKEN)
            event = await since.expect("TransactionEvent", lambda p: (
                p["triggerReason"] == "Authorized"))
            authorized_event(event, VALID_TOKEN, started=True)
            assert since("Authorize") == []
            tx_id = event["transactionInfo"]["transactionId"]
            await rig.unplug()                             # EVDisconnected
            status = await since.expect("StatusNotification", lambda p: (
                p["connectorStatus"] == "Available"))
            assert (status["evseId"], status["connectorId"]) == (EVSE, CONNECTOR)
            ended = [e for e in rig.transaction_events(tx_id) if e["eventType"] == "Ended"]
            assert len(ended) == 1, "the transaction did not end (once) by the unplugging"
            await ev_connected_pre_session(rig)
            again = Since(rig)
            await rig.present(VALID_TOKEN)
            # Step 7: the TransactionEventResponse's Invalid replaced the cached Accepted,
            # so the station asks again.
            request = await again.expect("Authorize")
            assert request["idToken"] == VALID_TOKEN
            await wait_message_timeout(rig)
            assert [e for e in again("TransactionEvent") if "idToken" in e] == []
            assert_no_energy(rig)
    run(case())


def test_TC_C_36(tmp_path):
    """Store Authorization Data in the Authorization Cache - AuthCacheCtrlr.LocalPreAuthorize
    = false."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, _cache_settings())
            tokens = Tokens(rig, {VALID_TOKEN["idToken"]: accepted()})
            await cache_token(rig, tokens, VALID_TOKEN)
            await rig.configure({("AuthCacheCtrlr", "Enabled"): "true",
                                 ("AuthCtrlr", "LocalPreAuthorize"): "false"})
            tokens.set(VALID_TOKEN, {"status": "Invalid"})
            since = Since(rig)
            await rig.present(VALID_TOKEN)
            request = await since.expect("Authorize")
            assert request["idToken"] == VALID_TOKEN
            await wait_message_timeout(rig)
            assert [e for e in since("TransactionEvent") if "idToken" in e] == []
            await rig.plug()
            assert_no_energy(rig)
    run(case())


def test_TC_C_37(tmp_path):
    """Clear Authorization Data in Authorization Cache - Accepted."""
    async def case():
        async with station(tmp_path) as rig:
            # LocalPreAuthorize true besides the case's AuthCacheEnabled: with it false an
            # AuthorizeRequest would come whether or not the cache was cleared.
            await prepare(rig, _cache_settings())
            tokens = Tokens(rig, {VALID_TOKEN["idToken"]: accepted()})
            await cache_token(rig, tokens, VALID_TOKEN)
            answer = await rig.call("ClearCache", {})
            assert answer["status"] == "Accepted"
            await ev_connected_pre_session(rig)
            since = Since(rig)
            await rig.present(VALID_TOKEN)
            request = await since.expect("Authorize")
            assert request["idToken"] == VALID_TOKEN
            event = await since.expect("TransactionEvent", lambda p: (
                p["triggerReason"] == "Authorized"))
            authorized_event(event, VALID_TOKEN, started=True)
            await until_charging(rig, since)
    run(case())


def test_TC_C_38(tmp_path):
    """Clear Authorization Data in Authorization Cache - Rejected."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, _cache_settings())
            tokens = Tokens(rig, {VALID_TOKEN["idToken"]: accepted()})
            await cache_token(rig, tokens, VALID_TOKEN)
            await rig.configure({("AuthCacheCtrlr", "Enabled"): "false"})
            answer = await rig.call("ClearCache", {})
            assert answer["status"] == "Rejected"
    run(case())


def test_TC_C_46(tmp_path):
    """Store Authorization Data in the Authorization Cache - AuthCacheLifeTime."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, _cache_settings({
                ("AuthCacheCtrlr", "LifeTime"): str(TRANSACTION_DURATION)}))
            tokens = Tokens(rig, {VALID_TOKEN["idToken"]: accepted()})
            await cache_token(rig, tokens, VALID_TOKEN)
            await ev_connected_pre_session(rig)
            await rig.advance(TRANSACTION_DURATION + 1, step=10)
            since = Since(rig)
            await rig.present(VALID_TOKEN)                 # Authorized (local)
            # The entry outlived AuthCacheLifeTime: the CSMS is asked again.
            request = await since.expect("Authorize")
            assert request["idToken"] == VALID_TOKEN
            event = await since.expect("TransactionEvent", lambda p: (
                p["triggerReason"] == "Authorized"))
            authorized_event(event, VALID_TOKEN, started=True)
    run(case())


# ---- Authorization by GroupId (C09)


def test_TC_C_39(tmp_path):
    """Authorization by GroupId - Success."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig)
            tokens = Tokens(rig, {VALID_TOKEN["idToken"]: accepted(GROUP),
                                  VALID_TOKEN2["idToken"]: accepted(GROUP)})
            await ev_connected_pre_session(rig)
            since = Since(rig)
            await rig.present(VALID_TOKEN)
            request = await since.expect("Authorize")
            assert request["idToken"] == VALID_TOKEN
            event = await since.expect("TransactionEvent", lambda p: (
                p["triggerReason"] == "Authorized"))
            authorized_event(event, VALID_TOKEN, started=True)
            tx_id = event["transactionInfo"]["transactionId"]
            await until_charging(rig, since)
            # The other card of the group: steps 6-9 and EVConnectedPostSession.
            stop = await stop_authorized(rig, since, tx_id, VALID_TOKEN2)
            request = await since.expect("Authorize", lambda p: (
                p["idToken"]["idToken"] == VALID_TOKEN2["idToken"]))
            assert request["idToken"] == VALID_TOKEN2
            assert len(since("Authorize")) == 2
            assert stop["idToken"] == VALID_TOKEN2     # step 8: the idToken is required
            await ev_disconnected(rig, since, stop)    # EVDisconnected
    run(case())


def test_TC_C_41(tmp_path):
    """Authorization by GroupId - Success with Authorization Cache."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, _cache_settings())
            tokens = Tokens(rig, {VALID_TOKEN["idToken"]: accepted(GROUP),
                                  VALID_TOKEN2["idToken"]: accepted(GROUP)})
            await cache_token(rig, tokens, VALID_TOKEN)
            await cache_token(rig, tokens, VALID_TOKEN2)
            await ev_connected_pre_session(rig)
            since = Since(rig)
            await rig.present(VALID_TOKEN)
            event = await since.expect("TransactionEvent", lambda p: (
                p["triggerReason"] == "Authorized"))
            authorized_event(event, VALID_TOKEN, started=True)
            tx_id = event["transactionInfo"]["transactionId"]
            await until_charging(rig, since)
            # StopAuthorized with the other card, from the cache (its group), then
            # EVConnectedPostSession and EVDisconnected.
            stop = await stop_authorized(rig, since, tx_id, VALID_TOKEN2)
            assert stop["idToken"] == VALID_TOKEN2     # step 4: the idToken is required
            assert since("Authorize") == []
            await ev_disconnected(rig, since, stop)
    run(case())


async def _group_member_refused(tmp_path, *, cached: bool) -> None:
    """TC_C_42/44: an invalid card of the same group does not stop the session."""
    async with station(tmp_path) as rig:
        await prepare(rig, _cache_settings({("AuthCacheCtrlr", "DisablePostAuthorize"): "false"})
                      if cached else None)
        tokens = Tokens(rig, {VALID_TOKEN["idToken"]: accepted(GROUP),
                              INVALID_TOKEN["idToken"]: {"status": "Invalid",
                                                         "groupIdToken": GROUP}})
        if cached:
            await cache_token(rig, tokens, VALID_TOKEN)
            await cache_token(rig, tokens, INVALID_TOKEN)
        await ev_connected_pre_session(rig)
        since = Since(rig)
        await rig.present(VALID_TOKEN)
        if not cached:
            request = await since.expect("Authorize")
            assert request["idToken"] == VALID_TOKEN
        event = await since.expect("TransactionEvent", lambda p: (
            p["triggerReason"] == "Authorized"))
        authorized_event(event, VALID_TOKEN, started=True)
        tx_id = event["transactionInfo"]["transactionId"]
        await until_charging(rig, since)
        if cached:
            assert since("Authorize") == []
        during = Since(rig)
        await rig.present(INVALID_TOKEN)
        request = await during.expect("Authorize")
        assert request["idToken"] == INVALID_TOKEN
        await wait_message_timeout(rig)
        assert during("TransactionEvent") == []
        assert rig.snapshot()["contactor_closed"] and rig.snapshot()["power_w"] > 0
        status = await rig.call("GetTransactionStatus", {"transactionId": tx_id})
        assert status["ongoingIndicator"] is True


def test_TC_C_42(tmp_path):
    """Authorization by GroupId - Not stopped by GroupId."""
    run(_group_member_refused(tmp_path, cached=False))


def test_TC_C_44(tmp_path):
    """Authorization by GroupId - Invalid status with Authorization Cache."""
    run(_group_member_refused(tmp_path, cached=True))


# ---- Offline authorization (C15)


async def go_offline(rig: Rig) -> None:
    """StartOfflineTransaction step 1: the OCTT closes the connection and refuses the
    station's reconnection attempts."""
    rig.csms.passwords = {STATION: "not-the-" + PASSWORD}
    assert rig.link is not None
    await rig.link.close()
    await rig.settle()


async def come_back(rig: Rig) -> str:
    """StartOfflineTransaction step 2: the OCTT accepts the next reconnection attempt.
    Returns the station's time (as in its messages) of the last moment it was offline."""
    rig.csms.passwords = {STATION: PASSWORD}
    old = rig.link
    for _ in range(60):
        offline_until = format_datetime(rig.clock.now())
        await rig.advance(10)
        links = rig.csms.links.get(STATION, [])
        if links and links[-1] is not old and not links[-1].closed.is_set():
            rig.link = links[-1]
            await rig.settle()
            return offline_until
    raise AssertionError("the station did not reconnect")


def test_TC_C_26(tmp_path):
    """Offline Authorization - Unknown Id."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, {**LIST_ENABLED,
                                ("AuthCtrlr", "LocalPreAuthorize"): "true",
                                ("AuthCtrlr", "OfflineTxForUnknownIdEnabled"): "true",
                                ("AuthCtrlr", "LocalAuthorizeOffline"): "true",
                                ("TxCtrlr", "MaxEnergyOnInvalidId"): "0",
                                ("TxCtrlr", "StopTxOnInvalidId"): "false",
                                ("OCPPCommCtrlr", "RetryBackOffWaitMinimum"): "10",
                                ("OCPPCommCtrlr", "RetryBackOffRandomRange"): "0"})
            # The token is unknown to the station (nothing cached, the list empty); the
            # OCTT finds it Invalid.
            assert await rig.call("GetLocalListVersion", {}) == {"versionNumber": 0}
            Tokens(rig, {VALID_TOKEN["idToken"]: {"status": "Invalid"}})
            since = Since(rig)
            await go_offline(rig)
            await rig.present(VALID_TOKEN)
            await rig.plug()
            await rig.advance(1)
            assert rig.snapshot()["power_w"] > 0       # Accepted offline: charging
            offline_until = await come_back(rig)
            # Step 1: the queue is emptied, every event of the offline period marked offline.
            queued = [e for e in since("TransactionEvent") if e["timestamp"] <= offline_until]
            assert queued, "no TransactionEvent delivered after the reconnection"
            tx_id = queued[0]["transactionInfo"]["transactionId"]
            assert queued[0]["eventType"] == "Started"
            assert all(e.get("offline") is True for e in queued), queued
            assert any(e.get("idToken") == VALID_TOKEN for e in queued)
            assert since("Authorize") == []
            # The OCTT's Invalid with StopTxOnInvalidId false and MaxEnergyOnInvalidId 0:
            # the energy stops, the transaction goes on (C15.FR.06/08).
            suspended = await since.expect("TransactionEvent", lambda p: (
                p["transactionInfo"].get("chargingState") == "SuspendedEVSE"))
            assert suspended["transactionInfo"]["transactionId"] == tx_id
            assert suspended["eventType"] == "Updated"
            assert_no_energy(rig)
            # The driver presents the card again and unplugs: StopAuthorized.
            await rig.present(VALID_TOKEN)
            await rig.unplug()
            stop = await since.expect("TransactionEvent", lambda p: (
                p["triggerReason"] == "StopAuthorized"))
            assert stop["transactionInfo"]["transactionId"] == tx_id
    run(case())
