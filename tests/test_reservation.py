"""Reservation (H01-H04): the matching rule, and the daemon in-process on a ManualClock
against the CSMS peer (tests/conformance/rig.py): ReserveNow answers, who may charge on a
Reserved EVSE, expiry, CancelReservation, ReservationCtrlr (Enabled, Available,
NonEvseSpecific), persistence, and the interplay with ChangeAvailability, faults, Reset
and a firmware update waiting for idle EVSEs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agent.blocks.reservation import Reservation, feasible, same_token
from agent.clock import format_datetime
from tests.conformance.rig import EVSE, VALID_TOKEN, run, station

OTHER_TOKEN = {"idToken": "0BADCAFE", "type": "ISO14443"}
GROUP = {"idToken": "FLEET-7", "type": "Central"}
SOCKET = "sType2"   # what the mock's AC EVSEs have (agent/hardware.py connector_type)


def _r(rid: int, ctype: str | None = None) -> Reservation:
    from datetime import datetime, timezone
    return Reservation(rid, datetime(2030, 1, 1, tzinfo=timezone.utc), VALID_TOKEN,
                       connector_type=ctype)


# ---- the rule that keeps enough EVSEs free -----------------------------------------------

def test_feasible_matches_reservations_to_distinct_fitting_evses():
    pool = {1: "sType2", 2: "cCCS2"}
    assert feasible(pool, [])
    assert feasible(pool, [_r(1), _r(2)])
    assert not feasible(pool, [_r(1), _r(2), _r(3)])          # more than EVSEs
    assert feasible(pool, [_r(1, "cCCS2"), _r(2)])            # the any-type one takes 1
    assert not feasible(pool, [_r(1, "cCCS2"), _r(2, "cCCS2")])
    assert not feasible({1: "sType2"}, [_r(1, "cCCS2")])
    # Order does not matter: the any-type one moves aside for the typed one.
    assert feasible(pool, [_r(2), _r(1, "sType2")])


def test_tokens_match_case_insensitively_by_type():
    assert same_token({"idToken": "abc", "type": "ISO14443"}, {"idToken": "ABC", "type": "ISO14443"})
    assert not same_token({"idToken": "abc", "type": "ISO14443"}, {"idToken": "abc", "type": "Central"})
    r = Reservation(1, _r(1).expiry, VALID_TOKEN, group_id_token=GROUP)
    assert r.matches(VALID_TOKEN, None)
    assert r.matches(OTHER_TOKEN, GROUP)          # its group is the reservation's
    assert not r.matches(OTHER_TOKEN, None)
    assert not Reservation(1, r.expiry, VALID_TOKEN).matches(OTHER_TOKEN, GROUP)


# ---- helpers --------------------------------------------------------------------------

def expiry(rig, seconds: float = 3600) -> str:
    return format_datetime(rig.clock.now() + timedelta(seconds=seconds))


async def reserve(rig, rid: int = 1, evse: int | None = EVSE, token: dict = VALID_TOKEN,
                  seconds: float = 3600, **extra) -> dict:
    payload = {"id": rid, "expiryDateTime": expiry(rig, seconds), "idToken": token} | extra
    if evse is not None:
        payload["evseId"] = evse
    answer = await rig.call("ReserveNow", payload)
    await rig.settle()
    return answer


def last_status(rig, evse: int = EVSE) -> str:
    return [p for p in rig.sent("StatusNotification") if p["evseId"] == evse][-1]["connectorStatus"]


def started_events(rig) -> list[dict]:
    return [p for p in rig.transaction_events() if p["eventType"] == "Started"]


# ---- H01 / H03: a specific EVSE ----------------------------------------------------------

def test_reserved_evse_refuses_another_card_and_serves_its_own(tmp_path):
    async def case():
        async with station(tmp_path) as rig:
            assert (await reserve(rig))["status"] == "Accepted"
            assert last_status(rig) == "Reserved"
            assert await rig.get_variable("EVSE", "AvailabilityState", evse=EVSE) == "Reserved"
            # Another card, accepted by the CSMS, gets no session here, nor energy.
            await rig.present(OTHER_TOKEN, EVSE)
            await rig.plug()
            await rig.advance(2)
            assert last_status(rig) == "Reserved"      # errata G03.FR.09: not Occupied
            assert rig.snapshot()["contactor_closed"] is False
            assert started_events(rig) == []
            # The reserved card: used up, charging, reservationId in the Started event.
            await rig.present(VALID_TOKEN, EVSE)
            await rig.advance(2)
            started = started_events(rig)
            assert len(started) == 1 and started[0]["reservationId"] == 1
            assert started[0]["idToken"]["idToken"] == VALID_TOKEN["idToken"]
            assert rig.snapshot()["contactor_closed"] is True
            assert last_status(rig) == "Occupied"      # H03.FR.10
            # Used means gone: cancelling it now finds nothing.
            assert (await rig.call("CancelReservation", {"reservationId": 1}))["status"] \
                == "Rejected"
            assert rig.sent("ReservationStatusUpdate") == []
    run(case())


def test_group_id_token_may_use_the_reservation(tmp_path):
    async def case():
        async with station(tmp_path) as rig:
            rig.answer("Authorize", lambda p: {"idTokenInfo": {
                "status": "Accepted", "groupIdToken": GROUP}
                if p["idToken"]["idToken"] == OTHER_TOKEN["idToken"] else {"status": "Accepted"}})
            assert (await reserve(rig, token=VALID_TOKEN, groupIdToken=GROUP))["status"] \
                == "Accepted"
            await rig.present(OTHER_TOKEN, EVSE)   # same group, other card (H03.FR.02)
            assert last_status(rig) == "Available"  # used up, no cable yet (H03.FR.10)
            await rig.plug()
            await rig.advance(2)
            assert started_events(rig)[0]["reservationId"] == 1
    run(case())


def test_remote_start_on_a_reserved_evse(tmp_path):
    async def case():
        async with station(tmp_path) as rig:
            await reserve(rig, rid=7)
            other = await rig.call("RequestStartTransaction", {
                "idToken": OTHER_TOKEN, "evseId": EVSE, "remoteStartId": 1})
            assert other["status"] == "Rejected"                   # TC_H_02
            own = await rig.call("RequestStartTransaction", {
                "idToken": VALID_TOKEN, "evseId": EVSE, "remoteStartId": 2})
            assert own["status"] == "Accepted"
            await rig.plug()
            await rig.advance(2)
            started = started_events(rig)[0]
            assert started["reservationId"] == 7
            assert started["transactionInfo"]["remoteStartId"] == 2
    run(case())


def test_remote_start_learns_the_group_of_a_token(tmp_path):
    """AuthorizeRemoteStart false: a token not the reserved one is still asked about, to
    learn its groupIdToken (H03.FR.08)."""
    async def case():
        async with station(tmp_path) as rig:
            rig.answer("Authorize", {"idTokenInfo": {"status": "Accepted",
                                                     "groupIdToken": GROUP}})
            await reserve(rig, rid=8, groupIdToken=GROUP)
            assert await rig.get_variable("AuthCtrlr", "AuthorizeRemoteStart") == "false"
            answer = await rig.call("RequestStartTransaction", {
                "idToken": OTHER_TOKEN, "evseId": EVSE, "remoteStartId": 3})
            assert answer["status"] == "Accepted"
            assert rig.sent("Authorize")[-1]["idToken"] == OTHER_TOKEN
            await rig.plug()
            await rig.advance(2)
            assert started_events(rig)[0]["reservationId"] == 8
    run(case())


def test_reserve_now_answers(tmp_path):
    """Occupied (an EV, a transaction, another reservation), Faulted, Unavailable,
    Rejected (unknown EVSE, connector type, a past expiry)."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await rig.plug(1)
            assert (await reserve(rig, 1, evse=1))["status"] == "Occupied"
            await rig.unplug(1)
            assert (await reserve(rig, 1, evse=1))["status"] == "Accepted"
            assert (await reserve(rig, 2, evse=1))["status"] == "Occupied"   # reserved
            rig.mock.fault(2)
            await rig.settle()
            assert (await reserve(rig, 3, evse=2))["status"] == "Faulted"
            rig.mock.clear(2)
            await rig.settle()
            await rig.call("ChangeAvailability", {"operationalStatus": "Inoperative",
                                                  "evse": {"id": 2}})
            await rig.settle()
            assert (await reserve(rig, 3, evse=2))["status"] == "Unavailable"
            await rig.call("ChangeAvailability", {"operationalStatus": "Operative",
                                                  "evse": {"id": 2}})
            await rig.settle()
            unknown = await reserve(rig, 4, evse=9)
            assert unknown["status"] == "Rejected"
            assert unknown["statusInfo"]["reasonCode"] == "UnknownEvse"
            wrong = await reserve(rig, 4, evse=2, connectorType="cCCS2")
            assert wrong["statusInfo"]["reasonCode"] == "UnknownConnectorType"
            past = await reserve(rig, 4, evse=2, seconds=-5)
            assert past["status"] == "Rejected"
            assert past["statusInfo"]["reasonCode"] == "InvalidValue"
            # A transaction on EVSE 2: Occupied.
            await rig.energy_transfer_started(OTHER_TOKEN, evse=2)
            assert (await reserve(rig, 4, evse=2))["status"] == "Occupied"
    run(case())


