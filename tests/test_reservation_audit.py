"""Reservation (H01-H04), what the audit against the specification found. A test whose
docstring names what the station "used to" do fails on the block as it was before that
fix; the others (marked "check") held before and guard what the audit confirmed.

The daemon runs in-process on a ManualClock against the CSMS peer (tests/conformance/
rig.py); every message is checked against the official schemas.
"""

from __future__ import annotations

import json

from agent.demo.csms import CallErrorReceived
from tests.conformance.local_list import LIST_ENABLED, id_token_local_auth_list
from tests.conformance.offline import OFFLINE_SETTINGS, Offline, prepare
from tests.conformance.rig import EVSE, VALID_TOKEN, run, station
from tests.test_reservation import (GROUP, OTHER_TOKEN, last_status, reserve,
                                    started_events)

STRANGER = {"idToken": "51234567", "type": "ISO14443"}
TIMEOUT_S = 120   # TxCtrlr.EVConnectionTimeOut's default


def in_order(rig, *actions: str) -> list[tuple]:
    """The station's CALLs of these actions on the current link, in the order sent, as
    (action, evse or reservation id, status)."""
    seen = []
    for frame in rig.link.frames:
        message = json.loads(frame.text)
        if frame.direction != "in" or message[0] != 2 or message[2] not in actions:
            continue
        p = message[3]
        if message[2] == "StatusNotification":
            seen.append(("StatusNotification", p["evseId"], p["connectorStatus"]))
        elif message[2] == "ReservationStatusUpdate":
            seen.append(("ReservationStatusUpdate", p["reservationId"],
                         p["reservationUpdateStatus"]))
        else:
            seen.append((message[2], p.get("evse", {}).get("id"), p.get("eventType")))
    return seen


def updates(rig) -> list[dict]:
    return rig.sent_on_all_links("ReservationStatusUpdate")


# ---- the order of what the CSMS hears: the status first, then the reservation's end -------

def test_status_update_follows_the_status_notification_that_shows_the_end(tmp_path):
    """TC_H_07: StatusNotification Available, then ReservationStatusUpdate Expired;
    TC_H_20: Faulted, then Removed; TC_H_21: Unavailable, then Removed. The block used to
    queue the update before the status changed, so it went first."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await reserve(rig, 1, evse=1, seconds=120)
            await reserve(rig, 2, evse=2)
            mark = len(in_order(rig, "StatusNotification", "ReservationStatusUpdate"))
            await rig.advance(121)
            rig.mock.fault(2)
            await rig.settle()
            assert in_order(rig, "StatusNotification", "ReservationStatusUpdate")[mark:] == [
                ("StatusNotification", 1, "Available"),
                ("ReservationStatusUpdate", 1, "Expired"),
                ("StatusNotification", 2, "Faulted"),
                ("ReservationStatusUpdate", 2, "Removed")]
            rig.mock.clear(2)
            await rig.settle()
            await reserve(rig, 3, evse=2)
            mark = len(in_order(rig, "StatusNotification", "ReservationStatusUpdate"))
            answer = await rig.call("ChangeAvailability", {
                "operationalStatus": "Inoperative", "evse": {"id": 2}})
            assert answer["status"] == "Accepted"
            await rig.settle()
            assert in_order(rig, "StatusNotification", "ReservationStatusUpdate")[mark:] == [
                ("StatusNotification", 2, "Unavailable"),
                ("ReservationStatusUpdate", 3, "Removed")]
    run(case())


def test_expired_while_down_is_reported_after_the_boot_statuses(tmp_path):
    """Check: the boot's StatusNotification Available, then Expired."""
    async def case():
        async with station(tmp_path) as rig:
            await reserve(rig, 4, seconds=60)
            await rig.shutdown()
            await rig.clock.advance(120)
            await rig.start()
            await rig.settle()
            assert in_order(rig, "StatusNotification", "ReservationStatusUpdate") == [
                ("StatusNotification", EVSE, "Available"),
                ("ReservationStatusUpdate", 4, "Expired")]
    run(case())


# ---- gap 1: a used reservation whose session lapses -----------------------------------------

