"""OCPP-J framing as the peer writes and reads it: message types, limits, exact JSON.

Tests need payloads to go out exactly as given, so frames are written here rather than by
the `ocpp` package (which renames keys and writes `Decimal` as a one-decimal float); the
oracle, the answers and the link all read and write frames through these helpers.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
from typing import Any

SUBPROTOCOL = "ocpp2.0.1"
_CALL, _CALLRESULT, _CALLERROR = 2, 3, 4

_MESSAGE_ID_MAX = 36
_DESCRIPTION_MAX = 255


def _message_id(message: Any) -> str | None:
    """The message id of a parsed frame, if it can be read."""
    if isinstance(message, list) and len(message) >= 2 and isinstance(message[1], str):
        return message[1]
    return None


def _message_type(message: Any) -> int | None:
    if isinstance(message, list) and message and type(message[0]) is int:
        return message[0]
    return None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, decimal.Decimal):
        # Exact for what tests write (Decimal("6.25") -> 6.25), unlike ocpp's "%.1f".
        return int(obj) if obj == obj.to_integral_value() else float(str(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _dumps(message: Any) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=_json_default)
