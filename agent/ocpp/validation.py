"""Check OCPP 2.0.1 payloads against the official schemas, and name the OCPP-J error.

Why: every frame from the CSMS must be validated before a handler sees it (and every
payload we build before it is sent), without jsonschema at run time and fast enough to
run on every message. The generated tables in agent/ocpp/v201/schema.py are compiled
into one small checker per type, an action's the first time it is used; a check walks the payload only as deep
as the schema goes, so no payload can make it recurse (opaque values such as
DataTransfer `data` are walked with an explicit stack and a depth limit).

Error codes (OCPP 2.0.1 Part 4, 4.3):
- FormatViolation: the payload is not a JSON object; a property the schema does not
  allow; a value that is not JSON at all inside an opaque value (NaN, a non-string key,
  a Python object) or one nested deeper than MAX_OPAQUE_DEPTH.
- TypeConstraintViolation: a value of the wrong JSON type (bool is not a number, 3.0 is
  not an integer, NaN/Infinity are not numbers); an integer outside 32 bits; a number
  no IEEE 754 double can hold.
- OccurrenceConstraintViolation: a required property missing; too few or too many items.
- PropertyConstraintViolation: a string too long, a value not in its enum, a number out
  of range, a date-time that is not RFC 3339 with a time zone.
- NotImplemented: an action OCPP 2.0.1 does not define.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Literal

from agent.ocpp.v201 import schema

__all__ = ["PayloadError", "validate", "is_known_action", "initiator", "MAX_OPAQUE_DEPTH"]

FORMAT = "FormatViolation"
TYPE = "TypeConstraintViolation"
OCCURRENCE = "OccurrenceConstraintViolation"
PROPERTY = "PropertyConstraintViolation"

MAX_DESCRIPTION = 255  # CALLERROR ErrorDescription is string[255]

# OCPP's integer is 32-bit signed (Part 2, 2.1 "Primitive Datatypes": integer, 32 bit,
# 31 bits + sign bit); the JSON schemas only say "integer" and leave the range out. A
# value beyond it is not an OCPP integer at all, so it fails the data type, not a
# property's own bounds: TypeConstraintViolation (Part 4, 4.3: "at least one of the
# fields violates data type constraints"), as "12" in an integer field does. Refusing it
# here, before any handler, is what keeps 2**63 out of SQLite (64-bit INTEGER:
# OverflowError) and 10**30 out of timedelta and range arithmetic, once for every field
# of every action, in the requests the CSMS sends and in the answers it gives.
INT32_MIN = -(2 ** 31)
INT32_MAX = 2 ** 31 - 1
# A JSON number is interoperable only as far as an IEEE 754 double reaches (RFC 8259,
# section 6); an integer beyond it cannot even become a float (OverflowError). 1e400
# parses to infinity and is refused as one.
MAX_NUMBER_BITS = 1024
# Nesting allowed inside values the schema leaves open (DataTransfer data, customData
# extras). Far more than any real use, far less than would break json.dumps.
MAX_OPAQUE_DEPTH = 100


class PayloadError(Exception):
    """A payload the schema rejects: `code` is the OCPP-J error code to answer with,
    `description` (at most 255 characters) says where and what, e.g.
    "chargingStation.model: missing"."""

    def __init__(self, code: str, description: str) -> None:
        if len(description) > MAX_DESCRIPTION:
            description = description[:MAX_DESCRIPTION - 3] + "..."
        super().__init__(code, description)
        self.code = code
        self.description = description

    def __str__(self) -> str:
        return f"{self.code}: {self.description}"


class _Fail(Exception):
    """Raised inside a check; the path is collected on the way out, innermost first."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        self.path: list[str | int] = []


Check = Callable[[Any], None]


# --- describing values without echoing (or choking on) what the peer sent -----------

def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return f"a non-JSON value ({type(value).__name__})"


