"""Transactions (block E) and the charging control that goes with them.

Each EVSE's inputs (plug, authorization, power path, energy flow) are the TxStartPoint /
TxStopPoint "points". A transaction starts when a configured start point is reached and
ends when a configured stop point that had been reached is lost (E01-E07 with the
errata); an EV unplugged on its side always ends it (StopTxOnEVSideDisconnect, read-only
true: triggerReason EVCommunicationLost), and an authorization that never saw a cable
lapses after TxCtrlr.EVConnectionTimeOut, ending a transaction it started
(EVConnectTimeout, Timeout). A stop by card or RequestStopTransaction whose stop point is
not lost at once (TxStopPoint EVConnected, EnergyTransfer) is an Updated event; the Ended
one follows when the point is lost, with that stoppedReason (E07). Every event is
committed together with the transaction's new state and handed to the durable outbox in
the same store transaction, so seqNo never has a gap and nothing is lost on `kill -9`
(see transaction_state.py). A transaction found open at
start-up ended with the power: stoppedReason PowerLoss.

No energy register of a transaction goes backwards (docs/energy-register.md): the meter
sampler holds a reading below what was reported at the reported value, the Ended event
always has its end register, and the problem goes to the CSMS as a FiscalMetering
Problem event committed with the TransactionEvent that carries the held value.

The charging rules that drive pilot, lock and contactor are in charging.py. Which
session holds a socket's cable is decided here: an authorized EV plugged in holds it; an
EV unplugged on its side releases it unless OCPPCommCtrlr.UnlockOnEVSideDisconnect is
false, which keeps it locked until the token that started the session is presented
again (TC_E_25) or the CSMS sends UnlockConnector.

A fault is not an unplug: a stop point lost while the EVSE is faulted ends the
transaction with triggerReason AbnormalCondition (stoppedReason Other), and a session
held by a fault says so (Updated, AbnormalCondition, SuspendedEVSE); the plug state itself
is kept through a fault (agent/hardware.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from hal.api import MeterReading

from agent.blocks import charging
from agent.blocks.authorization import Authorization
from agent.blocks.authorization import same_id_token
from agent.blocks.metering import TxMeterSampler
from agent.blocks.metering.register import BELOW_PREVIOUS
from agent.blocks.metering.register_events import RegisterProblems
from agent.blocks.metering.values import Extras
from agent.blocks.transaction_state import Transaction, TransactionStore
from agent.clock import Clock, format_datetime
from agent.hardware import Hardware
from agent.ocpp.outbox import Outbox
from agent.ocpp.session import Payload, Router
from agent.station import Station
from agent.store import Store

log = logging.getLogger(__name__)

ReadingSource = Callable[[int], "MeterReading | None"]   # the EVSE meter's latest reading
# Transaction.extra key: the techCode of the register problem raised for it, until it ends.
PROBLEM = "register_problem"


@dataclass
class Grant:
    """A token accepted for an EVSE, before or during its transaction."""
    id_token: dict[str, Any]
    info: dict[str, Any]
    remote_start_id: int | None = None
    since: float = 0.0
    charging_profile: dict[str, Any] | None = None   # RequestStartTransaction's TxProfile
    cabled: bool = False   # an EV was plugged in since: EVConnectionTimeOut is over
    # The reservation this token used up (H03), until a TransactionEvent names it.
    reservation_id: int | None = None


class Transactions:
    def __init__(self, *, link: Any, router: Router, model: Any, clock: Clock, store: Store,
                 outbox: Outbox, station: Station, hardware: Hardware,
                 authorization: Authorization, reading: ReadingSource,
                 limit: Callable[[int], float | None] = lambda evse_id: None,
                 power_limit: Callable[[int], float | None] = lambda evse_id: None,
                 extras: Callable[[int], Extras | None] = lambda evse_id: None,
                 check_tx_profile: Callable[[int, Payload], str | None] | None = None,
                 reservations: Any = None) -> None:
        """`limit(evse_id)`: the smart-charging current limit per phase now (None: no
        limit); `power_limit(evse_id)` the same in W (what a DC EVSE follows).
        `extras(evse_id)`: offered current/power for meter values.
        `check_tx_profile(evse_id, profile)`: None if RequestStartTransaction's
        chargingProfile is acceptable, else the reasonCode (None callable: profiles are
        not supported). `reservations`: the Reservation block, asked before a token is
        accepted for an EVSE (None: the station takes no reservations)."""
        self._link = link
        self._model = model
        self._clock = clock
        self._store = store
        self._outbox = outbox
        self._station = station
        self._hardware = hardware
        self._authorization = authorization
        self._reading = reading
        self._limit = limit
        self._power_limit = power_limit
        self._dc = {evse_id: charging.DcCommand() for evse_id in station.evses}
        self._extras = extras
        self._check_tx_profile = check_tx_profile
        self._reservations = reservations
        self._db = TransactionStore(store)
        self._problems = RegisterProblems(store=store, outbox=outbox, model=model, clock=clock)
        self.open: dict[int, Transaction] = self._db.load()
        self._samplers: dict[int, TxMeterSampler] = {
            evse_id: TxMeterSampler.restore(model, tx.extra["sampler"])
            for evse_id, tx in self.open.items() if "sampler" in tx.extra}
        self._auth: dict[int, Grant] = {}
        self._points: dict[int, set[str]] = {e: set() for e in station.evses}
        # EVSE -> the token whose cable stays locked after the EV side was unplugged
        # (UnlockOnEVSideDisconnect false); None: a session without one (UnlockConnector
        # only).
        self._cable_held: dict[int, dict[str, Any] | None] = {}
        # EVSEs whose plugged-in EV had its session without a token (AuthCtrlr.Enabled
        # false); cleared when it leaves.
        self._free_sessions: set[int] = set()
        # EVSE -> when its contactor was seen closing (for the charging state).
        self._closed_since: dict[int, datetime] = {}
        self._changed = asyncio.Event()
        self.on_ended: list[Callable[[int], None]] = []
        # An authorization went without a transaction open on its EVSE (it lapsed, was
        # replaced, or its transaction had already ended): the EVSE is idle again.
        self.on_released: list[Callable[[int], None]] = []
        # (evse_id, transaction id, RequestStartTransaction's chargingProfile or None)
        self.on_started: list[Callable[[int, str, dict[str, Any] | None], None]] = []
        router.register("RequestStartTransaction", self._on_request_start)
        router.register("RequestStopTransaction", self._on_request_stop)
        router.register("GetTransactionStatus", self._on_get_status)
        outbox.on_answer("TransactionEvent", self._on_event_answer)
        for hw in hardware.evses.values():
            hw.subscribe(self._poke)
        station.subscribe(lambda evse, conn, status: self._poke())

    # -- what other blocks ask ------------------------------------------------------------

    def busy(self, evse_id: int | None) -> bool:
        if evse_id is None:
            return bool(self.open)
        return evse_id in self.open

    def end_all(self, evse_id: int | None, trigger: str, reason: str) -> list[str]:
        """End at once the transaction on `evse_id` (on every EVSE when None), as Reset
        Immediate does (B12.FR.02/08: ResetCommand, ImmediateReset). Its authorization
        goes with it, so the next evaluation switches the energy off; returns the ids of
        the transactions ended."""
        ended = []
        for evse in [e for e in list(self.open) if evse_id is None or e == evse_id]:
            ended.append(self.open[evse].id)
            self._drop_grant(evse)
            self._end(evse, trigger, reason)
        self._poke()
        return ended

    def authorized(self, evse_id: int) -> bool:
        """A token is accepted for this EVSE: a session holds it, or is about to."""
        return evse_id in self._auth

    def _admit(self, evse_id: int, id_token: dict[str, Any],
               info: dict[str, Any]) -> tuple[bool, int | None]:
        """Whether a reservation lets this token be authorized here (H03), and the id of
        the reservation it uses up."""
        if self._reservations is None:
            return True, None
        return self._reservations.admit(evse_id, id_token, info)

    def _grant(self, evse_id: int, grant: Grant) -> None:
        """Record a token accepted for this EVSE. One that replaces another: the same token
        again keeps the reservation the first use took (a driver swiping twice)."""
        old = self._auth.get(evse_id)
        if old is not None and old is not grant:
            if grant.reservation_id is None and same_id_token(old.id_token, grant.id_token):
                grant.reservation_id, old.reservation_id = old.reservation_id, None
            self._lapsed(old)
        self._auth[evse_id] = grant

    def _drop_grant(self, evse_id: int) -> Grant | None:
        grant = self._auth.pop(evse_id, None)
        if grant is not None:
            self._lapsed(grant)
            if evse_id not in self.open:
                # No transaction will end here to say the EVSE is free again.
                for callback in self.on_released:
                    callback(evse_id)
        return grant

    def _lapsed(self, grant: Grant) -> None:
        """An authorization is gone before a TransactionEvent named the reservation it
        used up: the Reservation block tells the CSMS (H03.FR.09 with H01.FR.15)."""
        if grant.reservation_id is not None and self._reservations is not None:
            self._reservations.lapsed(grant.reservation_id)
        grant.reservation_id = None

    def transaction_id(self, evse_id: int) -> str | None:
        tx = self.open.get(evse_id)
        return tx.id if tx else None

    def started_at(self, evse_id: int) -> datetime | None:
        """When the transaction on this EVSE started (Relative charging profiles)."""
        sampler = self._samplers.get(evse_id) if evse_id in self.open else None
        return sampler.started_at if sampler is not None else None

    def dc_offer_a(self, evse_id: int) -> float:
        """The DC current set-point this EVSE's power module runs at (0: off)."""
        dc = self._dc[evse_id]
        return (dc.current_a or 0.0) if dc.on else 0.0

    def reapply(self) -> None:
        """Drive the hardware again now: a limit changed."""
        self._poke()

    def close(self) -> None:
        """Detach from the hardware, which outlives this runtime (Reset)."""
        for hw in self._hardware.evses.values():
            hw.unsubscribe(self._poke)

    # -- start-up -------------------------------------------------------------------------

    def recover(self) -> None:
        """Transactions still open from before a power cut or kill: end them (PowerLoss)."""
        for evse_id, tx in list(self.open.items()):
            log.warning("transaction %s on EVSE %d was open at start-up: ending it (PowerLoss)",
                        tx.id, evse_id)
            self._end(evse_id, "AbnormalCondition", "PowerLoss")

    # -- the loop -------------------------------------------------------------------------

    def _poke(self) -> None:
        self._changed.set()

    async def run(self) -> None:
        readers = [asyncio.ensure_future(self._read_cards(evse_id, hw.devices.reader))
                   for evse_id, hw in self._hardware.evses.items() if hw.devices.reader]
        try:
            while True:
                self._changed.clear()
                for evse_id in self._station.evses:
                    await self._evaluate(evse_id)
                if self._reservations is not None:
                    # Which EVSEs are free changes with every authorization given or
                    # lapsed, and no station status announces that: show it now.
                    self._reservations.refresh()
                await self._wait(self._next_deadline())
        finally:
            for task in readers:
                task.cancel()

    async def _wait(self, timeout: float | None) -> None:
        waiter = asyncio.ensure_future(self._changed.wait())
        timers = [asyncio.ensure_future(self._clock.sleep(timeout))] if timeout is not None else []
        try:
            await asyncio.wait({waiter, *timers}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            for t in timers:
                t.cancel()

    def _next_deadline(self) -> float | None:
        """Seconds until the next periodic sample or authorization time-out."""
        now = self._clock.monotonic()
        deadlines = []
        wall = self._clock.now()
        for sampler in self._samplers.values():
            due = sampler.next_due()
            if due is not None:
                deadlines.append((due - wall).total_seconds())
        timeout = self._model.get_int("TxCtrlr", "EVConnectionTimeOut")
        # Only an authorization still waiting for its cable (with or without a transaction
        # started on it) has a deadline: counting the others (plugged in, charging) made
        # the loop spin once their time had passed.
        for evse_id, auth in self._auth.items():
            if not auth.cabled and not self._station.evses[evse_id].connectors[1].plugged:
                deadlines.append(auth.since + timeout - now)
        return max(0.0, min(deadlines)) if deadlines else None

    # -- cards ----------------------------------------------------------------------------

    async def _read_cards(self, evse_id: int, reader: Any) -> None:
        async for token in reader.tokens():
            id_token = {"idToken": token.uid, "type": token.type}
            await self.present(evse_id, id_token)

    async def present(self, evse_id: int, id_token: dict[str, Any]) -> None:
        """A card was presented at this EVSE: authorize a start, or stop (C09, C16), or
        release the cable its session left locked (TC_E_25)."""
        tx = self.open.get(evse_id)
        auth = self._auth.get(evse_id)
        if tx is None and evse_id in self._cable_held:
            held = self._cable_held[evse_id]
            if held is not None and same_id_token(held, id_token):
                log.info("EVSE %d: card %s releases its cable", evse_id, id_token["idToken"])
                del self._cable_held[evse_id]
                self._hardware.evses[evse_id].allow_lock_retry()
                self._poke()
                return
        if tx is not None and auth is not None and same_id_token(auth.id_token, id_token):
            # The same token stops its transaction without asking anyone.
            self._stop_by_token(evse_id, id_token)
            return
        if tx is not None and tx.stopped_reason is not None:
            log.info("EVSE %d: transaction %s is stopped, waiting for its stop point; card "
                     "%s ignored", evse_id, tx.id, id_token["idToken"])
            return
        decision = await self._authorization.authorize(id_token, evse_id=evse_id)
        info = decision.info
        if not decision.accepted and self._reservation_vouches(evse_id, id_token, decision):
            # The CSMS reserved this EVSE for this very token: its reservation stands in
            # for the answer the station cannot get now (H03: the AuthorizeRequest of a
            # reserved token is optional, Part 6 Authorized A/B notes).
            log.info("EVSE %d: card %s accepted on its reservation (no answer from the "
                     "CSMS)", evse_id, id_token["idToken"])
            info = {"status": "Accepted"}
        elif not decision.accepted:
            log.info("EVSE %d: card %s refused (%s)", evse_id, id_token["idToken"],
                     decision.status)
            return
        if self._authorization.is_master_pass(info):
            # C16 (station without a UI, C16.FR.02): a master pass stops every running
            # transaction, StopAuthorized / MasterPass; it never starts one (C16.FR.03).
            running = [e for e, t in self.open.items() if t.stopped_reason is None]
            log.info("master pass %s at EVSE %d: stopping the transactions on EVSE(s) %s",
                     id_token["idToken"], evse_id, running or "none")
            for evse in running:
                self._deauthorize(evse, "StopAuthorized", "MasterPass", id_token)
            return
        if tx is not None and auth is not None:
            if self._authorization.same_group(info, auth.info):
                self._stop_by_token(evse_id, id_token)
            return
        allowed, reservation_id = self._admit(evse_id, id_token, info)
        if not allowed:
            log.info("EVSE %d is reserved for another token: card %s refused", evse_id,
                     id_token["idToken"])
            return
        self._grant(evse_id, Grant(id_token, info, since=self._clock.monotonic(),
                                   reservation_id=reservation_id))
        self._hardware.evses[evse_id].allow_lock_retry()   # a new card: try the lock again
        if tx is not None:
            tx.id_token = id_token
            self._event(tx, "Updated", "Authorized", id_token=id_token,
                        reservation_id=reservation_id)
        self._poke()

    def _reservation_vouches(self, evse_id: int, id_token: dict[str, Any],
                             decision: Any) -> bool:
        """Refused only for want of the CSMS's answer (offline, no answer, an error: the
        token is in neither the local list nor the cache), and a reservation here is for
        this very token. A local entry that refuses it, or a refusal for another reason
        (not yet registered), stands."""
        return (self._reservations is not None and decision.offline
                and not decision.from_cache and decision.status == "Invalid"
                and self._reservations.reserved_for(evse_id, id_token))

    def _stop_by_token(self, evse_id: int, id_token: dict[str, Any]) -> None:
        self._deauthorize(evse_id, "StopAuthorized", "Local", id_token)

    def _deauthorize(self, evse_id: int, trigger: str, reason: str,
                     id_token: dict[str, Any] | None = None,
                     ends_on: frozenset[str] = frozenset({"Authorized"})) -> None:
        """The driver or the CSMS ended the session. With one of `ends_on` a TxStopPoint
        the transaction ends now; otherwise (E07, E06: TxStopPoint EVConnected,
        PowerPathClosed, EnergyTransfer) an Updated event says so and the transaction
        ends, with this stoppedReason, when its stop point is lost (the energy stops, the
        EV is unplugged)."""
        self._drop_grant(evse_id)
        tx = self.open.get(evse_id)
        if tx is not None:
            stop = set(self._model.get_list("TxCtrlr", "TxStopPoint"))
            if stop & ends_on:
                self._end(evse_id, trigger, reason, id_token)
            else:
                tx.stopped_reason = reason
                self._event(tx, "Updated", trigger, id_token=id_token)
        self._poke()

    def _on_event_answer(self, request: Payload, response: Payload) -> None:
        """A TransactionEvent answer carrying idTokenInfo: cache it. A token the CSMS
        does not accept, with StopTxOnInvalidId true, deauthorizes its transaction: the
        energy stops and it ends (Deauthorized, DeAuthorized) when TxStopPoint has a
        point that goes with the authorization (E05, E06.FR.04, TC_E_16, TC_C_16/18).
        With StopTxOnInvalidId false it goes on under MaxEnergyOnInvalidId
        (deauthorization.py, TC_C_15/17)."""
        info = response.get("idTokenInfo")
        token = request.get("idToken")
        if info is None or token is None:
            return
        self._authorization.cache_update(token, info)
        if info.get("status") == "Accepted" or \
                not self._model.get_bool("TxCtrlr", "StopTxOnInvalidId"):
            return
        tx_id = request["transactionInfo"]["transactionId"]
        for evse_id, tx in list(self.open.items()):
            if tx.id == tx_id and evse_id in self._auth:
                log.warning("EVSE %d: the CSMS says token %s is %s: deauthorizing transaction "
                            "%s", evse_id, token.get("idToken"), info.get("status"), tx.id)
                # The stop points it takes away at once: the authorization, and with it
                # the power path and the energy flow.
                self._deauthorize(evse_id, "Deauthorized", "DeAuthorized", ends_on=frozenset(
                    {"Authorized", "PowerPathClosed", "EnergyTransfer"}))

    # -- the core -------------------------------------------------------------------------

    async def _evaluate(self, evse_id: int) -> None:
        now = self._clock.monotonic()
        auth = self._auth.get(evse_id)
        tx = self.open.get(evse_id)
        connector = self._station.evses[evse_id].connectors[1]
        # EVConnectionTimeOut: authorized but never plugged in. The authorization lapses
        # and a transaction it started (TxStartPoint Authorized) ends: EVConnectTimeout,
        # Timeout (E03.FR.05, TC_E_39 and TC_F_04 with the errata).
        if auth is not None and connector.plugged:
            auth.cabled = True   # an EV unplugged later ends the session; no time-out
        if auth is not None and not auth.cabled and not connector.plugged and (
                now - auth.since >= self._model.get_int("TxCtrlr", "EVConnectionTimeOut")):
            log.info("EVSE %d: no cable within EVConnectionTimeOut; authorization dropped", evse_id)
            self._drop_grant(evse_id)
            auth = None
            if tx is not None:
                self._end(evse_id, "EVConnectTimeout", "Timeout")
                tx = None
        free = self._authorization.without_token()
        if free is not None and auth is None and connector.plugged and \
                (tx is None or tx.stopped_reason is None) and \
                evse_id not in self._free_sessions and \
                (admitted := self._admit(evse_id, free, {"status": "Accepted"}))[0]:
            # AuthCtrlr.Enabled false: a plugged-in EV is authorized as it is, with the
            # token "" / NoAuthorization (appendix 3; errata 6.1.1).
            auth = Grant(free, {"status": "Accepted"}, since=now, cabled=True,
                         reservation_id=admitted[1])
            self._grant(evse_id, auth)
            # One session per plug-in: one stopped while the EV stays does not restart.
            self._free_sessions.add(evse_id)
            if tx is not None:
                tx.id_token = free
                self._event(tx, "Updated", "Authorized", id_token=free,
                            reservation_id=auth.reservation_id)
        hw, evse = self._hardware.evses[evse_id], self._station.evses[evse_id]
        await charging.lock_for_session(hw, evse, auth is not None)
        reached = charging.reached_points(hw, evse, auth is not None)
        before = self._points[evse_id]
        self._points[evse_id] = reached
        start = set(self._model.get_list("TxCtrlr", "TxStartPoint"))
        stop = set(self._model.get_list("TxCtrlr", "TxStopPoint"))
        if "EVConnected" in before ^ reached:
            self._cable_plug_changed(evse_id, plugged="EVConnected" in reached, tx=tx, auth=auth)
            if "EVConnected" not in reached and tx is None and auth is not None:
                # The EV left before any transaction began (TxStartPoint EnergyTransfer):
                # its authorization goes with it, not to the next EV plugged in.
                self._drop_grant(evse_id)
                auth = None
                reached.discard("Authorized")
        # Only a point newly reached starts one: after an end the EV may still be
        # plugged in, which must not start the next transaction by itself.
        if tx is None and (reached - before) & start:
            tx = self._start(evse_id, (reached - before) & start, auth)
        elif tx is not None:
            if "EVConnected" in reached - before:
                # The cable came after the transaction started (TxStartPoint Authorized):
                # E02/E03, Part 6 EnergyTransferStarted part 1 step 3.
                tx.charging_state = "EVConnected"
                self._event(tx, "Updated", "CablePluggedIn")
            # StopTxOnEVSideDisconnect is true (read-only): an EV unplugged on its side
            # ends the transaction whatever the stop points (E09, TC_E_17).
            unplugged = "EVConnected" in before - reached
            lost = (before - reached) & stop
            if unplugged or lost:
                trigger, reason = _why_stopped(lost | ({"EVConnected"} if unplugged else set()),
                                               faulted=connector.faulted or bool(hw.faults))
                if tx.stopped_reason is not None:
                    # Stopped by the driver or the CSMS before: that is why it ended.
                    reason = tx.stopped_reason
                elif auth is None and "Authorized" in lost:
                    trigger, reason = "StopAuthorized", "Local"
                self._drop_grant(evse_id)
                self._end(evse_id, trigger, reason)
                tx = None
        lock = hw.devices.lock
        if lock is not None and lock.locked is False:
            self._cable_held.pop(evse_id, None)   # released (UnlockConnector): nothing held
        await charging.apply(hw, evse, auth is not None, self._limit(evse_id),
                             limit_w=self._power_limit(evse_id), dc=self._dc[evse_id],
                             hold_lock=evse_id in self._cable_held)
        if charging.power_path_closed(hw):
            self._closed_since.setdefault(evse_id, self._clock.now())
        else:
            self._closed_since.pop(evse_id, None)
        if tx is not None and tx.stopped_reason is not None:
            # A stopped session whose switching-off has just lost its stop point
            # (TxStopPoint EnergyTransfer: the contactor opened on StopAuthorized) ends
            # now, in one Ended event (ChargingStateChanged, EVConnected), not after an
            # Updated EVConnected: the StopAuthorized reusable state's step 3, the next
            # event after StopAuthorized, must be the Ended one (TC_E_08).
            after = charging.reached_points(hw, evse, auth is not None)
            if (reached - after) & stop:
                self._points[evse_id] = after
                trigger, _ = _why_stopped((reached - after) & stop,
                                          faulted=connector.faulted or bool(hw.faults))
                self._end(evse_id, trigger, tx.stopped_reason)
                tx = None
        if tx is not None:
            self._follow_charging_state(tx)
            self._sample_if_due(tx)

    def _cable_plug_changed(self, evse_id: int, *, plugged: bool, tx: Transaction | None,
                            auth: Grant | None) -> None:
        """The EV was plugged in or unplugged on its side: the lock may move again, and a
        locked cable stays locked for its session's token if the CSMS wants it so."""
        hw = self._hardware.evses[evse_id]
        hw.allow_lock_retry()
        if not plugged:
            self._free_sessions.discard(evse_id)
        if plugged:
            self._cable_held.pop(evse_id, None)   # a cable in an EV again: a new session
            return
        lock = hw.devices.lock
        if lock is None or lock.locked is False or \
                self._model.get_bool("OCPPCommCtrlr", "UnlockOnEVSideDisconnect"):
            return
        token = tx.id_token if tx is not None else (auth.id_token if auth else None)
        self._cable_held[evse_id] = token
        log.info("EVSE %d: EV unplugged; the cable stays locked (UnlockOnEVSideDisconnect "
                 "is false) until %s", evse_id, "its card is presented again or UnlockConnector"
                 if token else "UnlockConnector")

    def _start(self, evse_id: int, new_points: set[str], auth: Grant | None) -> Transaction:
        tx = Transaction(id=str(uuid.uuid4()), evse_id=evse_id)
        if auth is not None:
            tx.id_token = auth.id_token
            tx.remote_start_id = auth.remote_start_id
        # Named after the start point reached (E01): the plug-in that starts it is
        # CablePluggedIn (EnergyTransferStarted, part 1); otherwise the first event after
        # a RequestStartTransaction says RemoteStart (F01/F02, TC_E_13, the Authorized
        # reusable state B). The Started event has the remoteStartId either way.
        if "EVConnected" in new_points:
            trigger = "CablePluggedIn"
        elif auth is not None and auth.remote_start_id is not None:
            trigger = "RemoteStart"
        elif "Authorized" in new_points:
            trigger = "Authorized"
        else:
            trigger = "ChargingStateChanged"
        # At the plug-in itself the EVSE has not reacted yet: EVConnected (part 1 of the
        # EnergyTransferStarted reusable state); what follows comes as ChargingStateChanged.
        tx.charging_state = ("EVConnected" if trigger == "CablePluggedIn"
                             else self._charging_state(evse_id))
        self.open[evse_id] = tx
        sampler = TxMeterSampler(self._model, started_at=self._clock.now(),
                                 phases=self._station.evses[evse_id].phases)
        self._samplers[evse_id] = sampler
        begin = sampler.begin(self._reading(evse_id), self._extras(evse_id))
        # Sent as read even when below the last session's end (a new meter starts where
        # it is), but the CSMS is told.
        below = sampler.floor.below(self._db.last_registers(evse_id))
        self._event(tx, "Started", trigger, id_token=tx.id_token,
                    reservation_id=auth.reservation_id if auth is not None else None,
                    meter_values=[begin] if begin else None,
                    problem=(BELOW_PREVIOUS, "; ".join(below)) if below else None)
        log.info("EVSE %d: transaction %s started (%s)", evse_id, tx.id, trigger)
        for callback in self.on_started:
            callback(evse_id, tx.id, auth.charging_profile if auth is not None else None)
        return tx

    def _end(self, evse_id: int, trigger: str, reason: str,
             id_token: dict[str, Any] | None = None) -> None:
        tx = self.open.pop(evse_id, None)
        if tx is None:
            return
        # What the EVSE is left in: the energy is switched off with the end (the EV may
        # still draw for the moment the supervisor takes), so EVConnected, or Idle once
        # unplugged (the E06 cases and the StopAuthorized reusable state expect these).
        plugged = self._station.evses[evse_id].connectors[1].plugged
        tx.charging_state = "EVConnected" if plugged else "Idle"
        sampler = self._samplers.pop(evse_id, None)
        values = sampler.end(self._reading(evse_id), self._clock.now(),
                                      self._extras(evse_id)) if sampler else []
        self._event(tx, "Ended", trigger, id_token=id_token, stopped_reason=reason,
                    meter_values=values or None, sampler=sampler)
        log.info("EVSE %d: transaction %s ended (%s, %s)", evse_id, tx.id, trigger, reason)
        for callback in self.on_ended:
            callback(evse_id)

    def _charging_state(self, evse_id: int) -> str:
        authorized = evse_id in self._auth
        return charging.charging_state(self._hardware.evses[evse_id],
                                       self._station.evses[evse_id], authorized,
                                       self._closed_since.get(evse_id))

    def _follow_charging_state(self, tx: Transaction) -> None:
        state = self._charging_state(tx.evse_id)
        if state != tx.charging_state:
            tx.charging_state = state
            hw = self._hardware.evses[tx.evse_id]
            faulted = bool(hw.faults) or self._station.evses[tx.evse_id].connectors[1].faulted
            # Held by a fault: the station's abnormal condition, not a choice of anyone's.
            self._event(tx, "Updated", "AbnormalCondition" if faulted and
                        state == "SuspendedEVSE" else "ChargingStateChanged")

    def _sample_if_due(self, tx: Transaction) -> None:
        sampler = self._samplers.get(tx.evse_id)
        if sampler is None:
            return
        due = sampler.next_due()
        if due is None or due > self._clock.now():
            return
        value = sampler.sample(self._reading(tx.evse_id), self._clock.now(),
                               self._extras(tx.evse_id))
        if value:
            self._event(tx, "Updated", "MeterValuePeriodic", meter_values=[value],
                        droppable=True)
        else:
            # The schedule moved on (and an Ended sample may have been recorded): keep
            # it across a restart.
            with self._store.transaction():
                raise_ = self._new_problem(tx, sampler)
                self._save(tx)
                self._problems.report(tx.evse_id, tx.id, raise_=raise_)

    # -- events ---------------------------------------------------------------------------

    def _event(self, tx: Transaction, event_type: str, trigger: str, *,
               id_token: dict[str, Any] | None = None,
               stopped_reason: str | None = None,
               meter_values: list[dict[str, Any]] | None = None,
               droppable: bool = False, sampler: TxMeterSampler | None = None,
               problem: tuple[str, str] | None = None,
               reservation_id: int | None = None) -> None:
        """Commit one TransactionEvent with the transaction's new state. `sampler`: the
        transaction's (given for Ended, which has already let go of it); `problem`: a
        register problem to report besides what the sampler held."""
        info_part: Payload = {"transactionId": tx.id, "chargingState": tx.charging_state}
        if stopped_reason:
            info_part["stoppedReason"] = stopped_reason
        if tx.remote_start_id is not None and (event_type == "Started"
                                               or trigger == "RemoteStart"):
            info_part["remoteStartId"] = tx.remote_start_id
        payload: Payload = {"eventType": event_type,
                            "timestamp": format_datetime(self._clock.now()),
                            "triggerReason": trigger, "seqNo": tx.next_seq(),
                            "transactionInfo": info_part}
        if not self._link.connected:
            payload["offline"] = True
        if event_type == "Started" or trigger in ("Trigger", "CablePluggedIn"):
            # A triggered event names its EVSE too: a trigger for all EVSEs gets one per
            # transaction, and the CSMS must tell them apart (TC_F_14). So does the first
            # event after the EV was plugged in (Part 6's general tool validations: "MUST
            # contain evse.id and evse.connectorId"; TxStartPoint Authorized, TC_E_05).
            payload["evse"] = {"id": tx.evse_id, "connectorId": tx.connector_id}
        if event_type == "Started":
            phases = self._station.evses[tx.evse_id].phases
            payload["numberOfPhasesUsed"] = phases
        if id_token is not None:
            payload["idToken"] = id_token
        if reservation_id is not None:
            payload["reservationId"] = reservation_id   # the reservation it used up (H03)
            grant = self._auth.get(tx.evse_id)
            if grant is not None and grant.reservation_id == reservation_id:
                grant.reservation_id = None   # named once: the next transaction is another
        if meter_values:
            payload["meterValue"] = meter_values
        sampler = sampler or self._samplers.get(tx.evse_id)
        # The transaction's new state, its event and a register problem the event's values
        # show: one durable unit.
        with self._store.transaction():
            raise_ = self._new_problem(tx, sampler, problem)
            if event_type == "Ended":
                self._db.delete(tx.evse_id)
                if sampler is not None:
                    self._db.save_last_registers(tx.evse_id, sampler.floor.to_json())
            else:
                self._save(tx)
            self._outbox.enqueue("TransactionEvent", payload, transaction_id=tx.id,
                                 droppable=droppable)
            if reservation_id is not None and self._reservations is not None:
                self._reservations.reported(reservation_id)   # H01.FR.15, same commit
            self._problems.report(tx.evse_id, tx.id, raise_=raise_,
                                  clear=tx.extra.get(PROBLEM) if event_type == "Ended" else None)

    def _new_problem(self, tx: Transaction, sampler: TxMeterSampler | None,
                     problem: tuple[str, str] | None = None) -> tuple[str, str] | None:
        """The register problem to raise now, if any: once per transaction (a replaced
        meter would otherwise raise one at every sample); noted in the transaction's
        state, saved in the same commit."""
        held = sampler.take_held() if sampler is not None else []
        if problem is None and held:
            problem = (held[0].tech_code, "; ".join(h.describe() for h in held))
        if problem is None:
            return None
        if PROBLEM in tx.extra:
            log.info("EVSE %d, transaction %s: %s (already reported)", tx.evse_id, tx.id,
                     problem[1])
            return None
        tx.extra[PROBLEM] = problem[0]
        return problem

    def _save(self, tx: Transaction) -> None:
        sampler = self._samplers.get(tx.evse_id)
        if sampler is not None:
            tx.extra["sampler"] = sampler.snapshot()
        self._db.save(tx)

    # -- remote control (F01-F04) ---------------------------------------------------------

    def _choose_evse(self, id_token: dict[str, Any], info: dict[str, Any]) -> int | None:
        """The EVSE a RequestStartTransaction without evseId goes to: a free one, and of
        those first one reserved for this token, then one no reservation keeps from it
        (H03: the reserved EVSEs are for their drivers; F01 leaves the choice to us)."""
        free = [e for e in self._station.evses if e not in self.open and e not in self._auth]
        if self._reservations is None or not free:
            return free[0] if free else None
        return min(free, key=lambda e: (
            not self._reservations.reserved_for(e, id_token, info),
            not self._reservations.allows(e, id_token, info), e))

    async def _on_request_start(self, request: Payload) -> Payload:
        evse_id = request.get("evseId")
        chosen = evse_id is None
        if chosen:
            evse_id = self._choose_evse(request["idToken"], {})
        if evse_id not in self._station.evses or evse_id in self._auth:
            return {"status": "Rejected"}
        # A transaction the plug-in started (TxStartPoint EVConnected) and nobody has
        # authorized yet: this start authorizes it (F01, TC_F_01); a stopped one is over.
        tx = self.open.get(evse_id)
        if tx is not None and tx.stopped_reason is not None:
            return {"status": "Rejected"}
        connector = self._station.evses[evse_id].connectors[1]
        if not connector.operative or connector.faulted:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "Unavailable"}}
        id_token = request["idToken"]
        profile = request.get("chargingProfile")
        if profile is not None:
            # K05: a TxProfile for the transaction this start will make.
            reason = ("UnsupportedRequest" if self._check_tx_profile is None
                      else self._check_tx_profile(evse_id, profile))
            if reason is not None:
                return {"status": "Rejected", "statusInfo": {"reasonCode": reason}}
        if self._authorization.needs_authorize_for_remote_start():
            decision = await self._authorization.authorize(id_token, evse_id=evse_id)
            if not decision.accepted:
                return {"status": "Rejected", "statusInfo": {"reasonCode": "InvalidIdToken"}}
            info = decision.info
        else:
            info = {"status": "Accepted"}
        if self._reservations is not None and \
                not self._authorization.needs_authorize_for_remote_start() and \
                (not self._reservations.allows(evse_id, id_token, info)
                 or (chosen and self._reservations.for_groups())):
            # Its groupIdToken may be a reservation's: the token's entry in the local
            # list or cache says (H03.FR.07), else the CSMS is asked (H03.FR.08, errata
            # [684]: the incoming token is looked up, not the group).
            known = self._authorization.known(id_token)
            if known is not None:
                info = known
            else:
                decision = await self._authorization.authorize(id_token, evse_id=evse_id)
                if decision.accepted:
                    info = decision.info
        if chosen and self._reservations is not None:
            # Chosen before the token's group was known: choose again knowing it.
            again = self._choose_evse(id_token, info)
            if again is not None and again != evse_id:
                evse_id, tx = again, None
                connector = self._station.evses[evse_id].connectors[1]
                if not connector.operative or connector.faulted:
                    return {"status": "Rejected", "statusInfo": {"reasonCode": "Unavailable"}}
                if profile is not None and self._check_tx_profile is not None and \
                        (reason := self._check_tx_profile(evse_id, profile)) is not None:
                    return {"status": "Rejected", "statusInfo": {"reasonCode": reason}}
        allowed, reservation_id = self._admit(evse_id, id_token, info)
        if not allowed:   # reserved for another token (TC_H_02)
            return {"status": "Rejected", "statusInfo": {"reasonCode": "Unspecified",
                    "additionalInfo": f"EVSE {evse_id} is reserved"}}
        self._grant(evse_id, Grant(id_token, info, request["remoteStartId"],
                                   self._clock.monotonic(), profile,
                                   reservation_id=reservation_id))
        self._hardware.evses[evse_id].allow_lock_retry()
        self._poke()
        if tx is not None:
            tx.id_token = id_token
            tx.remote_start_id = request["remoteStartId"]
            self._event(tx, "Updated", "RemoteStart", id_token=id_token,
                        reservation_id=reservation_id)
            return {"status": "Accepted", "transactionId": tx.id}
        return {"status": "Accepted"}

    async def _on_request_stop(self, request: Payload) -> Payload:
        for evse_id, tx in self.open.items():
            if tx.id == request["transactionId"]:
                if tx.stopped_reason is not None:
                    return {"status": "Accepted"}   # stopped already, waiting for the unplug
                # Ended at once unless only the EV's unplugging can end it (E06/F03,
                # TC_E_21, TC_E_35; TxStopPoint EVConnected: TC_E_14 via StopAuthorized B).
                self._deauthorize(evse_id, "RemoteStop", "Remote", ends_on=frozenset(
                    {"Authorized", "PowerPathClosed", "EnergyTransfer"}))
                return {"status": "Accepted"}
        return {"status": "Rejected"}

    async def _on_get_status(self, request: Payload) -> Payload:
        """GetTransactionStatus (E14): whether that transaction still runs (an unknown id:
        no), and whether TransactionEvents of it (of any transaction without an id) wait
        to be delivered, the one in flight included; other queued messages do not count."""
        tx_id = request.get("transactionId")
        if tx_id is None:
            return {"messagesInQueue": self._outbox.pending_events() > 0}
        ongoing = any(tx.id == tx_id for tx in self.open.values())
        return {"ongoingIndicator": ongoing,
                "messagesInQueue": self._outbox.pending_events(tx_id) > 0}

    # -- clock-aligned values (J01), from AlignedMeterValues -------------------------------

    def clock_aligned(self, evse_id: int, value: dict[str, Any]) -> None:
        """An AlignedDataCtrlr value (Sample.Clock, stamped with the aligned instant) of an
        EVSE in a transaction: it goes in a TransactionEvent Updated, triggerReason
        MeterValueClock (J01.FR.14 note, TC_J_02), through the transaction's register
        floor like every value of it."""
        tx = self.open.get(evse_id)
        sampler = self._samplers.get(evse_id)
        if tx is None or sampler is None:
            return
        held = sampler.hold(value)
        if held is not None:
            self._event(tx, "Updated", "MeterValueClock", meter_values=[held], droppable=True)

    # -- TriggerMessage (F06), for the remote control block -------------------------------

    def trigger_event(self, evse_id: int | None = None) -> int:
        """Queue a TransactionEvent Updated with triggerReason Trigger and a meter value
        of context Trigger (TxUpdatedMeasurands) for the transaction on this EVSE, or on
        every EVSE when None; returns how many. Through the outbox like every event (seqNo
        order); droppable like a periodic sample: a snapshot, stale once late."""
        queued = 0
        for evse, tx in sorted(self.open.items()):
            if evse_id is not None and evse != evse_id:
                continue
            sampler = self._samplers.get(evse)
            value = sampler.value(self._reading(evse), "Trigger") if sampler else None
            self._event(tx, "Updated", "Trigger", meter_values=[value] if value else None,
                        droppable=True)
            queued += 1
        return queued


def _why_stopped(lost: set[str], faulted: bool = False) -> tuple[str, str]:
    """triggerReason and stoppedReason for the stop point that was lost. A power path
    opened by a fault is the station's doing (AbnormalCondition), not the EV's. An EV
    unplugged is EVCommunicationLost (E06, TC_E_14/E_17/E_20/E_37 with the errata);
    EVDeparted is a parking-bay sensor's, which this station has not."""
    if "EVConnected" in lost:
        return "EVCommunicationLost", "EVDisconnected"
    if "Authorized" in lost:
        return "Deauthorized", "DeAuthorized"
    if faulted:
        return "AbnormalCondition", "Other"
    if "EnergyTransfer" in lost and "PowerPathClosed" not in lost:
        return "ChargingStateChanged", "StoppedByEV"   # the EV stopped drawing (TC_E_22)
    return "ChargingStateChanged", "Other"

