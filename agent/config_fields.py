"""Checks of single config values, free of I/O: typed readers, the table layout, OCPP limits.

`agent.config` assembles a Config table by table and touches the file system; what it asks
of each value (is it there, of the right TOML type, inside the limits OCPP puts on what the
station sends) is answered here. Every check raises `_Invalid(key, problem)` with the dotted
key, and `parse_config` alone turns that into the operator's `ConfigError` line, adding the
file name: the rules stay testable without a file and need not know where it lives.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from agent.config_text import _describe, _short, _unquote_hint

# OCPP-J (Part 4, 3.1.1, and errata 2023-12 for SecurityCtrlr.Identity): the identity is at
# most 48 characters and has no ':' because it is also the HTTP Basic auth user name.
# identifierString proper is narrower, but Part 4's own example identity ("RDAM 123") has a
# space, so any printable ASCII except ':' is accepted; the URL percent-encodes it.
IDENTITY_MAX_LEN = 48
# SecurityCtrlr.BasicAuthPassword (Part 2 appendices, 3.1.15): a passwordString of 16 to
# 40 characters: a-z, A-Z, 0-9 and * - _ = : + | @ .
PASSWORD_MIN_LEN = 16
PASSWORD_MAX_LEN = 40
PASSWORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789*-_=:+|@.")

# Every key the file may hold, table by table; anything else is an error.
_TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "station": ("id", "vendor", "model", "serial_number", "firmware_version"),
    "csms": ("url", "security_profile", "password", "ca_file", "cert_file", "key_file"),
    "storage": ("dir",),
    "hal": ("driver",),
    "firmware": ("install_command", "version_command", "install_timeout_s"),
}
# Device tables of an EVSE with hal.driver = "hardware" (hal.drivers.REGISTRY roles).
DEVICE_ROLES = ("meter", "contactor", "pilot", "lock", "reader", "power")
_EVSE_KEYS = ("id", "max_current_a", "phases", "nominal_voltage_v", "dc", *DEVICE_ROLES)
_TOP_LEVEL = (*_TABLE_KEYS, "evse")


class _Invalid(Exception):
    """Raised deep in validation; parse_config adds the file name and makes a ConfigError."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem


# --- layout of the file --------------------------------------------------------------------


def _check_structure(data: dict) -> None:
    """Unknown keys and misshapen tables first: a typo'd key reported as 'unknown, did you
    mean ...' helps more than the 'missing' error its absence would cause later."""
    for key, value in data.items():
        if key not in _TOP_LEVEL:
            kind = "table" if isinstance(value, dict) else "key"
            raise _Invalid(key, f"unknown {kind}{_suggest(key, _TOP_LEVEL, '')}")
        if key == "evse":
            continue
        if not isinstance(value, dict):
            raise _Invalid(key, f"expected a table [{key}], got {_describe(value)}")
        _check_keys(value, key, _TABLE_KEYS[key], home=key)
    if "evse" not in data:
        return  # reported by _evses, after the station's own keys
    entries = data["evse"]
    if isinstance(entries, dict):
        raise _Invalid("evse", "expected an array of tables [[evse]] (double brackets), got a single table [evse]")
    if not isinstance(entries, list):
        raise _Invalid("evse", f"expected an array of tables [[evse]], got {_describe(entries)}")
    for index, entry in enumerate(entries, start=1):
        prefix = f"evse[{index}]"
        if not isinstance(entry, dict):
            raise _Invalid(prefix, f"expected a table [[evse]], got {_describe(entry)}")
        _check_keys(entry, prefix, _EVSE_KEYS, home="evse")


def _check_keys(table: dict, prefix: str, known: tuple[str, ...], home: str) -> None:
    for key in table:
        if key not in known:
            raise _Invalid(f"{prefix}.{key}", f"unknown key{_suggest(key, known, prefix, home)}")


def _suggest(key: str, known: tuple[str, ...], prefix: str, home: str = "") -> str:
    """'; did you mean ...' from difflib, else where the key belongs, else the list."""
    import difflib   # only for a config with a mistake: not in every daemon
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"; did you mean '{_join(prefix, close[0])}'?"
    elsewhere = [t for t, keys in _TABLE_KEYS.items() if key in keys and t != home]
    if key in _EVSE_KEYS and home != "evse":
        elsewhere.append("evse")
    if elsewhere:
        table = "[[evse]]" if elsewhere[0] == "evse" else f"[{elsewhere[0]}]"
        return f"; '{key}' belongs in {table}"
    where = f"in [{home}]" if home and home != "evse" else ("in [[evse]]" if home else "at top level")
    return f"; known {where}: {', '.join(known)}"


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


# --- OCPP limits on the values the station sends -------------------------------------------