def test_same_id_replaces_the_reservation(tmp_path):
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await reserve(rig, 5, evse=1)
            assert last_status(rig, 1) == "Reserved"
            assert (await reserve(rig, 5, evse=2))["status"] == "Accepted"   # H01.FR.02
            assert last_status(rig, 1) == "Available"
            assert last_status(rig, 2) == "Reserved"
            # A refused replacement leaves the reservation as it was.
            await rig.plug(1)
            assert (await reserve(rig, 5, evse=1))["status"] == "Occupied"
            assert last_status(rig, 2) == "Reserved"
            assert rig.sent("ReservationStatusUpdate") == []
    run(case())


# ---- H01: no EVSE, a connector type -------------------------------------------------------

def test_reservations_without_evse_keep_enough_evses_free(tmp_path):
    async def case():
        async with station(tmp_path, evses=2) as rig:
            assert (await reserve(rig, 1, evse=None))["status"] == "Accepted"
            # Two free EVSEs, one reservation: neither is shown Reserved yet.
            assert last_status(rig, 1) == last_status(rig, 2) == "Available"
            assert (await reserve(rig, 2, evse=None, token=OTHER_TOKEN))["status"] == "Accepted"
            # As many free EVSEs as reservations: all Reserved (H01.FR.20).
            assert last_status(rig, 1) == last_status(rig, 2) == "Reserved"
            assert (await reserve(rig, 3, evse=None))["status"] == "Occupied"
            assert (await reserve(rig, 3, evse=1))["status"] == "Occupied"
            # A stranger's card is refused on either EVSE.
            stranger = {"idToken": "51234567", "type": "ISO14443"}
            await rig.present(stranger, 1)
            await rig.plug(1)
            await rig.advance(2)
            assert started_events(rig) == []
            await rig.unplug(1)
            # The first reservation's driver takes EVSE 2; EVSE 1 stays held for the other.
            await rig.present(VALID_TOKEN, 2)
            await rig.plug(2)
            await rig.advance(2)
            assert started_events(rig)[0]["reservationId"] == 1
            assert last_status(rig, 1) == "Reserved"
            await rig.present(OTHER_TOKEN, 1)
            await rig.plug(1)
            await rig.advance(2)
            assert [e["reservationId"] for e in started_events(rig)] == [1, 2]
    run(case())


