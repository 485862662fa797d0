"""The control pilot: its state from comparator outputs on GPIO inputs, the offered current
as PWM duty on a sysfs PWM channel.

Assumed front-end (as on most open EVSE boards): the CP line goes through a divider and
a diode + RC peak hold, so the comparators see the positive plateau of the CP signal and
their outputs stay steady while the 1 kHz PWM runs. Each comparator drives one GPIO input
(`lines`). What each combination of inputs means is data (`states`): one key per pattern,
one character per entry of `lines` in the same order, "1" for an active input, mapped to
a pilot state letter. The default, for four lines, is a thermometer code from comparators
at 10.5, 7.5, 4.5 and 1.5 V:

    lines  = [above_10v5, above_7v5, above_4v5, above_1v5]
    states = {1111 = "A", 0111 = "B", 0011 = "C", 0001 = "D", 0000 = "E"}

A front-end with a binary encoder (e.g. three lines from a small MCU) just sets its own
`states`. A pattern missing from `states` means a broken front-end: state E and a fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hal.api import Clock, ControlPilot, HalConfigError, PilotState, duty_cycle_for
from hal.drivers.gpio import config
from hal.drivers.gpio.lines import LineSpec
from hal.drivers.gpio.link import Faults, GpioLink
from hal.drivers.gpio.pwm import SysfsPwm
from hal.drivers.gpio.watch import Levels

THERMOMETER = {"1111": "A", "0111": "B", "0011": "C", "0001": "D", "0000": "E"}
MAX_OFFER_A = 80.0   # the highest current a PWM duty can express (IEC 61851-1 A.7)
MIN_OFFER_A = 6.0    # below this there is no valid duty: no offer at all


@dataclass(frozen=True)
class PilotSettings:
    lines: tuple[int, ...]
    states: Mapping[str, PilotState] = field(default_factory=dict)
    chip: str = config.DEFAULT_CHIP
    active_low: bool = False
    bias: str = "as_is"
    settle_s: float = 0.02      # comparators chatter while the CP voltage moves
    poll_s: float = 0.05        # read interval where the chip has no edge events
    pwm_chip: int = 0
    pwm_channel: int = 0
    pwm_sysfs: str = "/sys/class/pwm"
    pwm_inverted: bool = False

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> PilotSettings:
        config.reject_unknown(settings, cls.__dataclass_fields__)
        lines = config.lines(settings, "lines")
        sysfs = settings.get("pwm_sysfs", cls.pwm_sysfs)
        if not isinstance(sysfs, str) or not sysfs:
            raise HalConfigError("pwm_sysfs", f"must be a directory path, got {sysfs!r}")
        return cls(
            lines=tuple(lines), states=_states(settings, len(lines)), chip=config.chip(settings),
            active_low=config.flag(settings, "active_low"), bias=config.bias(settings),
            settle_s=config.seconds(settings, "settle_s", cls.settle_s, zero_ok=True),
            poll_s=config.seconds(settings, "poll_s", cls.poll_s),
            pwm_chip=_index(settings, "pwm_chip"), pwm_channel=_index(settings, "pwm_channel"),
            pwm_sysfs=sysfs, pwm_inverted=config.flag(settings, "pwm_inverted"))


def _index(settings: Mapping[str, Any], key: str) -> int:
    value = settings.get(key, 0)
    if type(value) is not int or value < 0:
        raise HalConfigError(key, f"must be an integer 0 or more, got {value!r}")
    return value


def _states(settings: Mapping[str, Any], count: int) -> dict[str, PilotState]:
    table = settings.get("states")
    if table is None:
        if count != len(next(iter(THERMOMETER))):
            raise HalConfigError("states", f"required for {count} lines: which input pattern "
                                           "is which pilot state, e.g. {{01 = \"B\", ...}}")
        table = THERMOMETER
    if not isinstance(table, Mapping) or not table:
        raise HalConfigError("states", "must be a table of input pattern = pilot state")
    states: dict[str, PilotState] = {}
    for pattern, letter in table.items():
        if not isinstance(pattern, str) or len(pattern) != count or set(pattern) - {"0", "1"}:
            raise HalConfigError("states", f"pattern {pattern!r} must be {count} characters of "
                                           "0 and 1, one per entry of `lines`")
        try:
            states[pattern] = PilotState(letter)
        except ValueError:
            raise HalConfigError("states", f"{pattern} = {letter!r}: not a pilot state "
                                           "(A, B, C, D, E or F)") from None
    return states


class GpioPilot(ControlPilot):
    def __init__(self, settings: PilotSettings, clock: Clock) -> None:
        super().__init__()
        self.settings = settings
        self._faults = Faults(self)
        specs = [LineSpec(o, output=False, active_low=settings.active_low, edges=True,
                          bias=settings.bias) for o in settings.lines]
        self._link = GpioLink(chip=settings.chip, what="pilot", specs=specs, clock=clock,
                              faults=self._faults, on_levels=self._on_levels,
                              poll_s=settings.poll_s, settle_s=settings.settle_s)
        self._pwm = SysfsPwm(Path(settings.pwm_sysfs), settings.pwm_chip, settings.pwm_channel,
                             settings.pwm_inverted)
        self._pwm_ready = False
        self._state = PilotState.A
        self._offered: float | None = None

    @classmethod
    def check_config(cls, settings: Mapping[str, Any]) -> None:
        parsed = PilotSettings.parse(settings)
        config.check_device(parsed.chip)
        pwm = SysfsPwm(Path(parsed.pwm_sysfs), parsed.pwm_chip, parsed.pwm_channel)
        if not pwm.chip_dir.is_dir():
            raise HalConfigError("pwm_chip", f"{pwm.chip_dir} does not exist; is the PWM "
                                             "enabled in the device tree?")

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, clock: Clock) -> GpioPilot:
        return cls(PilotSettings.parse(settings), clock)

    @property
    def state(self) -> PilotState:
        return self._state

    @property
    def offered_a(self) -> float | None:
        return self._offered

    async def start(self) -> None:
        # The pilot comes up at 100 %: a vehicle sees "no current offered" until told.
        self._drive(100.0)
        await self._link.open()

    async def stop(self) -> None:
        await self.offer(None)
        await self._link.close()

    async def offer(self, current_a: float | None) -> None:
        offered = None if current_a is None or current_a < MIN_OFFER_A else min(current_a,
                                                                               MAX_OFFER_A)
        if self._drive(duty_cycle_for(offered)) and offered != self._offered:
            self._offered = offered
            self._changed()

    def _drive(self, percent: float) -> bool:
        # A channel that could not be set up at start is set up again on the next offer.
        try:
            if self._pwm_ready:
                self._pwm.set_duty(percent)
            else:
                self._pwm.open(percent)
                self._pwm_ready = True
        except OSError as exc:
            self._faults.set("pwm", f"pilot PWM: {exc}")
            return False
        self._faults.set("pwm", None)
        return True

    def _on_levels(self, levels: Levels) -> None:
        pattern = "".join("1" if level else "0" for level in levels)
        state = self.settings.states.get(pattern)
        if state is None:
            self._faults.set("pattern", f"pilot inputs read {pattern}, which is no state in "
                                        "`states`: check the pilot front-end")
            state = PilotState.E
        else:
            self._faults.set("pattern", None)
        if state is not self._state:
            self._state = state
            self._changed()