def test_used_reservation_whose_authorization_lapses_is_reported_removed(tmp_path):
    """H03.FR.09: presenting the reserved token uses the reservation up (the EVSE shows
    Available, H03.FR.10). With TxStartPoint PowerPathClosed no transaction starts
    before the cable, so when EVConnectionTimeOut ends the authorization no
    TransactionEvent will ever name the reservation (H01.FR.15): the CSMS is told it
    ended (Removed) instead of believing it still holds. It used to hear nothing."""
    async def case():
        async with station(tmp_path) as rig:
            await reserve(rig, 5)
            await rig.present(VALID_TOKEN)
            assert last_status(rig) == "Available"          # used up (H03.FR.10)
            await rig.advance(TIMEOUT_S - 1)
            assert updates(rig) == []                       # the driver may still come
            await rig.advance(2)
            assert updates(rig) == [{"reservationId": 5, "reservationUpdateStatus": "Removed"}]
            assert rig.transaction_events() == []
            assert last_status(rig) == "Available"
            # It stays used: not Reserved again, and nothing to cancel.
            assert (await rig.call("CancelReservation", {"reservationId": 5}))["status"] \
                == "Rejected"
            await rig.present(OTHER_TOKEN)
            await rig.plug()
            await rig.advance(2)
            assert "reservationId" not in started_events(rig)[0]
            assert len(updates(rig)) == 1
    run(case())


def test_a_transaction_that_names_the_reservation_is_its_end(tmp_path):
    """Check. TxStartPoint Authorized: the Started event at the card carries reservationId; the
    transaction then ending for want of a cable (EVConnectTimeout) sends no
    ReservationStatusUpdate: the CSMS already knows."""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("TxCtrlr", "TxStartPoint"): "Authorized"})
            await reserve(rig, 6)
            await rig.present(VALID_TOKEN)
            assert started_events(rig)[0]["reservationId"] == 6
            await rig.advance(TIMEOUT_S + 1)
            ended = [e for e in rig.transaction_events() if e["eventType"] == "Ended"]
            assert ended and ended[0]["triggerReason"] == "EVConnectTimeout"
            assert updates(rig) == []
    run(case())


def test_the_same_card_twice_keeps_its_reservation(tmp_path):
    """A driver who swipes again before plugging in: the second authorization replaced
    the first and dropped the reservation it had used, so the transaction did not carry
    reservationId."""
    async def case():
        async with station(tmp_path) as rig:
            await reserve(rig, 7)
            await rig.present(VALID_TOKEN)
            await rig.advance(5)
            await rig.present(VALID_TOKEN)
            await rig.plug()
            await rig.advance(2)
            assert started_events(rig)[0]["reservationId"] == 7
            assert updates(rig) == []
    run(case())


def test_a_use_cut_by_the_power_is_reported_removed_after_the_restart(tmp_path):
    """The authorization that used the reservation dies with the power; after the boot's
    StatusNotifications the CSMS hears Removed (it used to hear nothing)."""
    async def case():
        async with station(tmp_path) as rig:
            await reserve(rig, 8)
            await rig.present(VALID_TOKEN)
            await rig.power_cycle()
            await rig.settle()
            assert in_order(rig, "StatusNotification", "ReservationStatusUpdate") == [
                ("StatusNotification", EVSE, "Available"),
                ("ReservationStatusUpdate", 8, "Removed")]
            await rig.power_cycle()
            assert rig.sent("ReservationStatusUpdate") == []  # once
    run(case())


def test_no_authorization_session_carries_the_reservation_it_used(tmp_path):
    """AuthCtrlr.Enabled false: a plugged-in EV gets the token "" / NoAuthorization. A
    reservation for that token was used up without its id reaching the transaction."""
    async def case():
        async with station(tmp_path) as rig:
            free = {"idToken": "", "type": "NoAuthorization"}
            await reserve(rig, 9, token=free)
            assert await rig.set_variable("AuthCtrlr", "Enabled", "false") == "Accepted"
            await rig.plug()
            await rig.advance(2)
            assert started_events(rig)[0]["reservationId"] == 9
            assert updates(rig) == []
    run(case())


# ---- gap 2: RequestStartTransaction without evseId ---------------------------------------------