def test_one_reservation_without_evse_lets_others_charge_until_one_evse_is_left(tmp_path):
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await reserve(rig, 1, evse=None)
            stranger = {"idToken": "51234567", "type": "ISO14443"}
            await rig.energy_transfer_started(stranger, evse=1)
            assert "reservationId" not in started_events(rig)[0]
            assert last_status(rig, 2) == "Reserved"   # the last free one is held
            await rig.present({"idToken": "61234567", "type": "ISO14443"}, 2)
            await rig.plug(2)
            await rig.advance(2)
            assert len(started_events(rig)) == 1
    run(case())


def test_connector_type_reservation(tmp_path):
    async def case():
        async with station(tmp_path) as rig:
            none_such = await reserve(rig, 1, evse=None, connectorType="cCCS2")
            assert none_such["status"] == "Rejected"
            assert none_such["statusInfo"]["reasonCode"] == "UnknownConnectorType"
            assert (await reserve(rig, 1, evse=None, connectorType=SOCKET))["status"] \
                == "Accepted"
            assert last_status(rig) == "Reserved"   # H01.FR.24: as many as fit
            assert (await reserve(rig, 2, evse=None, connectorType=SOCKET))["status"] \
                == "Occupied"
    run(case())


# ---- H02 / H04: cancel, expiry, removal ------------------------------------------------------

