"""Pn532Reader: 13.56 MHz cards (ISO/IEC 14443 type A: MIFARE and most charging cards)
through an NXP PN532 on a UART (its HSU, 115200 8N1 by default), with pyserial.

The PN532 answers commands; it does not report cards by itself. So the reader wakes it
(HSU wake-up, then SAMConfiguration in normal mode: the PN532 C106 starts in LowVbat and
SAMConfiguration is what leaves it), checks it is a PN532 (GetFirmwareVersion), bounds the
retries of InListPassiveTarget (RFConfiguration item 5; by default the PN532 waits forever
for a card and would never answer an empty field), then polls with InListPassiveTarget
(one target, 106 kbps type A) every `poll_s`. Each command is acknowledged (ACK) and then
answered; a corrupted answer is asked for again with a NACK.

A card is reported as IdToken type ISO14443 (the `id_token_type` setting can change it)
with its NFCID1 (UID, 4, 7 or 10 bytes) in uppercase hex; a card held on the reader is one
presentation (hal.debounce.RepeatFilter: it counts again after `repeat_s` away). Random
UIDs (4 bytes starting with 08h: phones, many bank cards) change at every read and name
nobody, so they are skipped rather than reported as a new card every poll.

Blocking pyserial reads run in a thread of their own; writes go through a worker thread;
every wait with a time in it (answers, polls, retries) is on the injected clock. A PN532
that stops answering is a fault; it is woken again every `retry_s` and the fault clears
when it answers. A port that fails or vanishes is a fault too, and is reopened.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Mapping

import serial

from hal.api import ID_TOKEN_TYPES, Clock, HalConfigError
from hal.drivers.serial_reader import SerialCardReader, seconds_setting
from hal.drivers.pn532.frames import (
    ACK, NACK, PN532_TFI, WAKEUP, Ack, Broken, Command, ErrorFrame, Event, Firmware, FrameError,
    FrameParser, Information, TargetA, command_frame, parse_targets_a)

log = logging.getLogger(__name__)

PN532_IC = 0x32
SAM_NORMAL = bytes([0x01])                 # SAMConfiguration: normal mode (no SAM)
# RFConfiguration item 5 (MaxRetries): ATR_REQ retries (default), PSL_REQ retries
# (default), passive activation retries: 2 (3 tries), so that InListPassiveTarget over an
# empty field is answered (NbTg 0) instead of waiting for a card (the default, 0xFF).
MAX_RETRIES = bytes([0x05, 0xFF, 0x01, 0x02])
LIST_ONE_106A = bytes([0x01, 0x00])        # InListPassiveTarget: MaxTg 1, BrTy 106 kbps A
NACKS = 3                                  # corrupted answers asked for again, per command
# A frame with a good length checksum but a bad end: most likely our answer, damaged (a
# bad length checksum after 00 FF is as likely to be noise, and is not asked for again).
DAMAGED = ("data checksum", "postamble")
ATTEMPTS = 3                               # sends of a command before "no answer"


class NoAnswer(Exception):
    """The PN532 did not acknowledge or answer a command in time."""


class Refused(Exception):
    """The PN532 answered a command with an error frame or a malformed answer."""


# -- settings -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pn532Settings:
    port: str
    baudrate: int = 115200
    poll_s: float = 0.25         # between two InListPassiveTarget
    repeat_s: float = 2.0        # a held card is one presentation; again after this long away
    timeout_s: float = 1.0       # for the ACK, then again for the answer, of each command
    retry_s: float = 5.0         # between attempts to open the port or wake a silent PN532
    id_token_type: str = "ISO14443"

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> Pn532Settings:
        """Types and ranges only; whether the port exists is check_config's business."""
        known = set(cls.__dataclass_fields__)
        for key in settings:
            if key not in known:
                raise HalConfigError(key, f"unknown setting; known: {', '.join(sorted(known))}")
        port = settings.get("port")
        if not isinstance(port, str) or not port:
            raise HalConfigError("port", "required: the PN532's serial device, e.g. /dev/ttyS1")
        baudrate = settings.get("baudrate", cls.baudrate)
        if type(baudrate) is not int or baudrate <= 0:
            raise HalConfigError("baudrate", f"must be a positive integer, got {baudrate!r}")
        token_type = settings.get("id_token_type", cls.id_token_type)
        if token_type not in ID_TOKEN_TYPES:
            raise HalConfigError("id_token_type",
                                 f"must be an OCPP IdTokenEnumType ({', '.join(ID_TOKEN_TYPES)}), "
                                 f"got {token_type!r}")
        return cls(port=port, baudrate=baudrate,
                   poll_s=seconds_setting(settings, "poll_s", cls.poll_s, zero_ok=False),
                   repeat_s=seconds_setting(settings, "repeat_s", cls.repeat_s, zero_ok=True),
                   timeout_s=seconds_setting(settings, "timeout_s", cls.timeout_s, zero_ok=False),
                   retry_s=seconds_setting(settings, "retry_s", cls.retry_s, zero_ok=False),
                   id_token_type=token_type)


