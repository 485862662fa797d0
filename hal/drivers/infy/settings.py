"""The `[evse.power]` settings of the CAN power-module driver, checked without any I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import can.interfaces

from hal.api import HalConfigError
from hal.drivers.infy.protocol import MAX_ADDRESS

# Modules switch themselves off after this long without traffic (their firmware's rule).
MODULE_WATCHDOG_S = 10.0

KEYS = ("interface", "channel", "bitrate", "modules", "group", "keepalive_s", "timeout_s")


@dataclass(frozen=True)
class CanPowerSettings:
    interface: str                 # a python-can interface name: socketcan, virtual, ...
    channel: str | int             # can0; what the interface calls a channel
    modules: tuple[int, ...] = ()  # module addresses, or empty when `group` is given
    group: int | None = None       # group number: the members are found at start
    bitrate: int = 125_000
    keepalive_s: float = 3.0
    timeout_s: float = 1.0


def parse(settings: Mapping[str, Any]) -> CanPowerSettings:
    """The settings as values; HalConfigError naming the first key that cannot work."""
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise HalConfigError(unknown[0], f"unknown setting; known: {', '.join(KEYS)}")

    interface = settings.get("interface")
    if not isinstance(interface, str):
        raise HalConfigError("interface",
                             "required: a python-can interface name, e.g. \"socketcan\"")
    known = sorted(can.interfaces.VALID_INTERFACES)
    if interface not in known:
        raise HalConfigError("interface", f"{interface!r} is not a python-can interface; "
                                          f"known: {', '.join(known)}")

    channel = settings.get("channel")
    if isinstance(channel, bool) or not isinstance(channel, (str, int)) or channel == "":
        raise HalConfigError("channel", "required: the CAN channel, e.g. \"can0\"")

    bitrate = settings.get("bitrate", 125_000)
    if isinstance(bitrate, bool) or not isinstance(bitrate, int) or not 0 < bitrate <= 1_000_000:
        raise HalConfigError("bitrate", "must be an integer in bit/s up to 1000000 "
                                        "(the modules use 125000)")

    modules: tuple[int, ...] = ()
    group: int | None = None
    if ("modules" in settings) == ("group" in settings):
        raise HalConfigError("modules", "give either `modules` (a list of module addresses) "
                                        "or `group` (a group number), not both or neither")
    if "modules" in settings:
        raw = settings["modules"]
        if not isinstance(raw, (list, tuple)) or not raw or not all(_is_address(a) for a in raw):
            raise HalConfigError("modules", f"must be a non-empty list of module addresses "
                                            f"0..{MAX_ADDRESS}")
        if len(set(raw)) != len(raw):
            raise HalConfigError("modules", "lists an address twice")
        modules = tuple(raw)
    else:
        group = settings["group"]
        if not _is_address(group):
            raise HalConfigError("group", f"must be a group number 0..{MAX_ADDRESS}")

    keepalive_s = _seconds(settings, "keepalive_s", 3.0)
    if keepalive_s >= MODULE_WATCHDOG_S:
        raise HalConfigError("keepalive_s", f"must be below {MODULE_WATCHDOG_S:g} s: modules "
                                            "switch off after that long without traffic")
    timeout_s = _seconds(settings, "timeout_s", 1.0)
    if timeout_s > keepalive_s:
        raise HalConfigError("timeout_s", "must not exceed keepalive_s")
    return CanPowerSettings(interface, channel, modules, group, bitrate, keepalive_s, timeout_s)


def _is_address(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ADDRESS


def _seconds(settings: Mapping[str, Any], key: str, default: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise HalConfigError(key, "must be a positive number of seconds")
    return float(value)
