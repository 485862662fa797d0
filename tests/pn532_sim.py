"""A simulated NXP PN532 on a pseudo-terminal, written from the PN532 User Manual
(UM0701-02, firmware V1.6) and sharing no code with the driver (nothing from `hal/`): the
driver opens the pty's slave by a symlinked name, as it would open /dev/ttyS1, and this
module answers on the master side, from a thread of its own.

What it does, and where that comes from:
  - Frames (UM0701-02 "Normal information frame", "ACK frame", "NACK frame", "Error
    frame"): 00 00 FF LEN LCS TFI data DCS 00, LEN + LCS = 0 and TFI + data + DCS = 0 mod
    256, TFI D4 host -> PN532, D5 back, answer code = command code + 1. A good host frame
    is acknowledged with an ACK, then answered; a frame with a wrong checksum is ignored.
    A NACK from the host makes it send its last answer again; an ACK from the host aborts
    a command still running.
  - Power-up in LowVbat (AN10609 "PN532 C106 application note", "Low battery" mode, as
    libnfc's pn532_uart.c quotes it): it hears nothing until a 0x55 on the HSU wakes it,
    and SAMConfiguration (normal mode, 01) brings it to normal operation. Assumed: until
    then it ignores every other command.
  - GetFirmwareVersion (7.2.2): IC 0x32, version 1, revision 6, support 0x07.
  - RFConfiguration (7.3.1), item 5 MaxRetries: MxRtyATR, MxRtyPSL, MxRtyPassiveActivation;
    passive activation retries default to 0xFF, "infinite": InListPassiveTarget then waits
    for a card and answers only when one comes.
  - InListPassiveTarget (7.3.5), 106 kbps type A: NbTg, then per target Tg, SENS_RES (2),
    SEL_RES, NFCIDLength, NFCID1, and the ATS (its length byte first) for a target whose
    SEL_RES has bit 6 (0x20, ISO/IEC 14443-4). A MaxTg other than 1 or 2 is a syntax error:
    error frame.
  - An unknown command: error frame.

Test knobs: `card` (what lies on the antenna), `silent` (powered off: hears and says
nothing), `power_cycle()` (back, asleep, in LowVbat), `noise` (bytes sent before every
frame it sends), `corrupt` (this many next answers go out with a wrong DCS), `refuse_lists`
(this many next InListPassiveTarget are answered with an error frame), `vanish()`.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from dataclasses import dataclass
from pathlib import Path

TFI_HOST, TFI_PN532 = 0xD4, 0xD5
ACK = bytes([0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00])
NACK = bytes([0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00])
ERROR = bytes([0x00, 0x00, 0xFF, 0x01, 0xFF, 0x7F, 0x81, 0x00])
HSU_WAKE = 0x55
FIRMWARE = bytes([0x32, 0x01, 0x06, 0x07])      # IC PN532, V1.6, ISO14443A/B + ISO18092

GET_FIRMWARE_VERSION, SAM_CONFIGURATION = 0x02, 0x14
RF_CONFIGURATION, IN_LIST_PASSIVE_TARGET = 0x32, 0x4A
INFINITE = 0xFF


def information_frame(tfi: int, payload: bytes) -> bytes:
    """A normal information frame: preamble, start code, LEN, LCS, TFI, data, DCS, postamble."""
    length = 1 + len(payload)
    checksum = (tfi + sum(payload)) % 256
    return (bytes([0x00, 0x00, 0xFF, length, (256 - length) % 256, tfi]) + payload
            + bytes([(256 - checksum) % 256, 0x00]))


@dataclass(frozen=True)
class Card:
    """A type A card in the field. Default SENS_RES/SEL_RES: a MIFARE Classic 1K."""

    uid: bytes
    sens_res: bytes = b"\x00\x04"
    sel_res: int = 0x08
    ats: bytes = b""           # with its length byte first; sent when SEL_RES bit 6 is set

    def target_data(self, number: int) -> bytes:
        data = bytes([number]) + self.sens_res + bytes([self.sel_res, len(self.uid)]) + self.uid
        if self.sel_res & 0x20:
            data += self.ats
        return data


# -- golden frames -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Golden:
    name: str
    frame: bytes
    source: str


_CAPTURE = ('jinmi8.com/doc/12721/11042 "NFC pn532 read and write command format" '
            "(frames captured on a PN532 over its UART)")

GOLDEN: dict[str, Golden] = {g.name: g for g in (
    Golden("ACK", bytes.fromhex("0000FF00FF00"), "UM0701-02 ACK frame; " + _CAPTURE),
    Golden("NACK", bytes.fromhex("0000FFFF0000"), "UM0701-02 NACK frame"),
    Golden("error frame", bytes.fromhex("0000FF01FF7F8100"),
           "UM0701-02 Error frame (libnfc pn532_uart.c recognises it by LEN 01, LCS FF)"),
    Golden("wake-up and SAMConfiguration normal mode",
           bytes.fromhex("5555" + "00" * 14 + "FF03FDD414011700"),
           _CAPTURE + ': "Wake up: 5555000000000000 FF 03 FD ... D4 14 01 17 00"; the same '
           "24 bytes are written by several public PN532-on-UART programs"),
    Golden("SAMConfiguration answer", bytes.fromhex("0000FF02FED5151600"),
           _CAPTURE + ': "return information ... FF 02 FE D5 15 16 00"'),
    Golden("GetFirmwareVersion", bytes.fromhex("0000FF02FED4022A00"),
           "UM0701-02 7.2.2, framed per its Normal information frame"),
    Golden("GetFirmwareVersion answer: PN532 V1.6", bytes.fromhex("0000FF06FAD50332010607E800"),
           "UM0701-02 7.2.2 (IC 0x32, Ver, Rev, Support) for firmware V1.6 (the manual's)"),
    Golden("RFConfiguration MaxRetries: passive activation 2",
           bytes.fromhex("0000FF06FAD43205FF0102F300"),
           "UM0701-02 7.3.1, CfgItem 5 (MxRtyATR, MxRtyPSL, MxRtyPassiveActivation)"),
    Golden("InListPassiveTarget 1 target 106 kbps type A", bytes.fromhex("0000FF04FCD44A0100E100"),
           _CAPTURE + ': "Get UID: 00 FF 04 FC D4 4A 01 00 E1 00"'),
    Golden("InListPassiveTarget answer: 4-byte UID FB0EE20B",
           bytes.fromhex("0000FF0CF4D54B010100040804FB0EE20BD800"),
           _CAPTURE + ': "0000 FF 0C F4 D5 4B 01 01 00 04 08 04 FB 0E E2 0B D8 00"'),
    Golden("InListPassiveTarget answer: 7-byte UID 04453501DB2480 with ATS",
           bytes.fromhex("0000FF15EBD54B01010344200704453501DB24800675778102807D00"),
           "values of nfc-list(1) (libnfc) EXAMPLE, a DESFire: ATQA 03 44, UID 04 45 35 01 "
           "db 24 80, SAK 20, ATS 75 77 81 02 80; target data per UM0701-02 7.3.5"),
    Golden("InListPassiveTarget answer: no card", bytes.fromhex("0000FF03FDD54B00E000"),
           "UM0701-02 7.3.5: NbTg = 0"),
)}


# -- the device --------------------------------------------------------------------------------

class Pn532Sim:
    def __init__(self, link: Path, *, firmware: bytes = FIRMWARE) -> None:
        self.link = link
        self.firmware = firmware
        self.card: Card | None = None
        self.silent = False
        self.noise = b""
        self.corrupt = 0
        self.refuse_lists = 0
        self.commands: list[tuple[int, bytes]] = []   # (code, params) of every good frame
        self.nacks = 0                                # NACKs the host sent
        self.received = 0                             # bytes that reached it, heard or not
        self.woken = 0                                # wake-ups from LowVbat
        self._lock = threading.RLock()
        self._asleep = True                           # LowVbat until a 0x55
        self._configured = False                      # SAMConfiguration done
        self._retries = INFINITE                      # MxRtyPassiveActivation
        self._waiting_list: int | None = None         # an InListPassiveTarget's MaxTg
        self._last_answer = b""
        self._buf = bytearray()
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)     # no echo, no line editing before the driver opens it
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.ttyname(self.slave))
        self._stop_r, self._stop_w = os.pipe()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="pn532-sim", daemon=True)
        self._thread.start()

    # -- knobs -------------------------------------------------------------------------

    def present(self, card: Card | None) -> None:
        """Put a card on the antenna (None: take it away)."""
        with self._lock:
            self.card = card
            if card is not None and self._waiting_list is not None:
                self._waiting_list = None
                self._answer(IN_LIST_PASSIVE_TARGET, bytes([1]) + card.target_data(1))

    def power_cycle(self) -> None:
        """Power comes back: asleep in LowVbat, defaults restored, answering again."""
        with self._lock:
            self.silent = False
            self._asleep, self._configured = True, False
            self._retries, self._waiting_list = INFINITE, None
            self._buf.clear()

    def codes(self) -> list[int]:
        with self._lock:
            return [code for code, _ in self.commands]

    def vanish(self) -> None:
        """The device is unplugged: the pty goes away."""
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.write(self._stop_w, b"x")
        self._thread.join(5)
        for fd in (self.master, self.slave, self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- inside ------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            ready, _, _ = select.select([self.master, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            with self._lock:
                self.received += len(data)
                if not self.silent:
                    self._hear(data)

    def _hear(self, data: bytes) -> None:
        if self._asleep:
            wake = data.find(bytes([HSU_WAKE]))
            if wake < 0:
                return
            self._asleep = False
            self.woken += 1
            data = data[wake:]
        self._buf += data
        while True:
            start = self._buf.find(b"\x00\xff")
            if start < 0 or len(self._buf) < start + 4:
                if start < 0:
                    del self._buf[:-1]
                return
            del self._buf[:start]
            length, lcs = self._buf[2], self._buf[3]
            if (length, lcs) == (0x00, 0xFF):            # ACK from the host: abort
                del self._buf[:4]
                self._waiting_list = None
                continue
            if (length, lcs) == (0xFF, 0x00):            # NACK: the last answer again
                del self._buf[:4]
                self.nacks += 1
                if self._last_answer:
                    self._send(self._last_answer)
                continue
            if (length + lcs) % 256 != 0 or length < 2:
                del self._buf[:1]
                continue
            if len(self._buf) < 4 + length + 2:
                return
            body = bytes(self._buf[4:4 + length])
            dcs = self._buf[4 + length]
            if (sum(body) + dcs) % 256 != 0 or body[0] != TFI_HOST:
                del self._buf[:1]                        # not a good frame: ignore it
                continue
            del self._buf[:4 + length + 2]
            self._command(body[1], body[2:])

    def _command(self, code: int, params: bytes) -> None:
        if not self._configured and code != SAM_CONFIGURATION:
            return                                       # LowVbat: SAMConfiguration only
        self.commands.append((code, params))
        self._send(ACK)
        if code == SAM_CONFIGURATION:
            if not params or params[0] not in (1, 2, 3, 4):
                self._error()
                return
            self._configured = True
            self._answer(code, b"")
        elif code == GET_FIRMWARE_VERSION:
            self._answer(code, self.firmware)
        elif code == RF_CONFIGURATION:
            if params[:1] == b"\x05":
                if len(params) != 4:
                    self._error()
                    return
                self._retries = params[3]
            self._answer(code, b"")
        elif code == IN_LIST_PASSIVE_TARGET:
            self._list(params)
        else:
            self._error()

    def _list(self, params: bytes) -> None:
        if len(params) < 2 or params[0] not in (1, 2):
            self._error()
            return
        if self.refuse_lists:
            self.refuse_lists -= 1
            self._error()
            return
        if params[1] == 0x00 and self.card is not None:
            self._answer(IN_LIST_PASSIVE_TARGET, bytes([1]) + self.card.target_data(1))
        elif params[1] == 0x00 and self._retries == INFINITE:
            self._waiting_list = params[0]               # until a card comes
        else:
            self._answer(IN_LIST_PASSIVE_TARGET, bytes([0]))

    def _answer(self, code: int, data: bytes) -> None:
        frame = information_frame(TFI_PN532, bytes([code + 1]) + data)
        self._last_answer = frame
        if self.corrupt:
            self.corrupt -= 1
            frame = frame[:-2] + bytes([(frame[-2] + 1) % 256, 0x00])   # wrong DCS
        self._send(frame)

    def _error(self) -> None:
        self._last_answer = ERROR
        self._send(ERROR)

    def _send(self, frame: bytes) -> None:
        os.write(self.master, self.noise + frame)