def test_expiry_and_cancel(tmp_path):
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await reserve(rig, 1, evse=1, seconds=120)
            await reserve(rig, 2, evse=2, seconds=3600)
            await rig.advance(60)
            assert rig.sent("ReservationStatusUpdate") == []
            await rig.advance(61)
            assert rig.sent("ReservationStatusUpdate") == [
                {"reservationId": 1, "reservationUpdateStatus": "Expired"}]
            assert last_status(rig, 1) == "Available"
            # H02: cancelled at the CSMS's word, the EVSE Available, no status update.
            assert (await rig.call("CancelReservation", {"reservationId": 2}))["status"] \
                == "Accepted"
            await rig.settle()
            assert last_status(rig, 2) == "Available"
            assert (await rig.call("CancelReservation", {"reservationId": 2}))["status"] \
                == "Rejected"
            assert len(rig.sent("ReservationStatusUpdate")) == 1
    run(case())


def test_inoperative_or_faulted_evse_removes_its_reservation(tmp_path):
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await reserve(rig, 1, evse=1)
            await reserve(rig, 2, evse=2)
            change = await rig.call("ChangeAvailability", {
                "operationalStatus": "Inoperative", "evse": {"id": 1}})
            assert change["status"] == "Accepted"
            await rig.settle()
            assert last_status(rig, 1) == "Unavailable"   # TC_H_21
            rig.mock.fault(2)
            await rig.settle()
            assert last_status(rig, 2) == "Faulted"       # TC_H_20
            await rig.settle()
            assert rig.sent("ReservationStatusUpdate") == [
                {"reservationId": 1, "reservationUpdateStatus": "Removed"},
                {"reservationId": 2, "reservationUpdateStatus": "Removed"}]
            rig.mock.clear(2)
            await rig.settle()
            assert last_status(rig, 2) == "Available"    # the reservation is gone
    run(case())


def test_station_inoperative_removes_reservations_without_evse(tmp_path):
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await reserve(rig, 1, evse=None)
            await rig.call("ChangeAvailability", {"operationalStatus": "Inoperative"})
            await rig.settle()
            assert rig.sent("ReservationStatusUpdate") == [
                {"reservationId": 1, "reservationUpdateStatus": "Removed"}]
            assert (await reserve(rig, 2, evse=None))["status"] == "Unavailable"
    run(case())


# ---- ReservationCtrlr ---------------------------------------------------------------------------

def test_reservation_ctrlr_variables_work(tmp_path):
    """Available true (read-only); Enabled false refuses ReserveNow and ends what is held;
    NonEvseSpecific false refuses a reservation without an EVSE."""
    async def case():
        async with station(tmp_path) as rig:
            assert await rig.get_variable("ReservationCtrlr", "Available") == "true"
            assert await rig.set_variable("ReservationCtrlr", "Available", "false") \
                == "Rejected"
            assert await rig.get_variable("ReservationCtrlr", "NonEvseSpecific") == "true"
            assert await rig.set_variable("ReservationCtrlr", "NonEvseSpecific", "false") \
                == "Accepted"
            no_evse = await reserve(rig, 1, evse=None)
            assert no_evse["status"] == "Rejected"
            assert no_evse["statusInfo"]["reasonCode"] == "UnsupportedRequest"
            assert (await reserve(rig, 1, evse=EVSE))["status"] == "Accepted"
            assert await rig.get_variable("ReservationCtrlr", "Enabled") == "true"
            assert await rig.set_variable("ReservationCtrlr", "Enabled", "false") == "Accepted"
            await rig.settle()
            assert rig.sent("ReservationStatusUpdate") == [
                {"reservationId": 1, "reservationUpdateStatus": "Removed"}]
            assert last_status(rig) == "Available"
            off = await reserve(rig, 2, evse=EVSE)
            assert off["status"] == "Rejected"
            assert off["statusInfo"]["reasonCode"] == "NotEnabled"
            # Persisted settings: still so after a power cycle.
            await rig.power_cycle()
            assert await rig.get_variable("ReservationCtrlr", "Enabled") == "false"
            assert await rig.get_variable("ReservationCtrlr", "NonEvseSpecific") == "false"
    run(case())


