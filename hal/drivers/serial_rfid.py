"""RFID reader on a serial line (pyserial), for the 125 kHz RDM6300-style modules.

Such a module sends, for each card it sees, one 14-byte ASCII frame at 9600 8N1:

    STX(0x02)  10 hex digits  2 hex digits  ETX(0x03)
               version byte   checksum: XOR of the 5 bytes
               + 4 data bytes

and repeats it for as long as the card lies on the antenna.

Token uid: all 10 hex digits, uppercase (e.g. "1A0032F1C5"). That is the card's whole
40-bit EM4100 id; the 4 data bytes alone are not unique across the version/customer
byte, and an id that two cards share would authorize the wrong driver. OCPP type: "Local"
by default, because EM4100 is neither ISO 14443 nor ISO 15693 and "Local" is the
IdTokenEnumType for an id the CSMS knows only from the station's own list; a CSMS that
files these cards otherwise can be matched with the `id_token_type` setting.

Blocking pyserial reads run in a thread of their own, one per open port; everything with
a time in it (repeat suppression, reopen attempts) runs on the event loop and the
injectable clock. A port that fails or vanishes (USB reader unplugged) is a fault, and the
reader tries to reopen it every `reopen_s` until it is back.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from functools import reduce
from typing import Any, Mapping

import serial

from hal.api import ID_TOKEN_TYPES, HalConfigError
from hal.drivers.serial_reader import SerialCardReader, seconds_setting

log = logging.getLogger(__name__)

STX, ETX = 0x02, 0x03
FRAME_LEN = 14            # STX + 10 id digits + 2 checksum digits + ETX
_HEX = frozenset(b"0123456789ABCDEFabcdef")
PROTOCOLS = ("rdm6300",)
# Cards presented while nobody reads tokens(): keep the newest few, like a reader's buffer.


# -- frames (sans-I/O) ------------------------------------------------------------------------

class _Need(enum.Enum):
    MORE = "more"       # a frame may still complete here: wait for bytes
    BROKEN = "broken"   # no frame starts at this STX


def _examine(buf: bytearray) -> str | _Need:
    """What the bytes starting with an STX hold: a uid, or why not (yet)."""
    body = buf[1:FRAME_LEN - 1]
    if any(b not in _HEX for b in body):
        return _Need.BROKEN          # early: a frame cut short shows a non-digit here
    if len(buf) < FRAME_LEN:
        return _Need.MORE
    if buf[FRAME_LEN - 1] != ETX:
        return _Need.BROKEN
    raw = bytes.fromhex(body.decode("ascii"))
    if reduce(lambda a, b: a ^ b, raw[:5]) != raw[5]:
        return _Need.BROKEN
    return body[:10].decode("ascii").upper()


class Rdm6300Parser:
    """Bytes in, card uids out; never raises, never holds more than one frame's bytes.

    On a broken frame it drops only the STX it started at and searches again from the
    next byte, so a good frame that began inside the broken one (a frame cut short by
    noise, then sent again whole) is still found.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        found: list[str] = []
        while True:
            start = self._buf.find(STX)
            if start < 0:
                self._buf.clear()
                return found
            del self._buf[:start]
            verdict = _examine(self._buf)
            if isinstance(verdict, str):
                found.append(verdict)
                del self._buf[:FRAME_LEN]
            elif verdict is _Need.BROKEN:
                del self._buf[:1]
            else:
                return found


def rdm6300_frame(uid: str) -> bytes:
    """The frame a reader sends for this 10-digit uid (tests and bench tools use it)."""
    raw = bytes.fromhex(uid)
    if len(raw) != 5:
        raise ValueError(f"an RDM6300 uid is 10 hex digits, got {uid!r}")
    check = reduce(lambda a, b: a ^ b, raw)
    return bytes([STX]) + f"{uid.upper()}{check:02X}".encode("ascii") + bytes([ETX])


# -- settings ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SerialRfidSettings:
    port: str
    baudrate: int = 9600
    protocol: str = "rdm6300"
    repeat_s: float = 2.0        # a held card is one presentation; again after this long away
    id_token_type: str = "Local"
    reopen_s: float = 5.0        # between attempts to open a failed or vanished port

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> SerialRfidSettings:
        """Types and ranges only; whether the port exists is check_config's business."""
        known = set(cls.__dataclass_fields__)
        for key in settings:
            if key not in known:
                raise HalConfigError(key, f"unknown setting; known: {', '.join(sorted(known))}")
        port = settings.get("port")
        if not isinstance(port, str) or not port:
            raise HalConfigError("port", "required: the reader's serial device, e.g. /dev/ttyUSB0")
        baudrate = settings.get("baudrate", cls.baudrate)
        if type(baudrate) is not int or baudrate <= 0:
            raise HalConfigError("baudrate", f"must be a positive integer, got {baudrate!r}")
        protocol = settings.get("protocol", cls.protocol)
        if protocol not in PROTOCOLS:
            raise HalConfigError("protocol", f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        token_type = settings.get("id_token_type", cls.id_token_type)
        if token_type not in ID_TOKEN_TYPES:
            raise HalConfigError("id_token_type",
                                 f"must be an OCPP IdTokenEnumType ({', '.join(ID_TOKEN_TYPES)}), "
                                 f"got {token_type!r}")
        return cls(port=port, baudrate=baudrate, protocol=protocol,
                   repeat_s=seconds_setting(settings, "repeat_s", cls.repeat_s, zero_ok=True),
                   id_token_type=token_type,
                   reopen_s=seconds_setting(settings, "reopen_s", cls.reopen_s, zero_ok=False))


# -- the device -------------------------------------------------------------------------------

class SerialRfidReader(SerialCardReader):
    """Cards from a serial RFID module; the same card held still is reported once."""

    settings_type = SerialRfidSettings

    async def _run(self) -> None:
        port_name = self.settings.port
        while True:
            try:
                port = self._open()
            except (serial.SerialException, OSError, ValueError) as exc:
                self._fail(f"RFID reader: cannot open {port_name}: {exc}", self.settings.reopen_s)
            else:
                if self.fault is not None:
                    log.info("RFID reader on %s is back", port_name)
                self._set_fault(None)
                self._repeats.clear()
                parser = Rdm6300Parser()
                async with self.reading(port, parser.feed, self._offer,
                                        f"rfid-{port_name}") as failed:
                    error = await failed
                self._fail(f"RFID reader on {port_name} failed: {error}", self.settings.reopen_s)
            await self._clock.sleep(self.settings.reopen_s)
