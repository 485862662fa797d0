"""The PN532's frames on its HSU (UART) link, sans-I/O: bytes in, frames out.

From the NXP PN532 User Manual (UM0701-02), "Host controller communication protocol":

    normal information frame  00 | 00 FF | LEN | LCS | TFI PD0 .. PDn | DCS | 00
                              preamble, start code, LEN = bytes of TFI + data,
                              LEN + LCS = 0 and TFI + PD0 + .. + PDn + DCS = 0 (mod 256),
                              postamble
    extended information frame  00 00 FF FF FF LENM LENL LCS TFI .. DCS 00
    ACK                       00 00 FF 00 FF 00
    NACK                      00 00 FF FF 00 00   (the host asks for the last frame again)
    error frame               00 00 FF 01 FF 7F 81 00   (an error at the application level)

TFI is D4 from host to PN532 and D5 back; PD0 is the command code, answered with code + 1.
Nothing here touches a port: the reader (hal.drivers.pn532.reader) feeds what it read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Union

HOST_TFI = 0xD4
PN532_TFI = 0xD5
START = b"\x00\xff"
ACK = bytes.fromhex("0000FF00FF00")
NACK = bytes.fromhex("0000FFFF0000")
# HSU wake-up: 0x55 wakes the HSU; the zeros that follow (with the frame's own preamble
# and start code: 14 in all) give the PN532 time to start its oscillator before the first
# frame, as in the wake-up + SAMConfiguration sequence published for the PN532 on a UART.
# A PN532 already awake skips them as noise.
WAKEUP = b"\x55\x55" + bytes(12)
# AN10449 (PN532 application note): "up to 265 bytes sent in one frame"; a longer length
# in an extended frame's header is noise.
MAX_BODY = 265
ERROR_CODE = 0x7F


class Command(enum.IntEnum):
    GET_FIRMWARE_VERSION = 0x02      # UM0701-02 7.2.2
    SAM_CONFIGURATION = 0x14         # 7.2.10: normal mode leaves LowVbat (the power-up mode)
    RF_CONFIGURATION = 0x32          # 7.3.1: item 5, the retries of InListPassiveTarget
    IN_LIST_PASSIVE_TARGET = 0x4A    # 7.3.5


class FrameError(ValueError):
    """Data that is not what the PN532 answers to this command."""


@dataclass(frozen=True)
class Ack:
    pass


@dataclass(frozen=True)
class Nack:
    pass


@dataclass(frozen=True)
class ErrorFrame:
    pass


@dataclass(frozen=True)
class Broken:
    """A frame whose start code was found but whose checksums or end are wrong."""

    reason: str


@dataclass(frozen=True)
class Information:
    tfi: int
    code: int
    data: bytes


Event = Union[Ack, Nack, ErrorFrame, Broken, Information]


def command_frame(code: int, params: bytes = b"") -> bytes:
    """The normal information frame carrying one command from the host."""
    body = bytes([HOST_TFI, code]) + params
    if len(body) > 255:
        raise ValueError("a command of more than 255 bytes needs an extended frame")
    return (b"\x00" + START + bytes([len(body), -len(body) & 0xFF]) + body
            + bytes([-sum(body) & 0xFF, 0x00]))


class FrameParser:
    """Bytes from the PN532 in, events out; never raises. Noise between frames is skipped;
    on a broken frame only its first byte is dropped and the search goes on from there, so
    a good frame that began inside the broken one is still found."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        while True:
            start = self._buf.find(START)
            if start < 0:
                # Keep a trailing 00: it may be the first half of a start code.
                del self._buf[:max(len(self._buf) - 1, 0)]
                if self._buf != b"\x00":
                    self._buf.clear()
                return events
            del self._buf[:start]
            event, used = _frame_at(self._buf)
            if event is None:
                if not self._whole_frame_later():
                    return events       # incomplete: wait for more bytes
                # Noise that looked like the head of a long frame: a whole frame that came
                # after it shows the head was not one (frames do not overlap).
                event, used = Broken("cut short"), 1
            events.append(event)
            del self._buf[:used]

    def _whole_frame_later(self) -> bool:
        """Whether a complete, checksummed frame starts after buf[0]."""
        start = self._buf.find(START, 1)
        while start >= 0:
            event, _ = _frame_at(self._buf[start:])
            if isinstance(event, (Information, ErrorFrame)):
                return True
            start = self._buf.find(START, start + 1)
        return False


