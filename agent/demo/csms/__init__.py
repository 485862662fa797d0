"""A real OCPP 2.0.1 CSMS on loopback: the peer for integration tests and `station-agent demo`.

Dev/test tooling only; the daemon never imports it. It is built on the `ocpp` package's
`ChargePoint` (the CSMS-side object per connected station) and a websockets server, and it
is deliberately *strict*: every frame the station sends is checked against the official
OCPP 2.0.1 JSON schemas shipped with `ocpp` (with date-time formats really checked), and
every violation lands in `Csms.schema_errors`, which tests assert stays empty.

Why not plain `ocpp` all the way: its `call()` needs dataclasses, renames keys between
camelCase and snake_case and writes `Decimal` as a one-decimal float, it returns None on a
CALLERROR, and it cannot send a deliberately broken frame. Tests need payloads to go out
exactly as given and raw frames, so the CSMS -> station direction and the answers to the
station are written here, on the wire format, while `ocpp` keeps the routing of station
CALLs to `@on` handlers.

One module per job:

- `wire`: OCPP-J framing (message types, limits, frames written exactly as given);
- `oracle`: the strict schema check of every frame the station sends;
- `values`: the frames, handshake and exceptions tests see;
- `answers`: the `ocpp` ChargePoint with the default answers and test responders;
- `link`: `StationLink`, one connection: records, checks and routes frames (its
  docstring draws the shape of a connection);
- `adapter`: the websockets 10.4 / 13+ server difference, hidden;
- `server`: `Csms`, admission and the links of every station;
- `cli`: `python -m agent.demo.csms`.

Everything tests, the bench and `station-agent demo` use is importable from here.
"""

from __future__ import annotations

from agent.demo.csms.answers import _CsmsChargePoint  # noqa: F401  (tests build one directly)
from agent.demo.csms.link import StationLink
from agent.demo.csms.oracle import (
    ERROR_CODES,
    STATION_ACTIONS,
    _schema_error,  # noqa: F401  (tests hold the default answers to the schemas with it)
    is_rfc3339_date_time,
    validate_frame,
)
from agent.demo.csms.server import LOGGER, PATH_PREFIX, Csms
from agent.demo.csms.values import CallErrorReceived, Frame, Handshake, LinkClosed, RawReply, Responder
from agent.demo.csms.wire import SUBPROTOCOL

# The API proper; the other names above are importable for tests, the bench and by hand.
__all__ = [
    "CallErrorReceived",
    "Csms",
    "Frame",
    "Handshake",
    "LinkClosed",
    "RawReply",
    "StationLink",
    "is_rfc3339_date_time",
    "validate_frame",
]