def test_remote_start_without_evse_goes_to_the_evse_reserved_for_the_token(tmp_path):
    """It used to take the first free EVSE: EVSE 1, while EVSE 2 was reserved for the
    token, leaving the reservation unused (and EVSE 2 held for nobody)."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await reserve(rig, 10, evse=2)
            answer = await rig.call("RequestStartTransaction", {
                "idToken": VALID_TOKEN, "remoteStartId": 1})
            assert answer["status"] == "Accepted"
            await rig.settle()
            assert last_status(rig, 2) == "Available"        # used up
            await rig.plug(2)
            await rig.advance(2)
            started = started_events(rig)[0]
            assert started["evse"]["id"] == 2 and started["reservationId"] == 10
    run(case())


def test_remote_start_without_evse_keeps_away_from_evses_reserved_for_others(tmp_path):
    """A stranger's remote start without evseId was sent to EVSE 1, reserved for
    someone else, and Rejected though EVSE 2 was free."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await reserve(rig, 11, evse=1)
            answer = await rig.call("RequestStartTransaction", {
                "idToken": STRANGER, "remoteStartId": 2})
            assert answer["status"] == "Accepted"
            await rig.plug(2)
            await rig.advance(2)
            started = started_events(rig)[0]
            assert started["evse"]["id"] == 2 and "reservationId" not in started
            assert last_status(rig, 1) == "Reserved"
    run(case())


def test_remote_start_without_evse_finds_the_reservation_of_the_tokens_group(tmp_path):
    """The token's group is only known once looked up: the EVSE is chosen again then."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await rig.configure(LIST_ENABLED)
            await id_token_local_auth_list(rig, OTHER_TOKEN, group=GROUP)
            await reserve(rig, 12, evse=2, groupIdToken=GROUP)
            answer = await rig.call("RequestStartTransaction", {
                "idToken": OTHER_TOKEN, "remoteStartId": 3})
            assert answer["status"] == "Accepted"
            await rig.plug(2)
            await rig.advance(2)
            started = started_events(rig)[0]
            assert started["evse"]["id"] == 2 and started["reservationId"] == 12
    run(case())


# ---- gap 3: Reserved shown at once -------------------------------------------------------------

def test_the_last_free_evse_shows_reserved_at_once(tmp_path):
    """One reservation without an EVSE, two EVSEs: a stranger authorized on EVSE 1
    leaves EVSE 2 the last free one, Reserved (H01.FR.20); when his authorization lapses
    EVSE 2 is Available again. No station status announces either, so both used to show
    only at the block's next minute tick."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await reserve(rig, 13, evse=None)
            assert last_status(rig, 2) == "Available"
            await rig.present(STRANGER, 1)
            assert last_status(rig, 2) == "Reserved"
            await rig.advance(TIMEOUT_S + 1)
            assert last_status(rig, 2) == "Available"
    run(case())


