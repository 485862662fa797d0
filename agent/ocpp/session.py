"""One OCPP-J conversation over one open WebSocket: the thin asyncio layer on top of rpc.py.

The station sends one CALL at a time and waits for its answer or MessageTimeout (Part 4,
4.1.1). CALLs from the CSMS are answered concurrently, in whatever order their handlers
finish. Every incoming CALL is validated before a handler sees it; a failing handler
becomes an InternalError for that call, never a dead daemon.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from agent.clock import Clock, wait_for
from agent.ocpp import rpc
from agent.ocpp.validation import PayloadError, is_known_action, validate

log = logging.getLogger(__name__)

Payload = dict[str, Any]
Handler = Callable[[Payload], Awaitable["Payload | Reply"]]

# A frame larger than this is answered with FormatViolation without being parsed. The
# websocket layer admits a little more so that such a frame can still be answered.
MAX_FRAME_BYTES = 1 << 20


class Connection(Protocol):
    """What the session needs of a WebSocket (transport.py adapts websockets to it)."""

    async def send(self, text: str) -> None: ...
    async def recv(self) -> str | bytes: ...
    async def close(self) -> None: ...


class ConnectionClosed(Exception):
    """The WebSocket is gone; raised by Connection.recv/send."""


class OcppError(Exception):
    """Raised by a handler to answer with a specific CALLERROR."""

    def __init__(self, code: str, description: str = "", details: Payload | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details or {}


class CallFailed(Exception):
    """Our CALL got no usable answer: timeout, CALLERROR, invalid response or lost link."""


class CallTimeout(CallFailed):
    pass


class CallErrorReceived(CallFailed):
    def __init__(self, error: rpc.CallError) -> None:
        super().__init__(f"{error.code}: {error.description}")
        self.error = error


class NotConnected(CallFailed):
    pass


@dataclass
class Reply:
    """A handler's answer plus work to start once that answer is on the wire
    (e.g. NotifyReport pages after GetBaseReport, a restart after Reset)."""

    payload: Payload
    then: Callable[[], Awaitable[None]] | None = None


@dataclass
class Route:
    handler: Handler
    # Largest request (in bytes of JSON) the handler accepts, e.g. BytesPerMessage.
    max_bytes: Callable[[], int] | None = None


class Router:
    """Action name -> handler; blocks register here and know nothing of sessions."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        # Consulted before any handler: returns a CallError code to refuse all CSMS
        # calls (e.g. SecurityError while BootNotification is Rejected), or None.
        self.gate: Callable[[str], str | None] = lambda action: None
        # Told of every frame from the CSMS that is not valid OCPP (the security event
        # InvalidMessages); the description is for the operator.
        self.on_invalid: Callable[[str], None] = lambda description: None

    def register(self, action: str, handler: Handler,
                 max_bytes: Callable[[], int] | None = None) -> None:
        if action in self.routes:
            raise ValueError(f"{action} registered twice")
        self.routes[action] = Route(handler, max_bytes)


