"""The strict oracle: every frame a station sends, checked against the official schemas.

The point of the test CSMS is to catch a station that sends what a real CSMS would reject,
so checks here are stricter than the `ocpp` package's: the OCPP 2.0.1 JSON schemas shipped
with `ocpp`, with date-time formats really checked, plus the OCPP-J frame rules (message
id length, CALLERROR codes, which actions a station may send). `validate_frame` is pure,
so the oracle itself is testable without a connection.
"""

from __future__ import annotations

import calendar
import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import ocpp
from ocpp.exceptions import (
    FormatViolationError,
    OccurrenceConstraintViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    TypeConstraintViolationError,
)

from agent.demo.csms.wire import (
    _CALL,
    _CALLERROR,
    _CALLRESULT,
    _DESCRIPTION_MAX,
    _MESSAGE_ID_MAX,
    _message_id,
    _message_type,
)

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