def _show(value: object) -> str:
    """A short rendering for a message: never huge, never raising (int repr can)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(int(value)) if value.bit_length() <= 64 else "a very large integer"
    if isinstance(value, float):
        return repr(float(value))
    return _json_type(value)


def _segment(key: object) -> str:
    text = key if isinstance(key, str) else _show(key)
    return text if len(text) <= 40 else text[:40] + "..."


def _describe(fail: _Fail, root: str) -> str:
    parts: list[str] = []
    for seg in reversed(fail.path):
        if isinstance(seg, int):
            parts.append(f"[{seg}]")
        else:
            parts.append(("." if parts else "") + _segment(seg))
    return f"{''.join(parts) or root}: {fail.message}"


# --- checkers for each kind of value ------------------------------------------------

def _type_error(expected: str, value: object) -> _Fail:
    got = _json_type(value)
    if isinstance(value, float) and value - value != 0.0:
        got = f"{_show(value)}, which is not a JSON number"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        got += f" {_show(value)}"
    return _Fail(TYPE, f"expected {expected}, got {got}")


def _string(max_length: int | None) -> Check:
    if max_length is None:
        def check(v: Any) -> None:
            if type(v) is not str and not isinstance(v, str):
                raise _type_error("string", v)
        return check

    def check_len(v: Any) -> None:
        if type(v) is not str and not isinstance(v, str):
            raise _type_error("string", v)
        if len(v) > max_length:
            raise _Fail(PROPERTY, f"longer than {max_length} characters ({len(v)})")
    return check_len


# RFC 3339 section 5.6 date-time; "T" and "Z" may be lower case (its NOTE). Seconds go
# to 60: a leap second is valid RFC 3339, so the schemas' "date-time" allows it, and
# refusing it would be refusing a valid frame; agent.clock.parse_datetime reads it as
# the last instant of second 59 (datetime cannot hold a 60th), so no handler meets one.
_DATE_TIME = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _is_date_time(text: str) -> bool:
    m = _DATE_TIME.fullmatch(text)
    if m is None:
        return False
    year, month, day = m.group(1, 2, 3)
    if year == "0000":  # no year 0 in the Gregorian calendar datetime knows
        return False
    if day > "28":
        d, mo = int(day), int(month)
        if d > _DAYS_IN_MONTH[mo]:
            return False
        if mo == 2 and d == 29:
            y = int(year)
            return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    return True


def _date_time(max_length: int | None) -> Check:
    def check(v: Any) -> None:
        if type(v) is not str and not isinstance(v, str):
            raise _type_error("string", v)
        if max_length is not None and len(v) > max_length:
            raise _Fail(PROPERTY, f"longer than {max_length} characters ({len(v)})")
        if not _is_date_time(v):
            raise _Fail(PROPERTY, f"{_show(v)} is not an RFC 3339 date-time with time zone")
    return check


def _range(v: int | float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and v < minimum:
        raise _Fail(PROPERTY, f"{_show(v)} is below the minimum {minimum:g}")
    if maximum is not None and v > maximum:
        raise _Fail(PROPERTY, f"{_show(v)} is above the maximum {maximum:g}")


def _integer(minimum: float | None, maximum: float | None) -> Check:
    bounded = minimum is not None or maximum is not None

    def check(v: Any) -> None:
        if type(v) is not int and (not isinstance(v, int) or isinstance(v, bool)):
            raise _type_error("integer", v)
        if not INT32_MIN <= v <= INT32_MAX:
            raise _Fail(TYPE, f"{_show(v)} is not an OCPP integer (32-bit signed)")
        if bounded:
            _range(v, minimum, maximum)
    return check


def _number(minimum: float | None, maximum: float | None) -> Check:
    bounded = minimum is not None or maximum is not None

    def check(v: Any) -> None:
        t = type(v)
        if t is float or (t is not int and isinstance(v, float)):
            if v - v != 0.0:  # NaN or +-Infinity: not JSON numbers
                raise _type_error("number", v)
        elif t is not int and (not isinstance(v, int) or isinstance(v, bool)):
            raise _type_error("number", v)
        elif v.bit_length() > MAX_NUMBER_BITS:
            raise _Fail(TYPE, f"{_show(v)} is beyond the range of a JSON number")
        if bounded:
            _range(v, minimum, maximum)
    return check


def _boolean(v: Any) -> None:
    if v is not True and v is not False:
        raise _type_error("boolean", v)


def _enum(name: str, values: tuple[str, ...]) -> Check:
    allowed = frozenset(values)

    def check(v: Any) -> None:
        if type(v) is not str and not isinstance(v, str):
            raise _type_error("string", v)
        if v not in allowed:
            raise _Fail(PROPERTY, f"{_show(v)} is not a {name} value")
    return check


def _opaque(v: Any) -> None:
    """Any JSON value, checked without recursion: it must be JSON and not too deep."""
    stack: list[tuple[Any, int]] = [(v, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (str, int)) or value is None:  # bool is an int
            continue
        if isinstance(value, float):
            if value - value != 0.0:
                raise _Fail(FORMAT, "contains NaN or Infinity, which JSON cannot carry")
            continue
        if isinstance(value, (dict, list)):
            if depth >= MAX_OPAQUE_DEPTH:
                raise _Fail(FORMAT, f"nested deeper than {MAX_OPAQUE_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise _Fail(FORMAT, "contains an object key that is not a string")
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
            continue
        raise _Fail(FORMAT, f"contains {_json_type(value)}")


def _array(item: Check, min_items: int, max_items: int | None) -> Check:
    def check(v: Any) -> None:
        if type(v) is not list and not isinstance(v, list):
            raise _type_error("array", v)
        n = len(v)
        if n < min_items:
            raise _Fail(OCCURRENCE, f"{n} items, at least {min_items} required")
        if max_items is not None and n > max_items:
            raise _Fail(OCCURRENCE, f"{n} items, at most {max_items} allowed")
        for i, x in enumerate(v):
            try:
                item(x)
            except _Fail as fail:
                fail.path.append(i)
                raise
    return check


# Fast paths for the commonest property kinds: the object loop accepts a plain value
# inline and calls the property's full checker only otherwise (to accept a subclass, say,
# or to raise the precise error).
_SLOW, _STR, _ENUM, _INT, _NUM, _BOOL = range(6)
Fast = tuple[int, Any]  # (fast path, its argument)


def _object(props: dict[str, tuple[Fast, Check]], required: tuple[str, ...],
            extra: bool) -> Check:
    required_set = frozenset(required)
    get = props.get

    def check(v: Any) -> None:
        if type(v) is not dict and not isinstance(v, dict):
            raise _type_error("object", v)
        if required_set and not v.keys() >= required_set:
            missing = _Fail(OCCURRENCE, "missing")
            missing.path.append(next(r for r in required if r not in v))
            raise missing
        for key, x in v.items():
            spec = get(key)
            if spec is not None:
                (fast, arg), c = spec
                t = type(x)
                if fast == _STR:
                    if t is str and len(x) <= arg:
                        continue
                elif fast == _ENUM:
                    if t is str and x in arg:
                        continue
                elif fast == _INT:
                    if t is int and INT32_MIN <= x <= INT32_MAX:
                        continue
                elif fast == _NUM:
                    if (t is int and x.bit_length() <= MAX_NUMBER_BITS) or \
                            (t is float and x - x == 0.0):
                        continue
                elif fast == _BOOL:
                    if t is bool:
                        continue
            try:
                if spec is not None:
                    c(x)
                elif not isinstance(key, str):
                    raise _Fail(FORMAT, "object key is not a string")
                elif extra:
                    _opaque(x)
                else:
                    raise _Fail(FORMAT, "not allowed here")
            except _Fail as fail:
                fail.path.append(key if isinstance(key, str) else f"<{_show(key)}>")
                raise
    return check


def _fast(p: dict[str, Any]) -> Fast:
    kind = p["kind"]
    if kind == "string" and "format" not in p:
        return (_STR, p.get("maxLength", float("inf")))
    if kind == "enum":
        return (_ENUM, frozenset(schema.ENUMS[p["ref"]]))
    if kind == "integer" and "minimum" not in p and "maximum" not in p:
        return (_INT, None)
    if kind == "number" and "minimum" not in p and "maximum" not in p:
        return (_NUM, None)
    if kind == "boolean":
        return (_BOOL, None)
    return (_SLOW, None)


# --- compiling the tables -------------------------------------------------------------

class _Compiler:
    """Turns the generated tables into checkers, each type compiled once and shared."""

    def __init__(self) -> None:
        self.objects: dict[str, Check] = {}
        self.enums: dict[str, Check] = {}

    def object(self, name: str) -> Check:
        check = self.objects.get(name)
        if check is None:
            spec = schema.object_table(name)
            props = {n: (_fast(p), self.prop(p)) for n, p in spec["properties"].items()}
            check = self.objects[name] = _object(props, spec["required"], spec["extra"])
        return check

    def prop(self, p: dict[str, Any]) -> Check:
        kind = p["kind"]
        if kind == "object":
            return self.object(p["ref"])
        if kind == "enum":
            name = p["ref"]
            if name not in self.enums:
                self.enums[name] = _enum(name, schema.ENUMS[name])
            return self.enums[name]
        if kind == "string":
            if p.get("format") == "date-time":
                return _date_time(p.get("maxLength"))
            return _string(p.get("maxLength"))
        if kind == "integer":
            return _integer(p.get("minimum"), p.get("maximum"))
        if kind == "number":
            return _number(p.get("minimum"), p.get("maximum"))
        if kind == "boolean":
            return _boolean
        if kind == "array":
            return _array(self.prop(p["items"]), p.get("minItems", 0), p.get("maxItems"))
        if kind == "any":
            return _opaque
        raise ValueError(f"schema table: unknown kind {kind!r}")


_COMPILER = _Compiler()
# action -> ((request type name, check), (response type name, check)), compiled the first
# time the action is validated: a station uses half the actions, and idle only a few.
_CHECKS: dict[str, tuple[tuple[str, Check], tuple[str, Check]]] = {}


def _checks(action: str) -> tuple[tuple[str, Check], tuple[str, Check]]:
    """KeyError for an action OCPP 2.0.1 does not define."""
    pair = _CHECKS.get(action)
    if pair is None:
        req, res = schema.ROOTS[action]
        pair = _CHECKS[action] = ((req, _COMPILER.object(req)), (res, _COMPILER.object(res)))
    return pair


# --- the API ------------------------------------------------------------------------------

def validate(action: str, kind: Literal["request", "response"], payload: object) -> None:
    """Raise PayloadError unless `payload` is a valid `kind` of `action`.

    Raises nothing else for any value a JSON parser can produce (and for most that it
    cannot); only a `kind` other than "request"/"response" is a ValueError (a bug).
    """
    try:
        pair = _checks(action)
    except (KeyError, TypeError):
        raise PayloadError("NotImplemented", f"unknown action {_show(action)}") from None
    if kind == "request":
        name, check = pair[0]
    elif kind == "response":
        name, check = pair[1]
    else:
        raise ValueError(f"kind must be 'request' or 'response', not {kind!r}")
    if type(payload) is not dict and not isinstance(payload, dict):
        raise PayloadError(FORMAT, f"{name}: payload is {_json_type(payload)}, not a JSON object")
    try:
        check(payload)
    except _Fail as fail:
        raise PayloadError(fail.code, _describe(fail, name)) from None


def is_known_action(action: str) -> bool:
    """Whether OCPP 2.0.1 defines this action (an unknown one gets NotImplemented)."""
    return isinstance(action, str) and action in schema.ACTIONS


def initiator(action: str) -> str:
    """Who sends the request of `action`: "ChargingStation", "CSMS" or "Both"
    (DataTransfer). KeyError for an unknown action."""
    return schema.ACTIONS[action]
