"""Availability (block G): StatusNotification for every connector.

After registration every connector's status is reported once (B01); afterwards each
change is reported. While offline only the latest status matters, so changes are not
queued: on the next registered connection whatever differs from what the CSMS last
heard is sent.
"""

from __future__ import annotations

import asyncio
import logging

from agent.clock import Clock, format_datetime, wait_for
from agent.ocpp.connection import ConnectionManager
from agent.ocpp.session import CallFailed
from agent.station import ConnectorStatus, Station

log = logging.getLogger(__name__)


class Availability:
    def __init__(self, *, link: ConnectionManager, station: Station, clock: Clock) -> None:
        self._link = link
        self._station = station
        self._clock = clock
        self._delivered: dict[tuple[int, int], ConnectorStatus] = {}
        self._dirty = asyncio.Event()
        self._caught_up = asyncio.Event()
        station.subscribe(lambda evse, conn, status: self._dirty.set())
        link.on_open.append(self._on_open)

    async def _on_open(self, session: object) -> None:
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
