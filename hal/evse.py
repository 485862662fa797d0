"""One EVSE's hardware, supervised: the safety rules that hold whatever the drivers are.

- A device that reports a fault opens the contactor (no energy flows through a station
  that cannot measure, switch or see the vehicle properly).
- A driver that raises while starting or stopping is turned into a fault; it never takes
  the daemon down.
- Stopping opens the contactor first, then releases the other devices.
"""

from __future__ import annotations

import asyncio
import logging

from hal.api import Contactor, Device, EvseDevices, Listener

log = logging.getLogger(__name__)


class EvseHardware:
    def __init__(self, evse_id: int, devices: EvseDevices) -> None:
        self.evse_id = evse_id
        self.devices = devices
        self._listeners: list[Listener] = []
        self._start_faults: dict[int, str] = {}
        self._safety: asyncio.Task[None] | None = None
        for device in devices.all():
            device.subscribe(self._on_change)

    def subscribe(self, listener: Listener) -> None:
        """Called whenever any device of this EVSE changes (state, fault, reading)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def faults(self) -> list[str]:
        found = [d.fault for d in self.devices.all() if d.fault]
        return found + list(self._start_faults.values())

    async def start(self) -> None:
        for device in self.devices.all():
            try:
                await device.start()
            except Exception as exc:  # noqa: BLE001 - a driver bug is a fault, not a crash
                log.exception("EVSE %d: %s failed to start", self.evse_id, type(device).__name__)
                self._start_faults[id(device)] = f"{type(device).__name__} failed to start: {exc}"
        self._on_change()

    async def stop(self) -> None:
        ordered: list[Device] = self.devices.all()
        if self.devices.contactor is not None:
            ordered.remove(self.devices.contactor)
            ordered.insert(0, self.devices.contactor)
        for device in ordered:
            try:
                await device.stop()
            except Exception:  # noqa: BLE001
                log.exception("EVSE %d: %s failed to stop", self.evse_id, type(device).__name__)
        if self._safety is not None:
            await asyncio.gather(self._safety, return_exceptions=True)

    def _on_change(self) -> None:
        if self.faults and self.devices.contactor is not None and (
                self._safety is None or self._safety.done()):
            self._safety = asyncio.ensure_future(_open_safely(self.evse_id, self.devices.contactor))
        for listener in list(self._listeners):
            listener()


async def _open_safely(evse_id: int, contactor: Contactor) -> None:
    try:
        await contactor.open()
    except Exception:  # noqa: BLE001
        log.exception("EVSE %d: could not open the contactor after a fault", evse_id)
