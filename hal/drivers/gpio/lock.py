"""The connector lock: a motor pulsed one way or the other, or a solenoid held by a level,
with an optional feedback switch that says "locked".

mode = "pulse": `lock_line` or `unlock_line` is driven for `pulse_s` (an H-bridge, never
both at once); mode = "level": `line` active means locked. After the move the feedback
has `feedback_timeout_s` to agree; lock()/unlock() return whether it did. A lock that
does not move is not a device fault by itself: the caller decides (no charging without a
lock, UnlockFailed to the CSMS). Without a feedback line the move is trusted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Mapping

from hal.api import Clock, ConnectorLock, HalConfigError
from hal.drivers.gpio import config
from hal.drivers.gpio.lines import LineSpec
from hal.drivers.gpio.link import Faults, GpioLink
from hal.drivers.gpio.watch import Levels

log = logging.getLogger(__name__)

MODES = ("pulse", "level")
CHECK_S = 0.02           # feedback read interval while a move is being confirmed
FEEDBACK_SETTLE_S = 0.02
_BY_MODE = {"pulse": {"lock_line", "unlock_line", "pulse_s"}, "level": {"line"}}


@dataclass(frozen=True)
class LockSettings:
    mode: str = "pulse"
    lock_line: int | None = None
    unlock_line: int | None = None
    pulse_s: float = 0.5
    line: int | None = None
    chip: str = config.DEFAULT_CHIP
    active_low: bool = False
    feedback_line: int | None = None
    feedback_active_low: bool = False
    feedback_timeout_s: float = 0.5
    bias: str = "as_is"
    poll_s: float = 0.1

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> LockSettings:
        config.reject_unknown(settings, cls.__dataclass_fields__)
        mode = settings.get("mode", cls.mode)
        if mode not in MODES:
            raise HalConfigError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
        for other in MODES:
            for key in _BY_MODE[other] - _BY_MODE[mode]:
                if key in settings:
                    raise HalConfigError(key, f"belongs to mode = \"{other}\", not \"{mode}\"")
        pulse = mode == "pulse"
        parsed = cls(
            mode=mode,
            lock_line=config.line(settings, "lock_line", required=pulse),
            unlock_line=config.line(settings, "unlock_line", required=pulse),
            pulse_s=config.seconds(settings, "pulse_s", cls.pulse_s),
            line=config.line(settings, "line", required=not pulse),
            chip=config.chip(settings), active_low=config.flag(settings, "active_low"),
            feedback_line=config.line(settings, "feedback_line", required=False),
            feedback_active_low=config.flag(settings, "feedback_active_low"),
            feedback_timeout_s=config.seconds(settings, "feedback_timeout_s",
                                              cls.feedback_timeout_s),
            bias=config.bias(settings), poll_s=config.seconds(settings, "poll_s", cls.poll_s))
        config.distinct({"lock_line": parsed.lock_line, "unlock_line": parsed.unlock_line,
                         "line": parsed.line, "feedback_line": parsed.feedback_line})
        return parsed

    @property
    def outputs(self) -> list[int]:
        return [o for o in (self.lock_line, self.unlock_line, self.line) if o is not None]


class GpioLock(ConnectorLock):
    def __init__(self, settings: LockSettings, clock: Clock) -> None:
        super().__init__()
        self.settings = settings
        self._clock = clock
        self._faults = Faults(self)
        specs = [LineSpec(o, output=True, active_low=settings.active_low)
                 for o in settings.outputs]
        if settings.feedback_line is not None:
            specs.append(LineSpec(settings.feedback_line, output=False, edges=True,
                                  active_low=settings.feedback_active_low, bias=settings.bias))
        self._link = GpioLink(chip=settings.chip, what="connector lock", specs=specs,
                              clock=clock, faults=self._faults, on_levels=self._on_feedback,
                              poll_s=settings.poll_s, settle_s=FEEDBACK_SETTLE_S)
        self._busy = asyncio.Lock()
        self._commanded: bool | None = None
        self._feedback: bool | None = None

    @classmethod
    def check_config(cls, settings: Mapping[str, Any]) -> None:
        parsed = LockSettings.parse(settings)
        config.check_device(parsed.chip)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, clock: Clock) -> GpioLock:
        return cls(LockSettings.parse(settings), clock)

    @property
    def locked(self) -> bool | None:
        if self.settings.feedback_line is not None:
            return self._feedback
        return self._commanded

    async def start(self) -> None:
        await self._link.open()  # outputs requested inactive: the motor does not move

    async def stop(self) -> None:
        for offset in self.settings.outputs if self.settings.mode == "pulse" else []:
            self._link.set(offset, False)
        await self._link.close()

    async def lock(self) -> bool:
        return await self._move(True)

    async def unlock(self) -> bool:
        return await self._move(False)

    async def _move(self, locked: bool) -> bool:
        async with self._busy:  # one move at a time: never both bridge halves at once
            before = self.locked
            moved = await (self._pulse(locked) if self.settings.mode == "pulse"
                           else self._level(locked))
            if moved:
                self._commanded = locked
            confirmed = moved and await self._confirm(locked)
            if not confirmed:
                log.warning("connector lock did not %s", "lock" if locked else "unlock")
            if self.locked != before:
                self._changed()
            return confirmed

    async def _pulse(self, locked: bool) -> bool:
        s = self.settings
        drive, other = (s.lock_line, s.unlock_line) if locked else (s.unlock_line, s.lock_line)
        assert drive is not None and other is not None
        if not (self._link.set(other, False) and self._link.set(drive, True)):
            self._link.set(drive, False)
            return False
        try:
            await self._clock.sleep(s.pulse_s)
        finally:
            self._link.set(drive, False)  # even when cancelled: a stalled motor burns
        return True

    async def _level(self, locked: bool) -> bool:
        assert self.settings.line is not None
        return self._link.set(self.settings.line, locked)

    async def _confirm(self, locked: bool) -> bool:
        if self.settings.feedback_line is None:
            return True
        deadline = self._clock.monotonic() + self.settings.feedback_timeout_s
        while True:
            levels = self._link.read()  # directly: the watch settles, we are in a hurry
            if levels is not None:
                self._feedback = levels[0]
            if self._feedback == locked:
                return True
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return False
            await self._clock.sleep(min(CHECK_S, remaining))

    def _on_feedback(self, levels: Levels) -> None:
        if levels[0] != self._feedback:
            self._feedback = levels[0]
            self._changed()
