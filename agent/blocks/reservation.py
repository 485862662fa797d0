"""Reservation (block H): ReserveNow, CancelReservation, ReservationStatusUpdate.

A reservation holds an EVSE for one driver until it expires (H01). It names an EVSE, or
none (any EVSE that fits; ReservationCtrlr.NonEvseSpecific), or a connectorType. The
station keeps enough EVSEs free for the reservations without an EVSE: whatever else
happens, the reservations it accepted can all be served by distinct free EVSEs that fit
them (a matching, `feasible()`). An EVSE is shown Reserved (StatusNotification, and
AvailabilityState through the Availability block) when it is named by a reservation, or
when it is free and without it the others could not serve the reservations without an
EVSE (H01.FR.20/24 with the errata: as many free EVSEs as reservations, all Reserved).

Only the reserved idToken, or a token whose groupIdToken is the reservation's, may be
authorized on a Reserved EVSE (H03, errata [735]): `admit()` is asked by the transactions
block before it accepts a token for an EVSE (card, remote start, a session without
authorization). A token that matches uses the reservation up (H03.FR.09): it ends, the
connector shows Available or Occupied (H03.FR.10), and the transaction carries its id
(reservationId in the TransactionEvent that follows). An EV plugged into a Reserved EVSE
leaves it Reserved (errata G03.FR.09) until the matching token comes.

A reservation ends without use when it expires (ReservationStatusUpdate Expired, H04) or
when the station can no longer keep it: the named EVSE became Faulted, or the CSMS set it
Inoperative (ChangeAvailability; TC_H_20/21: ReservationStatusUpdate Removed); for the
reservations without an EVSE, the newest go first when too few EVSEs are left. A Reset
or an EVSE taken out of service for a while (an EVSE Reset, a firmware install holding
idle EVSEs) does not remove one: it is the station's own doing and passes. CancelReservation
(H02) ends one at the CSMS's word, without a ReservationStatusUpdate.

Reservations live in the store: each change is committed before the answer, and each end
is committed together with its ReservationStatusUpdate in the durable outbox, so after a
restart or `kill -9` a reservation is either still there or reported; one that expired
while the station was down is reported Expired at start.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

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
"""

# The longest the expiry timer sleeps at once: expiry is wall-clock time, and the wall
# clock may be set meanwhile (a Heartbeat's currentTime) without a word to this block.
MAX_SLEEP_S = 60.0
# ReserveNowRequest.id is an OCPP integer: 32 bits (beyond, an SQLite key overflows).
MAX_ID = 2**31 - 1


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
        """This token may use the reservation: it is the reserved one, or its group (from
        the authorization's idTokenInfo) is the reservation's groupIdToken (H03.FR.02)."""
        if same_token(self.id_token, id_token):
            return True
        if self.group_id_token is None:
            return False
        return same_token(self.group_id_token, group) or \
            same_token(self.group_id_token, id_token)


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
        # Called with the EVSE id (0: none) when a reservation ends, however it ends.
        self.on_ended: list[Callable[[int], None]] = []
        self._changed = asyncio.Event()
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
        # Expired while the station was down: reported now (H04), before anything shows
        # them (the EVSEs are shown by the first refresh(), once the blocks it asks exist).
        self._expire()

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
        if not self._all:
            return True, None
        group = info.get("groupIdToken")
        named = self._named(evse_id)
        if named is not None:
            if named.matches(id_token, group):
                self._use(named, evse_id)
                return True, named.id
            # debug: asked again at each evaluation for a session without authorization.
            log.debug("EVSE %d is reserved (reservation %d): token %s refused", evse_id,
                      named.id, id_token.get("idToken"))
            return False, None
        ctype = self._types.get(evse_id, "")
        for r in self._any():
            if r.fits(ctype) and r.matches(id_token, group):
                self._use(r, evse_id)
                return True, r.id
        pool = self._pool(self._free)
        pool.pop(evse_id, None)
        if feasible(pool, self._any()):
            return True, None
        log.debug("EVSE %d is held for reservations without an EVSE: token %s refused",
                  evse_id, id_token.get("idToken"))
        return False, None

    def refresh(self) -> None:
        """Bring the reservations and the Reserved flags in line with the station: end
        those that can no longer be kept (Removed), show which EVSEs are held."""
        if self._refreshing:
            return
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
            for conn in self._station.connectors():
                if conn.reserved != (conn.evse_id in held):
                    self._station.update(conn.evse_id, conn.id, reserved=conn.evse_id in held)
        finally:
            self._refreshing = False

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
        """End reservations as they expire; runs for the life of the runtime."""
        timed_out = True   # at start: show what is held
        while True:
            self._changed.clear()
            # A change wakes this loop only to reckon the next expiry: whoever made it
            # shows its effect (after its answer is on the wire, for ReserveNow).
            if (self._expire() or timed_out) and (self._all or self._shown()):
                # Also catches what no event announces (a token's session lapsing before
                # its EV came), at most MAX_SLEEP_S late.
                self.refresh()
            due = min((r.expiry for r in self._all.values()), default=None)
            waiter = asyncio.ensure_future(self._changed.wait())
            timers = [] if due is None else [asyncio.ensure_future(self._clock.sleep(
                min(MAX_SLEEP_S, max(0.0, (due - self._clock.now()).total_seconds()))))]
            try:
                await asyncio.wait({waiter, *timers}, return_when=asyncio.FIRST_COMPLETED)
                timed_out = bool(timers) and timers[0].done() and not timers[0].cancelled()
            finally:
                waiter.cancel()
                for t in timers:
                    t.cancel()

    # -- ReserveNow (H01) and CancelReservation (H02) --------------------------------------

    async def _on_reserve_now(self, request: Payload) -> Payload | Reply:
        rid = request["id"]
        if not self._model.get_bool(CTRLR, "Enabled"):
            return _answer("Rejected", "NotEnabled", "ReservationCtrlr.Enabled is false")
        if not -MAX_ID <= rid <= MAX_ID:   # the schema sets no bound; the store does
            return _answer("Rejected", "ValueTooHigh", f"id {rid} is beyond 32 bits")
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
        self._all[rid] = new
        self._changed.set()

        async def show() -> None:
            # Reserved is reported once the answer is on the wire (H01.FR.23).
            self.refresh()
        return Reply({"status": "Accepted"}, show)

    async def _on_cancel(self, request: Payload) -> Payload | Reply:
        r = self._all.get(request["reservationId"])
        if r is None:
            return _answer("Rejected", "NotFound", f"no reservation {request['reservationId']}")
        self._forget(r)
        log.info("CancelReservation %d: Accepted", r.id)

        async def show() -> None:
            self.refresh()   # H02.FR.03: the EVSE Available again, after the answer
        return Reply({"status": "Accepted"}, show)

    def _answer_for_evse(self, evse_id: int, others: list[Reservation]) -> str:
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
        the ReservationStatusUpdate that tells the CSMS (H04)."""
        with self._store.transaction() as db:
            db.execute("DELETE FROM reservations WHERE id = ?", (r.id,))
            self._outbox.enqueue("ReservationStatusUpdate", {
                "reservationId": r.id, "reservationUpdateStatus": status})
        log.info("reservation %d %s: %s", r.id, status.lower(), why)
        self._dropped(r)

    def _use(self, r: Reservation, evse_id: int) -> None:
        """The reserved driver is here (H03.FR.09): the reservation is used up."""
        self._store.execute("DELETE FROM reservations WHERE id = ?", (r.id,))
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

    def _shown(self) -> bool:
        return any(c.reserved for c in self._station.connectors())

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
