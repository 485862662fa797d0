"""websockets adapter: one server start and one handshake view on websockets 10.4 and 13+.

websockets >= 13 has the new asyncio server (`websockets.asyncio.server.serve`, handler
`(connection)`, `process_request(connection, request)`); Debian 12's 10.4 only the legacy
one (`websockets.legacy.server.serve`, handler `(websocket)`, `process_request(path,
headers)` returning `(status, headers, body)`). `_start_server` hides the difference: both
get the same HTTP admission check (`Csms._admit`) and the same connection handler, which
reads path and headers through `_handshake_parts`.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Awaitable, Callable

from agent.demo.csms.wire import SUBPROTOCOL

try:  # websockets >= 13
    from websockets.asyncio.server import serve as _new_serve
except ImportError:  # websockets 10.4 .. 12
    _new_serve = None
if _new_serve is None:
    from websockets.legacy.server import serve as _legacy_serve
else:
    _legacy_serve = None


def _handshake_parts(ws: Any) -> tuple[str, Any, Any]:
    """(path, request headers, response headers) on either websockets API."""
    request = getattr(ws, "request", None)
    if request is not None and hasattr(request, "path"):  # new asyncio API (>= 13)
        return request.path, request.headers, ws.response.headers
    return ws.path, ws.request_headers, ws.response_headers  # legacy API (10.4)


async def _start_server(
    handler: Callable[[Any], Awaitable[None]],
    admit: Callable[[str, Any], tuple[HTTPStatus, list[tuple[str, str]], str] | None],
    host: str,
    port: int,
    ssl_context: Any,
    ping_interval: float | None,
) -> Any:
    """Start a websockets server on whichever API this websockets has.

    `admit(path, headers)` returns None to go on with the handshake, or (status, extra
    headers, body) to answer with that HTTP response instead.
    """
    common = dict(
        ssl=ssl_context,
        subprotocols=[SUBPROTOCOL],
        compression="deflate",
        ping_interval=ping_interval,
        close_timeout=0.5,
    )
    if _new_serve is not None:

        def process_request(connection, request):
            verdict = admit(request.path, request.headers)
            if verdict is None:
                return None
            status, headers, body = verdict
            response = connection.respond(status, body)
            for name, value in headers:
                response.headers[name] = value
            return response

        return await _new_serve(handler, host, port, process_request=process_request, **common)

    async def legacy_process_request(path, request_headers):
        verdict = admit(path, request_headers)
        if verdict is None:
            return None
        status, headers, body = verdict
        return status, headers, body.encode()

    async def legacy_handler(websocket):  # one argument: 10.x passes no path then
        await handler(websocket)

    return await _legacy_serve(
        legacy_handler, host, port, process_request=legacy_process_request, **common
    )
