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

Shape of one connection::

    websocket --recv--> StationLink._read_loop --records, checks, routes-->
        replies to our calls        -> futures of link.call() / link.send_raw()
        station CALLs (and replies to ChargePoint.call()) -> queue -> _CsmsChargePoint.start()
    StationLink._send <-- every outgoing frame (ChargePoint's answers, link.call, send_raw)

The reader never waits on a handler, so a slow responder cannot stall the answers to our
own calls (the `ocpp` package's "await call() inside @on deadlocks" pitfall does not apply
here, though handlers still should not do it: they run one at a time).

websockets adapter: websockets >= 13 has the new asyncio server
(`websockets.asyncio.server.serve`, handler `(connection)`, `process_request(connection,
request)`); Debian 12's 10.4 only the legacy one (`websockets.legacy.server.serve`, handler
`(websocket)`, `process_request(path, headers)` returning `(status, headers, body)`).
`_start_server` hides the difference: both get the same HTTP admission check
(`Csms._admit`) and the same connection handler, which reads path and headers through
`_handshake_of`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import calendar
import dataclasses
import datetime as dt
import decimal
import functools
import inspect
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Awaitable, Callable, Union
from urllib.parse import unquote

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import ocpp
import websockets
from ocpp.charge_point import (
    _raise_key_error,
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import (
    FormatViolationError,
    InternalError,
    OccurrenceConstraintViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    TypeConstraintViolationError,
)
from ocpp.routing import on
from ocpp.v201 import ChargePoint as _OcppChargePoint
from ocpp.v201.enums import Action

try:  # websockets >= 13
    from websockets.asyncio.server import serve as _new_serve
except ImportError:  # websockets 10.4 .. 12
    _new_serve = None
if _new_serve is None:
    from websockets.legacy.server import serve as _legacy_serve
else:
    _legacy_serve = None

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

LOGGER = logging.getLogger("agent.demo.csms")

SUBPROTOCOL = "ocpp2.0.1"
PATH_PREFIX = "/ocpp"
_CALL, _CALLRESULT, _CALLERROR = 2, 3, 4

#: Actions a Charging Station initiates (OCPP 2.0.1 part 2); any other CALL from the
#: station is a violation.
STATION_ACTIONS = frozenset(
    {
        "Authorize",
        "BootNotification",
        "ClearedChargingLimit",
        "DataTransfer",
        "FirmwareStatusNotification",
        "Get15118EVCertificate",
        "GetCertificateStatus",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "NotifyChargingLimit",
        "NotifyCustomerInformation",
        "NotifyDisplayMessages",
        "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule",
        "NotifyEvent",
        "NotifyMonitoringReport",
        "NotifyReport",
        "PublishFirmwareStatusNotification",
        "ReportChargingProfiles",
        "ReservationStatusUpdate",
        "SecurityEventNotification",
        "SignCertificate",
        "StatusNotification",
        "TransactionEvent",
    }
)

#: CALLERROR codes of OCPP-J 2.0.1 (section 4.3).
ERROR_CODES = frozenset(
    {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    }
)

_MESSAGE_ID_MAX = 36
_DESCRIPTION_MAX = 255
_FRAME_SHOWN_MAX = 2000  # how much of a frame a schema error quotes

# --------------------------------------------------------------------------- schema oracle

_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?"
    r"(?:[Zz]|[+-](\d{2}):(\d{2}))"
)


def is_rfc3339_date_time(value: object) -> bool:
    """RFC 3339 `date-time` (the JSON Schema meaning): offset required, real calendar dates.

    Written here rather than pulling in `rfc3339-validator`: without that package
    `jsonschema.FormatChecker()` silently accepts any string as a date-time.
    Non-strings pass, as JSON Schema formats apply to strings only.
    """
    if not isinstance(value, str):
        return True
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return False
    if hour > 23 or minute > 59 or second > 60:  # 60: a leap second
        return False
    off_h, off_m = match.group(7), match.group(8)
    if off_h is not None and (int(off_h) > 23 or int(off_m) > 59):
        return False
    return True


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())  # only what we register below
    checker.checks("date-time")(is_rfc3339_date_time)
    return checker


_SCHEMA_DIR = Path(ocpp.__file__).parent / "v201" / "schemas"
_FORMAT_CHECKER = _format_checker()


