"""`modbus_meter`: an energy meter on RS-485, Modbus RTU, polled with pyserial.

pyserial blocks, so every port operation (open, transaction, close) runs on one worker
thread owned by the meter: the event loop never waits on the line, and because that
executor has a single thread, two transactions can never be on the bus at once, even
when a poll that was cancelled is still finishing. Failures never raise out of `read()`:
they become `fault` (naming the address and the problem) and `latest` keeps the last
good reading until a poll succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, TypeVar

import serial

from hal.api import Clock, EnergyMeter, MeterReading
from hal.drivers.modbus.link import RtuLink
from hal.drivers.modbus.maps import ENERGY_QUANTITIES, Block
from hal.drivers.modbus.rtu import ExceptionResponse, ReadRequest, RtuError
from hal.drivers.modbus.settings import MeterSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# After the port could not be opened, wait this long before trying again: an absent USB
# adapter is not worth a syscall and a log line every poll.
REOPEN_DELAY_S = 5.0


class PollFailed(Exception):
    """A transaction of the poll failed: which request, and the last attempt's error."""

    def __init__(self, request: ReadRequest, error: RtuError) -> None:
        super().__init__(str(error))
        self.request = request
        self.error = error


class BadEnergy(Exception):
    """An energy register that must not be believed (went back, or not a number)."""


