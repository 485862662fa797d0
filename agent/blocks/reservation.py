"""Reservation (block H): ReserveNow, CancelReservation, ReservationStatusUpdate.

A reservation holds an EVSE for one driver until it expires (H01). It names an EVSE, or
none (any EVSE that fits; ReservationCtrlr.NonEvseSpecific), or a connectorType. The
station keeps enough EVSEs free for the reservations without an EVSE: whatever else
happens, the reservations it accepted can all be served by distinct free EVSEs that fit
them (a matching, `feasible()`). An EVSE is shown Reserved (StatusNotification, and
AvailabilityState through the Availability block) when it is named by a reservation, or
when it is free and without it the others could not serve the reservations without an
EVSE (H01.FR.20/24 with the errata: as many free EVSEs as reservations, all Reserved).
What is shown follows every change at once: the transactions block calls `refresh()`
after each evaluation (an authorization given or lapsed changes which EVSEs are free), the
Availability block after each ChangeAvailability, the station on each status change.

Only the reserved idToken, or a token whose groupIdToken (from the local list, the cache
or the CSMS, H03.FR.07/08 with errata [684]) is the reservation's groupIdToken, may be
authorized on a Reserved EVSE (H03, errata [735]): `admit()` is asked by the transactions
block before it accepts a token for an EVSE (card, remote start, a session without
authorization). The reservation is the CSMS's own word for its idToken: that token is
not refused for want of an answer the station cannot get (offline), Part 6 making the
AuthorizeRequest for a reserved token optional. A token that matches uses the
reservation up (H03.FR.09): it ends, the connector shows Available or Occupied
(H03.FR.10), and the transaction carries its id (reservationId in the TransactionEvent
that follows, H01.FR.15: "the reservation that terminates as a result of this
transaction"). Until that event is committed the use is kept in the store: should the
driver's authorization lapse first (no cable within EVConnectionTimeOut, another card, the
power), no TransactionEvent will ever name the reservation, and the CSMS is told it ended
with ReservationStatusUpdate Removed rather than left to believe it still holds.
An EV plugged into a Reserved EVSE leaves it Reserved (errata G03.FR.09) until the
matching token comes.

A reservation ends without use when it expires (ReservationStatusUpdate Expired, H04) or
when the station can no longer keep it: the named EVSE became Faulted, or the CSMS set it
Inoperative (ChangeAvailability; H01.FR.16/17, TC_H_20/21: Removed); for the reservations
without an EVSE, the newest go first when too few EVSEs are left. A Reset or an EVSE taken
out of service for a while (an EVSE Reset, a firmware install holding idle EVSEs) does not
remove one: it is the station's own doing and passes (TC_B_24: Reserved persists reset).
CancelReservation (H02) ends one at the CSMS's word, without a ReservationStatusUpdate
(TC_H_17: only the StatusNotification Available follows).

The ReservationStatusUpdate of an end goes after the StatusNotification that shows it
(TC_H_07: Available, then Expired; TC_H_20/21: Faulted or Unavailable, then Removed):
the end is committed at once to the store, and moved into the durable outbox, in one
store transaction, once the Availability block says the CSMS has heard every connector's
status. Reservations, their uses and their ends live in the store, each change committed
before the answer, so after a restart or `kill -9` a reservation is either still there or
reported; one that expired while the station was down is reported Expired after the
boot's StatusNotifications.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Iterable, Mapping

from agent.clock import Clock, parse_datetime
from agent.ocpp.session import Payload, Reply, Router
from agent.station import Station
from agent.store import Store

log = logging.getLogger(__name__)

CTRLR = "ReservationCtrlr"

SCHEMA = """
CREATE TABLE IF NOT EXISTS reservations (
    id INTEGER PRIMARY KEY,          -- ReserveNowRequest.id
    evse_id INTEGER,                 -- NULL: any EVSE that fits
    connector_type TEXT,             -- NULL: any connector
    expiry TEXT NOT NULL,            -- RFC 3339, UTC
    id_token TEXT NOT NULL,          -- IdTokenType, JSON
    group_id_token TEXT,             -- IdTokenType, JSON
    made INTEGER NOT NULL            -- order of acceptance: the newest are removed first
);
-- Used up by a driver's authorization (H03.FR.09), not yet named by a TransactionEvent.
CREATE TABLE IF NOT EXISTS reservation_uses (
    id INTEGER PRIMARY KEY,          -- the reservation's id
    evse_id INTEGER NOT NULL
);
-- Ended, ReservationStatusUpdate not yet handed to the outbox (it waits for the
-- StatusNotification that shows the end).
CREATE TABLE IF NOT EXISTS reservation_ends (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id INTEGER NOT NULL,
    status TEXT NOT NULL             -- Expired or Removed
);
"""

# The longest the expiry timer sleeps at once: expiry is wall-clock time, and the wall
# clock may be set meanwhile by a source that does not tell this block.
MAX_SLEEP_S = 60.0
# How long one wait for the CSMS to hear the connectors' statuses lasts before it is
# started again (offline: until the next connection).
REPORT_WAIT_S = 30.0
# After the store or the outbox refused an end's report: try again after this long.
RETRY_S = 5.0
# ReserveNowRequest.id is an OCPP integer, 32-bit signed (the message validator refuses
# anything beyond before a handler sees it; kept here for the block used on its own).
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

Verdict = tuple[bool, "Reservation | None"]


@dataclass(frozen=True)
class Reservation:
    id: int
    expiry: datetime
    id_token: dict[str, Any]
    group_id_token: dict[str, Any] | None = None
    evse_id: int | None = None
    connector_type: str | None = None
    made: int = 0

    def fits(self, connector_type: str) -> bool:
        return self.connector_type is None or self.connector_type == connector_type

    def matches(self, id_token: Mapping[str, Any], group: Mapping[str, Any] | None) -> bool:
        """This token may use the reservation: it is the reserved one, or its own group
        (the groupIdToken of its idTokenInfo) is the reservation's groupIdToken
        (H03.FR.02; errata [684]: the incoming token's group is what is compared, not the
        token itself, as OCPP 1.6's parentIdTag rule had it)."""
        if same_token(self.id_token, id_token):
            return True
        return self.group_id_token is not None and same_token(self.group_id_token, group)


def same_token(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """idToken (a CiString: case-insensitive) and type equal."""
    if not a or not b:
        return False
    ta, tb = a.get("idToken"), b.get("idToken")
    return (isinstance(ta, str) and isinstance(tb, str) and ta.lower() == tb.lower()
            and a.get("type") == b.get("type"))


def feasible(pool: Mapping[int, str], wanted: Iterable[Reservation]) -> bool:
    """Whether each reservation can have an EVSE of its own from `pool` (evse id ->
    connector type) that fits it: a bipartite matching (Kuhn), small as stations are."""
    wanted = list(wanted)
    if len(wanted) > len(pool):
        return False
    owner: dict[int, int] = {}   # evse id -> index of the reservation holding it

    def place(i: int, seen: set[int]) -> bool:
        for evse_id, ctype in pool.items():
            if evse_id in seen or not wanted[i].fits(ctype):
                continue
            seen.add(evse_id)
            if evse_id not in owner or place(owner[evse_id], seen):
                owner[evse_id] = i
                return True
        return False

    return all(place(i, set()) for i in range(len(wanted)))


class Reservations:
    def __init__(self, *, router: Router, model: Any, store: Store, outbox: Any,
                 clock: Clock, station: Station, connector_types: Mapping[int, str],
                 authorized: Callable[[int], bool] = lambda evse_id: False,
                 busy: Callable[[int], bool] = lambda evse_id: False) -> None:
        """`authorized(evse_id)`: a token is accepted on that EVSE (a session holds it);
        `busy(evse_id)`: a transaction is open there."""
        self._model = model
        self._store = store
        self._outbox = outbox
        self._clock = clock
        self._station = station
        self._types = dict(connector_types)
        self._authorized = authorized
        self._busy = busy
        # Whether the CSMS wants the EVSE in service (Availability.wanted); set once the
        # Availability block exists, which is built after the transactions.
        self.wanted: Callable[[int], bool] = lambda evse_id: True
        # Waits (at most the given seconds) until the CSMS has heard every connector's
        # status; True once it has (Availability.reported). None: report at once.
        self.status_reported: Callable[[float], Awaitable[bool]] | None = None
        # Sends this EVSE's connector status again, changed or not (Availability).
        self.report_again: Callable[[int], None] = lambda evse_id: None
        # Called with the EVSE id (0: none) when a reservation ends, however it ends, and
        # when an EVSE stops being shown Reserved.
        self.on_ended: list[Callable[[int], None]] = []
        self._changed = asyncio.Event()
        self._ends_waiting = asyncio.Event()
        self._refreshing = False
        store.ensure_schema(SCHEMA)
        self._all: dict[int, Reservation] = {}
        for rid, evse_id, ctype, expiry, token, group, made in store.query(
                "SELECT id, evse_id, connector_type, expiry, id_token, group_id_token, made "
                "FROM reservations"):
            self._all[rid] = Reservation(
                rid, parse_datetime(expiry, clamp=True), json.loads(token),
                json.loads(group) if group else None, evse_id, ctype, made)
        router.register("ReserveNow", self._on_reserve_now)
        router.register("CancelReservation", self._on_cancel)
        station.subscribe(lambda evse_id, connector_id, status: self.refresh())
        # Uses whose authorization died with the power: no TransactionEvent will name them.
        self._used: dict[int, int] = {}
        for rid, evse_id in store.query("SELECT id, evse_id FROM reservation_uses"):
            self._used[rid] = evse_id
            self.lapsed(rid, "its driver's authorization ended with the restart")
        # Expired while the station was down: reported after the boot's StatusNotifications
        # (H04), as ends not yet reported from before the restart are.
        self._expire()
        if store.query("SELECT 1 FROM reservation_ends LIMIT 1"):
            self._ends_waiting.set()

    # -- what other blocks ask ------------------------------------------------------------

    def reservations(self) -> list[Reservation]:
        return sorted(self._all.values(), key=lambda r: r.made)

    def holds(self, evse_id: int) -> bool:
        """This EVSE is Reserved: a firmware install waits for it as for a transaction."""
        return any(c.reserved for c in self._station.connectors(evse_id))

    def admit(self, evse_id: int, id_token: Mapping[str, Any],
              info: Mapping[str, Any]) -> tuple[bool, int | None]:
        """May this token (accepted, with this idTokenInfo) be authorized on this EVSE?
        Returns (allowed, id of the reservation it used up, if any)."""
        allowed, used = self._judge(evse_id, id_token, info)
        if used is None:
            return allowed, None
        self._use(used, evse_id)
        return True, used.id

    def allows(self, evse_id: int, id_token: Mapping[str, Any],
               info: Mapping[str, Any]) -> bool:
        """`admit()` without using anything up: for choosing an EVSE."""
        return self._judge(evse_id, id_token, info)[0]

    def for_groups(self) -> bool:
        """Some reservation admits the members of a group (groupIdToken)."""
        return any(r.group_id_token is not None for r in self._all.values())

    def reserved_for(self, evse_id: int, id_token: Mapping[str, Any],
                     info: Mapping[str, Any] | None = None) -> bool:
        """A reservation this token would use up here (the reserved token itself, or a
        member of its group when `info` gives the token's group)."""
        return self._judge(evse_id, id_token, info or {})[1] is not None

    def reported(self, reservation_id: int) -> None:
        """A TransactionEvent naming this used reservation is being committed (called in
        its store transaction): the CSMS will know how it ended (H01.FR.15)."""
        if self._used.pop(reservation_id, None) is not None:
            self._store.execute("DELETE FROM reservation_uses WHERE id = ?", (reservation_id,))

    def lapsed(self, reservation_id: int, why: str = "its driver's authorization lapsed "
               "before a transaction named it") -> None:
        """The authorization that used this reservation is gone, and no TransactionEvent
        named it: the reservation stays used (H03.FR.09), and the CSMS is told it ended
        (ReservationStatusUpdate Removed), as it would otherwise believe it still held."""
        if self._used.pop(reservation_id, None) is None:
            return
        with self._store.transaction() as db:
            db.execute("DELETE FROM reservation_uses WHERE id = ?", (reservation_id,))
            self._record_end(db, reservation_id, "Removed")
        log.info("reservation %d removed: %s", reservation_id, why)

    def refresh(self) -> None:
        """Bring the reservations and the Reserved flags in line with the station: end
        those that can no longer be kept (Removed), show which EVSEs are held."""
        if self._refreshing or (not self._all and not any(
                c.reserved for c in self._station.connectors())):
            return   # nothing held, nothing shown: the common case, asked often
        self._refreshing = True
        try:
            for r in [r for r in self.reservations()
                      if r.evse_id is not None and not self._serviceable(r.evse_id)]:
                self._end(r, "Removed", "its EVSE is out of service")
            pool = self._pool(self._serviceable)
            while not feasible(pool, self._any()):
                self._end(self._any()[-1], "Removed", "too few EVSEs left in service")
            held = {r.evse_id for r in self._all.values() if r.evse_id is not None}
            free = self._pool(self._free)
            anyone = self._any()
            held |= {e for e in free if not feasible(
                {k: v for k, v in free.items() if k != e}, anyone)}
            released = set()
            for conn in self._station.connectors():
                if conn.reserved != (conn.evse_id in held):
                    if conn.reserved:
                        released.add(conn.evse_id)
                    self._station.update(conn.evse_id, conn.id, reserved=conn.evse_id in held)
        finally:
            self._refreshing = False
        # An EVSE no longer held is free: whoever waits for it (a firmware install) is
        # told, however it came free (a use whose session lapsed, another EVSE freed).
        for evse_id in sorted(released):
            for callback in self.on_ended:
                callback(evse_id)

    def poke(self) -> None:
        """The wall clock was set (the CSMS's time at boot): look at the expiries again."""
        self._changed.set()

    async def enabled_changed(self) -> None:
        """ReservationCtrlr.Enabled was set: false ends every reservation (Removed), as
        the station no longer holds EVSEs for anyone."""
        if self._model.get_bool(CTRLR, "Enabled"):
            return
        for r in self.reservations():
            self._end(r, "Removed", "ReservationCtrlr.Enabled set to false")
        self.refresh()

    async def run(self) -> None:
        """End reservations as they expire, and report the ends; runs for the life of
        the runtime."""
        await asyncio.gather(self._expiry_loop(), self._report_loop())

    async def _expiry_loop(self) -> None:
        first = True   # at start: show what is held
        while True:
            self._changed.clear()
            # A change wakes this loop only to reckon the next expiry: whoever made it
            # shows its effect (after its answer is on the wire, for ReserveNow).
            if self._expire() or first:
                self.refresh()
            first = False
            due = min((r.expiry for r in self._all.values()), default=None)
            waiter = asyncio.ensure_future(self._changed.wait())
            timers = [] if due is None else [asyncio.ensure_future(self._clock.sleep(
                min(MAX_SLEEP_S, max(0.0, (due - self._clock.now()).total_seconds()))))]
            try:
                await asyncio.wait({waiter, *timers}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                for t in timers:
                    t.cancel()

    async def _report_loop(self) -> None:
        """Hand the ends to the outbox once the CSMS has heard the statuses that show
        them: the StatusNotification first, then the ReservationStatusUpdate."""
        while True:
            await self._ends_waiting.wait()
            self._ends_waiting.clear()
            if self.status_reported is not None and \
                    not await self.status_reported(REPORT_WAIT_S):
                self._ends_waiting.set()   # not heard yet (offline): wait again
                continue
            try:
                self._report_ends()
            except Exception:   # noqa: BLE001 - a full disk must not stop the station
                log.exception("reservation ends not reported; trying again in %.0f s",
                              RETRY_S)
                self._ends_waiting.set()
                await self._clock.sleep(RETRY_S)

    def _report_ends(self) -> None:
        with self._store.transaction() as db:
            rows = db.execute("SELECT seq, id, status FROM reservation_ends "
                              "ORDER BY seq").fetchall()
            for seq, rid, status in rows:
                self._outbox.enqueue("ReservationStatusUpdate", {
                    "reservationId": rid, "reservationUpdateStatus": status})
                db.execute("DELETE FROM reservation_ends WHERE seq = ?", (seq,))

    # -- ReserveNow (H01) and CancelReservation (H02) --------------------------------------

    async def _on_reserve_now(self, request: Payload) -> Payload | Reply:
        rid = request["id"]
        if not self._model.get_bool(CTRLR, "Enabled"):
            return _answer("Rejected", "NotEnabled", "ReservationCtrlr.Enabled is false")
        if not INT32_MIN <= rid <= INT32_MAX:
            return _answer("Rejected", "ValueTooHigh" if rid > 0 else "ValueTooLow",
                           f"id {rid} is beyond 32 bits")
        try:
            expiry = parse_datetime(request["expiryDateTime"], clamp=True)
        except ValueError:
            return _answer("Rejected", "InvalidValue", "expiryDateTime is no date-time")
        if expiry <= self._clock.now():
            return _answer("Rejected", "InvalidValue", "expiryDateTime has passed")
        evse_id, ctype = request.get("evseId"), request.get("connectorType")
        new = Reservation(rid, expiry, dict(request["idToken"]),
                          dict(request["groupIdToken"]) if "groupIdToken" in request else None,
                          evse_id, ctype, self._next_made())
        # H01.FR.02: the same id replaces the reservation; the new one is judged as if the
        # old were gone, and the old stays if the new one is refused.
        others = [r for r in self.reservations() if r.id != rid]
        if evse_id is not None:
            if evse_id not in self._station.evses:
                return _answer("Rejected", "UnknownEvse", f"this station has no EVSE {evse_id}")
            if ctype is not None and self._types.get(evse_id) != ctype:
                return _answer("Rejected", "UnknownConnectorType",
                               f"EVSE {evse_id} has no {ctype} connector")
            status = self._answer_for_evse(evse_id, others)
        else:
            if not self._model.get_bool(CTRLR, "NonEvseSpecific"):
                return _answer("Rejected", "UnsupportedRequest",
                               "ReservationCtrlr.NonEvseSpecific is false: name an EVSE")
            if ctype is not None and ctype not in self._types.values():
                return _answer("Rejected", "UnknownConnectorType",
                               f"this station has no {ctype} connector")
            status = self._answer_for_any(new, others)
        log.info("ReserveNow %d (EVSE %s, %s, until %s): %s", rid,
                 evse_id if evse_id is not None else "any", ctype or "any connector",
                 request["expiryDateTime"], status)
        if status != "Accepted":
            return {"status": status}
        with self._store.transaction() as db:
            db.execute("INSERT OR REPLACE INTO reservations (id, evse_id, connector_type, "
                       "expiry, id_token, group_id_token, made) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (rid, evse_id, ctype, request["expiryDateTime"],
                        json.dumps(new.id_token),
                        json.dumps(new.group_id_token) if new.group_id_token else None,
                        new.made))
            # The CSMS reuses the id of a reservation a driver used: it takes that one as
            # over, and a later lapse of its authorization must not name this new one.
            db.execute("DELETE FROM reservation_uses WHERE id = ?", (rid,))
        self._used.pop(rid, None)
        self._all[rid] = new
        self._changed.set()

        async def show() -> None:
            # Reserved is reported once the answer is on the wire (H01.FR.23). A
            # replacement on an EVSE already Reserved is reported again: for the CSMS it
            # is a new reservation of that EVSE (TC_H_23 expects its Reserved).
            was = evse_id is not None and self.holds(evse_id)
            self.refresh()
            if was and evse_id is not None and self.holds(evse_id):
                self.report_again(evse_id)
        return Reply({"status": "Accepted"}, show)

    async def _on_cancel(self, request: Payload) -> Payload | Reply:
        r = self._all.get(request["reservationId"])
        if r is None:
            return _answer("Rejected", "NotFound", f"no reservation {request['reservationId']}")
        self._forget(r)
        log.info("CancelReservation %d: Accepted", r.id)

        async def show() -> None:
            self.refresh()   # H02.FR.03/04: the EVSE Available again, after the answer
        return Reply({"status": "Accepted"}, show)

    def _answer_for_evse(self, evse_id: int, others: list[Reservation]) -> str:
        """As the connector shows (H01.FR.11/12/14): Faulted, Unavailable, or Occupied
        (an EV, a session, a transaction, another reservation on it or needing it)."""
        conn = self._station.connector(evse_id, 1)
        if conn.faulted:
            return "Faulted"
        if not conn.operative:
            return "Unavailable"
        if conn.plugged or self._busy(evse_id) or self._authorized(evse_id):
            return "Occupied"
        named = {r.evse_id for r in others if r.evse_id is not None}
        if evse_id in named:
            return "Occupied"
        pool = {e: t for e, t in self._pool(self._idle).items()
                if e not in named and e != evse_id}
        if not feasible(pool, [r for r in others if r.evse_id is None]):
            return "Occupied"   # needed for the reservations without an EVSE
        return "Accepted"

    def _answer_for_any(self, new: Reservation, others: list[Reservation]) -> str:
        named = {r.evse_id for r in others if r.evse_id is not None}
        pool = {e: t for e, t in self._pool(self._idle).items() if e not in named}
        if feasible(pool, [r for r in others if r.evse_id is None] + [new]):
            return "Accepted"
        candidates = [self._station.connector(e, 1) for e, t in self._types.items()
                      if new.fits(t)]
        if all(c.faulted for c in candidates):
            return "Faulted"
        if all(c.faulted or not c.operative for c in candidates):
            return "Unavailable"
        return "Occupied"

    # -- who may charge where ---------------------------------------------------------------

    def _judge(self, evse_id: int, id_token: Mapping[str, Any],
               info: Mapping[str, Any]) -> Verdict:
        """(allowed, the reservation it would use up)."""
        if not self._all:
            return True, None
        group = info.get("groupIdToken")
        named = self._named(evse_id)
        if named is not None:
            if named.matches(id_token, group):
                return True, named
            # debug: asked again at each evaluation for a session without authorization.
            log.debug("EVSE %d is reserved (reservation %d): token %s refused", evse_id,
                      named.id, id_token.get("idToken"))
            return False, None
        ctype = self._types.get(evse_id, "")
        for r in self._any():
            if r.fits(ctype) and r.matches(id_token, group):
                return True, r
        pool = self._pool(self._free)
        pool.pop(evse_id, None)
        if feasible(pool, self._any()):
            return True, None
        log.debug("EVSE %d is held for reservations without an EVSE: token %s refused",
                  evse_id, id_token.get("idToken"))
        return False, None

    # -- ends -----------------------------------------------------------------------------

    def _expire(self) -> bool:
        """End the reservations whose time has come (H04); whether any did."""
        now = self._clock.now()
        ended = False
        for r in self.reservations():
            if r.expiry <= now:
                self._end(r, "Expired", "its expiryDateTime has passed")
                ended = True
        return ended

    def _end(self, r: Reservation, status: str, why: str) -> None:
        """End a reservation the driver did not use: gone from the store together with
        the record of the ReservationStatusUpdate that will tell the CSMS (H04)."""
        with self._store.transaction() as db:
            db.execute("DELETE FROM reservations WHERE id = ?", (r.id,))
            self._record_end(db, r.id, status)
        log.info("reservation %d %s: %s", r.id, status.lower(), why)
        self._dropped(r)

    def _record_end(self, db: Any, reservation_id: int, status: str) -> None:
        db.execute("INSERT INTO reservation_ends (id, status) VALUES (?, ?)",
                   (reservation_id, status))
        self._ends_waiting.set()

    def _use(self, r: Reservation, evse_id: int) -> None:
        """The reserved driver is here (H03.FR.09): the reservation is used up; kept as a
        use until a TransactionEvent names it (`reported`) or the authorization lapses."""
        with self._store.transaction() as db:
            db.execute("DELETE FROM reservations WHERE id = ?", (r.id,))
            db.execute("INSERT OR REPLACE INTO reservation_uses (id, evse_id) VALUES (?, ?)",
                       (r.id, evse_id))
        self._used[r.id] = evse_id
        log.info("reservation %d used on EVSE %d", r.id, evse_id)
        self._dropped(r)
        # The token's session is not recorded yet when this runs: show the EVSEs once it is.
        asyncio.get_running_loop().call_soon(self.refresh)

    def _forget(self, r: Reservation) -> None:
        self._store.execute("DELETE FROM reservations WHERE id = ?", (r.id,))
        self._dropped(r)

    def _dropped(self, r: Reservation) -> None:
        self._all.pop(r.id, None)
        self._changed.set()
        for callback in self.on_ended:
            callback(r.evse_id or 0)

    # -- which EVSEs -----------------------------------------------------------------------

    def _named(self, evse_id: int) -> Reservation | None:
        return next((r for r in self._all.values() if r.evse_id == evse_id), None)

    def _any(self) -> list[Reservation]:
        """The reservations without an EVSE, oldest first."""
        return [r for r in self.reservations() if r.evse_id is None]

    def _pool(self, test: Callable[[int], bool]) -> dict[int, str]:
        """The EVSEs that pass `test` and no reservation names, with their connector type."""
        named = {r.evse_id for r in self._all.values() if r.evse_id is not None}
        return {e: self._types.get(e, "") for e in self._station.evses
                if e not in named and test(e)}

    def _serviceable(self, evse_id: int) -> bool:
        """Could serve a reservation: not faulted, in service by the CSMS's settings, no
        other driver's session on it."""
        conn = self._station.connector(evse_id, 1)
        return not conn.faulted and self.wanted(evse_id) and not self._authorized(evse_id)

    def _free(self, evse_id: int) -> bool:
        """Serviceable and in service now (an EV may be plugged in: only the reserved
        driver can start there)."""
        return self._serviceable(evse_id) and self._station.connector(evse_id, 1).operative

    def _idle(self, evse_id: int) -> bool:
        """Free and nobody there: what a new reservation may take."""
        conn = self._station.connector(evse_id, 1)
        return self._free(evse_id) and not conn.plugged and not self._busy(evse_id)

    def _next_made(self) -> int:
        return max((r.made for r in self._all.values()), default=0) + 1


def _answer(status: str, reason: str, info: str) -> Payload:
    return {"status": status, "statusInfo": {"reasonCode": reason, "additionalInfo": info[:512]}}
