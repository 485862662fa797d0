"""One WebSocket connection of one station: records, checks and routes every frame.

Shape of one connection::

    websocket --recv--> StationLink._read_loop --records, checks, routes-->
        replies to our calls        -> futures of link.call() / link.send_raw()
        station CALLs (and replies to ChargePoint.call()) -> queue -> _CsmsChargePoint.start()
    StationLink._send <-- every outgoing frame (ChargePoint's answers, link.call, send_raw)

The reader never waits on a handler, so a slow responder cannot stall the answers to our
own calls (the `ocpp` package's "await call() inside @on deadlocks" pitfall does not apply
here, though handlers still should not do it: they run one at a time).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import websockets

from agent.demo.csms.answers import _CpConnection, _CsmsChargePoint
from agent.demo.csms.oracle import validate_frame
from agent.demo.csms.values import CallErrorReceived, Frame, Handshake, LinkClosed, Responder
from agent.demo.csms.wire import _CALL, _CALLERROR, _CALLRESULT, _dumps, _message_id, _message_type

if TYPE_CHECKING:
    from agent.demo.csms.server import Csms

LOGGER = logging.getLogger("agent.demo.csms")  # one logger for the whole peer

_FRAME_SHOWN_MAX = 2000  # how much of a frame a schema error quotes


@dataclass
class _ReceivedCall:
    action: str
    payload: Any
    consumed: bool = False


@dataclass
class _RawWait:
    message_id: str | None
    future: asyncio.Future


class StationLink:
    """One WebSocket connection of one station; a reconnect makes a new link."""

    def __init__(self, csms: Csms, ws: Any, handshake: Handshake):
        self._csms = csms
        self._ws = ws
        self.handshake = handshake
        self.station_id = handshake.station_id
        self.connected_at = time.time()
        self.frames: list[Frame] = []
        self.closed = asyncio.Event()
        #: Per-link responders, consulted before `Csms.responders`.
        self.responders: dict[str, Responder] = {}
        self._received: list[_ReceivedCall] = []
        self._received_changed = asyncio.Event()
        self._pending: dict[str, asyncio.Future] = {}  # link.call() waiting for a reply
        self._raw_waits: list[_RawWait] = []  # send_raw() waiting for a reply
        self._cp_pending: set[str] = set()  # ChargePoint.call() ids
        self._sent_actions: dict[str, str] = {}  # id of each CALL we sent -> action
        self._station_call_open: str | None = None  # station CALL not yet answered
        self._cp_connection = _CpConnection(self)
        #: The `ocpp` ChargePoint: `await link.cp.call(ocpp.v201.call.X(...))` works too.
        self.cp = _CsmsChargePoint(self, self._cp_connection)

    def __repr__(self) -> str:
        state = "closed" if self.closed.is_set() else "open"
        return f"<StationLink {self.station_id} {state} frames={len(self.frames)}>"

    # ---- what tests use

    async def expect_call(
        self,
        action: str,
        timeout: float = 5,
        where: Callable[[dict], bool] | None = None,
    ) -> dict:
        """The first not yet consumed `action` CALL payload (matching `where`), from the
        start of this link's history; waits up to `timeout` s for one to arrive.

        Raises `asyncio.TimeoutError`, or `LinkClosed` once the link closed without one.
        """
        deadline = time.monotonic() + timeout
        while True:
            for call in self._received:
                if call.consumed or call.action != action:
                    continue
                try:
                    if where is not None and not where(call.payload):
                        continue
                except Exception:  # a predicate that trips over a payload: no match
                    continue
                call.consumed = True
                return call.payload
            seen = [c.action for c in self._received]
            if self.closed.is_set():
                raise LinkClosed(
                    f"{self.station_id}: closed without a matching {action} CALL; received: {seen}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise asyncio.TimeoutError(
                    f"{self.station_id}: no matching {action} CALL within {timeout}s; "
                    f"received: {seen}"
                )
            changed = self._received_changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def calls(self, action: str) -> list[dict]:
        """Payloads of every `action` CALL the station sent on this link, consumed or not."""
        return [c.payload for c in self._received if c.action == action]

    async def call(self, action: str, payload: dict, timeout: float = 10) -> dict:
        """CSMS -> station CALL; the CALLRESULT payload as on the wire.

        The payload goes out as given (camelCase, no renaming; Decimal written exactly).
        Raises `CallErrorReceived` on a CALLERROR, `asyncio.TimeoutError`, `LinkClosed`.
        """
        message_id = str(uuid.uuid4())
        text = _dumps([_CALL, message_id, action, payload])
        future = asyncio.get_running_loop().create_future()

        async def exchange() -> Any:
            async with self.cp._call_lock:  # one CALL at a time, shared with ChargePoint.call
                self._pending[message_id] = future
                try:
                    await self._send(text)
                    return await future
                finally:
                    self._pending.pop(message_id, None)

        try:
            reply = await asyncio.wait_for(exchange(), timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(
                f"{self.station_id}: no reply to {action} within {timeout}s"
            ) from None
        if reply[0] == _CALLERROR:
            code, description, details = (reply + [None, None, None])[2:5]
            raise CallErrorReceived(code, description, details)
        return reply[2] if len(reply) > 2 else None

    async def send_raw(self, text: str, expect_reply: bool = True, timeout: float = 5) -> str | None:
        """Send any text frame; return the station's reply text, or None if none came.

        The reply is the frame whose message id matches the one in `text`, else the next
        reply-type frame that answers nothing else (a "-1" id for an unreadable frame, a
        wrong id). Raises `LinkClosed` if the connection closes first.
        """
        if not expect_reply:
            await self._send(text)
            return None
        try:
            message_id = _message_id(json.loads(text))
        except (ValueError, RecursionError):   # a frame nested deeper than json can read
            message_id = None
        wait = _RawWait(message_id, asyncio.get_running_loop().create_future())
        self._raw_waits.append(wait)
        try:
            await self._send(text)
            return await asyncio.wait_for(wait.future, timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            if wait in self._raw_waits:
                self._raw_waits.remove(wait)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the CSMS side (closing handshake) and wait until it is closed."""
        try:
            await self._ws.close(code, reason)
        finally:
            try:
                await asyncio.wait_for(self.closed.wait(), 2)
            except asyncio.TimeoutError:
                self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake (a link cut, as the station sees it)."""
        transport = getattr(self._ws, "transport", None)
        if transport is not None:
            transport.abort()

    # ---- machinery

    async def _send(self, text: str, from_cp: bool = False) -> None:
        if self.closed.is_set():
            raise LinkClosed(f"{self.station_id}: connection closed")
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            message = None
        kind, message_id = _message_type(message), _message_id(message)
        if kind == _CALL and message_id is not None and len(message) >= 3 and isinstance(message[2], str):
            self._sent_actions[message_id] = message[2]
            if from_cp:
                self._cp_pending.add(message_id)
        elif kind in (_CALLRESULT, _CALLERROR) and message_id is not None:
            self._station_call_settled(message_id)
        self._record("out", text)
        try:
            await self._ws.send(text)
        except websockets.ConnectionClosed as exc:
            raise LinkClosed(f"{self.station_id}: connection closed") from exc

    def _record(self, direction: str, text: str) -> None:
        self.frames.append(Frame(direction, text, time.time()))
        hook = self._csms.on_frame
        if hook is not None:
            try:
                hook(self.station_id, direction, text)
            except Exception:
                LOGGER.exception("on_frame hook failed")

    def _problem(self, problem: str, text: str) -> None:
        shown = text if len(text) <= _FRAME_SHOWN_MAX else text[:_FRAME_SHOWN_MAX] + "..."
        self._csms.schema_errors.append(f"{self.station_id}: {problem}: {shown}")

    def _station_call_settled(self, message_id: str) -> None:
        if self._station_call_open == message_id:
            self._station_call_open = None

    async def _run(self) -> None:
        """Serve the connection until it closes (the websockets handler's body)."""
        cp_task = asyncio.create_task(self.cp.start(), name=f"csms-cp-{self.station_id}")
        try:
            await self._read_loop()
        finally:
            self._shut()
            cp_task.cancel()
            await asyncio.gather(cp_task, return_exceptions=True)

    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self._ws.recv()
            except websockets.ConnectionClosed:
                return
            if isinstance(data, bytes):
                text = data.decode("utf-8", errors="replace")
                self._record("in", text)
                self._problem("binary frame (OCPP-J uses text frames)", text)
                continue
            self._record("in", data)
            await self._route(data)

    async def _route(self, text: str) -> None:
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            message = None
        kind, message_id = _message_type(message), _message_id(message)
        if kind in (_CALLRESULT, _CALLERROR):
            self._route_reply(text, message, message_id)
            return
        for problem in validate_frame(text):
            self._problem(problem, text)
        if kind != _CALL:
            return  # unreadable: nothing to answer
        if len(message) != 4 or not isinstance(message[2], str) or message_id is None:
            if message_id is not None:
                await self._send(_dumps([_CALLERROR, message_id, "RpcFrameworkError",
                                         "not a valid CALL", {}]))
            return
        if self._station_call_open is not None:
            self._problem(
                f"CALL sent while its CALL {self._station_call_open!r} was unanswered "
                "(OCPP-J 2.0.1 4.1.1)", text)
        self._station_call_open = message_id
        self._received.append(_ReceivedCall(message[2], message[3]))
        changed, self._received_changed = self._received_changed, asyncio.Event()
        changed.set()
        self._cp_connection.inbox.put_nowait(text)

    def _route_reply(self, text: str, message: list, message_id: str | None) -> None:
        action = self._sent_actions.pop(message_id, None) if message_id is not None else None
        future = self._pending.get(message_id) if message_id is not None else None
        raw = next((w for w in self._raw_waits if message_id is not None
                    and w.message_id == message_id and not w.future.done()), None)
        if future is None and raw is None and message_id not in self._cp_pending:
            if action is not None:
                # Answers a CALL we sent whose waiter gave up: late, not wrong.
                for problem in validate_frame(text, answered_action=action):
                    self._problem(problem, text)
                LOGGER.info("%s: late reply dropped: %s", self.station_id, text[:200])
                return
            raw = next((w for w in self._raw_waits if not w.future.done()), None)
            if raw is None:
                self._problem("reply to no CALL the CSMS sent", text)
                return
            # answers a deliberately odd raw frame: no schema to hold it to
        for problem in validate_frame(text, answered_action=action):
            self._problem(problem, text)
        if future is not None:
            if not future.done():
                future.set_result(message)
        elif raw is not None:
            raw.future.set_result(text)
        else:
            self._cp_pending.discard(message_id)
            self._cp_connection.inbox.put_nowait(text)

    def _shut(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        error = LinkClosed(f"{self.station_id}: connection closed")
        for future in list(self._pending.values()):
            if not future.done():
                future.set_exception(error)
        for wait in self._raw_waits:
            if not wait.future.done():
                wait.future.set_exception(error)
        self._received_changed.set()
        self._cp_connection.inbox.put_nowait(None)
        self._csms._links_changed()
