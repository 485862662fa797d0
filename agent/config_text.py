"""How the config checks word what they found: one line, the value shown only when safe.

Every `ConfigError` ends up as the one line the operator reads (often in journald), so the
wording rules live in one place: TOML type names as the file spells them, short values
quoted on one line, secrets never echoed, and tomllib's position moved to the front. The
checks in `agent.config` and `agent.config_fields` then read as rules, not as formatting.
"""

from __future__ import annotations

import datetime
import re
from typing import Any


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    if isinstance(value, datetime.datetime):
        return "date-time"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, datetime.time):
        return "time"
    return type(value).__name__


def _describe(value: Any, secret: bool = False) -> str:
    """'string "32"', 'boolean true', 'table': the type, and the value when it is short and
    not a secret."""
    name = _type_name(value)
    if secret or isinstance(value, (dict, list)):
        return name
    if isinstance(value, bool):
        return f"{name} {str(value).lower()}"
    if isinstance(value, str):
        return f"{name} {_short(value)}"
    return f"{name} {value}"


def _short(text: str, limit: int = 40) -> str:
    shown = repr(text)  # quotes it and escapes control characters: stays on one line
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def _unquote_hint(value: Any) -> str:
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return "; write the number without quotes"
    return ""


_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_AT_END = re.compile(r"\s*\(at end of document\)$")


def _syntax_error(message: str, text: str) -> str:
    """tomllib puts the position at the end of its message, sometimes only as 'end of
    document'; the operator wants a line number first."""
    match = _AT_LINE.search(message)
    if match:
        return f"line {match[1]}, column {match[2]}: TOML syntax error: {message[: match.start()]}"
    match = _AT_END.search(message)
    if match:
        last = text.rstrip("\n").count("\n") + 1
        return f"line {last} (end of file): TOML syntax error: {message[: match.start()]}"
    return f"TOML syntax error: {message}"


def _one_line(message: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
