"""The `[evse.meter]` table of a modbus_meter, checked: every error names its key.

    [evse.meter]
    driver = "modbus_meter"
    port = "/dev/ttyUSB0"      # or a pyserial URL such as "rfc2217://gateway:4001"
    baudrate = 9600
    parity = "N"               # "N", "E" or "O"
    stopbits = 1               # 1 or 2
    address = 1                # the meter's Modbus address, 1..247
    map = "sdm630"             # "sdm630", "sdm72" or "generic"
    poll_interval_s = 1.0
    timeout_s = 0.5            # response timeout of one request
    retries = 2                # further attempts after a failed one

    [[evse.meter.registers]]   # map = "generic" only: one table per quantity
    quantity = "energy_import_wh"
    address = 0x0100
    function = 3               # 3 (holding) or 4 (input, default)
    type = "u32"               # u16, s16, u32, s32, u64, float32
    word_order = "big"         # "big": high word first (default); "little"
    scale = 1.0                # register unit -> SI / Wh, e.g. 1000 for kWh, 0.1 for dV
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from hal.api import HalConfigError
from hal.drivers.modbus.maps import (BUILTIN_MAPS, QUANTITIES, TYPES, WORD_ORDERS, Register,
                                     RegisterMap)
from hal.drivers.modbus.rtu import FUNCTIONS

MAP_NAMES = (*BUILTIN_MAPS, "generic")
KEYS = ("port", "baudrate", "parity", "stopbits", "address", "map", "registers",
        "poll_interval_s", "timeout_s", "retries")
REGISTER_KEYS = ("quantity", "address", "function", "type", "word_order", "scale")


@dataclass(frozen=True)
class MeterSettings:
    port: str
    map: RegisterMap
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    address: int = 1
    poll_interval_s: float = 1.0
    timeout_s: float = 0.5
    retries: int = 2

    @classmethod
    def parse(cls, settings: Mapping[str, Any], *, check_port: bool = True) -> MeterSettings:
        """Checked settings; HalConfigError naming the first bad key.

        `check_port`: also require the port device to exist. The config check does; the
        running driver does not, so an adapter plugged in after start-up is picked up.
        """
        for key in settings:
            if key not in KEYS:
                raise HalConfigError(key, f"unknown setting; known: {', '.join(KEYS)}")
        port = settings.get("port")
        if not isinstance(port, str) or not port:
            raise HalConfigError("port", "required: the serial device, e.g. \"/dev/ttyUSB0\"")
        if check_port and "://" not in port and not os.path.exists(port):
            raise HalConfigError("port", f"{port} does not exist (is the RS-485 adapter plugged "
                                         "in? a udev rule may give it a stable name)")
        name = settings.get("map", "sdm630")
        if name not in MAP_NAMES:
            raise HalConfigError("map", f"{name!r} is not one of {', '.join(MAP_NAMES)}")
        if name == "generic":
            register_map = RegisterMap("generic", _registers(settings.get("registers")))
        elif "registers" in settings:
            raise HalConfigError("registers", f"only for map = \"generic\"; {name} has its own")
        else:
            register_map = BUILTIN_MAPS[name]
        return cls(
            port=port,
            map=register_map,
            baudrate=_integer(settings, "baudrate", 9600, 300, 4_000_000),
            parity=_choice(settings, "parity", "N", ("N", "E", "O")),
            stopbits=_choice(settings, "stopbits", 1, (1, 2)),
            address=_integer(settings, "address", 1, 1, 247),
            poll_interval_s=_number(settings, "poll_interval_s", 1.0, 0.05, 3600),
            timeout_s=_number(settings, "timeout_s", 0.5, 0.01, 10),
            retries=_integer(settings, "retries", 2, 0, 10),
        )


def _integer(table: Mapping[str, Any], key: str, default: int, low: int, high: int,
             prefix: str = "") -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise HalConfigError(prefix + key, f"{value!r} is not a whole number in {low}..{high}")
    return value


def _number(table: Mapping[str, Any], key: str, default: float, low: float, high: float,
            prefix: str = "") -> float:
    value = table.get(key, default)
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not low <= value <= high):
        raise HalConfigError(prefix + key, f"{value!r} is not a number in {low:g}..{high:g}")
    return float(value)


def _choice(table: Mapping[str, Any], key: str, default: Any, allowed: tuple[Any, ...],
            prefix: str = "") -> Any:
    value = table.get(key, default)
    if isinstance(value, bool) or value not in allowed:
        raise HalConfigError(prefix + key, f"{value!r} is not one of "
                                           f"{', '.join(repr(a) for a in allowed)}")
    return value


def _registers(value: Any) -> tuple[Register, ...]:
    if not isinstance(value, list) or not value:
        raise HalConfigError("registers", "map = \"generic\" needs a list of register tables "
                                          "([[evse.meter.registers]])")
    registers: list[Register] = []
    for index, entry in enumerate(value):
        prefix = f"registers[{index}]."
        if not isinstance(entry, Mapping):
            raise HalConfigError(f"registers[{index}]", "must be a table")
        for key in entry:
            if key not in REGISTER_KEYS:
                raise HalConfigError(prefix + key, f"unknown; known: {', '.join(REGISTER_KEYS)}")
        for key in ("quantity", "address", "type"):
            if key not in entry:
                raise HalConfigError(prefix + key, "required")
        quantity = _choice(entry, "quantity", None, QUANTITIES, prefix)
        if any(r.quantity == quantity for r in registers):
            raise HalConfigError(prefix + "quantity", f"{quantity} is listed twice")
        kind = _choice(entry, "type", None, tuple(TYPES), prefix)
        address = _integer(entry, "address", 0, 0, 0x10000 - TYPES[kind][0], prefix)
        scale = _number(entry, "scale", 1.0, -math.inf, math.inf, prefix)
        if scale == 0 or not math.isfinite(scale):
            raise HalConfigError(prefix + "scale", f"{scale!r} must be a finite, non-zero number")
        registers.append(Register(
            quantity=quantity,
            address=address,
            function=_choice(entry, "function", 4, tuple(FUNCTIONS), prefix),
            type=kind,
            word_order=_choice(entry, "word_order", "big", WORD_ORDERS, prefix),
            scale=scale,
        ))
    return tuple(registers)