# ---- persistence, Reset, firmware -----------------------------------------------------------------

def test_reservation_survives_a_power_cycle_and_expires_while_down(tmp_path):
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await reserve(rig, 1, evse=1, seconds=3600)
            await reserve(rig, 2, evse=2, seconds=60)
            await rig.shutdown()
            await rig.clock.advance(120)     # the station is off meanwhile
            await rig.start()
            await rig.settle()
            boot_status = {p["evseId"]: p["connectorStatus"] for p in rig.sent(
                "StatusNotification")}
            assert boot_status[1] == "Reserved"
            assert last_status(rig, 2) == "Available"
            assert rig.sent("ReservationStatusUpdate") == [
                {"reservationId": 2, "reservationUpdateStatus": "Expired"}]
            await rig.present(OTHER_TOKEN, 1)
            await rig.plug(1)
            await rig.advance(2)
            assert started_events(rig) == []
    run(case())


@pytest.mark.parametrize("kind", ["Immediate", "OnIdle"])
def test_reservation_survives_reset(tmp_path, kind):
    """TC_B_24's check (Reserved persists reset), with and without a transaction to wait for."""
    async def case():
        async with station(tmp_path) as rig:
            await reserve(rig, 3)
            assert (await rig.call("Reset", {"type": kind}))["status"] == "Accepted"
            await rig.new_link()
            await rig.expect("BootNotification")
            status = await rig.expect("StatusNotification")
            assert status["connectorStatus"] == "Reserved"
            await rig.settle()
            await rig.present(VALID_TOKEN)
            await rig.plug()
            await rig.advance(2)
            assert started_events(rig)[-1]["reservationId"] == 3
    run(case())


def test_firmware_install_waits_for_a_reserved_evse(tmp_path):
    """AllowNewSessionsPendingFirmwareUpdate false: the free EVSE goes Unavailable, the
    Reserved one waits for its driver as for a transaction; the install follows the end
    of the driver's session."""
    from tests.conformance.test_l_firmware import (end_transaction, firmware_statuses,
                                                   install_root, lab, publish,
                                                   until_status, update_request)
    from tests.file_servers import FileServer

    async def case():
        with FileServer() as server:
            async with station(tmp_path, evses=2) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki)
                await install_root(rig, pki)
                await rig.configure({("ChargingStation",
                                      "AllowNewSessionsPendingFirmwareUpdate"): "false"})
                await reserve(rig, 1, evse=2)
                answer = await rig.call("UpdateFirmware",
                                        update_request(rig, 21, url, signature, pki))
                assert answer["status"] == "Accepted"
                await until_status(rig, 21, "InstallScheduled")
                await rig.advance(1)
                assert last_status(rig, 1) == "Unavailable"
                assert last_status(rig, 2) == "Reserved"
                assert "Installing" not in firmware_statuses(rig, 21)
                # A new reservation is not taken meanwhile.
                assert (await reserve(rig, 2, evse=1))["status"] == "Unavailable"
                started = await rig.energy_transfer_started(VALID_TOKEN, evse=2)
                assert started["reservationId"] == 1
                assert "Installing" not in firmware_statuses(rig, 21)
                await end_transaction(rig, started)
                await until_status(rig, 21, "InstallRebooting")
    run(case())