def _check_identity(identity: str) -> None:
    key = "station.id"
    if not 1 <= len(identity) <= IDENTITY_MAX_LEN:
        raise _Invalid(key, f"must be 1 to {IDENTITY_MAX_LEN} characters, got {len(identity)}")
    if ":" in identity:
        raise _Invalid(key, "must not contain ':' (the id is the HTTP Basic auth user name); pick another id")
    for pos, char in enumerate(identity, start=1):
        if not " " <= char <= "~":
            raise _Invalid(
                key, f"character {pos} ({char!r}) is not allowed; use printable ASCII (letters, digits, - _ . etc.)"
            )
    if identity != identity.strip():
        raise _Invalid(key, f"has leading or trailing spaces ({identity!r}); remove them")


def _check_url(url: str) -> str:
    """ws:// or wss://, a host, no query, fragment or user info; a trailing '/' is dropped
    because the station appends '/<station.id>' itself."""
    key = "csms.url"
    for char in url:
        if not "!" <= char <= "~":
            raise _Invalid(key, f"{url!r} contains {char!r}; percent-encode it or remove it")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise _Invalid(key, f"{url!r} is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("ws", "wss"):
        shown = f"{parts.scheme}://" if parts.scheme else "none"
        raise _Invalid(key, f"scheme must be ws:// or wss://, got {shown} in {url!r}")
    if not host:
        raise _Invalid(key, f"no host in {url!r}; expected e.g. ws://csms.example.com/ocpp")
    if port == 0:
        raise _Invalid(key, f"port 0 in {url!r} is not a port")
    if parts.username is not None or parts.password is not None:
        raise _Invalid(key, "must not contain user info (user:password@); the user is station.id, the password csms.password")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise _Invalid(key, f"must not have a query (?...) or fragment (#...): {url!r}")
    return url.rstrip("/") if parts.path else url


def _check_password(password: str) -> None:
    # Never echo the password or any of its characters: error lines end up in journald.
    key = "csms.password"
    if not PASSWORD_MIN_LEN <= len(password) <= PASSWORD_MAX_LEN:
        raise _Invalid(
            key,
            f"must be {PASSWORD_MIN_LEN} to {PASSWORD_MAX_LEN} characters (OCPP BasicAuthPassword), "
            f"got {len(password)}",
        )
    for pos, char in enumerate(password, start=1):
        if char not in PASSWORD_CHARS:
            raise _Invalid(
                key,
                f"character {pos} is not allowed; OCPP passwordString allows only a-z A-Z 0-9 and * - _ = : + | @ .",
            )


# --- typed getters -------------------------------------------------------------------------


def _missing(prefix: str, key: str) -> _Invalid:
    table = "[[evse]]" if prefix.startswith("evse") else f"[{prefix}]"
    return _Invalid(_join(prefix, key), f"missing (required); add {key} = ... under {table}")


def _str(table: dict, prefix: str, key: str, *, required: bool, secret: bool = False) -> str | None:
    name = _join(prefix, key)
    if not _given(table, prefix, key, required):
        return None
    value = table[key]
    if not isinstance(value, str):
        raise _Invalid(name, f"expected a string, got {_describe(value, secret)}")
    return value


def _text(table: dict, prefix: str, key: str, max_len: int, *, required: bool) -> str | None:
    """A one-line string that goes into BootNotification: non-empty, printable, not too long."""
    value = _str(table, prefix, key, required=required)
    if value is None:
        return None
    name = _join(prefix, key)
    if not value.strip():
        advice = "set it" if required else "set it or remove the key"
        raise _Invalid(name, f"is empty; {advice}")
    if not value.isprintable():
        raise _Invalid(name, f"must be one line of printable text, got {_short(value)}")
    if len(value) > max_len:
        raise _Invalid(name, f"must be at most {max_len} characters (OCPP BootNotification), got {len(value)}")
    return value


def _given(table: dict, prefix: str, key: str, required: bool) -> bool:
    """Whether the key is there; a required one that is not is an error."""
    if key in table:
        return True
    if required:
        raise _missing(prefix, key)
    return False


def _int(table: dict, prefix: str, key: str, *, required: bool) -> int | None:
    name = _join(prefix, key)
    if not _given(table, prefix, key, required):
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(name, f"expected an integer, got {_describe(value)}{_unquote_hint(value)}")
    return value


def _number(table: dict, prefix: str, key: str, *, required: bool) -> float | None:
    name = _join(prefix, key)
    if not _given(table, prefix, key, required):
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(name, f"expected a number, got {_describe(value)}{_unquote_hint(value)}")
    if not math.isfinite(value):
        raise _Invalid(name, f"expected a finite number, got {value}")
    return float(value)
