"""The station's live state that blocks share: EVSEs, connectors and their status.

Blocks change it through methods so that every change reaches the listeners (the
Provisioning block turns connector status changes into StatusNotification). It holds no
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
    operative: bool = True

    @property
    def status(self) -> ConnectorStatus:
        # Precedence as a driver would expect: a fault wins, then Inoperative, then use.
        if self.faulted:
            return "Faulted"
        if not self.operative:
            return "Unavailable"
        if self.plugged:
            return "Occupied"
        if self.reserved:
            return "Reserved"
        return "Available"


@dataclass
class Evse:
    id: int
    max_current_a: float
    phases: int
    nominal_voltage_v: float
    operative: bool = True
    connectors: dict[int, Connector] = field(default_factory=dict)


class Station:
    def __init__(self, evses: list[Evse]) -> None:
        self.evses: dict[int, Evse] = {e.id: e for e in evses}
        self.operative = True
        self._listeners: list[StatusListener] = []

    def subscribe(self, listener: StatusListener) -> None:
        self._listeners.append(listener)

    def connectors(self) -> list[Connector]:
        return [c for e in self.evses.values() for c in e.connectors.values()]

    def connector(self, evse_id: int, connector_id: int) -> Connector:
        return self.evses[evse_id].connectors[connector_id]

    def update(self, evse_id: int, connector_id: int, **changes: bool) -> None:
        """Change a connector's inputs (plugged, faulted, ...); listeners hear of a new status."""
        conn = self.connector(evse_id, connector_id)
        before = conn.status
        for name, value in changes.items():
            if not hasattr(conn, name):
                raise AttributeError(name)
            setattr(conn, name, value)
        if conn.status != before:
            self._notify(conn)

    def set_operative(self, evse_id: int | None, operative: bool) -> None:
        """Station-wide (evse_id None) or per-EVSE availability; Inoperative shows as Unavailable."""
        evses = self.evses.values() if evse_id is None else [self.evses[evse_id]]
        if evse_id is None:
            self.operative = operative
        for evse in evses:
            evse.operative = operative
            for conn in evse.connectors.values():
                before = conn.status
                conn.operative = operative and self.operative
                if conn.status != before:
                    self._notify(conn)

    def _notify(self, conn: Connector) -> None:
        for listener in self._listeners:
            listener(conn.evse_id, conn.id, conn.status)
