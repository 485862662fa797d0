"""Modbus RTU framing, sans-I/O: build read requests, check and decode their responses.

Nothing here touches a port or a clock, so every rule of the wire format is tested with
bytes alone. References: MODBUS Application Protocol Specification V1.1b3 (function
codes 0x03/0x04, exception codes, 125-register limit) and MODBUS over Serial Line
Specification V1.02 (RTU frame, CRC-16, the 3.5-character silence).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

READ_HOLDING = 0x03
READ_INPUT = 0x04
FUNCTIONS = {READ_HOLDING: "holding registers", READ_INPUT: "input registers"}
# 0x03/0x04 read at most 125 registers: the reply must fit the 256-byte RTU frame.
MAX_READ_COUNT = 125
EXCEPTION_FLAG = 0x80

EXCEPTION_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}


class RtuError(Exception):
    """A response that cannot be used. The parser raises nothing else, whatever the bytes.

    `attempts` is how many requests were sent before giving up (set by the link).
    """

    attempts: int = 1


class NoResponse(RtuError):
    """Nothing came back within the response timeout."""


class CrcError(RtuError):
    """The bytes arrived but the checksum does not match: noise, collision, bad wiring."""


class FrameError(RtuError):
    """A well-checksummed frame that does not answer our request, or a cut-short one."""


class ExceptionResponse(RtuError):
    """The meter understood and refused (function | 0x80, exception code)."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.name = EXCEPTION_NAMES.get(code, "unknown exception code")
        super().__init__(f"exception {code} ({self.name})")


def _crc_table() -> tuple[int, ...]:
    # CRC-16/MODBUS: reflected polynomial 0xA001, initial value 0xFFFF.
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    """The frame on the wire: the CRC goes low byte first, unlike every other field."""
    return body + crc16(body).to_bytes(2, "little")


@dataclass(frozen=True)
class ReadRequest:
    """Read `count` registers from `start` of server `unit` with function 0x03 or 0x04."""

    unit: int
    function: int
    start: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.unit <= 247:
            raise ValueError(f"unit address {self.unit} is not 1..247")
        if self.function not in FUNCTIONS:
            raise ValueError(f"function {self.function} is not a register read (3 or 4)")
        if not 1 <= self.count <= MAX_READ_COUNT:
            raise ValueError(f"count {self.count} is not 1..{MAX_READ_COUNT}")
        if not 0 <= self.start <= 0x10000 - self.count:
            raise ValueError(f"registers {self.start}+{self.count} leave the 16-bit address space")

    def encode(self) -> bytes:
        return with_crc(struct.pack(">BBHH", self.unit, self.function, self.start, self.count))

    @property
    def response_size(self) -> int:
        """Bytes of a normal answer: unit, function, byte count, data, CRC."""
        return 5 + 2 * self.count

    def expected_size(self, head: bytes) -> int:
        """Total length of the answer that begins with `head` (needs 2 bytes to tell).

        An exception reply is 5 bytes; anything else is read as long as a normal answer
        would be and then judged by `parse_response`.
        """
        if len(head) >= 2 and head[1] == self.function | EXCEPTION_FLAG:
            return 5
        return self.response_size

    def describe(self) -> str:
        last = self.start + self.count - 1
        return f"{FUNCTIONS[self.function]} 0x{self.start:04X}..0x{last:04X}"


def parse_response(request: ReadRequest, frame: bytes) -> tuple[int, ...]:
    """The register values answering `request`; RtuError (a subclass) if there are none."""
    if len(frame) < 5:
        raise FrameError(f"response too short ({len(frame)} bytes: {frame.hex(' ')})")
    if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
        raise CrcError(f"CRC error in a {len(frame)}-byte response")
    unit, function = frame[0], frame[1]
    if unit != request.unit:
        raise FrameError(f"response from address {unit}, not {request.unit}")
    if function == request.function | EXCEPTION_FLAG:
        if len(frame) != 5:
            raise FrameError(f"exception response of {len(frame)} bytes, not 5")
        raise ExceptionResponse(frame[2])
    if function != request.function:
        raise FrameError(f"response with function 0x{function:02X}, not 0x{request.function:02X}")
    byte_count = frame[2]
    if byte_count != 2 * request.count or len(frame) != 5 + byte_count:
        raise FrameError(f"response with {byte_count} data bytes in a {len(frame)}-byte frame, "
                         f"expected {2 * request.count}")
    return struct.unpack(f">{request.count}H", frame[3:-2])


def char_time(baudrate: int, parity: str, stopbits: int) -> float:
    """Seconds one character takes on the line: start bit, 8 data bits, parity, stop bits."""
    bits = 1 + 8 + (0 if parity == "N" else 1) + stopbits
    return bits / baudrate


def silent_interval(baudrate: int, parity: str, stopbits: int) -> float:
    """t3.5, the silence that separates frames (Serial Line V1.02, 2.5.1.1).

    Above 19200 baud the spec fixes it at 1.75 ms, because counting characters would ask
    UARTs for timer resolution they do not have.
    """
    if baudrate > 19200:
        return 0.00175
    return 3.5 * char_time(baudrate, parity, stopbits)
