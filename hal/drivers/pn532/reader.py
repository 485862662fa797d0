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
import os
import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator, Mapping

import serial

from hal.api import ID_TOKEN_TYPES, Clock, HalConfigError, IdTokenReader, PresentedToken
from hal.debounce import RepeatFilter
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
TOKEN_BUFFER = 16                          # cards kept while nobody reads tokens()


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
                   poll_s=_seconds(settings, "poll_s", cls.poll_s, zero_ok=False),
                   repeat_s=_seconds(settings, "repeat_s", cls.repeat_s, zero_ok=True),
                   timeout_s=_seconds(settings, "timeout_s", cls.timeout_s, zero_ok=False),
                   retry_s=_seconds(settings, "retry_s", cls.retry_s, zero_ok=False),
                   id_token_type=token_type)


def _seconds(settings: Mapping[str, Any], key: str, default: float, *, zero_ok: bool) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or (
            value < 0 or (value == 0 and not zero_ok) or value == float("inf")):
        bound = "zero or more" if zero_ok else "more than zero"
        raise HalConfigError(key, f"must be a number of seconds, {bound}, got {value!r}")
    return float(value)


# -- the device -----------------------------------------------------------------------------

class Pn532Reader(IdTokenReader):
    def __init__(self, settings: Pn532Settings, clock: Clock) -> None:
        super().__init__()
        self.settings = settings
        self.port_open = False            # the port is open and being read
        self.firmware: Firmware | None = None   # set while the PN532 is awake and answering
        self.polls = 0                    # InListPassiveTarget rounds done (tests wait on it)
        self._clock = clock
        self._repeats = RepeatFilter(settings.repeat_s)
        self._queue: asyncio.Queue[PresentedToken] = asyncio.Queue(TOKEN_BUFFER)
        self._frames: asyncio.Queue[Event] = asyncio.Queue()
        self._random_seen = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def check_config(cls, settings: Mapping[str, Any]) -> None:
        parsed = Pn532Settings.parse(settings)
        if not os.path.exists(parsed.port):
            raise HalConfigError("port", f"{parsed.port} does not exist; is the reader plugged "
                                         "in, and is this its device name?")

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, clock: Clock) -> Pn532Reader:
        return cls(Pn532Settings.parse(settings), clock)

    async def tokens(self) -> AsyncIterator[PresentedToken]:
        while True:
            yield await self._queue.get()

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- the port -------------------------------------------------------------------------

    async def _run(self) -> None:
        name = self.settings.port
        while True:
            try:
                # Opening is quick (pyserial opens non-blocking), so it stays on the loop.
                port = serial.Serial(name, self.settings.baudrate, timeout=None)
            except (serial.SerialException, OSError, ValueError) as exc:
                self._fail(f"PN532 reader: cannot open {name}: {exc}")
            else:
                error = await self._session(port)
                self._fail(f"PN532 reader on {name} failed: {error}")
            await self._clock.sleep(self.settings.retry_s)

    async def _session(self, port: serial.Serial) -> str:
        """Read `port` in a thread and talk to the PN532 until the port fails (the error
        text) or we are cancelled."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()
        stop = threading.Event()
        self._frames = asyncio.Queue()
        thread = threading.Thread(target=self._read_loop, args=(port, stop, loop, done),
                                  name=f"pn532-{self.settings.port}", daemon=True)
        self.port_open = True
        thread.start()
        talk = asyncio.ensure_future(self._talk(port))
        try:
            await asyncio.wait({talk, done}, return_when=asyncio.FIRST_COMPLETED)
            if talk.done():                    # a bug, not the device: start afresh
                log.error("PN532 reader stopped", exc_info=talk.exception())
                return f"reader stopped: {talk.exception()!r}"
            return done.result()
        finally:
            talk.cancel()
            await asyncio.gather(talk, return_exceptions=True)
            self.port_open = False
            self.firmware = None
            stop.set()
            port.cancel_read()   # wakes the thread's select(); it sees `stop` and returns
            await asyncio.to_thread(thread.join, 2.0)
            port.close()

    def _read_loop(self, port: serial.Serial, stop: threading.Event,
                   loop: asyncio.AbstractEventLoop, done: asyncio.Future[str]) -> None:
        parser = FrameParser()
        frames = self._frames
        error = "closed"
        try:
            while not stop.is_set():
                data = port.read(1)  # blocks until a byte arrives or cancel_read()
                if data:
                    data += port.read(port.in_waiting)
                for event in parser.feed(data):
                    _call_soon(loop, frames.put_nowait, event)
        except (serial.SerialException, OSError) as exc:
            error = str(exc) or type(exc).__name__
        _call_soon(loop, _resolve, done, error)

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
        uid = target.uid_hex
        if not self._repeats.new(uid, self._clock.monotonic()):
            return
        if self._queue.full():  # nobody reads: the oldest card is the least interesting
            self._queue.get_nowait()
        self._queue.put_nowait(PresentedToken(uid=uid, type=self.settings.id_token_type))

    def _fail(self, text: str) -> None:
        if text != self.fault:
            log.warning("%s (retrying every %g s)", text, self.settings.retry_s)
        self._set_fault(text)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop closed under a thread still draining: nothing to tell
        pass


def _resolve(done: asyncio.Future[str], error: str) -> None:
    if not done.done():
        done.set_result(error)
