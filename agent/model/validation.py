"""Checking a value against a variable's characteristics (pure functions).

Used for CSMS writes (SetVariables), for the station's own updates and for values read
back from the database. A check either returns the value in its canonical form (what is
stored and reported) or raises `Invalid` carrying the reasonCode of Part 2 appendix 5.
"""

from __future__ import annotations

import math
import re

from agent.clock import parse_datetime
from agent.model.types import DataType, VariableDefinition

# Reason codes (appendix 5; each fits StatusInfoType.reasonCode's 20 characters).
INVALID_VALUE = "InvalidValue"
OUT_OF_RANGE = "ValueOutOfRange"
TOO_LARGE = "TooLargeElement"

_INTEGER = re.compile(r"[+-]?[0-9]+")
# OCPP's integer is 32-bit signed (Part 2, primitive datatypes): the bound of every
# integer variable, whatever its own limits say.
INT32_MIN = -(2 ** 31)
INT32_MAX = 2 ** 31 - 1
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class Invalid(ValueError):
    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


def canonical(definition: VariableDefinition, value: str, *, size_limit: int | None = None,
              check_pattern: bool = True) -> str:
    """The value as stored, or `Invalid` saying why it cannot be this variable's value.

    `size_limit`: most characters any value may have (DeviceDataCtrlr.ConfigurationValueSize).
    """
    if not isinstance(value, str):
        raise Invalid(INVALID_VALUE, f"expected a string, got {type(value).__name__}")
    if size_limit is not None and len(value) > size_limit:
        raise Invalid(TOO_LARGE, f"{len(value)} characters exceed the value size of {size_limit}")
    chars = definition.characteristics
    kind = chars.data_type
    if kind == DataType.INTEGER:
        if not _INTEGER.fullmatch(value):
            raise Invalid(INVALID_VALUE, f"{_show(value)} is not an integer")
        # Length first: int() refuses digit strings beyond Python's limit (4300), and a
        # value read back from the database has had no size limit applied.
        if len(value.lstrip("+-").lstrip("0")) > 10 or \
                not INT32_MIN <= (number := int(value)) <= INT32_MAX:
            raise Invalid(OUT_OF_RANGE, f"{_show(value)} is outside the 32-bit integer range")
        result = str(number)
        _check_range(definition, number)
    elif kind == DataType.DECIMAL:
        if not _DECIMAL.fullmatch(value) or not math.isfinite(float(value)):
            raise Invalid(INVALID_VALUE, f"{_show(value)} is not a decimal number")
        result = value
        _check_range(definition, float(value))
    elif kind == DataType.BOOLEAN:
        if value.lower() not in ("true", "false"):
            raise Invalid(INVALID_VALUE, f"{_show(value)} is not true or false")
        result = value.lower()
    elif kind == DataType.DATE_TIME:
        try:
            parse_datetime(value)
        except (ValueError, OverflowError):   # OverflowError: shifted past year 1 or 9999
            raise Invalid(INVALID_VALUE, f"{_show(value)} is not an RFC 3339 date-time") from None
        result = value
    elif kind == DataType.OPTION_LIST:
        result = _option(definition, value)
    elif kind in (DataType.MEMBER_LIST, DataType.SEQUENCE_LIST):
        result = _members(definition, value)
    else:
        result = value
    if kind in (DataType.STRING, DataType.OPTION_LIST, DataType.MEMBER_LIST,
                DataType.SEQUENCE_LIST) and chars.max_limit is not None \
            and len(result) > chars.max_limit:
        raise Invalid(TOO_LARGE, f"{len(result)} characters exceed the maximum of "
                                 f"{_number(chars.max_limit)}")
    if check_pattern and definition.pattern is not None \
            and not re.fullmatch(definition.pattern, value):
        raise Invalid(INVALID_VALUE, "value does not have the required format")
    return result


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise ValueError(f"not a boolean: {value!r}")


def split_list(value: str) -> list[str]:
    """The members of a CSV list value; "" is the empty list."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _check_range(definition: VariableDefinition, number: float) -> None:
    chars = definition.characteristics
    if chars.min_limit is not None and number < chars.min_limit:
        raise Invalid(OUT_OF_RANGE, f"{_number(number)} is below the minimum of "
                                    f"{_number(chars.min_limit)}")
    if chars.max_limit is not None and number > chars.max_limit:
        raise Invalid(OUT_OF_RANGE, f"{_number(number)} is above the maximum of "
                                    f"{_number(chars.max_limit)}")


def _lookup(definition: VariableDefinition) -> dict[str, str]:
    # Names are case-insensitive in OCPP; store the spelling of the valuesList.
    return {item.lower(): item for item in definition.characteristics.values_list}


def _option(definition: VariableDefinition, value: str) -> str:
    found = _lookup(definition).get(value.strip().lower())
    if found is None:
        raise Invalid(INVALID_VALUE, f"{_show(value)} is not one of "
                                     f"{','.join(definition.characteristics.values_list)}")
    return found


def _members(definition: VariableDefinition, value: str) -> str:
    allowed = _lookup(definition)
    items = value.split(",") if value.strip() else []
    result: list[str] = []
    for item in items:
        found = allowed.get(item.strip().lower())
        if found is None:
            raise Invalid(INVALID_VALUE, f"{_show(item.strip())} is not one of "
                                         f"{','.join(definition.characteristics.values_list)}")
        if found in result:
            raise Invalid(INVALID_VALUE, f"{found} is listed twice")
        result.append(found)
    return ",".join(result)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")
