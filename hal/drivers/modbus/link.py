"""The blocking side: one RS-485 line driven by pyserial from one worker thread.

A transaction is: wait until the line has been quiet for t3.5 (throwing away whatever
stray bytes arrive meanwhile: a late answer to an earlier request, noise, another
master), send the request, read the answer within the response timeout, check it with
`rtu.parse_response`; retry what a retry can fix. Time here is the real, physical time
of the line (`time.monotonic`, injectable for tests), not the agent's clock.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import serial

from hal.drivers.modbus.rtu import ExceptionResponse, FrameError, NoResponse, ReadRequest, RtuError
from hal.drivers.modbus.rtu import char_time, parse_response, silent_interval

log = logging.getLogger(__name__)

# Exceptions that mean "ask again later", not "no".
RETRYABLE_EXCEPTIONS = (0x05, 0x06)  # acknowledge, server device busy


class LineBusy(RtuError):
    """Bytes kept arriving: the line never went quiet long enough to send."""


class Aborted(RtuError):
    """The driver is stopping; the transaction was given up between attempts."""


@dataclass
class LinkStats:
    requests: int = 0
    retries: int = 0
    stray_bytes: int = 0


class RtuLink:
    """Not thread-safe on purpose: the meter runs every call on one worker thread, which
    is what keeps a single transaction on the bus at a time."""

    def __init__(self, port: str, *, baudrate: int, parity: str, stopbits: int,
                 timeout_s: float, retries: int,
                 open_port: Callable[..., Any] = serial.serial_for_url,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.port_name = port
        self.baudrate, self.parity, self.stopbits = baudrate, parity, stopbits
        self.timeout_s = timeout_s
        self.retries = retries
        self.silence_s = silent_interval(baudrate, parity, stopbits)
        self.char_s = char_time(baudrate, parity, stopbits)
        self.stats = LinkStats()
        self._open_port = open_port
        self._monotonic = monotonic
        self._sleep = sleep
        self._port: Any = None
        self._last_activity = -1e9  # monotonic time of the last byte seen on the line

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def open(self) -> None:
        """Raises serial.SerialException / OSError when the port cannot be had."""
        if self._port is not None:
            return
        # exclusive: a second process (or a second meter configured on the same port)
        # gets a clear "busy" instead of interleaving frames with ours.
        self._port = self._open_port(
            self.port_name, baudrate=self.baudrate, bytesize=8, parity=self.parity,
            stopbits=self.stopbits, timeout=self.timeout_s, exclusive=True)
        self._last_activity = self._monotonic()

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass  # a port that is already gone is closed enough

    def transact(self, request: ReadRequest,
                 abort: threading.Event | None = None) -> tuple[int, ...]:
        """The registers `request` asks for, or the RtuError of the last attempt."""
        if self._port is None:
            raise serial.SerialException(f"{self.port_name} is not open")
        frame = request.encode()
        error: RtuError = NoResponse("no attempt made")
        attempts = 0
        for attempts in range(1, self.retries + 2):
            if abort is not None and abort.is_set():
                raise Aborted("stopped")
            if attempts > 1:
                self.stats.retries += 1
            self._wait_quiet()
            self._port.write(frame)
            self._port.flush()  # tcdrain: the timeout starts when the request is out
            self._last_activity = self._monotonic()
            self.stats.requests += 1
            try:
                return parse_response(request, self._receive(request))
            except ExceptionResponse as exc:
                error = exc
                if exc.code not in RETRYABLE_EXCEPTIONS:
                    break
            except RtuError as exc:
                error = exc
            log.debug("%s: attempt %d: %s", self.port_name, attempts, error)
        error.attempts = attempts
        raise error

    def _wait_quiet(self) -> None:
        """Return once the line has been silent for t3.5, discarding what arrives."""
        give_up = self._monotonic() + max(self.timeout_s, 10 * self.silence_s)
        while True:
            waiting = self._port.in_waiting
            if waiting:
                stray = self._port.read(waiting)
                self.stats.stray_bytes += len(stray)
                self._last_activity = self._monotonic()
                log.debug("%s: discarded %d stray bytes", self.port_name, len(stray))
            now = self._monotonic()
            quiet = now - self._last_activity
            if quiet >= self.silence_s:
                return
            if now >= give_up:
                raise LineBusy(f"line never quiet for {self.silence_s * 1000:.2f} ms "
                               f"within {self.timeout_s:g} s (another master? noise?)")
            self._sleep(self.silence_s - quiet)

    def _receive(self, request: ReadRequest) -> bytes:
        # The port's timeout (timeout_s, set at open, never changed: re-setting it costs
        # pyserial a termios round trip) bounds the wait for the meter to start answering.
        buffer = bytearray(self._port.read(2))
        if not buffer:
            raise NoResponse(f"no answer within {self.timeout_s:g} s")
        self._last_activity = self._monotonic()
        need = request.expected_size(buffer) if len(buffer) == 2 else 2
        # The rest needs its transmission time, plus slack for USB adapters that hand
        # bytes over in batches.
        deadline = self._monotonic() + request.response_size * self.char_s + self.timeout_s
        while len(buffer) < need and self._monotonic() < deadline:
            chunk = self._port.read(need - len(buffer))
            if chunk:
                buffer += chunk
                self._last_activity = self._monotonic()
                if len(buffer) >= 2:
                    need = request.expected_size(buffer)
        if len(buffer) < need:
            raise FrameError(f"answer cut short after {len(buffer)} of {need} bytes")
        return bytes(buffer)
