"""The one thin adapter over websockets: Debian 12's 10.4 (legacy client only) and 13+.

Everything else in the agent sees `WsConnection` (send/recv/close/ping) and
`TransportError`. Keep-alive pings are driven by the agent on its own clock (so
WebSocketPingInterval can change at run time and tests need no sleeps), so the library's
own pinger is switched off.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass
from urllib.parse import quote

import websockets
import websockets.exceptions as wse

from agent.ocpp.session import ConnectionClosed
from agent.ocpp.tls import TlsPolicyError, check_negotiated, classify

try:  # websockets >= 13: the new asyncio implementation
    from websockets.asyncio.client import connect as _new_connect
except ImportError:  # websockets 10.4 .. 12: only the legacy client exists
    _new_connect = None

SUBPROTOCOL = "ocpp2.0.1"
# A little above session.MAX_FRAME_BYTES so that an oversize CALL can still be answered.
WS_MAX_SIZE = (1 << 20) + 64 * 1024


class TransportError(Exception):
    """Could not open the connection; the message says why, for the log. `event` names
    the security event the failure stands for (bad CSMS certificate, 401, ...), if any."""

    def __init__(self, message: str, event: str | None = None) -> None:
        super().__init__(message)
        self.event = event


@dataclass(frozen=True)
class Endpoint:
    url: str                       # the CSMS's OCPP-J endpoint, without the station id
    station_id: str
    password: str | None = None    # HTTP Basic auth (security profiles 1 and 2)
    ssl_context: ssl.SSLContext | None = None
    open_timeout: float = 30.0
    client_certificate: bool = False  # the TLS context presents one (profile 3)

    @property
    def connection_url(self) -> str:
        # Part 4, 3.1.1: append '/' and the percent-encoded identity to the path.
        return self.url.rstrip("/") + "/" + quote(self.station_id, safe="")

    def headers(self) -> list[tuple[str, str]]:
        if self.password is None:
            return []
        token = base64.b64encode(f"{self.station_id}:{self.password}".encode()).decode()
        return [("Authorization", f"Basic {token}")]


class WsConnection:
    """The session's Connection, over either websockets implementation."""

    def __init__(self, ws: object) -> None:
        self._ws = ws

    @property
    def subprotocol(self) -> str | None:
        return getattr(self._ws, "subprotocol", None)

    async def send(self, text: str) -> None:
        try:
            await self._ws.send(text)  # type: ignore[attr-defined]
        except wse.ConnectionClosed as exc:
            raise ConnectionClosed(str(exc)) from None

    async def recv(self) -> str | bytes:
        try:
            return await self._ws.recv()  # type: ignore[attr-defined]
        except wse.ConnectionClosed as exc:
            raise ConnectionClosed(str(exc)) from None

    async def ping(self) -> asyncio.Future[object]:
        """Send a WebSocket ping; the returned future completes on its pong."""
        try:
            return await self._ws.ping()  # type: ignore[attr-defined]
        except wse.ConnectionClosed as exc:
            raise ConnectionClosed(str(exc)) from None

    async def close(self) -> None:
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
        # races with completion, which left a stopping daemon hanging.
        try:
            async with asyncio.timeout(5):
                await self._ws.close()  # type: ignore[attr-defined]
        except (TimeoutError, OSError, wse.WebSocketException):
            pass


async def open_connection(endpoint: Endpoint) -> WsConnection:
    """Open the WebSocket to the CSMS, or raise TransportError with a readable reason."""
    options: dict[str, object] = dict(
        subprotocols=[SUBPROTOCOL],
        compression="deflate",  # RFC 7692 offered; the CSMS must support it
        ping_interval=None,
        ping_timeout=None,
        max_size=WS_MAX_SIZE,
        open_timeout=endpoint.open_timeout,
        close_timeout=5,
    )
    if endpoint.ssl_context is not None:
        options["ssl"] = endpoint.ssl_context
    url = endpoint.connection_url
    try:
        if _new_connect is not None:
            ws = await _new_connect(url, additional_headers=endpoint.headers(), proxy=None,
                                    **options)  # type: ignore[arg-type]
        else:
            ws = await websockets.connect(url, extra_headers=endpoint.headers(),  # type: ignore[attr-defined]
                                          **options)
    except wse.InvalidHandshake as exc:
        status = _http_status(exc)
        if status is not None:
            event = "FailedToAuthenticateAtCsms" if status in (401, 403) else None
            raise TransportError(f"CSMS refused the connection: HTTP {status}", event) from None
        cause = _ssl_cause(exc)
        if cause is not None:
            # TLS 1.3 sends the server's verdict on our certificate after the handshake:
            # it surfaces while reading the HTTP response.
            raise TransportError(f"TLS failed: {cause.reason or cause}", classify(cause)) from None
        closed = isinstance(_root_cause(exc), (EOFError, ConnectionError))
        if endpoint.client_certificate and closed:
            # A TLS 1.3 server checks the client certificate after its side of the
            # handshake; one that refuses it often just closes, before any HTTP answer.
            raise TransportError("CSMS closed the connection after the TLS handshake without "
                                 "answering: it most likely refused the station certificate",
                                 "FailedToAuthenticateAtCsms") from None
        raise TransportError(f"WebSocket handshake with {url} failed: {exc}") from None
    except ssl.SSLError as exc:
        raise TransportError(f"TLS failed: {exc.reason or exc}", classify(exc)) from None
    except (wse.WebSocketException, OSError, asyncio.TimeoutError, EOFError) as exc:
        raise TransportError(f"cannot connect to {url}: {exc or type(exc).__name__}") from None
    conn = WsConnection(ws)
    transport = getattr(ws, "transport", None)
    try:
        check_negotiated(transport.get_extra_info("ssl_object") if transport else None)
    except TlsPolicyError as exc:
        await conn.close()
        raise TransportError(f"TLS refused: {exc}", exc.event) from None
    if conn.subprotocol != SUBPROTOCOL:
        # Part 4, 3.2: a CSMS that did not agree on ocpp2.0.1 closes right away anyway.
        await conn.close()
        raise TransportError(f"CSMS did not accept subprotocol {SUBPROTOCOL}")
    return conn


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(5):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if isinstance(seen, ssl.SSLError):
            return seen
    return None


def _root_cause(exc: BaseException) -> BaseException:
    for _ in range(5):
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc = nxt
    return exc


def _http_status(exc: Exception) -> int | None:
    # Legacy client: InvalidStatusCode.status_code; new client: InvalidStatus.response.
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None