class ModbusMeter(EnergyMeter):
    def __init__(self, settings: MeterSettings, *, clock: Clock,
                 link: RtuLink | None = None) -> None:
        super().__init__()
        self.settings = settings
        self._clock = clock
        self.link = link or RtuLink(
            settings.port, baudrate=settings.baudrate, parity=settings.parity,
            stopbits=settings.stopbits, timeout_s=settings.timeout_s, retries=settings.retries)
        # Touched only by the worker thread once polling runs (optional blocks drop out).
        self._blocks: list[Block] = list(settings.map.blocks())
        self._executor: ThreadPoolExecutor | None = None
        self._abort = threading.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._next_open = -math.inf

    # -- registry ----------------------------------------------------------------------------

    @classmethod
    def check_config(cls, settings: Mapping[str, Any]) -> None:
        MeterSettings.parse(settings, check_port=True)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, clock: Clock) -> ModbusMeter:
        return cls(MeterSettings.parse(settings, check_port=False), clock=clock)

    # -- Device ------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"meter at address {self.settings.address} on {self.settings.port}"

    async def start(self) -> None:
        if self._task is not None:
            return
        self._abort.clear()
        async with self._lock:
            await self._ensure_open()
        self._task = asyncio.create_task(self._poll_forever(), name=f"modbus_meter {self.where}")

    async def stop(self) -> None:
        self._abort.set()  # a transaction in the worker gives up before its next attempt
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        executor, self._executor = self._executor, None
        if executor is not None:
            # Queued behind whatever the worker still does, so the port is closed last.
            await asyncio.get_running_loop().run_in_executor(executor, self.link.close)
            executor.shutdown(wait=False)

    # -- EnergyMeter -------------------------------------------------------------------------

    async def read(self) -> MeterReading | None:
        async with self._lock:
            if not await self._ensure_open():
                return None
            try:
                values = await self._in_worker(self._poll_blocks)
            except PollFailed as exc:
                return self._failed(self._describe(exc))
            except (serial.SerialException, OSError) as exc:
                # The adapter went away (USB unplugged) or the port broke: reopen later.
                await self._in_worker(self.link.close)
                self._next_open = self._clock.monotonic() + REOPEN_DELAY_S
                return self._failed(f"{self.where}: port error: {exc}")
            try:
                reading = self._reading(values)
            except BadEnergy as exc:
                return self._failed(f"{self.where}: {exc}")
            previous, self.latest = self.latest, reading
            if self.fault is not None:
                log.info("%s: readings again", self.where)
            self._set_fault(None)
            if previous is None or _values(previous) != _values(reading):
                self._changed()
            return reading

    # -- internals ---------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        interval = self.settings.poll_interval_s
        next_poll = self._clock.monotonic()
        while True:
            try:
                await self.read()
            except Exception as exc:  # noqa: BLE001 - a driver bug is a fault, not a dead poll
                log.exception("%s: poll failed", self.where)
                self._failed(f"{self.where}: driver error: {exc!r}")
            next_poll += interval
            now = self._clock.monotonic()
            if next_poll < now:  # a slow poll: skip the missed slots, do not catch up
                next_poll = now + interval - (now - next_poll) % interval
            await self._clock.sleep(next_poll - now)

    async def _in_worker(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modbus_meter")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _ensure_open(self) -> bool:
        if self.link.is_open:
            return True
        if self._clock.monotonic() < self._next_open:
            return False  # the fault from the last attempt stands
        try:
            await self._in_worker(self.link.open)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._next_open = self._clock.monotonic() + REOPEN_DELAY_S
            hint = ""
            if getattr(exc, "errno", None) in (errno.EAGAIN, errno.EBUSY):
                hint = " (in use by another program, or by another meter configured on it)"
            self._failed(f"{self.where}: cannot open the port: {exc}{hint}")
            return False
        log.info("%s: port open, polling every %g s", self.where, self.settings.poll_interval_s)
        return True

    def _poll_blocks(self) -> dict[str, float]:
        """Runs on the worker thread: every block of the map, one transaction each."""
        values: dict[str, float] = {}
        for block in list(self._blocks):
            request = block.request(self.settings.address)
            try:
                words = self.link.transact(request, self._abort)
            except ExceptionResponse as exc:
                if block.optional and exc.code == 0x02:
                    # This variant of the meter does not have these registers.
                    log.info("%s: no %s (%s); not asking again", self.where,
                             request.describe(), exc.name)
                    self._blocks.remove(block)
                    continue
                raise PollFailed(request, exc) from None
            except RtuError as exc:
                raise PollFailed(request, exc) from None
            values.update(block.decode(words))
        return values

    def _describe(self, failed: PollFailed) -> str:
        text = f"{self.where}: {failed.error} reading {failed.request.describe()}"
        if failed.error.attempts > 1:
            text += f" ({failed.error.attempts} attempts)"
        return text

    def _failed(self, fault: str) -> None:
        if fault != self.fault:
            log.warning("%s", fault)
        self._set_fault(fault)
        return None

    def _reading(self, values: dict[str, float]) -> MeterReading:
        previous = self.latest
        for quantity in ENERGY_QUANTITIES:
            value = values.get(quantity)
            if value is None:
                continue
            if not math.isfinite(value):
                raise BadEnergy(f"{quantity} is {value}")
            before = getattr(previous, quantity, None) if previous is not None else None
            # float32 kWh registers carry ~7 significant digits: allow rounding, no more.
            if before is not None and value < before - max(abs(before) * 1e-6, 1e-3):
                raise BadEnergy(
                    f"{quantity} went back from {before:.1f} to {value:.1f} Wh "
                    "(meter replaced or bad read); keeping the last good reading")

        def get(quantity: str) -> float | None:
            value = values.get(quantity)
            return value if value is not None and math.isfinite(value) else None

        return MeterReading(
            timestamp=self._clock.now(),
            energy_import_wh=get("energy_import_wh"),
            energy_export_wh=get("energy_export_wh"),
            power_w=get("power_w"),
            voltage_v=(get("voltage_l1"), get("voltage_l2"), get("voltage_l3")),
            current_a=(get("current_l1"), get("current_l2"), get("current_l3")),
            frequency_hz=get("frequency_hz"),
        )


def _values(reading: MeterReading) -> tuple[Any, ...]:
    return (reading.energy_import_wh, reading.energy_export_wh, reading.power_w,
            reading.voltage_v, reading.current_a, reading.frequency_hz)
