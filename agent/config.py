"""The configuration file: TOML in, frozen dataclasses out, or one line that says what to fix.

The operator edits one file and reads one line when it is wrong, so every check here ends
in a `ConfigError` whose text names the file, the key (dotted: `csms.url`,
`evse[2].max_current_a`, where `evse[N]` is the N-th `[[evse]]` table counting from 1) and
what to do. Unknown keys are errors, not warnings: a typo that silently falls back to a
default is the kind of fault that surfaces months later on a roof.

The `[csms]` table only seeds network connection profile 1 on first start (DESIGN.md);
checking it here still matters, because a station that cannot make its first connection
can never be fixed remotely.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent import __version__

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_HAL_DRIVER",
    "DEFAULT_NOMINAL_VOLTAGE_V",
    "DEFAULT_PHASES",
    "DEFAULT_STORAGE_DIR",
    "HAL_DRIVERS",
    "Config",
    "ConfigError",
    "CsmsConfig",
    "EvseConfig",
    "HalConfig",
    "StationConfig",
    "StorageConfig",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH = Path("/etc/station-agent/station-agent.toml")
DEFAULT_STORAGE_DIR = Path("/var/lib/station-agent")
# "mock" is the default because it is the safe one: it never closes a contactor. The
# installed config names the driver explicitly anyway, so a real charger says "hardware".
DEFAULT_HAL_DRIVER = "mock"
HAL_DRIVERS = ("mock", "hardware")
DEFAULT_PHASES = 3
DEFAULT_NOMINAL_VOLTAGE_V = 230.0

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
# BootNotification ChargingStationType maxLength, so a config that loads is a boot that
# the CSMS accepts.
VENDOR_MAX_LEN = 50
MODEL_MAX_LEN = 20
SERIAL_NUMBER_MAX_LEN = 25
FIRMWARE_VERSION_MAX_LEN = 50

MAX_CURRENT_A_LIMIT = 1000.0
NOMINAL_VOLTAGE_RANGE = (100.0, 1000.0)
PHASES = (1, 3)
SECURITY_PROFILES = (1, 2, 3)

# Every key the file may hold, table by table; anything else is an error.
_TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "station": ("id", "vendor", "model", "serial_number", "firmware_version"),
    "csms": ("url", "security_profile", "password", "ca_file", "cert_file", "key_file"),
    "storage": ("dir",),
    "hal": ("driver",),
}
_EVSE_KEYS = ("id", "max_current_a", "phases", "nominal_voltage_v")
_TOP_LEVEL = (*_TABLE_KEYS, "evse")


class ConfigError(Exception):
    """One line for the operator: names the key (dotted, e.g. 'evse[1].max_current_a') or
    file and says what to do. `str(exc)` is that line; `key` and `path` are there for code
    that wants them (key is None for file-level errors)."""

    def __init__(self, message: str, *, key: str | None = None, path: Path | None = None) -> None:
        super().__init__(_one_line(message))
        self.key = key
        self.path = path


@dataclass(frozen=True)
class StationConfig:
    id: str
    vendor: str
    model: str
    serial_number: str | None
    firmware_version: str


@dataclass(frozen=True)
class CsmsConfig:
    url: str
    security_profile: int
    password: str | None
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None

    def __repr__(self) -> str:
        # The password must never reach a log line through a stray repr().
        shown = None if self.password is None else "***"
        return (
            f"CsmsConfig(url={self.url!r}, security_profile={self.security_profile!r}, "
            f"password={shown!r}, ca_file={self.ca_file!r}, cert_file={self.cert_file!r}, "
            f"key_file={self.key_file!r})"
        )


@dataclass(frozen=True)
class StorageConfig:
    dir: Path


@dataclass(frozen=True)
class HalConfig:
    driver: str  # "mock" | "hardware"


@dataclass(frozen=True)
class EvseConfig:
    id: int
    max_current_a: float
    phases: int
    nominal_voltage_v: float


@dataclass(frozen=True)
class Config:
    path: Path
    station: StationConfig
    csms: CsmsConfig
    storage: StorageConfig
    hal: HalConfig
    evses: tuple[EvseConfig, ...]  # sorted by id: evses[i].id == i + 1


def load_config(path: Path | str) -> Config:
    """Read, parse and validate the file; raise ConfigError with one line on any fault."""
    path = Path(path).absolute()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found; create it (see config/station-agent.toml) "
            "or pass --config FILE",
            path=path,
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file; pass --config FILE", path=path) from None
    except PermissionError:
        raise ConfigError(
            f"{path}: cannot read config file: permission denied; make it readable by the agent's user",
            path=path,
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}", path=path) from None
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM some Windows editors write
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not valid UTF-8; save the file as UTF-8", path=path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {_syntax_error(str(exc), text)}", path=path) from None
    return parse_config(data, path)


def parse_config(data: dict, path: Path) -> Config:
    """Validate an already parsed TOML document; relative paths resolve against path.parent.

    File checks (certificate and key files must be readable) happen here too, so a Config
    that exists is one the daemon can start with.
    """
    path = Path(path).absolute()
    try:
        return _build(data, path.parent, path)
    except _Invalid as exc:
        raise ConfigError(f"{path}: {exc.key}: {exc.problem}", key=exc.key, path=path) from None


# --- building ------------------------------------------------------------------------------


class _Invalid(Exception):
    """Raised deep in validation; parse_config adds the file name and makes a ConfigError."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem


def _build(data: dict, base: Path, path: Path) -> Config:
    _check_structure(data)
    station = _station(data.get("station", {}))
    csms = _csms(data.get("csms", {}), base, station.id)
    storage = _storage(data.get("storage", {}), base)
    hal = _hal(data.get("hal", {}))
    evses = _evses(data.get("evse"))
    return Config(path=path, station=station, csms=csms, storage=storage, hal=hal, evses=evses)


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


def _station(table: dict) -> StationConfig:
    identity = _str(table, "station", "id", required=True)
    assert identity is not None
    _check_identity(identity)
    vendor = _text(table, "station", "vendor", VENDOR_MAX_LEN, required=True)
    model = _text(table, "station", "model", MODEL_MAX_LEN, required=True)
    serial = _text(table, "station", "serial_number", SERIAL_NUMBER_MAX_LEN, required=False)
    firmware = _text(table, "station", "firmware_version", FIRMWARE_VERSION_MAX_LEN, required=False)
    assert vendor is not None and model is not None
    return StationConfig(
        id=identity,
        vendor=vendor,
        model=model,
        serial_number=serial,
        firmware_version=firmware if firmware is not None else __version__,
    )


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


def _csms(table: dict, base: Path, identity: str) -> CsmsConfig:
    url = _str(table, "csms", "url", required=True)
    assert url is not None
    url = _check_url(url)
    profile = _int(table, "csms", "security_profile", required=False)
    if profile is None:
        profile = 1  # DESIGN's example; the least demanding, so tests and dev need no certs
    if profile not in SECURITY_PROFILES:
        raise _Invalid("csms.security_profile", f"must be 1, 2 or 3, got {profile}")

    scheme = url.split(":", 1)[0].lower()
    rest = url.split(":", 1)[1]
    if profile == 1 and scheme != "ws":
        raise _Invalid(
            "csms.url",
            f"security_profile 1 (Basic auth without TLS) needs a ws:// URL: use 'ws:{rest}', "
            "or set security_profile = 2 to use TLS",
        )
    if profile in (2, 3) and scheme != "wss":
        raise _Invalid("csms.url", f"security_profile {profile} needs a wss:// URL (TLS): use 'wss:{rest}'")

    password = _str(table, "csms", "password", required=False, secret=True)
    if password is None and profile in (1, 2):
        raise _Invalid(
            "csms.password",
            f"missing: security_profile {profile} uses HTTP Basic auth; set the password the CSMS has for "
            f"'{identity}' ({PASSWORD_MIN_LEN} to {PASSWORD_MAX_LEN} characters)",
        )
    if password is not None:
        _check_password(password)

    ca_file = _file(table, "csms", "ca_file", base)
    cert_file = _file(table, "csms", "cert_file", base)
    key_file = _file(table, "csms", "key_file", base)
    if profile in (2, 3) and ca_file is None:
        raise _Invalid(
            "csms.ca_file",
            f"missing: security_profile {profile} needs the CSMS root certificate(s) to trust; "
            'set ca_file = "path/to/csms-root.pem"',
        )
    if profile == 3 and cert_file is None:
        raise _Invalid(
            "csms.cert_file",
            'missing: security_profile 3 needs the station certificate chain; set cert_file = "path/to/station.pem"',
        )
    if profile == 3 and key_file is None:
        raise _Invalid(
            "csms.key_file",
            'missing: security_profile 3 needs the private key of cert_file; set key_file = "path/to/station.key"',
        )
    return CsmsConfig(
        url=url, security_profile=profile, password=password, ca_file=ca_file, cert_file=cert_file, key_file=key_file
    )


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


def _storage(table: dict, base: Path) -> StorageConfig:
    raw = _str(table, "storage", "dir", required=False)
    if raw is None:
        return StorageConfig(dir=DEFAULT_STORAGE_DIR)
    if not raw:
        raise _Invalid("storage.dir", f"is empty; remove the key for the default {DEFAULT_STORAGE_DIR} or name a directory")
    directory = base / raw
    if directory.exists() and not directory.is_dir():
        raise _Invalid("storage.dir", f"{directory} exists and is not a directory")
    return StorageConfig(dir=directory)


