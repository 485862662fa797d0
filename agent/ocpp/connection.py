"""Keeps the station connected to its CSMS and gives blocks one way to send.

Connects, runs a Session while the link lives, keeps it alive with sparse WebSocket pings
(WebSocketPingInterval, skipped while other traffic flows: every byte counts on cellular
links), and reconnects with the back-off of Part 4, 5.3. Blocks call `Messenger.call`,
which waits for a live, registered connection; they never see a socket.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Awaitable, Callable, Protocol

from agent.clock import Clock, wait_for
from agent.ocpp.backoff import reconnect_delay
from agent.ocpp.keepalive import InMemory, KeepAlivePolicy
from agent.ocpp.session import (CallFailed, CallTimeout, ConnectionClosed, NotConnected,
                                Payload, Router, Session)
from agent.ocpp.transport import Endpoint, TransportError, WsConnection, open_connection

log = logging.getLogger(__name__)

OnOpen = Callable[[Session], Awaitable[None]]


class CommSettings(Protocol):
    """The OCPPCommCtrlr values the connection needs, read afresh at each use."""

    def message_timeout(self) -> float: ...
    def ping_interval(self) -> float: ...
    def backoff(self) -> tuple[float, float, int]: ...  # wait minimum, random range, repeat times


class Messenger(Protocol):
    """What a functional block gets to talk to the CSMS."""

    async def call(self, action: str, payload: Payload, *, before_accepted: bool = False,
                   wait: bool = True, timeout: float | None = None) -> Payload: ...

    @property
    def connected(self) -> bool: ...


class ConnectionManager:
    def __init__(self, *, endpoint: Callable[[], Endpoint], router: Router, clock: Clock,
                 settings: CommSettings,
                 opener: Callable[[Endpoint], Awaitable[WsConnection]] = open_connection,
                 rand: Callable[[], float] = random.random,
                 on_frame: Callable[[str, str], None] | None = None,
                 keepalive: KeepAlivePolicy | None = None) -> None:
        self._endpoint = endpoint
        self._router = router
        self._clock = clock
        self._settings = settings
        self._opener = opener
        self._rand = rand
        self._on_frame = on_frame
        self.keepalive = keepalive or KeepAlivePolicy(InMemory())
        self.session: Session | None = None
        self._conn: WsConnection | None = None
        self._live = asyncio.Event()
        # Set by the Provisioning block when BootNotification is Accepted; stays set
        # across reconnects (Part 4, 5.3: no new BootNotification just for a reconnect).
        self.accepted = asyncio.Event()
        self.on_open: list[OnOpen] = []
        self.on_close: list[Callable[[], None]] = []
        # Told of every failed attempt (network profile fall-back, security events).
        self.on_failure: list[Callable[[TransportError], None]] = []
        self._last_call_sent = clock.monotonic()
        self.connects = 0
        self.failed_attempts = 0
        self._reconnect_now = False
        # The probe running after an unanswered call, shared by every caller that asks.
        self._probing: asyncio.Task[bool] | None = None

    @property
    def connected(self) -> bool:
        return self.session is not None and not self.session.closed

    def message_timeout(self) -> float:
        """How long a CALL waits for its answer (MessageTimeout); also the retry pause."""
        return self._settings.message_timeout()

    @property
    def last_call_sent(self) -> float:
        """Monotonic time of our last CALL; Heartbeat is skipped while others flow."""
        return self._last_call_sent if self.session is None else max(
            self._last_call_sent, self.session.last_call_sent)

    async def run(self) -> None:
        """Stay connected until cancelled."""
        attempt = -1  # the very first connection is tried at once
        while True:
            if attempt >= 0 and not self._reconnect_now:
                wait_min, rand_range, repeat = self._settings.backoff()
                delay = reconnect_delay(attempt, wait_min, rand_range, repeat, self._rand)
                log.info("reconnecting in %.1f s", delay)
                await self._clock.sleep(delay)
            self._reconnect_now = False
            try:
                # The endpoint may fail to build too (a network profile without the
                # certificates it needs): that is a failed attempt like any other.
                endpoint = self._endpoint()
                conn = await self._opener(endpoint)
            except TransportError as exc:
                self.failed_attempts += 1
                log.warning("connection to CSMS failed: %s", exc)
                for listener in self.on_failure:
                    listener(exc)
                attempt += 1
                continue
            learned = self.keepalive.reconnected(self._settings.ping_interval(), attempt == 0)
            if learned is not None:
                log.warning("the link was lost twice after idle keep-alive gaps and came back "
                            "at once: the network drops idle connections; pinging every "
                            "%.0f s from now on", learned)
            attempt = 0
            self.connects += 1
            log.info("connected to %s", endpoint.connection_url)
            await self._serve(conn)
            log.warning("connection to CSMS lost")

    async def _serve(self, conn: WsConnection) -> None:
        session = Session(conn, self._router, self._clock, self._settings.message_timeout,
                          self._on_frame)
        self.session, self._conn = session, conn
        self._live.set()
        helpers = [asyncio.ensure_future(self._keep_alive(session, conn))]
        helpers += [asyncio.ensure_future(_guarded(hook(session))) for hook in self.on_open]
        try:
            await session.run()
        finally:
            self._live.clear()
            self._last_call_sent = max(self._last_call_sent, session.last_call_sent)
            self.session, self._conn = None, None
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await conn.close()
            for callback in self.on_close:
                callback()

    async def _keep_alive(self, session: Session, conn: WsConnection) -> None:
        while True:
            interval = self.keepalive.interval(self._settings.ping_interval())
            if interval <= 0:
                # 0 disables client pings (the CSMS may ping instead); re-read later.
                await self._clock.sleep(60)
                continue
            due = session.last_activity + interval
            now = self._clock.monotonic()
            if now < due:
                await self._clock.sleep(due - now)
                continue
            idle = now - session.last_activity
            try:
                pong = await conn.ping()
                await wait_for(self._clock, pong, self._settings.message_timeout())
            except ConnectionClosed:
                self.keepalive.dropped_while_pinging(idle)
                return
            except TimeoutError:
                log.warning("no pong within %.0f s: dropping the connection",
                            self._settings.message_timeout())
                self.keepalive.dropped_while_pinging(idle)
                await session.close()
                return
            self.keepalive.pong()
            session.last_activity = self._clock.monotonic()

    async def probe(self) -> bool:
        """After a call went unanswered: is the link itself alive? A ping answered within
        MessageTimeout says yes. Else the connection is closed (run() reconnects) and the
        answer is no: on a cellular link that went dark without a reset, TCP can go on
        retransmitting for many minutes, and nothing else would notice while calls keep
        the link from looking idle to the keep-alive. Every unanswered call starts one
        (call() below); callers asking meanwhile share it: one ping, not one each."""
        return await asyncio.shield(self._start_probe())

    def _start_probe(self) -> asyncio.Task[bool]:
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._probe())
        return self._probing

    async def _probe(self) -> bool:
        session, conn = self.session, self._conn
        if session is None or conn is None or session.closed:
            return False
        try:
            pong = await conn.ping()
            await wait_for(self._clock, pong, self._settings.message_timeout())
        except ConnectionClosed:
            return False
        except TimeoutError:
            log.warning("no pong within %.0f s after an unanswered call: dropping the "
                        "connection", self._settings.message_timeout())
            await session.close()
            return False
        return True

    async def disconnect(self) -> None:
        """Close the current connection; run() reconnects at once (new credentials)."""
        if self.session is not None:
            self._reconnect_now = True
            await self.session.close()

    async def call(self, action: str, payload: Payload, *, before_accepted: bool = False,
                   wait: bool = True, timeout: float | None = None) -> Payload:
        """Send a CALL on the live connection; waits for one (and for registration
        unless `before_accepted`) when `wait`, else raises NotConnected at once."""
        while True:
            session = self.session
            ready = session is not None and not session.closed and (
                before_accepted or self.accepted.is_set())
            if ready:
                assert session is not None
                try:
                    return await session.call(action, payload, timeout)
                except CallTimeout:
                    # Any unanswered call, not only the outbox's: a StatusNotification
                    # lost in a dark period must get the dead link noticed too.
                    self._start_probe()
                    raise
            if not wait:
                raise NotConnected(f"{action}: not connected to the CSMS")
            await self._wait_ready(before_accepted)

    async def _wait_ready(self, before_accepted: bool) -> None:
        waits = [asyncio.ensure_future(self._live.wait())]
        if not before_accepted:
            waits.append(asyncio.ensure_future(self.accepted.wait()))
        try:
            await asyncio.gather(*waits)
        finally:
            for w in waits:
                w.cancel()


async def _guarded(aw: Awaitable[Any]) -> None:
    # A hook that fails is logged; it must not take the connection down with it.
    try:
        await aw
    except asyncio.CancelledError:
        raise
    except CallFailed as exc:
        log.info("connection hook stopped: %s", exc)
    except Exception:  # noqa: BLE001
        log.exception("connection hook failed")