def test_a_change_scheduled_behind_a_transaction_shows_reserved_at_once(tmp_path):
    """ChangeAvailability Inoperative for an EVSE whose transaction runs is Scheduled: no
    status changes, but that EVSE no longer counts for the reservation without an EVSE,
    so the other one is the last (Reserved) — at once, not at the next tick."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await rig.configure({("TxCtrlr", "TxStartPoint"): "EVConnected"})
            await reserve(rig, 14, evse=None)
            await rig.plug(1)                # a transaction, nobody authorized yet
            await rig.advance(1)
            assert started_events(rig)
            assert last_status(rig, 2) == "Available"
            answer = await rig.call("ChangeAvailability", {
                "operationalStatus": "Inoperative", "evse": {"id": 1}})
            assert answer["status"] == "Scheduled"
            await rig.settle()
            assert last_status(rig, 2) == "Reserved"
    run(case())


# ---- gap 4: the reservation and authorization, as 2.0.1 orders them ----------------------------

def test_reserved_token_charges_when_the_csms_cannot_answer(tmp_path):
    """Offline, the reserved token unknown to the list and cache: the station used to
    refuse it (OCPP 1.6's order: the authorization decides, the reservation only
    restricts). In 2.0.1 the reservation is the CSMS's word for that token (Part 6: the
    AuthorizeRequest of a reserved token is optional; H03 S1): it charges, and the
    Started event, delivered later, names the reservation."""
    async def case():
        async with station(tmp_path) as rig:
            await prepare(rig, OFFLINE_SETTINGS)
            await reserve(rig, 15)
            offline = Offline(rig)
            await offline.start()
            await rig.present(STRANGER)          # not reserved for it: refused as before
            await rig.plug()
            await offline.wait(2)
            assert rig.snapshot()["contactor_closed"] is False
            await rig.present(VALID_TOKEN)
            await offline.wait(2)
            assert rig.snapshot()["contactor_closed"] is True
            await offline.reconnect()
            await rig.settle()
            started = [e for e in rig.transaction_events() if e["eventType"] == "Started"]
            assert len(started) == 1 and started[0]["reservationId"] == 15
            assert started[0]["offline"] is True
            assert started[0]["idToken"]["idToken"] == VALID_TOKEN["idToken"]
    run(case())


def test_group_is_looked_up_in_the_local_list_before_asking_the_csms(tmp_path):
    """AuthorizeRemoteStart false, a remote start for a group member on an EVSE reserved
    for the group: H03.FR.07/08 (errata [684]) look the token up in the local list or
    cache first and ask the CSMS only when it is not there. It used to send an
    AuthorizeRequest even for a token the list holds."""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure(LIST_ENABLED)
            await id_token_local_auth_list(rig, OTHER_TOKEN, group=GROUP)
            await reserve(rig, 16, groupIdToken=GROUP)
            answer = await rig.call("RequestStartTransaction", {
                "idToken": OTHER_TOKEN, "evseId": EVSE, "remoteStartId": 4})
            assert answer["status"] == "Accepted"
            assert rig.sent("Authorize") == []
            await rig.plug()
            await rig.advance(2)
            assert started_events(rig)[0]["reservationId"] == 16
    run(case())


def test_the_group_token_itself_is_not_a_member(tmp_path):
    """2.0.1 compares the presented token's own groupIdToken with the reservation's
    (H03.FR.02, errata [684]); OCPP 1.6's rule also let a card equal to the reservation's
    parentIdTag in. A token whose value is the group's, but whose idTokenInfo names no
    group, is refused."""
    async def case():
        async with station(tmp_path) as rig:
            await reserve(rig, 17, groupIdToken=GROUP)
            await rig.present(GROUP)      # the CSMS accepts it, without a group
            await rig.plug()
            await rig.advance(2)
            assert started_events(rig) == []
            assert last_status(rig) == "Reserved"
    run(case())


# ---- ReserveNow: replacement, ids ---------------------------------------------------------------

def test_replacing_a_reservation_reports_reserved_again(tmp_path):
    """TC_H_23: the same id again for the same EVSE (another token) is Accepted and the
    EVSE is reported Reserved again; the status did not change, so nothing was sent."""
    async def case():
        async with station(tmp_path) as rig:
            await reserve(rig, 18)
            before = len(rig.sent("StatusNotification"))
            assert (await reserve(rig, 18, token=OTHER_TOKEN))["status"] == "Accepted"
            assert rig.sent("StatusNotification")[before:] == [
                {**rig.sent("StatusNotification")[-1], "connectorStatus": "Reserved"}]
            # The new token is the one it is held for.
            await rig.present(VALID_TOKEN)
            await rig.plug()
            await rig.advance(2)
            assert started_events(rig) == []
            await rig.present(OTHER_TOKEN)
            await rig.advance(2)
            assert started_events(rig)[0]["reservationId"] == 18
    run(case())


def test_reservation_ids_span_the_32_bit_range(tmp_path):
    """-2**31 is an OCPP integer and was Rejected (ValueTooHigh); 2**31 is not one and
    gets the OCPP-J error before any handler."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            assert (await reserve(rig, -2**31, evse=1))["status"] == "Accepted"
            assert (await reserve(rig, 2**31 - 1, evse=2))["status"] == "Accepted"
            try:
                await reserve(rig, 2**31, evse=2)
                raise AssertionError("2**31 was taken")
            except CallErrorReceived as exc:
                assert exc.code == "TypeConstraintViolation"
            assert (await rig.call("CancelReservation", {"reservationId": -2**31}))[
                "status"] == "Accepted"
    run(case())


# (Reset OnIdle and Immediate keep a reservation: tests/test_reservation.py)

# ---- a firmware update waiting for idle EVSEs -------------------------------------------------