def _hal(table: dict) -> HalConfig:
    driver = _str(table, "hal", "driver", required=False)
    if driver is None:
        return HalConfig(driver=DEFAULT_HAL_DRIVER)
    if driver not in HAL_DRIVERS:
        close = difflib.get_close_matches(driver.lower(), HAL_DRIVERS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _Invalid("hal.driver", f"must be 'mock' or 'hardware', got {_short(driver)}{hint}")
    return HalConfig(driver=driver)


def _evses(entries: list | None) -> tuple[EvseConfig, ...]:
    if not entries:
        raise _Invalid("evse", "no [[evse]] table; add one per EVSE, e.g. [[evse]] id = 1, max_current_a = 32")
    count = len(entries)
    seen: dict[int, int] = {}  # id -> 1-based position in the file
    evses = []
    for index, entry in enumerate(entries, start=1):
        prefix = f"evse[{index}]"
        evse_id = _int(entry, prefix, "id", required=True)
        assert evse_id is not None
        if evse_id < 1:
            raise _Invalid(f"{prefix}.id", f"must be 1 or more (EVSE ids run 1..n), got {evse_id}")
        if evse_id in seen:
            raise _Invalid(f"{prefix}.id", f"duplicate id {evse_id} (also evse[{seen[evse_id]}]); EVSE ids run 1..{count}")
        seen[evse_id] = index
        if evse_id > count:
            missing = sorted(set(range(1, count + 1)) - {e["id"] for e in entries if isinstance(e.get("id"), int)})
            hint = f"; missing: {', '.join(map(str, missing))}" if missing else ""
            raise _Invalid(
                f"{prefix}.id",
                f"EVSE ids must run 1..{count} without gaps ({count} [[evse]] tables), got {evse_id}{hint}",
            )

        current = _number(entry, prefix, "max_current_a", required=True)
        assert current is not None
        if not 0 < current <= MAX_CURRENT_A_LIMIT:
            raise _Invalid(
                f"{prefix}.max_current_a",
                f"must be more than 0 and at most {MAX_CURRENT_A_LIMIT:g} A, got {current:g}",
            )
        phases = _int(entry, prefix, "phases", required=False)
        if phases is None:
            phases = DEFAULT_PHASES
        if phases not in PHASES:
            raise _Invalid(f"{prefix}.phases", f"must be 1 or 3, got {phases}")
        voltage = _number(entry, prefix, "nominal_voltage_v", required=False)
        if voltage is None:
            voltage = DEFAULT_NOMINAL_VOLTAGE_V
        low, high = NOMINAL_VOLTAGE_RANGE
        if not low <= voltage <= high:
            raise _Invalid(
                f"{prefix}.nominal_voltage_v",
                f"must be {low:g} to {high:g} V (phase to neutral, e.g. 230), got {voltage:g}",
            )
        evses.append(EvseConfig(id=evse_id, max_current_a=current, phases=phases, nominal_voltage_v=voltage))
    return tuple(sorted(evses, key=lambda e: e.id))


# --- typed getters -------------------------------------------------------------------------


def _missing(prefix: str, key: str) -> _Invalid:
    table = "[[evse]]" if prefix.startswith("evse") else f"[{prefix}]"
    return _Invalid(_join(prefix, key), f"missing (required); add {key} = ... under {table}")


def _str(table: dict, prefix: str, key: str, *, required: bool, secret: bool = False) -> str | None:
    name = _join(prefix, key)
    if key not in table:
        if required:
            raise _missing(prefix, key)
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


def _int(table: dict, prefix: str, key: str, *, required: bool) -> int | None:
    name = _join(prefix, key)
    if key not in table:
        if required:
            raise _missing(prefix, key)
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(name, f"expected an integer, got {_describe(value)}{_unquote_hint(value)}")
    return value


def _number(table: dict, prefix: str, key: str, *, required: bool) -> float | None:
    name = _join(prefix, key)
    if key not in table:
        if required:
            raise _missing(prefix, key)
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(name, f"expected a number, got {_describe(value)}{_unquote_hint(value)}")
    if not math.isfinite(value):
        raise _Invalid(name, f"expected a finite number, got {value}")
    return float(value)


def _file(table: dict, prefix: str, key: str, base: Path) -> Path | None:
    """An optional path to a file the agent must be able to read, resolved against base."""
    raw = _str(table, prefix, key, required=False)
    if raw is None:
        return None
    name = _join(prefix, key)
    if not raw:
        raise _Invalid(name, "is empty; name a file or remove the key")
    path = base / raw
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise _Invalid(name, f"file not found: {path}") from None
    except IsADirectoryError:
        raise _Invalid(name, f"is a directory, not a file: {path}") from None
    except PermissionError:
        raise _Invalid(name, f"cannot read {path}: permission denied; make it readable by the agent's user") from None
    except OSError as exc:
        raise _Invalid(name, f"cannot read {path}: {exc.strerror or exc}") from None
    return path


# --- wording -------------------------------------------------------------------------------


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
