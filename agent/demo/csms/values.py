"""The values and exceptions tests see: recorded frames, the handshake, reply outcomes.

No logic and no imports from the rest of the package, so every other module can use them
without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Union


@dataclass(frozen=True)
class Frame:
    """One WebSocket message: "in" = station -> CSMS, "out" = CSMS -> station; `at` is time.time()."""

    direction: str
    text: str
    at: float


@dataclass(frozen=True)
class Handshake:
    """What the station's opening handshake carried, and what was negotiated."""

    path: str
    station_id: str
    authorization: str | None
    offered_subprotocols: list[str]
    subprotocol: str | None
    offered_extensions: list[str]
    extensions: list[str]
    request_headers: list[tuple[str, str]]
    tls_version: str | None = None
    cipher: str | None = None
    client_certificate: bytes | None = None  # DER, when the station presented one

    @property
    def compression(self) -> bool:
        """permessage-deflate negotiated (RFC 7692)."""
        return any(e.split(";")[0].strip() == "permessage-deflate" for e in self.extensions)


class CallErrorReceived(Exception):
    """The station answered a CSMS call with a CALLERROR."""

    def __init__(self, code: str, description: str, details: Any):
        super().__init__(f"{code}: {description} {details!r}")
        self.code = code
        self.description = description
        self.details = details


class LinkClosed(ConnectionError):
    """The connection to the station closed while something waited on it."""


@dataclass(frozen=True)
class RawReply:
    """A responder's result that is sent verbatim as the answer frame (broken answers)."""

    text: str


#: A responder gets the CALL's payload (camelCase, as on the wire) and returns the answer:
#: a dict (sent as the CALLRESULT payload, verbatim), a `RawReply`, None (send nothing:
#: a lost answer), or raises an `ocpp.exceptions.OCPPError` (sent as that CALLERROR).
#: It may be a coroutine function; it must not await `link.call()`.
Responder = Callable[[dict], Union[dict, RawReply, None, Awaitable[Union[dict, RawReply, None]]]]
