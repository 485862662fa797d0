"""What every card reader on a serial port shares (RDM6300, PN532): the port read in a
thread, the cards handed over debounced through a bounded queue, the lifecycle.

A driver subclasses `SerialCardReader`, names its settings class, and writes only what
its protocol needs: the session on an open port (`reading` gives it the port's bytes as
parsed items on the event loop) and the retry loop around it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import threading
from typing import Any, AsyncIterator, Callable, ClassVar, Iterable, Mapping

import serial

from hal.api import Clock, HalConfigError, IdTokenReader, PresentedToken
from hal.debounce import RepeatFilter

log = logging.getLogger(__name__)

TOKEN_BUFFER = 16   # cards presented and not yet read by the agent; the oldest goes first


def seconds_setting(settings: Mapping[str, Any], key: str, default: float, *,
                    zero_ok: bool) -> float:
    """A duration from the driver's config table: finite, not negative (nor zero unless
    `zero_ok`)."""
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or (
            value < 0 or (value == 0 and not zero_ok) or value == float("inf")):
        bound = "zero or more" if zero_ok else "more than zero"
        raise HalConfigError(key, f"must be a number of seconds, {bound}, got {value!r}")
    return float(value)


class SerialCardReader(IdTokenReader):
    """The common part of a serial card reader; `settings_type` has `parse(mapping)` and
    the fields port, baudrate, repeat_s and id_token_type."""

    settings_type: ClassVar[Any]

    def __init__(self, settings: Any, clock: Clock) -> None:
        super().__init__()
        self.settings = settings
        self.port_open = False      # True while the port is open and being read
        self._clock = clock
        self._repeats = RepeatFilter(settings.repeat_s)
        self._queue: asyncio.Queue[PresentedToken] = asyncio.Queue(TOKEN_BUFFER)
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def check_config(cls, settings: Mapping[str, Any]) -> None:
        parsed = cls.settings_type.parse(settings)
        if not os.path.exists(parsed.port):
            raise HalConfigError("port", f"{parsed.port} does not exist; is the reader plugged "
                                         "in, and is this its device name?")

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, clock: Clock) -> Any:
        return cls(cls.settings_type.parse(settings), clock)

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

    @abc.abstractmethod
    async def _run(self) -> None:
        """The reader's own loop: open the port, read cards (each to `_offer`), and on an
        error `_fail` and try again; each reader (RDM6300, PN532) speaks its protocol."""

    def _open(self) -> serial.Serial:
        # Opening is quick (pyserial opens non-blocking), so it stays on the loop.
        return serial.Serial(self.settings.port, self.settings.baudrate, timeout=None)

    def _offer(self, uid: str) -> None:
        """A card read: to the agent unless it is the same card still held there."""
        if not self._repeats.new(uid, self._clock.monotonic()):
            return
        if self._queue.full():  # nobody reads: the oldest card is the least interesting
            self._queue.get_nowait()
        self._queue.put_nowait(PresentedToken(uid=uid, type=self.settings.id_token_type))

    def _fail(self, text: str, retry_s: float) -> None:
        if text != self.fault:
            log.warning("%s (retrying every %g s)", text, retry_s)
        self._set_fault(text)

    @contextlib.asynccontextmanager
    async def reading(self, port: serial.Serial, feed: Callable[[bytes], Iterable[Any]],
                      deliver: Callable[[Any], None],
                      thread_name: str) -> AsyncIterator[asyncio.Future[str]]:
        """Read `port` in a thread: every item `feed` parses out of the bytes goes to
        `deliver` on the event loop. Yields a future that gets the error text once the
        port fails; on leaving, the thread is stopped and the port closed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()
        stop = threading.Event()
        thread = threading.Thread(target=_read_loop,
                                  args=(port, stop, loop, done, feed, deliver),
                                  name=thread_name, daemon=True)
        self.port_open = True
        thread.start()
        try:
            yield done
        finally:
            self.port_open = False
            stop.set()
            port.cancel_read()   # wakes the thread's select(); it sees `stop` and returns
            await asyncio.to_thread(thread.join, 2.0)
            port.close()


def _read_loop(port: serial.Serial, stop: threading.Event, loop: asyncio.AbstractEventLoop,
               done: asyncio.Future[str], feed: Callable[[bytes], Iterable[Any]],
               deliver: Callable[[Any], None]) -> None:
    error = "closed"
    try:
        while not stop.is_set():
            data = port.read(1)  # blocks until a byte arrives or cancel_read()
            if data:
                data += port.read(port.in_waiting)
            for item in feed(data):
                _call_soon(loop, deliver, item)
    except (serial.SerialException, OSError) as exc:
        error = str(exc) or type(exc).__name__
    _call_soon(loop, _resolve, done, error)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Any, *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:  # the loop closed under a thread still draining: nothing to tell
        pass


def _resolve(done: asyncio.Future[str], error: str) -> None:
    if not done.done():
        done.set_result(error)
