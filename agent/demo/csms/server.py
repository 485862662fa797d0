"""The CSMS itself: listens, admits stations at the HTTP level, keeps every link.

HTTP admission (path, Basic auth, subprotocol) happens before the WebSocket exists, as on
a real CSMS, so a station's handshake faults show up as the HTTP answers it would get in
the field. Everything after the handshake belongs to the `StationLink` of that connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging
import time
from http import HTTPStatus
from typing import Any, Callable
from urllib.parse import unquote

from agent.demo.csms.adapter import _handshake_parts, _start_server
from agent.demo.csms.link import StationLink
from agent.demo.csms.values import Handshake, Responder
from agent.demo.csms.wire import SUBPROTOCOL

LOGGER = logging.getLogger("agent.demo.csms")  # one logger for the whole peer

PATH_PREFIX = "/ocpp"


class Csms:
    """A CSMS on loopback. `async with Csms(...) as csms:` or `await start()` / `await stop()`.

    `boot_status`, `heartbeat_interval`, `passwords`, `responders` and `on_frame` may be
    changed at any time; they are read when used.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: Any = None,
        passwords: dict[str, str] | None = None,
        boot_status: str = "Accepted",
        heartbeat_interval: int = 300,
        on_frame: Callable[[str, str, str], None] | None = None,
        ping_interval: float | None = None,
        now: Callable[[], dt.datetime] | None = None,
        answer_delay: float = 0.0,
    ):
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.passwords = passwords
        self.boot_status = boot_status
        self.heartbeat_interval = heartbeat_interval
        self.on_frame = on_frame
        self.ping_interval = ping_interval  # None: the CSMS sends no WebSocket pings
        #: Real seconds the CSMS takes to answer a station's CALL (a busy back end's
        #: database write); what the station's TCP then does is bench/data_month_vm.py's.
        self.answer_delay = answer_delay
        self.now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        #: Test overrides of the default answers, by action: payload -> answer.
        self.responders: dict[str, Responder] = {}
        #: Every link, per station id, oldest first.
        self.links: dict[str, list[StationLink]] = {}
        #: Every violation in a frame the station sent, with the frame.
        self.schema_errors: list[str] = []
        self._server: Any = None
        self._changed = asyncio.Event()

    # ---- lifecycle

    async def start(self) -> Csms:
        self._server = await _start_server(
            self._handle, self._admit, self.host, self.port, self.ssl_context, self.ping_interval
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close every connection and the listening socket; returns within about a second."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        try:
            await asyncio.wait_for(asyncio.shield(server.wait_closed()), 0.8)
        except asyncio.TimeoutError:
            for link in self._all_links():
                link.abort()
            try:
                await asyncio.wait_for(server.wait_closed(), 0.2)
            except asyncio.TimeoutError:
                LOGGER.warning("CSMS stop: connections still closing")

    async def __aenter__(self) -> Csms:
        return await self.start()

    async def __aexit__(self, *exc_info) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The CSMS URL without the station id, e.g. ws://127.0.0.1:PORT/ocpp."""
        scheme = "wss" if self.ssl_context is not None else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{PATH_PREFIX}"

    def now_text(self) -> str:
        """The current time as the CSMS writes it (UTC, milliseconds, "Z")."""
        return _utc_text(self.now())

    # ---- what tests use

    async def wait_station(
        self, station_id: str, timeout: float = 10, *, after: StationLink | None = None
    ) -> StationLink:
        """The newest open link of `station_id` (newer than `after`, if given), waiting
        up to `timeout` s for the station to connect."""
        deadline = time.monotonic() + timeout
        while True:
            for link in reversed(self.links.get(station_id, [])):
                if link is after:
                    break
                if not link.closed.is_set():
                    return link
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise asyncio.TimeoutError(f"station {station_id} not connected within {timeout}s")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    # ---- machinery

    def _all_links(self) -> list[StationLink]:
        return [link for links in self.links.values() for link in links]

    def _links_changed(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _station_id_of(self, path: str) -> str | None:
        path = path.split("?", 1)[0]
        prefix = PATH_PREFIX + "/"
        if not path.startswith(prefix):
            return None
        segment = path[len(prefix):]
        if not segment or "/" in segment:
            return None
        return unquote(segment)

    def _admit(self, path: str, headers: Any) -> tuple[HTTPStatus, list[tuple[str, str]], str] | None:
        """HTTP-level admission: path, Basic auth (user = station id), subprotocol."""
        station_id = self._station_id_of(path)
        if station_id is None:
            return HTTPStatus.NOT_FOUND, [], f"expected {PATH_PREFIX}/<station id>\n"
        if self.passwords is not None:
            user, password = _basic_credentials(headers.get("Authorization"))
            if user != station_id or password is None or self.passwords.get(station_id) != password:
                return (
                    HTTPStatus.UNAUTHORIZED,
                    [("WWW-Authenticate", 'Basic realm="OCPP", charset="UTF-8"')],
                    "bad or missing credentials\n",
                )
        if SUBPROTOCOL not in _split_header(headers.get_all("Sec-WebSocket-Protocol")):
            # The new server answers 400 here by itself; the legacy one would accept.
            return HTTPStatus.BAD_REQUEST, [], f"subprotocol {SUBPROTOCOL} required\n"
        return None

    async def _handle(self, ws: Any) -> None:
        path, request_headers, response_headers = _handshake_parts(ws)
        handshake = Handshake(
            path=path,
            station_id=self._station_id_of(path) or "",
            authorization=request_headers.get("Authorization"),
            offered_subprotocols=_split_header(request_headers.get_all("Sec-WebSocket-Protocol")),
            subprotocol=ws.subprotocol,
            offered_extensions=_split_header(request_headers.get_all("Sec-WebSocket-Extensions")),
            extensions=_split_header(response_headers.get_all("Sec-WebSocket-Extensions")),
            request_headers=list(request_headers.raw_items()),
            **_tls_parts(ws),
        )
        link = StationLink(self, ws, handshake)
        self.links.setdefault(handshake.station_id, []).append(link)
        self._links_changed()
        LOGGER.info("%s connected (%s)", handshake.station_id, path)
        try:
            await link._run()
        finally:
            LOGGER.info("%s disconnected", handshake.station_id)


def _basic_credentials(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    return user, (password if sep else None)


def _utc_text(moment: dt.datetime) -> str:
    # isoformat, not strftime: glibc's %Y writes years below 1000 without their zeros.
    moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"


def _split_header(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _tls_parts(ws: Any) -> dict[str, Any]:
    """TLS version, cipher and the client certificate (DER) of a wss:// connection."""
    transport = getattr(ws, "transport", None)
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return {}
    return {"tls_version": ssl_object.version(), "cipher": (ssl_object.cipher() or ("",))[0],
            "client_certificate": ssl_object.getpeercert(binary_form=True)}
