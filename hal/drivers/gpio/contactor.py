"""The main contactor on a GPIO output, checked by its auxiliary contact on a GPIO input.

The relay follows the command at once and `state` shows the command, until the feedback
has disagreed with it for `feedback_timeout_s`; then the verdict is STUCK_OPEN (commanded
closed, still open) or WELDED (commanded open, still closed) and the device reports a
fault, so the EVSE supervisor stops the session. The same rule watches the contactor while
nobody commands it: a contact that welds or drops out while idle or charging is caught
as well.

A verdict ends only when the feedback disproves it. WELDED is a hazard (the station cannot
cut the energy), so it stays until the feedback is seen open; STUCK_OPEN is not, so it
ends once command and feedback agree again (commanded open, or seen closing on the next
close), which lets the next session try again. Without a feedback line the state is the
command.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Mapping

from hal.api import Clock, Contactor, ContactorState
from hal.drivers.gpio import config
from hal.drivers.gpio.lines import LineSpec
from hal.drivers.gpio.link import Faults, GpioLink
from hal.drivers.gpio.watch import Levels

# Auxiliary contacts bounce for a few ms after the main contacts move.
FEEDBACK_SETTLE_S = 0.02
FAULT_TEXT = {ContactorState.WELDED: "contactor welded",
              ContactorState.STUCK_OPEN: "contactor stuck open"}


@dataclass(frozen=True)
class ContactorSettings:
    line: int
    chip: str = config.DEFAULT_CHIP
    active_low: bool = False
    feedback_line: int | None = None
    feedback_active_low: bool = False
    feedback_timeout_s: float = 0.5
    bias: str = "as_is"          # of the feedback input
    poll_s: float = 0.1          # feedback read interval where the chip has no edge events

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> ContactorSettings:
        config.reject_unknown(settings, cls.__dataclass_fields__)
        parsed = cls(
            line=config.line(settings, "line"),  # type: ignore[arg-type]
            chip=config.chip(settings),
            active_low=config.flag(settings, "active_low"),
            feedback_line=config.line(settings, "feedback_line", required=False),
            feedback_active_low=config.flag(settings, "feedback_active_low"),
            feedback_timeout_s=config.seconds(settings, "feedback_timeout_s", cls.feedback_timeout_s),
            bias=config.bias(settings),
            poll_s=config.seconds(settings, "poll_s", cls.poll_s))
        config.distinct({"line": parsed.line, "feedback_line": parsed.feedback_line})
        return parsed


class GpioContactor(Contactor):
    def __init__(self, settings: ContactorSettings, clock: Clock) -> None:
        super().__init__()
        self.settings = settings
        self._clock = clock
        self._faults = Faults(self)
        specs = [LineSpec(settings.line, output=True, active_low=settings.active_low)]
        if settings.feedback_line is not None:
            specs.append(LineSpec(settings.feedback_line, output=False, edges=True,
                                  active_low=settings.feedback_active_low, bias=settings.bias))
        self._link = GpioLink(chip=settings.chip, what="contactor", specs=specs, clock=clock,
                              faults=self._faults, on_levels=self._on_feedback,
                              poll_s=settings.poll_s, settle_s=FEEDBACK_SETTLE_S)
        self._closed = False                         # the command
        self._feedback: bool | None = None           # True: the auxiliary contact says closed
        self._verdict: ContactorState | None = None  # WELDED or STUCK_OPEN once judged
        self._timer: asyncio.Task[None] | None = None
        self._shown = self.state

    @classmethod
    def check_config(cls, settings: Mapping[str, Any]) -> None:
        parsed = ContactorSettings.parse(settings)
        config.check_device(parsed.chip)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, clock: Clock) -> GpioContactor:
        return cls(ContactorSettings.parse(settings), clock)

    @property
    def state(self) -> ContactorState:
        if self._verdict is not None:
            return self._verdict
        return ContactorState.CLOSED if self._closed else ContactorState.OPEN

    async def start(self) -> None:
        await self._link.open()  # the relay output is requested inactive: open

    async def stop(self) -> None:
        await self.open()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self._link.close()

    async def close(self) -> None:
        self._command(True)

    async def open(self) -> None:
        self._command(False)

    def _command(self, closed: bool) -> None:
        # The command counts only once the output took it: a failed write leaves the
        # relay where it was, and the write fault says why.
        if self._link.set(self.settings.line, closed):
            self._closed = closed
        self._judge()

    def _on_feedback(self, levels: Levels) -> None:
        self._feedback = levels[0]
        self._judge()

    def _judge(self) -> None:
        feedback = self._feedback
        if feedback is not None:
            if self._verdict is ContactorState.WELDED and not feedback:
                self._verdict = None
            elif self._verdict is ContactorState.STUCK_OPEN and feedback == self._closed:
                self._verdict = None
        disagrees = feedback is not None and feedback != self._closed
        if disagrees and self._verdict is None:
            if self._timer is None:
                deadline = self._clock.monotonic() + self.settings.feedback_timeout_s
                self._timer = asyncio.ensure_future(self._expire(deadline))
        elif self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._faults.set("feedback", FAULT_TEXT.get(self._verdict) if self._verdict else None)
        if self.state is not self._shown:
            self._shown = self.state
            self._changed()

    async def _expire(self, deadline: float) -> None:
        # The deadline was fixed when the disagreement was seen, not when this task runs.
        await self._clock.sleep(deadline - self._clock.monotonic())
        self._timer = None
        if self._feedback is not None and self._feedback != self._closed:
            self._verdict = ContactorState.STUCK_OPEN if self._closed else ContactorState.WELDED
        self._judge()