class Session:
    def __init__(self, conn: Connection, router: Router, clock: Clock,
                 message_timeout: Callable[[], float],
                 on_frame: Callable[[str, str], None] | None = None) -> None:
        self._conn = conn
        self._router = router
        self._clock = clock
        self._message_timeout = message_timeout
        self._on_frame = on_frame
        self._send_lock = asyncio.Lock()  # one outgoing CALL at a time
        self._pending: tuple[str, str, asyncio.Future[rpc.CallResult | rpc.CallError]] | None = None
        self._ids = itertools.count(1)
        self._prefix = os.urandom(4).hex()
        self._handling: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self.last_call_sent = clock.monotonic()
        self.last_activity = clock.monotonic()  # any frame either way; keep-alive uses it

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def _next_id(self) -> str:
        # Unique per connection (Part 4, 4.1.4); the random prefix keeps ids from
        # repeating across reconnects too, which makes CSMS logs unambiguous.
        return f"{self._prefix}{next(self._ids)}"

    async def call(self, action: str, payload: Payload, timeout: float | None = None) -> Payload:
        """Send a CALL and return the CALLRESULT payload, or raise CallFailed."""
        try:
            validate(action, "request", payload)
        except PayloadError as exc:
            # Our own bug; an invalid CALL would only earn a CALLERROR from the CSMS.
            log.error("refusing to send an invalid %s: %s", action, exc)
            raise CallFailed(f"{action}: invalid request built: {exc}") from None
        async with self._send_lock:
            if self.closed:
                raise NotConnected("connection closed")
            message_id = self._next_id()
            fut: asyncio.Future[rpc.CallResult | rpc.CallError] = (
                asyncio.get_running_loop().create_future())
            self._pending = (message_id, action, fut)
            try:
                try:
                    await self._send(rpc.Call(message_id, action, payload))
                except ConnectionClosed:
                    # Closed between our check and the send: the message simply waits
                    # for the next connection, like any other call on a lost link. The
                    # session counts as closed from here, or a caller that waits for a
                    # connection before retrying would spin until the reader notices.
                    self._closed.set()
                    raise NotConnected(f"{action}: connection closed while sending") from None
                self.last_call_sent = self._clock.monotonic()
                limit = self._message_timeout() if timeout is None else timeout
                try:
                    answer = await wait_for(self._clock, _race(fut, self._closed), limit)
                except TimeoutError:
                    raise CallTimeout(f"{action}: no answer within {limit:g} s") from None
            finally:
                self._pending = None
        if answer is None:
            raise NotConnected(f"{action}: connection lost before the answer")
        if isinstance(answer, rpc.CallError):
            raise CallErrorReceived(answer)
        try:
            validate(action, "response", answer.payload)
        except PayloadError as exc:
            raise CallFailed(f"{action}: invalid response: {exc.code}: {exc.description}") from None
        return answer.payload

    async def run(self) -> None:
        """Receive until the connection closes; returns then (never raises on input)."""
        try:
            while True:
                try:
                    text = await self._conn.recv()
                except ConnectionClosed:
                    return
                self._note("in", text)
                self._receive(text)
        finally:
            self._closed.set()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        await self._conn.close()

    def _receive(self, text: str | bytes) -> None:
        if len(text) > MAX_FRAME_BYTES:
            self._router.on_invalid(f"frame of {len(text)} bytes")
            self._spawn(self._send_error(rpc.CallError(
                rpc.call_id_prefix(text), "FormatViolation",
                f"frame of {len(text)} bytes exceeds the limit of {MAX_FRAME_BYTES}")))
            return
        try:
            frame = rpc.parse(text)
        except rpc.FrameError as exc:
            log.warning("invalid frame from CSMS (%s)", exc.reason)
            self._router.on_invalid(f"invalid frame: {exc.reason}")
            if exc.reply is not None:
                self._spawn(self._send_error(exc.reply))
            return
        if isinstance(frame, rpc.Call):
            if frame.message_id in self._handling:
                self._spawn(self._send_error(rpc.CallError(
                    frame.message_id, "RpcFrameworkError",
                    "a CALL with this message id is still being handled")))
                return
            self._handling.add(frame.message_id)
            self._spawn(self._handle_call(frame, len(text)))
            return
        pending = self._pending
        if pending is None or pending[0] != frame.message_id or pending[2].done():
            # A late answer to a CALL that timed out, or one we never sent: drop it.
            log.info("dropping answer to unknown message id %r", frame.message_id)
            return
        pending[2].set_result(frame)

    async def _handle_call(self, call: rpc.Call, size: int) -> None:
        then = None
        try:
            reply = await self._dispatch(call, size)
            if isinstance(reply, tuple):
                reply, then = reply
        finally:
            self._handling.discard(call.message_id)
        try:
            await self._send(reply)
        except ConnectionClosed:
            return
        if then is not None:
            # Runs outside this session's task set: a follow-up such as a restart must
            # not be cancelled by the connection closing under it.
            asyncio.ensure_future(_log_failure(then(), call.action))

    async def _dispatch(self, call: rpc.Call, size: int) -> (
            rpc.CallResult | rpc.CallError
            | tuple[rpc.CallResult, Callable[[], Awaitable[None]]]):
        refused = self._router.gate(call.action)
        if refused:
            return rpc.CallError(call.message_id, refused, f"{call.action} refused now")
        if not is_known_action(call.action):
            return rpc.CallError(call.message_id, "NotImplemented",
                                 f"unknown action {call.action[:80]!r}")
        route = self._router.routes.get(call.action)
        if route is None:
            return rpc.CallError(call.message_id, "NotSupported",
                                 f"{call.action} is not supported by this station")
        try:
            validate(call.action, "request", call.payload)
        except PayloadError as exc:
            self._router.on_invalid(f"{call.action}: {exc.code}: {exc.description}")
            return rpc.CallError(call.message_id, exc.code, exc.description)
        if route.max_bytes is not None and size > route.max_bytes():
            return rpc.CallError(call.message_id, "FormatViolation",
                                 f"message of {size} bytes exceeds BytesPerMessage")
        try:
            answer = await route.handler(call.payload)
        except OcppError as exc:
            return rpc.CallError(call.message_id, exc.code, exc.description, exc.details)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the link
            log.exception("handler for %s failed", call.action)
            return rpc.CallError(call.message_id, "InternalError",
                                 f"{call.action} failed: {type(exc).__name__}")
        payload, then = (answer.payload, answer.then) if isinstance(answer, Reply) else (answer, None)
        try:
            validate(call.action, "response", payload)
        except PayloadError as exc:
            # Our own bug: better an honest InternalError than an invalid response.
            log.error("invalid %s response built: %s %s", call.action, exc.code, exc.description)
            return rpc.CallError(call.message_id, "InternalError", "response could not be built")
        result = rpc.CallResult(call.message_id, payload)
        return (result, then) if then is not None else result

    async def _send_error(self, error: rpc.CallError) -> None:
        try:
            await self._send(error)
        except ConnectionClosed:
            pass

    async def _send(self, frame: rpc.Frame) -> None:
        text = rpc.encode(frame)
        self._note("out", text)
        await self._conn.send(text)

    def _note(self, direction: str, text: str | bytes) -> None:
        self.last_activity = self._clock.monotonic()
        if self._on_frame is not None:
            self._on_frame(direction, text if isinstance(text, str) else repr(text[:200]))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _race(fut: asyncio.Future[Any], closed: asyncio.Event) -> Any:
    """The answer, or None when the connection closes first."""
    closer = asyncio.ensure_future(closed.wait())
    try:
        await asyncio.wait({fut, closer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closer.cancel()
    return fut.result() if fut.done() else None


async def _log_failure(aw: Awaitable[None], action: str) -> None:
    try:
        await aw
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001
        log.exception("follow-up of %s failed", action)