def test_firmware_install_follows_an_expired_reservation(tmp_path):
    from tests.conformance.test_l_firmware import (firmware_statuses, install_root, lab,
                                                   publish, until_status, update_request)
    from tests.file_servers import FileServer

    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki)
                await install_root(rig, pki)
                await reserve(rig, 1, evse=EVSE, seconds=300)
                await rig.call("UpdateFirmware", update_request(rig, 22, url, signature, pki))
                await until_status(rig, 22, "InstallScheduled")
                await rig.advance(200)
                assert "Installing" not in firmware_statuses(rig, 22)
                await rig.advance(101)
                assert rig.sent("ReservationStatusUpdate") == [
                    {"reservationId": 1, "reservationUpdateStatus": "Expired"}]
                await until_status(rig, 22, "InstallRebooting")
    run(case())


# ---- the block alone: atomic ends ---------------------------------------------------------

class _Model:
    def get_bool(self, component: str, variable: str) -> bool:
        return True


class _Outbox:
    def __init__(self, store, fail: bool = False) -> None:
        self.store, self.fail, self.sent = store, fail, []

    def enqueue(self, action: str, payload: dict) -> int:
        if self.fail:
            raise OSError("disk full")
        self.store.execute("INSERT INTO meta (key, value) VALUES (?, ?)",
                           (f"sent{len(self.sent)}", action))
        self.sent.append((action, payload))
        return len(self.sent)


def _block(tmp_path, clock, outbox_fail: bool = False):
    from agent.blocks.reservation import Reservations
    from agent.ocpp.session import Router
    from agent.station import Connector, Evse, Station
    from agent.store import Store
    store = Store.in_dir(tmp_path)
    station_ = Station([Evse(1, 32, 3, 230, connectors={1: Connector(1, 1)})])
    outbox = _Outbox(store, outbox_fail)
    block = Reservations(router=Router(), model=_Model(), store=store, outbox=outbox,
                         clock=clock, station=station_, connector_types={1: SOCKET})
    return block, store, outbox, station_


def test_an_end_is_stored_and_handed_to_the_outbox_atomically(tmp_path):
    """Expired while the station was down: the reservation is gone and its end recorded
    in one commit; the end reaches the outbox, and leaves the record, in one commit too;
    a failing outbox leaves the end recorded, and the report loop tries again."""
    import asyncio
    from datetime import datetime, timezone
    from agent.blocks.reservation import RETRY_S
    from agent.clock import ManualClock

    async def case():
        clock = ManualClock(datetime(2030, 1, 1, tzinfo=timezone.utc))
        block, store, _, station_ = _block(tmp_path, clock)
        answer = await block._on_reserve_now({
            "id": 4, "evseId": 1, "idToken": VALID_TOKEN,
            "expiryDateTime": "2030-01-01T00:01:00Z"})
        await answer.then()
        assert station_.connector(1, 1).status == "Reserved"
        store.close()
        clock.set_time(datetime(2030, 1, 1, 0, 2, tzinfo=timezone.utc))
        block, store, outbox, _ = _block(tmp_path, clock, outbox_fail=True)
        assert store.query("SELECT id FROM reservations") == []
        assert store.query("SELECT id, status FROM reservation_ends") == [(4, "Expired")]
        # The outbox refuses: nothing is lost, and the loop survives it.
        loop = asyncio.ensure_future(block.run())
        await asyncio.sleep(0)
        assert not loop.done()
        assert store.query("SELECT id, status FROM reservation_ends") == [(4, "Expired")]
        outbox.fail = False
        await clock.advance(RETRY_S)
        for _ in range(5):
            await asyncio.sleep(0)
        assert outbox.sent == [("ReservationStatusUpdate", {
            "reservationId": 4, "reservationUpdateStatus": "Expired"})]
        assert store.query("SELECT id FROM reservation_ends") == []
        loop.cancel()
        store.close()
        # Once: a restart finds nothing left to report.
        block, store, outbox, _ = _block(tmp_path, clock)
        assert store.query("SELECT id FROM reservation_ends") == []
        store.close()
    asyncio.run(case())