# -- the device -----------------------------------------------------------------------------

class Pn532Reader(SerialCardReader):
    settings_type = Pn532Settings

    def __init__(self, settings: Pn532Settings, clock: Clock) -> None:
        super().__init__(settings, clock)
        self.firmware: Firmware | None = None   # set while the PN532 is awake and answering
        self.polls = 0                    # InListPassiveTarget rounds done (tests wait on it)
        self._frames: asyncio.Queue[Event] = asyncio.Queue()
        self._random_seen = False

    # -- the port -------------------------------------------------------------------------

    async def _run(self) -> None:
        name = self.settings.port
        while True:
            try:
                port = self._open()
            except (serial.SerialException, OSError, ValueError) as exc:
                self._fail(f"PN532 reader: cannot open {name}: {exc}")
            else:
                error = await self._session(port)
                self._fail(f"PN532 reader on {name} failed: {error}")
            await self._clock.sleep(self.settings.retry_s)

    async def _session(self, port: serial.Serial) -> str:
        """Read `port` in a thread and talk to the PN532 until the port fails (the error
        text) or we are cancelled."""
        self._frames = asyncio.Queue()
        async with self.reading(port, FrameParser().feed, self._frames.put_nowait,
                                f"pn532-{self.settings.port}") as failed:
            talk = asyncio.ensure_future(self._talk(port))
            try:
                await asyncio.wait({talk, failed}, return_when=asyncio.FIRST_COMPLETED)
                if talk.done():                    # a bug, not the device: start afresh
                    log.error("PN532 reader stopped", exc_info=talk.exception())
                    return f"reader stopped: {talk.exception()!r}"
                return failed.result()
            finally:
                talk.cancel()
                await asyncio.gather(talk, return_exceptions=True)
                self.firmware = None

    # -- the conversation -----------------------------------------------------------------

    async def _talk(self, port: serial.Serial) -> None:
        while True:
            if self.firmware is None:
                try:
                    self.firmware = await self._wake(port)
                except NoAnswer as exc:
                    self._fail(f"PN532 reader on {self.settings.port} does not answer ({exc})")
                    await self._clock.sleep(self.settings.retry_s)
                    continue
                except Refused as exc:
                    self._fail(f"PN532 reader on {self.settings.port}: {exc}")
                    await self._clock.sleep(self.settings.retry_s)
                    continue
                if self.fault is not None:
                    log.info("PN532 reader on %s answers again", self.settings.port)
                log.info("PN532 on %s: %s", self.settings.port, self.firmware)
                # The repeat filter is kept: a card still lying on the reader after a
                # glitch is not presented again (to the agent that could mean "stop").
                self._set_fault(None)
            try:
                for target in await self._list(port):
                    self._sighted(target)
            except NoAnswer as exc:
                self.firmware = None        # wake it again before the next poll
                self._fail(f"PN532 reader on {self.settings.port} does not answer ({exc})")
                await self._clock.sleep(self.settings.retry_s)
                continue
            except Refused as exc:
                # One poll lost (a card leaving mid-read can do it); the next one decides.
                log.debug("PN532 poll: %s", exc)
            self.polls += 1
            await self._clock.sleep(self.settings.poll_s)

    async def _wake(self, port: serial.Serial) -> Firmware:
        await self._command(port, Command.SAM_CONFIGURATION, SAM_NORMAL, preface=WAKEUP)
        try:
            firmware = Firmware.parse(await self._command(port, Command.GET_FIRMWARE_VERSION))
        except FrameError as exc:
            raise Refused(f"GetFirmwareVersion answer: {exc}") from None
        if firmware.ic != PN532_IC:
            raise Refused(f"not a PN532 ({firmware})")
        await self._command(port, Command.RF_CONFIGURATION, MAX_RETRIES)
        return firmware

    async def _list(self, port: serial.Serial) -> list[TargetA]:
        data = await self._command(port, Command.IN_LIST_PASSIVE_TARGET, LIST_ONE_106A)
        try:
            return parse_targets_a(data)
        except FrameError as exc:
            raise Refused(f"InListPassiveTarget answer: {exc}") from None

    async def _command(self, port: serial.Serial, code: Command, params: bytes = b"",
                       *, preface: bytes = b"") -> bytes:
        """Send one command; its answer's data (after the answer code). A command left
        unanswered is sent again (after an ACK, which aborts whatever the PN532 was still
        doing), ATTEMPTS times in all: one frame lost to noise is not a broken reader.
        NoAnswer when none was answered; Refused for an error frame."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._exchange(port, code, params,
                                            preface if attempt == 1 else ACK + preface)
            except NoAnswer:
                if attempt == ATTEMPTS:
                    raise
                log.debug("PN532: %s unanswered, sending it again", code.name)
        raise AssertionError("unreachable")

    async def _exchange(self, port: serial.Serial, code: Command, params: bytes,
                        preface: bytes) -> bytes:
        """One command, one answer. NoAnswer when no ACK came within timeout_s, or no answer
        within timeout_s after it; Refused for an error frame. A corrupted answer is asked
        for again with a NACK."""
        while not self._frames.empty():        # what is left of an earlier exchange
            self._frames.get_nowait()
        timer = self._timer()                  # armed before writing: the ACK's deadline
        acked, nacks = False, 0
        try:
            await asyncio.to_thread(port.write, preface + command_frame(code, params))
            while True:
                event = await self._next(timer)
                if event is None:
                    raise NoAnswer(f"no answer to {code.name}" if acked
                                   else f"no ACK to {code.name}")
                if isinstance(event, Ack) and not acked:
                    acked = True
                    timer.cancel()
                    timer = self._timer()      # now the answer's deadline
                elif isinstance(event, Information):
                    # An answer whose ACK was lost in noise still is the answer.
                    if event.tfi == PN532_TFI and event.code == code + 1:
                        return event.data
                elif isinstance(event, ErrorFrame):
                    raise Refused(f"{code.name} answered with an error frame")
                elif (isinstance(event, Broken) and event.reason in DAMAGED and acked
                      and nacks < NACKS):
                    nacks += 1
                    await asyncio.to_thread(port.write, NACK)
        finally:
            timer.cancel()

    def _timer(self) -> asyncio.Future[None]:
        return asyncio.ensure_future(self._clock.sleep(self.settings.timeout_s))

    async def _next(self, timer: asyncio.Future[None]) -> Event | None:
        """The next frame from the PN532, or None once `timer` has run out."""
        get = asyncio.ensure_future(self._frames.get())
        try:
            await asyncio.wait({get, timer}, return_when=asyncio.FIRST_COMPLETED)
            return get.result() if get.done() else None
        finally:
            if not get.done():
                get.cancel()       # a getter left behind would swallow the next frame

    # -- what it read ---------------------------------------------------------------------

    def _sighted(self, target: TargetA) -> None:
        if target.random_uid:
            if not self._random_seen:
                log.info("PN532: ignoring a card with a random UID (%s; a phone or a bank "
                         "card): it is different at every read", target.uid_hex)
                self._random_seen = True
            return
        self._offer(target.uid_hex)

    def _fail(self, text: str, retry_s: float | None = None) -> None:
        super()._fail(text, self.settings.retry_s if retry_s is None else retry_s)
