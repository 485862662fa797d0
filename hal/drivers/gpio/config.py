"""Reading the GPIO drivers' settings: one function per kind of value, each raising
HalConfigError with the key, so `check-config` prints one line an operator can act on.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from hal.api import HalConfigError
from hal.drivers.gpio.lines import BIASES, load_gpiod

DEFAULT_CHIP = "/dev/gpiochip0"


def reject_unknown(settings: Mapping[str, Any], known: Iterable[str]) -> None:
    known = set(known)
    for key in settings:
        if key not in known:
            raise HalConfigError(key, f"unknown setting; known: {', '.join(sorted(known))}")


def chip(settings: Mapping[str, Any]) -> str:
    value = settings.get("chip", DEFAULT_CHIP)
    if not isinstance(value, str) or not value:
        raise HalConfigError("chip", f"must be a GPIO character device path, got {value!r}")
    return value


def check_chip_exists(path: str) -> None:
    if not os.path.exists(path):
        raise HalConfigError("chip", f"{path} does not exist; `gpiodetect` lists this board's "
                                     "GPIO chips")


def check_gpiod() -> None:
    load_gpiod()


def check_device(chip_path: str) -> None:
    """What every GPIO device needs before it can work: the bindings and its chip."""
    check_gpiod()
    check_chip_exists(chip_path)


def line(settings: Mapping[str, Any], key: str, *, required: bool = True) -> int | None:
    value = settings.get(key)
    if value is None:
        if required:
            raise HalConfigError(key, "required: a GPIO line offset on the chip (0, 1, ...)")
        return None
    if type(value) is not int or value < 0:
        raise HalConfigError(key, f"must be a line offset, an integer 0 or more, got {value!r}")
    return value


def lines(settings: Mapping[str, Any], key: str) -> list[int]:
    value = settings.get(key)
    if not isinstance(value, list) or not value:
        raise HalConfigError(key, "required: a list of GPIO line offsets, e.g. [5, 6, 13, 19]")
    for item in value:
        if type(item) is not int or item < 0:
            raise HalConfigError(key, f"line offsets are integers 0 or more, got {item!r}")
    if len(set(value)) != len(value):
        raise HalConfigError(key, "names the same line twice")
    return list(value)


def flag(settings: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = settings.get(key, default)
    if not isinstance(value, bool):
        raise HalConfigError(key, f"must be true or false, got {value!r}")
    return value


def seconds(settings: Mapping[str, Any], key: str, default: float, *,
            zero_ok: bool = False) -> float:
    value = settings.get(key, default)
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value
            or value < 0 or (value == 0 and not zero_ok) or value > 3600):
        bound = "0 to 3600" if zero_ok else "more than 0, at most 3600"
        raise HalConfigError(key, f"must be a number of seconds, {bound}, got {value!r}")
    return float(value)


def bias(settings: Mapping[str, Any], key: str = "bias") -> str:
    value = settings.get(key, "as_is")
    if value not in BIASES:
        raise HalConfigError(key, f"must be one of {', '.join(BIASES)}, got {value!r}")
    return value


def distinct(named: Mapping[str, int | None]) -> None:
    """No line may serve two purposes in one device (a relay wired back to its own input)."""
    seen: dict[int, str] = {}
    for key, offset in named.items():
        if offset is None:
            continue
        if offset in seen:
            raise HalConfigError(key, f"line {offset} is already used as {seen[offset]}")
        seen[offset] = key
