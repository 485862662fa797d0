"""The InfyPower-style CAN protocol of DC power modules, sans-I/O: ids and payloads only.

Frames use 29-bit extended ids, laid out (most significant bit first):

    28..26 error code   25..22 device number   21..16 command   15..8 destination   7..0 source

The controller (us) is address 0xF0; a module answers from its own address to 0xF0 with
the same command. Every payload is 8 bytes, big-endian. Nothing here touches a bus. The
tests' simulated module (tests/infy_module_sim.py) is written from the public sources
independently of this file, and its golden frames check this one.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from typing import TypeVar, Union

CONTROLLER = 0xF0
BROADCAST = 0x3F          # destination meaning "every module"; never a module's own address
MAX_ADDRESS = 0x3E        # module addresses and group numbers are 0..MAX_ADDRESS
ID_BITS = 29
PAYLOAD_SIZE = 8

E = TypeVar("E", bound=enum.IntEnum)


class ProtocolError(ValueError):
    """A frame that is not this protocol (or not a message we know)."""


class DeviceNumber(enum.IntEnum):
    MODULE = 0x0A   # destination is one module's address
    GROUP = 0x0B    # destination is a group number: every module of that group listens


class Command(enum.IntEnum):
    MODULE_COUNT = 0x02       # how many modules a group has (answered by the group)
    READ_OUTPUT = 0x03        # present output voltage and current
    READ_STATUS = 0x04        # temperature and status bits
    READ_CAPABILITIES = 0x0A  # voltage range, current and power limits
    SWITCH = 0x1A             # output on/off
    SET_OUTPUT = 0x1C         # voltage and current set-point


class ErrorCode(enum.IntEnum):
    NORMAL = 0
    COMMAND_INVALID = 2
    DATA_INVALID = 3
    STARTING = 7              # module still in its start-up sequence

    @property
    def text(self) -> str:
        return self.name.lower().replace("_", " ")


# -- the id ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameId:
    command: Command
    destination: int
    source: int
    device: DeviceNumber = DeviceNumber.MODULE
    error: ErrorCode = ErrorCode.NORMAL

    def to_int(self) -> int:
        for name, value in (("destination", self.destination), ("source", self.source)):
            if not 0 <= value <= 0xFF:
                raise ProtocolError(f"{name} address {value} does not fit in 8 bits")
        return ((self.error << 26) | (self.device << 22) | (self.command << 16)
                | (self.destination << 8) | self.source)

    @classmethod
    def from_int(cls, value: int) -> FrameId:
        if not 0 <= value < 1 << ID_BITS:
            raise ProtocolError(f"id 0x{value:X} is not a 29-bit id")
        return cls(
            command=_enum(Command, (value >> 16) & 0x3F, "command"),
            destination=(value >> 8) & 0xFF,
            source=value & 0xFF,
            device=_enum(DeviceNumber, (value >> 22) & 0x0F, "device number"),
            error=_enum(ErrorCode, (value >> 26) & 0x07, "error code"),
        )


def _enum(kind: type[E], value: int, what: str) -> E:
    try:
        return kind(value)
    except ValueError:
        raise ProtocolError(f"unknown {what} 0x{value:02X}") from None


# -- status bits ----------------------------------------------------------------------------

class Severity(enum.Enum):
    INFO = "info"        # a state, not a problem (off, limiting, soft start)
    MODULE = "module"    # this module cannot deliver: drop it from the current split
    OUTPUT = "output"    # the shared DC output itself is bad: a fault whatever the others do


@dataclass(frozen=True)
class StatusBit:
    bit: int             # 0..23 in the 24-bit status word (bytes 5..7 of the payload)
    name: str
    text: str
    severity: Severity


# Bytes 5, 6, 7 of a READ_STATUS answer are status tables 2, 1, 0: bit n of table t is bit
# 8*t + n of the word. Unlisted bits are reserved and ignored. The table follows EVerest's
# InfyPower driver (EVerest/EVerest modules/HardwareDrivers/PowerSupplies/InfyPower/
# can_driver_acdc/CanPackets.cpp, PowerModuleStatus, and wireshark/infypower_can.lua);
# table 0 bits 2 and 3 are named only by other public drivers. Table 0 bit 4 is the module
# sleeping (a state), bit 5 its discharge fault: this table once took bit 4 for the
# discharge fault (dropping a sleeping module) and ignored bit 5.
STATUS_BITS: tuple[StatusBit, ...] = (
    StatusBit(0, "output_short_circuit", "output short circuit", Severity.OUTPUT),
    StatusBit(2, "internal_communication_fault", "internal communication fault", Severity.MODULE),
    StatusBit(3, "input_or_bus_abnormal", "AC input or DC bus abnormal", Severity.MODULE),
    StatusBit(4, "sleeping", "sleeping", Severity.INFO),
    StatusBit(5, "discharge_abnormal", "output discharge abnormal", Severity.MODULE),
    StatusBit(8, "module_off", "module off", Severity.INFO),
    StatusBit(9, "module_fault", "module fault", Severity.MODULE),
    StatusBit(10, "module_protection", "module protection tripped", Severity.MODULE),
    StatusBit(11, "fan_fault", "fan fault", Severity.MODULE),
    StatusBit(12, "over_temperature", "over-temperature", Severity.MODULE),
    StatusBit(13, "output_over_voltage", "output over-voltage", Severity.OUTPUT),
    StatusBit(14, "walk_in", "soft start (walk-in) enabled", Severity.INFO),
    StatusBit(15, "can_communication_fault", "CAN communication fault", Severity.MODULE),
    StatusBit(16, "power_limited", "power limited", Severity.INFO),
    StatusBit(17, "duplicate_address", "duplicate module address", Severity.MODULE),
    StatusBit(18, "load_sharing_fault", "load sharing fault", Severity.MODULE),
    StatusBit(19, "ac_phase_lost", "AC input phase lost", Severity.MODULE),
    StatusBit(20, "ac_unbalanced", "AC input unbalanced", Severity.MODULE),
    StatusBit(21, "ac_under_voltage", "AC input under-voltage", Severity.MODULE),
    StatusBit(22, "ac_over_voltage", "AC input over-voltage", Severity.MODULE),
    StatusBit(23, "pfc_off", "PFC stage off", Severity.INFO),
)
STATUS_BY_NAME = {b.name: b for b in STATUS_BITS}


def status_word(*names: str) -> int:
    """The status word with these bits set (KeyError names an unknown bit)."""
    word = 0
    for name in names:
        word |= 1 << STATUS_BY_NAME[name].bit
    return word


# -- payloads -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SetOutput:
    """Set-point (request) or its echo (answer): u32 mV, u32 mA."""

    voltage_mv: int
    current_ma: int

    @classmethod
    def from_units(cls, voltage_v: float, current_a: float) -> SetOutput:
        return cls(round(voltage_v * 1000), round(current_a * 1000))

    @property
    def voltage_v(self) -> float:
        return self.voltage_mv / 1000

    @property
    def current_a(self) -> float:
        return self.current_ma / 1000

    def encode(self) -> bytes:
        for name, value in (("voltage", self.voltage_mv), ("current", self.current_ma)):
            if not 0 <= value <= 0xFFFFFFFF:
                raise ProtocolError(f"{name} {value} does not fit in an unsigned 32-bit field")
        return struct.pack(">II", self.voltage_mv, self.current_ma)

    @classmethod
    def decode(cls, data: bytes) -> SetOutput:
        voltage_mv, current_ma = struct.unpack(">II", _exactly(data, 8))
        return cls(voltage_mv, current_ma)


@dataclass(frozen=True)
class Switch:
    """Output on/off: byte 0 is 0 for on, 1 for off (the module's own convention)."""

    on: bool

    def encode(self) -> bytes:
        return bytes([0 if self.on else 1]) + bytes(7)

    @classmethod
    def decode(cls, data: bytes) -> Switch:
        flag = _exactly(data, 1)[0]
        if flag not in (0, 1):
            raise ProtocolError(f"on/off byte is {flag}, expected 0 (on) or 1 (off)")
        return cls(on=flag == 0)


@dataclass(frozen=True)
class Output:
    """Present output: float32 volts, float32 amperes."""

    voltage_v: float
    current_a: float

    def encode(self) -> bytes:
        return struct.pack(">ff", self.voltage_v, self.current_a)

    @classmethod
    def decode(cls, data: bytes) -> Output:
        voltage, current = struct.unpack(">ff", _exactly(data, 8))
        if not (math.isfinite(voltage) and math.isfinite(current)):
            raise ProtocolError("output reading is not a finite number")
        return cls(voltage, current)


@dataclass(frozen=True)
class Capabilities:
    """u16 max volts, u16 min volts, u16 max current in 0.1 A, u16 rated power in 10 W."""

    max_voltage_v: int
    min_voltage_v: int
    max_current_a: float
    rated_power_w: int

    def encode(self) -> bytes:
        fields = (self.max_voltage_v, self.min_voltage_v, round(self.max_current_a * 10),
                  round(self.rated_power_w / 10))
        if not all(0 <= f <= 0xFFFF for f in fields):
            raise ProtocolError(f"capabilities {self} do not fit in 16-bit fields")
        return struct.pack(">HHHH", *fields)

    @classmethod
    def decode(cls, data: bytes) -> Capabilities:
        vmax, vmin, deciamps, decawatts = struct.unpack(">HHHH", _exactly(data, 8))
        return cls(vmax, vmin, deciamps / 10, decawatts * 10)


@dataclass(frozen=True)
class Status:
    """Byte 2 group number, byte 4 temperature (signed °C), bytes 5..7 the status word."""

    word: int = 0
    temperature_c: int = 25
    group: int = 0

    def encode(self) -> bytes:
        if not (0 <= self.word < 1 << 24 and -128 <= self.temperature_c <= 127
                and 0 <= self.group <= 0xFF):
            raise ProtocolError(f"status {self} does not fit its fields")
        return (bytes([0, 0, self.group, 0]) + struct.pack(">b", self.temperature_c)
                + self.word.to_bytes(3, "big"))

    @classmethod
    def decode(cls, data: bytes) -> Status:
        data = _exactly(data, 8)
        return cls(int.from_bytes(data[5:8], "big"), struct.unpack(">b", data[4:5])[0], data[2])

    @property
    def bits(self) -> tuple[StatusBit, ...]:
        return tuple(b for b in STATUS_BITS if self.word >> b.bit & 1)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(b.name for b in self.bits)

    def texts(self, severity: Severity) -> list[str]:
        return [b.text for b in self.bits if b.severity is severity]


@dataclass(frozen=True)
class ModuleCount:
    """Byte 2: how many modules the answering module's group has."""

    count: int

    def encode(self) -> bytes:
        if not 0 <= self.count <= 0xFF:
            raise ProtocolError(f"module count {self.count} does not fit in a byte")
        return bytes([0, 0, self.count]) + bytes(5)

    @classmethod
    def decode(cls, data: bytes) -> ModuleCount:
        return cls(_exactly(data, 3)[2])


def _exactly(data: bytes, needed: int) -> bytes:
    if len(data) < needed:
        raise ProtocolError(f"payload of {len(data)} bytes, expected at least {needed}")
    return bytes(data[:needed])


Body = Union[SetOutput, Switch, Output, Capabilities, Status, ModuleCount, None]

# What follows the id, by direction. Reads carry no data in the request (8 zero bytes).
_REQUEST_BODY: dict[Command, type[SetOutput] | type[Switch] | None] = {
    Command.MODULE_COUNT: None, Command.READ_OUTPUT: None, Command.READ_STATUS: None,
    Command.READ_CAPABILITIES: None, Command.SWITCH: Switch, Command.SET_OUTPUT: SetOutput,
}
_ANSWER_BODY: dict[Command, type[SetOutput] | type[Switch] | type[Output] | type[Capabilities]
                   | type[Status] | type[ModuleCount]] = {
    Command.MODULE_COUNT: ModuleCount, Command.READ_OUTPUT: Output, Command.READ_STATUS: Status,
    Command.READ_CAPABILITIES: Capabilities, Command.SWITCH: Switch,
    Command.SET_OUTPUT: SetOutput,
}


# -- frames ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    id: FrameId
    body: Body = None

    @property
    def arbitration_id(self) -> int:
        return self.id.to_int()

    @property
    def data(self) -> bytes:
        return self.body.encode() if self.body is not None else bytes(PAYLOAD_SIZE)


def request(command: Command, destination: int, body: Body = None, *,
            device: DeviceNumber = DeviceNumber.MODULE) -> Frame:
    expected = _REQUEST_BODY[command]
    if (body is None) != (expected is None) or (expected and not isinstance(body, expected)):
        raise ProtocolError(f"{command.name} takes {expected.__name__ if expected else 'no data'}")
    return Frame(FrameId(command, destination, CONTROLLER, device), body)


def answer(to: FrameId, source: int, body: Body = None,
           error: ErrorCode = ErrorCode.NORMAL) -> Frame:
    """A module's answer to a request (the property tests build answers with it)."""
    return Frame(FrameId(to.command, to.source, source, to.device, error), body)


def decode_request(arbitration_id: int, data: bytes) -> Frame:
    """A frame from the controller to modules. Raises ProtocolError and nothing else."""
    frame_id = FrameId.from_int(arbitration_id)
    body_type = _REQUEST_BODY[frame_id.command]
    return Frame(frame_id, body_type.decode(data) if body_type else None)


def decode_answer(arbitration_id: int, data: bytes) -> Frame:
    """A frame from a module. An answer with an error code carries no body (its data is not
    meaningful). Raises ProtocolError and nothing else."""
    frame_id = FrameId.from_int(arbitration_id)
    if frame_id.error is not ErrorCode.NORMAL:
        return Frame(frame_id, None)
    return Frame(frame_id, _ANSWER_BODY[frame_id.command].decode(data))