def _frame_at(buf: bytearray) -> tuple[Event | None, int]:
    """The event at the start code at buf[0], and how many bytes it took; (None, 0) when
    more bytes are needed. A broken frame takes one byte."""
    if len(buf) < 4:
        return None, 0
    length, lcs = buf[2], buf[3]
    if (length, lcs) == (0x00, 0xFF):
        return Ack(), 4
    if (length, lcs) == (0xFF, 0x00):
        return Nack(), 4
    offset = 4
    if (length, lcs) == (0xFF, 0xFF):            # extended: LENM LENL LCS follow
        if len(buf) < 7:
            return None, 0
        length = buf[4] << 8 | buf[5]
        if (buf[4] + buf[5] + buf[6]) & 0xFF or length > MAX_BODY:
            return Broken("extended length checksum"), 1
        offset = 7
    elif (length + lcs) & 0xFF:
        return Broken("length checksum"), 1
    if length == 0:
        return Broken("empty frame"), 1
    end = offset + length
    if len(buf) < end + 2:
        return None, 0
    body = bytes(buf[offset:end])
    if (sum(body) + buf[end]) & 0xFF:
        return Broken("data checksum"), 1
    if buf[end + 1] != 0x00:
        return Broken("postamble"), 1
    if body == bytes([ERROR_CODE]):
        return ErrorFrame(), end + 2
    if length < 2:
        return Broken("no command code"), 1
    return Information(body[0], body[1], body[2:]), end + 2


# -- what the answers say ----------------------------------------------------------------------

@dataclass(frozen=True)
class Firmware:
    """GetFirmwareVersion: IC (0x32 for a PN532), version, revision, supported protocols."""

    ic: int
    version: int
    revision: int
    support: int

    @classmethod
    def parse(cls, data: bytes) -> Firmware:
        if len(data) != 4:
            raise FrameError(f"firmware version of {len(data)} bytes, expected 4")
        return cls(*data)

    def __str__(self) -> str:
        return f"IC 0x{self.ic:02X} firmware {self.version}.{self.revision}"


@dataclass(frozen=True)
class TargetA:
    """One ISO/IEC 14443 type A target of InListPassiveTarget at 106 kbps (UM0701-02 7.3.5):
    Tg, SENS_RES (2 bytes), SEL_RES, NFCIDLength, NFCID1, and ATS (length byte first, which
    counts itself) when SEL_RES says the card is ISO/IEC 14443-4 compliant."""

    number: int
    sens_res: bytes
    sel_res: int
    uid: bytes
    ats: bytes = b""

    @property
    def uid_hex(self) -> str:
        return self.uid.hex().upper()

    @property
    def random_uid(self) -> bool:
        """ISO/IEC 14443-3: a single-size UID starting with 08h is a random ID, new at
        every activation (phones, many payment cards); it identifies nobody."""
        return len(self.uid) == 4 and self.uid[0] == 0x08


ISO14443_4 = 0x20       # SEL_RES bit 6: the target speaks ISO/IEC 14443-4 (sends an ATS)
UID_SIZES = (4, 7, 10)  # single, double, triple size NFCID1


def parse_targets_a(data: bytes) -> list[TargetA]:
    """The data of an InListPassiveTarget answer (after its code): NbTg, then the targets."""
    if not data:
        raise FrameError("InListPassiveTarget answer without NbTg")
    count, pos, targets = data[0], 1, []
    if count > 2:
        raise FrameError(f"{count} targets, the PN532 lists at most 2")
    for _ in range(count):
        if len(data) < pos + 5:
            raise FrameError("target data cut short")
        number, sens_res, sel_res, uid_len = data[pos], data[pos + 1:pos + 3], data[pos + 3], \
            data[pos + 4]
        pos += 5
        if uid_len not in UID_SIZES:
            raise FrameError(f"NFCID1 of {uid_len} bytes; ISO/IEC 14443-3 has 4, 7 or 10")
        uid = data[pos:pos + uid_len]
        if len(uid) != uid_len:
            raise FrameError("NFCID1 cut short")
        pos += uid_len
        ats = b""
        if sel_res & ISO14443_4 and pos < len(data):
            ats_len = data[pos]
            ats = data[pos:pos + ats_len]
            if ats_len == 0 or len(ats) != ats_len:
                raise FrameError("ATS cut short")
            pos += ats_len
        targets.append(TargetA(number, bytes(sens_res), sel_res, bytes(uid), bytes(ats)))
    return targets
