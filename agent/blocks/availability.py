"""Availability (block G): StatusNotification, ChangeAvailability, hardware problems.

StatusNotification (G01): after registration every connector's status is reported once
(B01); afterwards each change is reported. While offline only the latest status matters,
so changes are not queued: on the next registered connection whatever differs from what
the CSMS last heard is sent (B04.FR.02), and every connector's status when the station
was offline for longer than OCPPCommCtrlr.OfflineThreshold (B04.FR.01: the CSMS may have
lost track of it meanwhile). The offline period runs from the loss of the connection to
the next one, on the station's monotonic clock.

ChangeAvailability (G03 EVSE/connector, G04 station): the CSMS sets the station, an EVSE
or a connector Operative or Inoperative. The three settings are independent and nest: a
connector is in service only while it, its EVSE and the station are all Operative, so
making the station Operative again brings back each EVSE and connector as it was set
(an EVSE the CSMS took out stays out). The settings are persisted before the answer
(G03.FR.08, G04.FR.09) and applied at start before the first StatusNotification.
Taking a connector out of service waits while a transaction runs on its EVSE: the answer
is Scheduled (G03.FR.05, G04.FR.06) and the change happens when `transaction_ended` says
so; the other EVSEs of a station-wide request change at once. Putting back into service
never waits. Asking for the state already set is Accepted and changes nothing (errata
TC_G_13: no StatusNotification then).

AvailabilityState (ChargingStation, EVSE, Connector) in the device model follows the
connector statuses; Problem follows the hardware faults (availability_events.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Iterable, Mapping

from agent.blocks.availability_events import ProblemEvents, set_actual_value
from agent.clock import Clock, format_datetime, wait_for
from agent.model.types import Component
from agent.ocpp.connection import ConnectionManager
from agent.ocpp.session import CallFailed, Payload, Reply, Router
from agent.station import ConnectorStatus, Station
from agent.store import Store

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS availability (
    evse_id INTEGER NOT NULL,        -- 0: the Charging Station
    connector_id INTEGER NOT NULL,   -- 0: the whole EVSE (or the station)
    PRIMARY KEY (evse_id, connector_id)
) WITHOUT ROWID;
"""
# A row is an Inoperative setting; no row is Operative, the state of a new station.

Busy = Callable[[int | None], bool]
Level = tuple[int, int]          # (evse id or 0, connector id or 0)
STATION: Level = (0, 0)

# What an EVSE shows given its connectors (first match wins): one EV at a time, so a
# connector in use makes the EVSE Occupied. The station is available while one EVSE is.
_EVSE_ORDER: tuple[ConnectorStatus, ...] = (
    "Occupied", "Reserved", "Available", "Unavailable", "Faulted")
_STATION_ORDER: tuple[ConnectorStatus, ...] = (
    "Available", "Occupied", "Reserved", "Unavailable", "Faulted")


def summary_state(states: Iterable[str], order: tuple[ConnectorStatus, ...]) -> ConnectorStatus:
    present = set(states)
    return next((s for s in order if s in present), "Unavailable")


