"""Reading a device's inputs when they may have changed, not in a busy loop.

Where the GPIO chip reports edges (SoC GPIO, gpio-sim), the kernel wakes us through an
event fd and the inputs are read `settle_s` later, once a bouncing contact has come to
rest; a slow re-read every `RESYNC_S` catches an edge lost in between. Where it cannot
(many I2C expanders), the inputs are read every `poll_s`. Either way all waiting is on
the injectable clock, so tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Sequence

from hal.api import Clock
from hal.drivers.gpio.lines import LineGroup

log = logging.getLogger(__name__)

RESYNC_S = 5.0

Levels = tuple[bool, ...]


class InputWatch:
    """Calls `on_levels(levels)` with the inputs' logical levels, first within start(),
    then whenever they differ from the last call; `on_error(text)` when they cannot be read."""

    def __init__(self, lines: LineGroup, offsets: Sequence[int], clock: Clock,
                 on_levels: Callable[[Levels], None], on_error: Callable[[str], None], *,
                 poll_s: float, settle_s: float) -> None:
        self._lines = lines
        self._offsets = tuple(offsets)
        self._clock = clock
        self._on_levels = on_levels
        self._on_error = on_error
        self._poll_s = poll_s
        self._settle_s = settle_s
        self._kick = asyncio.Event()
        self._fds: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._last: Levels | None = None
        self._next = 0.0

    def read(self) -> Levels:
        return tuple(self._lines.get(o) for o in self._offsets)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._fds = self._lines.event_fds()
        for fd in self._fds:
            loop.add_reader(fd, self._on_readable, fd)
        self._sample()  # now: the device knows its inputs when start() returns
        # Deadlines, not delays: the cadence counts from here, not from when the task runs.
        self._next = self._clock.monotonic() + self._period()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._drop_readers()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _drop_readers(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self._fds:
            loop.remove_reader(fd)
        self._fds = []

    def _on_readable(self, fd: int) -> None:
        try:
            self._lines.read_events(fd)
        except OSError as exc:
            # A fd that stays readable but cannot be read would spin the loop: poll instead.
            log.warning("GPIO edge events failed (%s); reading inputs every %g s", exc,
                        self._poll_s)
            self._drop_readers()
        self._kick.set()

    def _period(self) -> float:
        return RESYNC_S if self._fds else self._poll_s

    async def _run(self) -> None:
        while True:
            edge = await self._wait(self._next)
            if edge and self._settle_s > 0:
                await self._clock.sleep(self._settle_s)
                self._kick.clear()  # the bounces of this edge: already waited for
            self._next = self._clock.monotonic() + self._period()
            self._sample()

    async def _wait(self, deadline: float) -> bool:
        """Until an edge (True) or `deadline` on the clock (False)."""
        if not self._kick.is_set():
            kick = asyncio.ensure_future(self._kick.wait())
            timer = asyncio.ensure_future(self._clock.sleep(deadline - self._clock.monotonic()))
            try:
                await asyncio.wait({kick, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                kick.cancel()
                timer.cancel()
        edge = self._kick.is_set()
        self._kick.clear()
        return edge

    def _sample(self) -> None:
        try:
            levels = self.read()
        except OSError as exc:
            self._last = None  # report again once readable, even if nothing changed
            self._on_error(f"cannot read GPIO inputs: {exc}")
            return
        if levels != self._last:
            self._last = levels
            self._on_levels(levels)
