"""Register maps as data: which register holds which quantity, in what type and unit.

A map is a list of `Register`s; `plan` groups adjacent ones into as few read requests as
the meter accepts, so a poll is a handful of frames, not one per quantity.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Iterable, Sequence

from hal.drivers.modbus.rtu import MAX_READ_COUNT, READ_INPUT, ReadRequest

# What a map may fill in of a MeterReading; units are SI, energy in Wh.
QUANTITIES = (
    "energy_import_wh", "energy_export_wh", "power_w",
    "voltage_l1", "voltage_l2", "voltage_l3",
    "current_l1", "current_l2", "current_l3",
    "frequency_hz",
)
ENERGY_QUANTITIES = ("energy_import_wh", "energy_export_wh")

# type -> (registers, struct format); bytes within a register are always big-endian.
TYPES: dict[str, tuple[int, str]] = {
    "u16": (1, "H"), "s16": (1, "h"),
    "u32": (2, "I"), "s32": (2, "i"),
    "u64": (4, "Q"),
    "float32": (2, "f"),
}
WORD_ORDERS = ("big", "little")  # big: most significant register first


@dataclass(frozen=True)
class Register:
    quantity: str
    address: int
    function: int = READ_INPUT
    type: str = "float32"
    word_order: str = "big"
    scale: float = 1.0        # multiplier from the register's unit to SI / Wh
    # A register some variants of the meter lack: "illegal data address" for it means
    # "not measured here", not a fault (see SDM72 below).
    optional: bool = False

    @property
    def size(self) -> int:
        return TYPES[self.type][0]

    @property
    def end(self) -> int:
        return self.address + self.size

    def decode(self, words: Sequence[int]) -> float:
        if self.word_order == "little":
            words = list(reversed(words))
        raw = b"".join(word.to_bytes(2, "big") for word in words)
        value = struct.unpack(">" + TYPES[self.type][1], raw)[0]
        if self.type == "float32":
            value = _shortest_float32(value, raw)
        if self.scale == 1:
            return value
        # 15 digits drop the binary artifact of the multiplication (2301 * 0.1 would be
        # 230.10000000000002) and nothing a meter measures.
        return float(f"{value * self.scale:.15g}")


def _shortest_float32(value: float, raw: bytes) -> float:
    """The shortest decimal that is the same float32: 230.1, not 230.10000610351562.

    The extra digits are binary noise of the 32-bit format, not a measurement, and they
    would travel on into MeterValues.
    """
    if not math.isfinite(value):
        return value
    for digits in range(6, 9):
        short = float(f"{value:.{digits}g}")
        if struct.pack(">f", short) == raw:
            return short
    return value


@dataclass(frozen=True)
class Block:
    """One read request's worth of registers."""

    function: int
    start: int
    count: int
    registers: tuple[Register, ...]
    optional: bool = False

    def request(self, unit: int) -> ReadRequest:
        return ReadRequest(unit, self.function, self.start, self.count)

    def decode(self, words: Sequence[int]) -> dict[str, float]:
        return {r.quantity: r.decode(words[r.address - self.start:r.end - self.start])
                for r in self.registers}


def plan(registers: Iterable[Register], max_count: int = MAX_READ_COUNT) -> tuple[Block, ...]:
    """Adjacent (or overlapping) registers of one function share a request.

    Gaps are never bridged: a register nobody listed may not exist on the meter, and
    reading it would make the meter refuse the whole request. Optional registers get
    requests of their own so that losing them costs nothing else.
    """
    groups: dict[tuple[int, bool], list[Register]] = {}
    for reg in registers:
        groups.setdefault((reg.function, reg.optional), []).append(reg)
    blocks: list[Block] = []
    for (function, optional), regs in sorted(groups.items()):
        current: list[Register] = []
        start = end = 0
        for reg in sorted(regs, key=lambda r: (r.address, r.end)):
            if current and reg.address <= end and max(end, reg.end) - start <= max_count:
                current.append(reg)
                end = max(end, reg.end)
                continue
            if current:
                blocks.append(Block(function, start, end - start, tuple(current), optional))
            current, start, end = [reg], reg.address, reg.end
        if current:
            blocks.append(Block(function, start, end - start, tuple(current), optional))
    return tuple(blocks)


@dataclass(frozen=True)
class RegisterMap:
    name: str
    registers: tuple[Register, ...]
    # Registers per request the meter accepts; Eastron meters refuse long reads that
    # the protocol itself would allow.
    max_count: int = MAX_READ_COUNT

    def blocks(self) -> tuple[Block, ...]:
        return plan(self.registers, self.max_count)


# -- Eastron ---------------------------------------------------------------------------------
#
# Eastron SDM meters keep every measurement as an IEEE-754 float32 in two input registers
# (function 0x04), high word first; energies in kWh. Addresses below are the protocol
# start addresses (the manuals' "30001"-style numbers minus 30001), checked against:
#  - Eastron SDM630-Modbus V2 user manual, section 1.2 input registers (as published by
#    B+G e-tech / Eastron Germany, e.g. manualshive.com "SDM630 Modbus MID V2"): phase
#    volts 30001/3/5 = 0x0000/02/04, currents 30007/9/11 = 0x0006/08/0A, total system
#    power 30053 = 0x0034, frequency 30071 = 0x0046, total import kWh 30073 = 0x0048,
#    total export kWh 30075 = 0x004A (same table: lamaplc.com "Eastron Modbus maps").
#  - Eastron SDM72D-M user manual V1.1 (B+G e-tech), part 3: the same addresses for volts
#    and currents. But the "SDM72D-M Modbus Protocol V1.1" sheet and the SDM72D-M manual
#    V1.5 list only total system power 0x0034 and import/export kWh 0x0048/0x004A; the
#    SDM72D-M-2 protocol again has the full set. So for "sdm72" only power and energy are
#    required; volts, amps and frequency are optional (dropped if the meter refuses them).
# Read limits: the SDM72D-M manual allows at most 30 parameters (60 registers) per
# request; for the SDM630, 40 parameters (80 registers) is the commonly documented limit.

_KWH = 1000.0


def _eastron(quantity: str, address: int, scale: float = 1.0, optional: bool = False) -> Register:
    return Register(quantity, address, READ_INPUT, "float32", "big", scale, optional)


def _eastron_3phase(optional_measurements: bool) -> tuple[Register, ...]:
    opt = optional_measurements
    return (
        _eastron("voltage_l1", 0x0000, optional=opt),
        _eastron("voltage_l2", 0x0002, optional=opt),
        _eastron("voltage_l3", 0x0004, optional=opt),
        _eastron("current_l1", 0x0006, optional=opt),
        _eastron("current_l2", 0x0008, optional=opt),
        _eastron("current_l3", 0x000A, optional=opt),
        _eastron("power_w", 0x0034),
        _eastron("frequency_hz", 0x0046, optional=opt),
        _eastron("energy_import_wh", 0x0048, _KWH),
        _eastron("energy_export_wh", 0x004A, _KWH),
    )


SDM630 = RegisterMap("sdm630", _eastron_3phase(False), max_count=80)
SDM72 = RegisterMap("sdm72", _eastron_3phase(True), max_count=60)
BUILTIN_MAPS = {m.name: m for m in (SDM630, SDM72)}
