"""The station's live state that blocks share: EVSEs, connectors and their status.

Blocks change it through methods so that every change reaches the listeners (the
Availability block turns connector status changes into StatusNotification). It holds no
I/O; the HAL feeds it and blocks read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

ConnectorStatus = Literal["Available", "Occupied", "Reserved", "Unavailable", "Faulted"]
StatusListener = Callable[[int, int, ConnectorStatus], None]


@dataclass
class Connector:
    evse_id: int
    id: int
    plugged: bool = False
    faulted: bool = False
    reserved: bool = False
    # In service now. False shows as Unavailable; the Availability block keeps it in step
    # with ChangeAvailability (station, EVSE and connector settings, transactions first).
    operative: bool = True

    @property
    def status(self) -> ConnectorStatus:
        # Precedence as a driver would expect: a fault wins, then Inoperative, then use.
        # A reservation outranks a plugged-in EV: the connector stays Reserved until the
        # reserved token comes (errata 2023-12, G03.FR.09).
        if self.faulted:
            return "Faulted"
        if not self.operative:
            return "Unavailable"
        if self.reserved:
            return "Reserved"
        if self.plugged:
            return "Occupied"
        return "Available"


@dataclass
class Evse:
    id: int
    max_current_a: float
    phases: int
    nominal_voltage_v: float
    connectors: dict[int, Connector] = field(default_factory=dict)

    @property
    def operative(self) -> bool:
        """Some connector of this EVSE is in service."""
        return any(c.operative for c in self.connectors.values())


class Station:
    def __init__(self, evses: list[Evse]) -> None:
        self.evses: dict[int, Evse] = {e.id: e for e in evses}
        self._listeners: list[StatusListener] = []

    @property
    def operative(self) -> bool:
        """Some connector of the station is in service."""
        return any(e.operative for e in self.evses.values())

    def subscribe(self, listener: StatusListener) -> None:
        """`listener(evse_id, connector_id, status)` after each status change. A listener
        may change the station in turn; it then hears of that change first, so listeners
        that care about the latest state read it from the station, not from the args."""
        self._listeners.append(listener)

    def connectors(self, evse_id: int | None = None,
                   connector_id: int | None = None) -> list[Connector]:
        """The connectors of the station (evse_id None), of one EVSE, or the one connector;
        KeyError for an EVSE or connector the station does not have."""
        if evse_id is None:
            if connector_id is not None:
                raise KeyError("a connector id needs an EVSE id")
            return [c for e in self.evses.values() for c in e.connectors.values()]
        evse = self.evses[evse_id]
        if connector_id is None:
            return list(evse.connectors.values())
        return [evse.connectors[connector_id]]

    def connector(self, evse_id: int, connector_id: int) -> Connector:
        return self.evses[evse_id].connectors[connector_id]

    def update(self, evse_id: int, connector_id: int, **changes: bool) -> None:
        """Change a connector's inputs (plugged, faulted, ...); listeners hear of a new status."""
        conn = self.connector(evse_id, connector_id)
        before = conn.status
        for name, value in changes.items():
            if not hasattr(conn, name) or name in ("evse_id", "id"):
                raise AttributeError(name)
            setattr(conn, name, value)
        if conn.status != before:
            self._notify(conn)

    def set_operative(self, evse_id: int | None, operative: bool,
                      connector_id: int | None = None) -> None:
        """Put the whole station (evse_id None), an EVSE or one connector in or out of
        service now; out of service shows as Unavailable. Which connectors *should* be in
        service, and when a change has to wait for a transaction, is the Availability
        block's business (ChangeAvailability)."""
        for conn in self.connectors(evse_id, connector_id):
            self.update(conn.evse_id, conn.id, operative=operative)

    def _notify(self, conn: Connector) -> None:
        for listener in list(self._listeners):
            listener(conn.evse_id, conn.id, conn.status)
