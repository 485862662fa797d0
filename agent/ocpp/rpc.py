"""OCPP-J framing (Part 4, section 4): CALL, CALLRESULT and CALLERROR, sans I/O.

Parsing never raises anything but `FrameError`, whatever the text: the daemon must not die
of a frame. A FrameError carries what is needed to answer with a CALLERROR (the message id
when it could be read, "-1" otherwise) or tells the caller not to answer at all.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Union

CALL = 2
CALLRESULT = 3
CALLERROR = 4

MAX_MESSAGE_ID = 36
MAX_ERROR_DESCRIPTION = 255

ERROR_CODES = frozenset({
    "FormatViolation", "GenericError", "InternalError", "MessageTypeNotSupported",
    "NotImplemented", "NotSupported", "OccurrenceConstraintViolation",
    "PropertyConstraintViolation", "ProtocolError", "RpcFrameworkError", "SecurityError",
    "TypeConstraintViolation",
})


@dataclass(frozen=True)
class Call:
    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class CallResult:
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class CallError:
    message_id: str
    code: str
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)


Frame = Union[Call, CallResult, CallError]


class FrameError(Exception):
    """A frame that is not valid OCPP-J.

    `reply` is the CALLERROR to send back, or None when the spec says to ignore the frame
    (a broken CALLRESULT/CALLERROR must not be answered: answering could ping-pong).
    """

    def __init__(self, reply: CallError | None, reason: str) -> None:
        super().__init__(reason)
        self.reply = reply
        self.reason = reason


def _reject_constant(name: str) -> float:
    # NaN/Infinity are not JSON (RFC 8259); Python's json accepts them by default.
    raise ValueError(f"{name} is not valid JSON")


# Digits beyond which an integer is far outside anything a double holds (1.8e308 has 309
# digits); int() refuses more than 4300 by itself (CVE-2020-10735) and would make a
# valid frame look like broken JSON.
MAX_INT_DIGITS = 400


def _parse_int(text: str) -> int | float:
    """An integer of the frame; one too long to be any number a peer can mean becomes
    infinite, as 1e400 does, so validation refuses it (TypeConstraintViolation) and the
    CALLERROR carries the message id."""
    if len(text) <= MAX_INT_DIGITS:
        return int(text)
    return float("-inf") if text.startswith("-") else float("inf")


def parse(text: str | bytes) -> Frame:
    """Decode one WebSocket message into a frame, or raise FrameError."""
    if isinstance(text, bytes):
        # OCPP-J is text frames only; a binary frame is not an RPC message we can read.
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError(CallError("-1", "RpcFrameworkError", "frame is not UTF-8 text"),
                             "binary frame")
    try:
        msg = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except (ValueError, RecursionError):
        # Unreadable: no message id to answer to (Part 4, 4.2.3: use "-1").
        raise FrameError(CallError("-1", "RpcFrameworkError", "frame is not valid JSON"),
                         "invalid JSON") from None
    if not isinstance(msg, list) or not msg:
        raise FrameError(CallError("-1", "RpcFrameworkError", "frame is not a JSON array"),
                         "not an array")
    kind = msg[0]
    message_id = msg[1] if len(msg) > 1 else None
    id_ok = isinstance(message_id, str) and 0 < len(message_id) <= MAX_MESSAGE_ID
    if _LONE_SURROGATE_ESCAPE.search(text) and not _unicode(msg):
        # "\ud800" is valid JSON but no Unicode text: kept, it would poison whatever
        # repeats it (a stored token, the TransactionEvent naming it) with a frame that
        # cannot be encoded as UTF-8, and the link would drop at every attempt.
        reply_id = message_id if id_ok and _unicode(message_id) else "-1"
        if kind == CALL:
            raise FrameError(CallError(reply_id, "FormatViolation",
                                       "a string is not Unicode text (lone surrogate)"),
                             "lone surrogate")
        raise FrameError(None, "lone surrogate in an answer")
    reply_id = message_id if id_ok else "-1"
    if isinstance(kind, bool) or not isinstance(kind, int):
        raise FrameError(CallError(reply_id, "RpcFrameworkError", "MessageTypeId is not a number"),
                         "bad message type id")
    if kind == CALL:
        if not id_ok:
            raise FrameError(CallError("-1", "RpcFrameworkError",
                                       "MessageId is not a string of 1 to 36 characters"),
                             "bad message id")
        if len(msg) != 4 or not isinstance(msg[2], str):
            raise FrameError(CallError(reply_id, "RpcFrameworkError",
                                       "a CALL is [2, messageId, action, payload]"), "bad CALL shape")
        if not isinstance(msg[3], dict):
            raise FrameError(CallError(reply_id, "FormatViolation", "payload is not a JSON object"),
                             "payload not an object")
        return Call(message_id, msg[2], msg[3])
    if kind == CALLRESULT:
        if not id_ok or len(msg) != 3 or not isinstance(msg[2], dict):
            raise FrameError(None, "malformed CALLRESULT")
        return CallResult(message_id, msg[2])
    if kind == CALLERROR:
        if (not id_ok or len(msg) != 5 or not isinstance(msg[2], str)
                or not isinstance(msg[3], str) or not isinstance(msg[4], dict)):
            raise FrameError(None, "malformed CALLERROR")
        return CallError(message_id, msg[2], msg[3], msg[4])
    # Part 4, 4.4: unknown message type -> MessageTypeNotSupported.
    raise FrameError(CallError(reply_id, "MessageTypeNotSupported",
                               f"message type {kind} is not supported"), "unknown message type")


_CALL_ID = re.compile(r'\s*\[\s*2\s*,\s*"([^"\\]{1,36})"')


def call_id_prefix(text: str | bytes) -> str:
    """The message id of a CALL read from the start of a frame too large to parse."""
    head = text[:128]
    if isinstance(head, bytes):
        head = head.decode("utf-8", "replace")
    m = _CALL_ID.match(head)
    return m.group(1) if m else "-1"


def encode(frame: Frame) -> str:
    """Serialise a frame compactly (no spaces: every byte counts on cellular links)."""
    if isinstance(frame, Call):
        msg: list[Any] = [CALL, frame.message_id, frame.action, frame.payload]
    elif isinstance(frame, CallResult):
        msg = [CALLRESULT, frame.message_id, frame.payload]
    else:
        msg = [CALLERROR, frame.message_id, frame.code,
               frame.description[:MAX_ERROR_DESCRIPTION], frame.details]
    text = json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if not text.isascii() and not _unicode(text):
        # A lone surrogate that got in before parse() refused them (a database from an
        # older version): escaped, the frame is still valid JSON and can be sent.
        text = json.dumps(msg, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text


_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _unicode(value: Any) -> bool:
    """Whether every string in `value` is Unicode text (encodable as UTF-8)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