@functools.lru_cache(maxsize=None)
def _validator(action: str, kind: str) -> jsonschema.protocols.Validator | None:
    """The official schema of `action`'s "Request" or "Response", or None if unknown."""
    if not re.fullmatch(r"[A-Za-z0-9]+", action):
        return None
    path = _SCHEMA_DIR / f"{action}{kind}.json"
    try:
        schema = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError:
        return None
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft6Validator)
    return cls(schema, format_checker=_FORMAT_CHECKER)


def _schema_error(action: str, kind: str, payload: Any) -> jsonschema.exceptions.ValidationError | None:
    validator = _validator(action, kind)
    if validator is None:
        return None
    return jsonschema.exceptions.best_match(validator.iter_errors(payload))


def _describe(err: jsonschema.exceptions.ValidationError) -> str:
    where = "/" + "/".join(str(p) for p in err.absolute_path)
    return f"{err.message} (at {where}, rule {err.validator!r})"


def _ocpp_error_for(err: jsonschema.exceptions.ValidationError) -> OCPPError:
    """The CALLERROR OCPP-J 2.0.1 names for a schema violation of a station CALL."""
    details = {"cause": _describe(err)[:_DESCRIPTION_MAX]}
    if err.validator == "type":
        return TypeConstraintViolationError(details=details)
    if err.validator in ("required", "minItems", "maxItems"):
        return OccurrenceConstraintViolationError(details=details)
    if err.validator == "additionalProperties":
        return FormatViolationError(details=details)
    return PropertyConstraintViolationError(details=details)


def _message_id(message: Any) -> str | None:
    """The message id of a parsed frame, if it can be read."""
    if isinstance(message, list) and len(message) >= 2 and isinstance(message[1], str):
        return message[1]
    return None


def _message_type(message: Any) -> int | None:
    if isinstance(message, list) and message and type(message[0]) is int:
        return message[0]
    return None


def validate_frame(text: str, answered_action: str | None = None) -> list[str]:
    """Problems with one frame a station sent (empty list: fine).

    CALLs are checked against the request schema of their action; a CALLRESULT against
    the response schema of `answered_action` (the action of the CALL it answers, when
    known); a CALLERROR for its shape. Pure function, for tests of the oracle itself.
    """
    try:
        message = json.loads(text)
    except ValueError:
        return ["not valid JSON"]
    if not isinstance(message, list):
        return ["not a JSON array"]
    kind = _message_type(message)
    if kind not in (_CALL, _CALLRESULT, _CALLERROR):
        return ["unknown or missing MessageTypeId"]
    problems: list[str] = []
    message_id = _message_id(message)
    if message_id is None:
        problems.append("MessageId is not a string")
    elif not 1 <= len(message_id) <= _MESSAGE_ID_MAX:
        problems.append(f"MessageId length {len(message_id)} is not 1..{_MESSAGE_ID_MAX}")
    if kind == _CALL:
        if len(message) != 4:
            return problems + [f"CALL has {len(message)} elements, not 4"]
        action, payload = message[2], message[3]
        if not isinstance(action, str):
            return problems + ["CALL action is not a string"]
        if action not in STATION_ACTIONS:
            problems.append(f"{action!r} is not an action a Charging Station sends")
        if not isinstance(payload, dict):
            return problems + [f"{action} payload is not an object"]
        err = _schema_error(action, "Request", payload)
        if err is not None:
            problems.append(f"{action} request: {_describe(err)}")
    elif kind == _CALLRESULT:
        if len(message) != 3:
            return problems + [f"CALLRESULT has {len(message)} elements, not 3"]
        if not isinstance(message[2], dict):
            return problems + ["CALLRESULT payload is not an object"]
        if answered_action is not None:
            err = _schema_error(answered_action, "Response", message[2])
            if err is not None:
                problems.append(f"{answered_action} response: {_describe(err)}")
    else:
        if len(message) != 5:
            return problems + [f"CALLERROR has {len(message)} elements, not 5"]
        code, description, details = message[2], message[3], message[4]
        if code not in ERROR_CODES:
            problems.append(f"CALLERROR code {code!r} is not an OCPP 2.0.1 error code")
        if not isinstance(description, str):
            problems.append("CALLERROR description is not a string")
        elif len(description) > _DESCRIPTION_MAX:
            problems.append(f"CALLERROR description longer than {_DESCRIPTION_MAX}")
        if not isinstance(details, dict):
            problems.append("CALLERROR details is not an object")
    return problems