class Availability:
    def __init__(self, *, link: ConnectionManager, router: Router, station: Station,
                 model: Any, store: Store, outbox: Any, clock: Clock,
                 is_busy: Busy = lambda evse_id: False) -> None:
        self._link = link
        self._station = station
        self._model = model
        self._store = store
        self._clock = clock
        self._is_busy = is_busy
        self._delivered: dict[tuple[int, int], ConnectorStatus] = {}
        self._dirty = asyncio.Event()
        self._caught_up = asyncio.Event()
        self._offline_since: float | None = None
        # Called once a ChangeAvailability is applied: a setting changed, whether or not
        # a status did (a change Scheduled behind a transaction shows nothing yet).
        self.on_applied: list[Callable[[], None]] = []
        store.ensure_schema(SCHEMA)
        self._inoperative: set[Level] = {
            (e, c) for e, c in store.query("SELECT evse_id, connector_id FROM availability")}
        self.problems = ProblemEvents(store=store, outbox=outbox, model=model, clock=clock,
                                      evse_ids=station.evses)
        router.register("ChangeAvailability", self._on_change_availability)
        station.subscribe(self._on_status)
        link.on_open.append(self._on_open)
        link.on_close.append(self._on_close)
        # G03.FR.08 / G04.FR.09: what was set survives restarts, scheduled changes too
        # (they apply now unless a transaction still runs).
        self._apply(station.evses, enable=True)
        for evse_id in station.evses:
            self._update_model(evse_id)

    # -- what the transaction block and the hardware bridge call -------------------------

    def transaction_ended(self, evse_id: int) -> None:
        """The transaction on this EVSE has ended: a change Scheduled for it happens now.
        The EVSE is taken as idle whatever `is_busy` says at this moment."""
        self._apply([evse_id], enable=False, idle=True)

    def hardware_changed(self, evse_id: int, faults: Mapping[str, str]) -> None:
        """The EVSE's hardware faults now, by device role (HardwareBridge.watch_faults):
        NotifyEvent on EVSE.Problem when one appears or ends."""
        self.problems.hardware_changed(evse_id, faults)

    def resume_service(self) -> None:
        """Bring every connector back in line with the CSMS's settings, after something
        else (a firmware install that did not happen) took some out of service."""
        self._apply(self._station.evses, enable=True)

    def wanted(self, evse_id: int, connector_id: int) -> bool:
        """Whether this connector should be in service by the CSMS's settings."""
        return not ({STATION, (evse_id, 0), (evse_id, connector_id)} & self._inoperative)

    def report_again(self, evse_id: int) -> None:
        """Send this EVSE's connector statuses again though they did not change (a
        reservation replaced by a new one on the same EVSE)."""
        for conn in self._station.connectors(evse_id):
            self._delivered.pop((evse_id, conn.id), None)
        self._dirty.set()

    def scheduled(self, evse_id: int | None = None) -> bool:
        """A change to Inoperative waits for a transaction here (station-wide: anywhere)."""
        return any(c.operative and not self.wanted(c.evse_id, c.id)
                   for c in self._station.connectors(evse_id))

    # -- ChangeAvailability ---------------------------------------------------------------

    async def _on_change_availability(self, request: Payload) -> Payload | Reply:
        operative = request["operationalStatus"] == "Operative"
        evse = request.get("evse")
        if evse is None:
            level, scope = STATION, list(self._station.evses)
        else:
            evse_id, connector_id = evse["id"], evse.get("connectorId")
            if evse_id not in self._station.evses:
                return _rejected("UnknownEvse", f"this station has no EVSE {evse_id}")
            if connector_id is not None and \
                    connector_id not in self._station.evses[evse_id].connectors:
                return _rejected("UnknownConnectorId",
                                 f"EVSE {evse_id} has no connector {connector_id}")
            level, scope = (evse_id, connector_id or 0), [evse_id]
        self._save(level, operative)
        connectors = [c for e in scope for c in self._station.connectors(e)
                      if level[1] in (0, c.id)]
        # Will a connector of this request stay in service for a transaction's sake?
        waits = any(c.operative and not self.wanted(c.evse_id, c.id)
                    and self._is_busy(c.evse_id) for c in connectors)
        log.info("ChangeAvailability %s %s: %s", _name(level), request["operationalStatus"],
                 "Scheduled" if waits else "Accepted")

        async def apply() -> None:
            self._apply(scope, enable=True)
            for callback in self.on_applied:
                callback()

        # Applied once the answer is on the wire, so the CSMS hears the answer before
        # the StatusNotifications it causes; the setting itself is already stored.
        if waits:
            return Reply({"status": "Scheduled", "statusInfo": {"reasonCode": "TxInProgress"}},
                         apply)
        return Reply({"status": "Accepted"}, apply)

    def _save(self, level: Level, operative: bool) -> None:
        if operative == (level not in self._inoperative):
            return
        if operative:
            self._store.execute("DELETE FROM availability WHERE evse_id = ? AND connector_id = ?",
                                level)
            self._inoperative.discard(level)
        else:
            self._store.execute("INSERT OR IGNORE INTO availability (evse_id, connector_id) "
                                "VALUES (?, ?)", level)
            self._inoperative.add(level)

    def _apply(self, evse_ids: Iterable[int], *, enable: bool, idle: bool = False) -> None:
        """Bring the EVSEs' connectors in line with the settings: out of service unless a
        transaction runs on the EVSE (and `idle` does not say it ended); back into service
        only when `enable` (a ChangeAvailability or the start): otherwise a connector
        something else took out for a while (an EVSE Reset) stays out."""
        for evse_id in list(evse_ids):
            busy: bool | None = None
            for conn in self._station.connectors(evse_id):
                want = self.wanted(evse_id, conn.id)
                if want == conn.operative or (want and not enable):
                    continue
                if not want and not idle:
                    if busy is None:
                        busy = self._is_busy(evse_id)
                    if busy:
                        continue
                self._station.set_operative(evse_id, want, conn.id)

    # -- status changes -------------------------------------------------------------------

    def _on_status(self, evse_id: int, connector_id: int, status: ConnectorStatus) -> None:
        self._dirty.set()
        conn = self._station.connector(evse_id, connector_id)
        if conn.operative and not self.wanted(evse_id, connector_id) and \
                not self._is_busy(evse_id):
            # Something put back into service what the CSMS took out (an EVSE Reset
            # ending): the CSMS's setting wins.
            self._station.set_operative(evse_id, False, connector_id)
        self._update_model(evse_id)

    def _update_model(self, evse_id: int) -> None:
        """AvailabilityState of the connectors of this EVSE, of the EVSE and the station."""
        evse = self._station.evses[evse_id]
        for conn in evse.connectors.values():
            set_actual_value(self._model, Component("Connector", evse=evse_id, connector=conn.id),
                        "AvailabilityState", conn.status)
        set_actual_value(self._model, Component("EVSE", evse=evse_id), "AvailabilityState",
                    self._evse_state(evse_id))
        set_actual_value(self._model, Component("ChargingStation"), "AvailabilityState",
                    summary_state((self._evse_state(e) for e in self._station.evses),
                                  _STATION_ORDER))

    def _evse_state(self, evse_id: int) -> ConnectorStatus:
        return summary_state((c.status for c in self._station.connectors(evse_id)), _EVSE_ORDER)

    # -- StatusNotification ---------------------------------------------------------------

    def _on_close(self) -> None:
        self._offline_since = self._clock.monotonic()

    def _offline_too_long(self) -> bool:
        """The connection that just opened ends an offline period longer than
        OfflineThreshold (B04.FR.01)."""
        if self._offline_since is None:
            return False
        offline = self._clock.monotonic() - self._offline_since
        self._offline_since = None
        try:
            threshold = self._model.get_int("OCPPCommCtrlr", "OfflineThreshold")
        except KeyError:
            return False
        return offline > threshold

    async def _on_open(self, session: object) -> None:
        if self._offline_too_long():
            # Report every connector, not only what changed: forget what was delivered.
            log.info("offline for longer than OfflineThreshold: reporting every connector")
            self._delivered.clear()
        # A ChangeAvailability whose answer was lost with the connection was stored but
        # not applied (it applies once answered): apply what is set now.
        self._apply(self._station.evses, enable=True)
        # A new connection may have missed changes; the sender finds out what.
        self._dirty.set()

    async def run(self) -> None:
        """Deliver status changes; runs for the life of the station."""
        await self._link.accepted.wait()
        self._dirty.set()
        while True:
            if not self._dirty.is_set():
                self._caught_up.set()
            await self._dirty.wait()
            self._dirty.clear()
            self._caught_up.clear()
            for conn in self._station.connectors():
                key = (conn.evse_id, conn.id)
                status = conn.status
                if self._delivered.get(key) == status:
                    continue
                try:
                    await self._link.call("StatusNotification", {
                        "timestamp": format_datetime(self._clock.now()),
                        "connectorStatus": status, "evseId": conn.evse_id,
                        "connectorId": conn.id})
                except CallFailed as exc:
                    log.info("StatusNotification not delivered: %s", exc)
                    self._dirty.set()
                    await self._clock.sleep(5)
                    break
                self._delivered[key] = status

    async def reported(self, timeout: float) -> bool:
        """Wait until the CSMS has heard every connector's current status (or timeout)."""
        self._dirty.set()
        self._caught_up.clear()
        try:
            await wait_for(self._clock, self._caught_up.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- TriggerMessage (F06), for the remote control block -------------------------------

    async def trigger_status(self, evse_id: int, connector_id: int) -> None:
        """Send this connector's status now, at the CSMS's request, registered or not
        (F06); the CSMS has then heard it, so the sender does not repeat it."""
        status = self._station.connector(evse_id, connector_id).status
        await self._link.call("StatusNotification", {
            "timestamp": format_datetime(self._clock.now()), "connectorStatus": status,
            "evseId": evse_id, "connectorId": connector_id}, before_accepted=True, wait=False)
        self._delivered[(evse_id, connector_id)] = status


def _rejected(reason: str, info: str) -> Payload:
    return {"status": "Rejected", "statusInfo": {"reasonCode": reason, "additionalInfo": info}}


def _name(level: Level) -> str:
    if level == STATION:
        return "station"
    return f"EVSE {level[0]}" + (f" connector {level[1]}" if level[1] else "")
