"""What every GPIO device does the same way: request its lines at start, watch its inputs,
drive its outputs without ever raising, release everything at stop.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
from typing import Callable, Sequence

from hal.api import Clock, Device, HalConfigError
from hal.drivers.gpio.lines import LineGroup, LineSpec, load_gpiod, request
from hal.drivers.gpio.watch import InputWatch, Levels

log = logging.getLogger(__name__)

CONSUMER = "station-agent"   # what `gpioinfo` shows as the lines' user
# How the kernel refuses edge detection on a line without an interrupt (ENXIO from
# gpiolib-cdev; some drivers pass on EINVAL or ENOTSUPP, 524, from their to_irq).
NO_EDGES = frozenset({errno.ENXIO, errno.EINVAL, errno.EOPNOTSUPP, 524})


class Faults:
    """A device can have several things wrong at once (its chip, its feedback); it shows
    the first that is still true, and clears only when all are gone."""

    def __init__(self, device: Device) -> None:
        self._device = device
        self._by_source: dict[str, str] = {}

    def set(self, source: str, text: str | None) -> None:
        if text is None:
            self._by_source.pop(source, None)
        else:
            if self._by_source.get(source) != text:
                log.warning("%s", text)  # once per new text: a stuck fault is not a log flood
            self._by_source[source] = text
        self._device._set_fault(next(iter(self._by_source.values()), None))

    def get(self, source: str) -> str | None:
        return self._by_source.get(source)


class GpioLink:
    def __init__(self, *, chip: str, what: str, specs: Sequence[LineSpec], clock: Clock,
                 faults: Faults, on_levels: Callable[[Levels], None] | None = None,
                 poll_s: float = 0.1, settle_s: float = 0.0) -> None:
        self.chip = chip
        self._what = what              # "contactor", "pilot", ... for fault texts
        self._specs = list(specs)
        self._inputs = [s.offset for s in specs if not s.output]
        self._clock = clock
        self._faults = faults
        self._on_levels = on_levels
        self._poll_s = poll_s
        self._settle_s = settle_s
        self._lines: LineGroup | None = None
        self._watch: InputWatch | None = None

    @property
    def is_open(self) -> bool:
        return self._lines is not None

    async def open(self) -> bool:
        """Request the lines (outputs at their initial, safe level); False and a fault if not."""
        if self._lines is not None:
            return True
        try:
            self._lines = self._request()
        except HalConfigError as exc:
            self._faults.set("gpio", f"{self._what}: {exc.message}")
            return False
        except OSError as exc:
            offsets = ", ".join(str(s.offset) for s in self._specs)
            self._faults.set("gpio", f"{self._what}: cannot request lines {offsets} of "
                                     f"{self.chip}: {exc}")
            return False
        self._faults.set("gpio", None)
        if self._inputs and self._on_levels is not None:
            self._watch = InputWatch(self._lines, self._inputs, self._clock, self._levels,
                                     self._read_failed, poll_s=self._poll_s,
                                     settle_s=self._settle_s)
            self._watch.start()
        return True

    def _request(self) -> LineGroup:
        gpiod = load_gpiod()
        try:
            return request(gpiod, self.chip, CONSUMER, self._specs)
        except OSError as exc:
            if exc.errno not in NO_EDGES or not any(s.edges for s in self._specs):
                raise
            # Chips behind I2C often cannot interrupt; polling them still works.
            log.warning("%s: %s cannot report edges (%s); reading inputs every %g s",
                        self._what, self.chip, exc, self._poll_s)
        return request(gpiod, self.chip, CONSUMER,
                       [dataclasses.replace(s, edges=False) for s in self._specs])

    def _read_failed(self, text: str) -> None:
        self._faults.set("read", f"{self._what}: {text}")

    def _levels(self, levels: Levels) -> None:
        self._faults.set("read", None)  # read again: a read fault is over
        if self._on_levels is not None:
            self._on_levels(levels)

    def set(self, offset: int, active: bool) -> bool:
        """Drive an output; False (and a fault) when the lines are not open or the write fails."""
        if self._lines is None:
            return False
        try:
            self._lines.set(offset, active)
        except OSError as exc:
            self._faults.set("write", f"{self._what}: cannot drive line {offset}: {exc}")
            return False
        self._faults.set("write", None)
        return True

    def read(self) -> Levels | None:
        """The inputs now, bypassing the watch's settling; None if they cannot be read."""
        if self._watch is None:
            return None
        try:
            return self._watch.read()
        except OSError as exc:
            self._read_failed(f"cannot read GPIO inputs: {exc}")
            return None

    async def close(self) -> None:
        if self._watch is not None:
            await self._watch.stop()
            self._watch = None
        if self._lines is not None:
            try:
                self._lines.release()
            except OSError as exc:  # releasing a line that vanished: nothing left to do
                log.warning("%s: releasing GPIO lines: %s", self._what, exc)
            self._lines = None