# --------------------------------------------------------------------------- values


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


def _json_default(obj: Any) -> Any:
    if isinstance(obj, decimal.Decimal):
        # Exact for what tests write (Decimal("6.25") -> 6.25), unlike ocpp's "%.1f".
        return int(obj) if obj == obj.to_integral_value() else float(str(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _dumps(message: Any) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _utc_text(moment: dt.datetime) -> str:
    moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _split_header(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


# --------------------------------------------------------------------------- ocpp ChargePoint


class _CpConnection:
    """What `ocpp`'s ChargePoint sees as its connection.

    recv() yields only what the ChargePoint should route (station CALLs, replies to its
    own `call()`); replies to `link.call()` and `send_raw()` never reach it, so they cannot
    disturb its call/response matching.
    """

    def __init__(self, link: StationLink):
        self._link = link
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()

    async def recv(self) -> str:
        text = await self.inbox.get()
        if text is None:
            raise LinkClosed(f"{self._link.station_id}: connection closed")
        return text

    async def send(self, text: str) -> None:
        await self._link._send(text, from_cp=True)


class _OcppLogger(logging.LoggerAdapter):
    """`ocpp` logs every CALLERROR it sends with a traceback; here those are answers the
    CSMS gives on purpose (the violation is in `schema_errors`), so: one line, DEBUG."""

    def exception(self, msg, *args, **kwargs):
        kwargs.pop("exc_info", None)
        self.debug(msg, *args, **kwargs)


class _CsmsChargePoint(_OcppChargePoint):
    """The CSMS's view of one station. `@on` handlers hold the default answers."""

    def __init__(self, link: StationLink, connection: _CpConnection):
        logger = _OcppLogger(logging.getLogger("agent.demo.csms.ocpp"), {})
        super().__init__(link.station_id, connection, response_timeout=30, logger=logger)
        self._link = link
        self._csms = link._csms

    async def _handle_call(self, msg):
        """Answer a station CALL: test responder first, else the `@on` default.

        Replaces ocpp's version so that answers go out verbatim (no snake_case round trip,
        no response validation that would turn a deliberately bad answer into a CALLERROR)
        and so that the request check uses the same strict oracle as `schema_errors`.
        """
        action = msg.action
        handlers = self.route_map.get(action, {})
        responder = self._link.responders.get(action) or self._csms.responders.get(action)
        try:
            if responder is None and "_on_action" not in handlers:
                _raise_key_error(action, self._ocpp_version)  # NotImplemented / NotSupported
            if not isinstance(msg.payload, dict):
                raise TypeConstraintViolationError(details={"cause": "payload is not an object"})
            err = _schema_error(action, "Request", msg.payload)
            if err is not None:
                raise _ocpp_error_for(err)
            try:
                if responder is not None:
                    result = responder(json.loads(json.dumps(msg.payload)))
                else:
                    result = handlers["_on_action"](**camel_to_snake_case(msg.payload))
                if inspect.isawaitable(result):
                    result = await result
            except OCPPError:
                raise
            except Exception as exc:
                LOGGER.exception("%s: responder for %s failed", self.id, action)
                raise InternalError(details={"cause": repr(exc)[:_DESCRIPTION_MAX]}) from exc
            if result is None:
                return None
            if isinstance(result, RawReply):
                await self._send(result.text)
            else:
                if dataclasses.is_dataclass(result) and not isinstance(result, type):
                    result = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
                await self._send(_dumps([_CALLRESULT, msg.unique_id, result]))
            return result
        finally:
            self._link._station_call_settled(msg.unique_id)

    async def start(self):
        """ocpp's receive loop, made to survive a failing answer (a dead loop would leave
        the station unanswered on a link that looks open)."""
        while True:
            text = await self._connection.recv()  # raises LinkClosed at the end
            try:
                await self.route_message(text)
            except LinkClosed:
                return
            except Exception:
                LOGGER.exception("%s: handling %s failed", self.id, text[:200])

    # Default answers, one per station-initiated action. Keyword arguments are the
    # payload in snake_case, as `ocpp` passes them; the returned dict is camelCase.

    @on(Action.boot_notification)
    def _on_boot_notification(self, **kwargs):
        return {
            "currentTime": self._csms.now_text(),
            "interval": self._csms.heartbeat_interval,
            "status": self._csms.boot_status,
        }

    @on(Action.heartbeat)
    def _on_heartbeat(self, **kwargs):
        return {"currentTime": self._csms.now_text()}

    @on(Action.authorize)
    def _on_authorize(self, **kwargs):
        return {"idTokenInfo": {"status": "Accepted"}}

    @on(Action.transaction_event)
    def _on_transaction_event(self, id_token=None, **kwargs):
        return {"idTokenInfo": {"status": "Accepted"}} if id_token is not None else {}

    @on(Action.data_transfer)
    def _on_data_transfer(self, **kwargs):
        return {"status": "UnknownVendorId"}

    @on(Action.sign_certificate)
    def _on_sign_certificate(self, **kwargs):
        return {"status": "Accepted"}

    @on(Action.get_15118_ev_certificate)
    def _on_get_15118_ev_certificate(self, **kwargs):
        return {"status": "Failed", "exiResponse": ""}

    @on(Action.get_certificate_status)
    def _on_get_certificate_status(self, **kwargs):
        return {"status": "Failed"}

    @on(Action.notify_ev_charging_needs)
    def _on_notify_ev_charging_needs(self, **kwargs):
        return {"status": "Accepted"}

    @on(Action.notify_ev_charging_schedule)
    def _on_notify_ev_charging_schedule(self, **kwargs):
        return {"status": "Accepted"}

    @on(Action.status_notification)
    def _on_status_notification(self, **kwargs):
        return {}

    @on(Action.meter_values)
    def _on_meter_values(self, **kwargs):
        return {}

    @on(Action.notify_report)
    def _on_notify_report(self, **kwargs):
        return {}

    @on(Action.notify_event)
    def _on_notify_event(self, **kwargs):
        return {}

    @on(Action.security_event_notification)
    def _on_security_event_notification(self, **kwargs):
        return {}

    @on(Action.firmware_status_notification)
    def _on_firmware_status_notification(self, **kwargs):
        return {}

    @on(Action.log_status_notification)
    def _on_log_status_notification(self, **kwargs):
        return {}

    @on(Action.cleared_charging_limit)
    def _on_cleared_charging_limit(self, **kwargs):
        return {}

    @on(Action.notify_charging_limit)
    def _on_notify_charging_limit(self, **kwargs):
        return {}

    @on(Action.notify_customer_information)
    def _on_notify_customer_information(self, **kwargs):
        return {}

    @on(Action.notify_display_messages)
    def _on_notify_display_messages(self, **kwargs):
        return {}

    @on(Action.notify_monitoring_report)
    def _on_notify_monitoring_report(self, **kwargs):
        return {}

    @on(Action.publish_firmware_status_notification)
    def _on_publish_firmware_status_notification(self, **kwargs):
        return {}

    @on(Action.report_charging_profiles)
    def _on_report_charging_profiles(self, **kwargs):
        return {}

    @on(Action.reservation_status_update)
    def _on_reservation_status_update(self, **kwargs):
        return {}


# --------------------------------------------------------------------------- station link


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
        except ValueError:
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
        except ValueError:
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
        except ValueError:
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


# --------------------------------------------------------------------------- websockets adapter


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


# --------------------------------------------------------------------------- the CSMS


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
    ):
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.passwords = passwords
        self.boot_status = boot_status
        self.heartbeat_interval = heartbeat_interval
        self.on_frame = on_frame
        self.ping_interval = ping_interval  # None: the CSMS sends no WebSocket pings
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


# --------------------------------------------------------------------------- by hand


async def _serve_forever(args: argparse.Namespace) -> None:
    passwords = dict(p.split("=", 1) for p in args.password) if args.password else None

    def show(station_id: str, direction: str, text: str) -> None:
        arrow = "->" if direction == "in" else "<-"
        print(f"{time.strftime('%H:%M:%S')} {station_id} {arrow} {text}", flush=True)

    async with Csms(args.host, args.port, passwords=passwords, on_frame=show,
                    heartbeat_interval=args.heartbeat_interval) as csms:
        print(f"CSMS listening on {csms.url}/<station id>", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """`python -m agent.demo.csms`: a CSMS that prints the exchange, for poking at a station."""
    parser = argparse.ArgumentParser(prog="python -m agent.demo.csms", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--password", action="append", metavar="STATION=PASSWORD",
                        help="require HTTP Basic auth (repeatable)")
    parser.add_argument("--heartbeat-interval", type=int, default=300)
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve_forever(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