def test_firmware_install_follows_a_reserved_evse_whose_driver_never_plugged_in(tmp_path):
    """The install waits for the Reserved EVSE. Its driver swipes: the reservation is
    used and the EVSE shows Available, but the driver's authorization still holds it
    (the install must not take the EVSE from under the driver about to plug in). The
    driver leaves without a cable: no transaction ever ends there, and the install used
    to wait for ever; it follows the authorization's lapse."""
    from tests.conformance.test_l_firmware import (firmware_statuses, install_root, lab,
                                                   publish, until_status, update_request)
    from tests.file_servers import FileServer

    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                pki = lab(rig)
                url, signature = publish(server, tmp_path, pki)
                await install_root(rig, pki)
                await reserve(rig, 20)
                answer = await rig.call("UpdateFirmware",
                                        update_request(rig, 23, url, signature, pki))
                assert answer["status"] == "Accepted"
                await until_status(rig, 23, "InstallScheduled")
                await rig.present(VALID_TOKEN)
                await rig.advance(TIMEOUT_S - 1)
                assert last_status(rig) == "Available"
                assert "Installing" not in firmware_statuses(rig, 23)
                await rig.advance(2)
                assert updates(rig) == [{"reservationId": 20,
                                         "reservationUpdateStatus": "Removed"}]
                await until_status(rig, 23, "InstallRebooting")
                assert "Installing" in firmware_statuses(rig, 23)
    run(case())


# ---- checks that held: the statuses at each step, and bad EVSE ids -----------------------------

def test_statuses_at_each_step_of_a_used_reservation(tmp_path):
    """Check. Token first: Reserved, Available at the card (H03.FR.10), Occupied with the cable,
    Available after. Cable first: the EV plugged in before the card leaves it Reserved
    (errata G03.FR.09), the reserved card makes it Occupied."""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            mark = len(in_order(rig, "StatusNotification"))
            await reserve(rig, 30, evse=1)
            await rig.present(VALID_TOKEN, 1)
            await rig.plug(1)
            await rig.advance(2)
            await rig.present(VALID_TOKEN, 1)       # stop
            await rig.unplug(1)
            await reserve(rig, 31, evse=2)
            await rig.plug(2)
            await rig.advance(2)
            await rig.present(VALID_TOKEN, 2)
            await rig.advance(2)
            await rig.present(VALID_TOKEN, 2)
            await rig.unplug(2)
            assert in_order(rig, "StatusNotification")[mark:] == [
                ("StatusNotification", 1, "Reserved"), ("StatusNotification", 1, "Available"),
                ("StatusNotification", 1, "Occupied"), ("StatusNotification", 1, "Available"),
                ("StatusNotification", 2, "Reserved"), ("StatusNotification", 2, "Occupied"),
                ("StatusNotification", 2, "Available")]
            assert [e["reservationId"] for e in started_events(rig)] == [30, 31]
            assert updates(rig) == []
    run(case())


def test_evse_zero_and_negative_are_unknown_evses(tmp_path):
    """Check: evseId 0 (no EVSE in 2.0.1), negative, beyond the station: Rejected."""
    async def case():
        async with station(tmp_path) as rig:
            for evse in (0, -1, 2**31 - 1):
                answer = await reserve(rig, 40, evse=evse)
                assert answer["status"] == "Rejected"
                assert answer["statusInfo"]["reasonCode"] == "UnknownEvse"
            assert last_status(rig) == "Available"
    run(case())


def test_a_transaction_open_before_the_card_names_the_reservation_in_its_update(tmp_path):
    """Check. TxStartPoint EVConnected: the plug-in starts the transaction (the EVSE stays
    Reserved, no reservationId yet: nobody has used it); the reserved card's Updated
    (Authorized) event is the first after the use and names it (H01.FR.15)."""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("TxCtrlr", "TxStartPoint"): "EVConnected"})
            await reserve(rig, 32)
            await rig.plug()
            await rig.advance(1)
            started = started_events(rig)
            assert len(started) == 1 and "reservationId" not in started[0]
            assert last_status(rig) == "Reserved"
            await rig.present(VALID_TOKEN)
            await rig.advance(1)
            authorized = [e for e in rig.transaction_events()
                          if e["triggerReason"] == "Authorized"]
            assert authorized[0]["eventType"] == "Updated"
            assert authorized[0]["reservationId"] == 32
            assert [e for e in rig.transaction_events() if "reservationId" in e] == \
                authorized[:1]
            assert last_status(rig) == "Occupied"
            assert updates(rig) == []
    run(case())
