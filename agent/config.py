"""The configuration file: TOML in, frozen dataclasses out, or one line that says what to fix.

The operator edits one file and reads one line when it is wrong, so every check here ends
in a `ConfigError` whose text names the file, the key (dotted: `csms.url`,
`evse[2].max_current_a`, where `evse[N]` is the N-th `[[evse]]` table counting from 1) and
what to do. Unknown keys are errors, not warnings: a typo that silently falls back to a
default is the kind of fault that surfaces months later on a roof.

The `[csms]` table only seeds network connection profile 1 on first start
(docs/architecture.md); checking it here still matters, because a station that cannot
make its first connection can never be fixed remotely.

This module holds what other code imports (the dataclasses, `ConfigError`, `load_config`,
`parse_config`), the file system access and the rules that tie tables together (security
profile against URL scheme, password and certificates). Checks of single values live in
`agent.config_fields`, the wording of the messages in `agent.config_text`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from agent import __version__
from agent.config_fields import IDENTITY_MAX_LEN, PASSWORD_CHARS  # noqa: F401  (limits of this file, named here too)
from hal.api import DriverSpec, HalConfigError
from hal.drivers import check as check_driver
from hal.drivers import settings_without_driver
from hal.drivers.command_installer import CommandInstaller

from agent.config_fields import (
    DEVICE_ROLES,
    PASSWORD_MAX_LEN,
    PASSWORD_MIN_LEN,
    _check_identity,
    _check_password,
    _check_structure,
    _check_url,
    _int,
    _Invalid,
    _join,
    _number,
    _str,
    _text,
)
from agent.config_text import _describe, _one_line, _short, _syntax_error

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_HAL_DRIVER",
    "DEFAULT_NOMINAL_VOLTAGE_V",
    "DEFAULT_PHASES",
    "DEFAULT_STORAGE_DIR",
    "HAL_DRIVERS",
    "SHIPPED_PASSWORD",
    "Config",
    "ConfigError",
    "CsmsConfig",
    "EvseConfig",
    "FirmwareConfig",
    "HalConfig",
    "StationConfig",
    "StorageConfig",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_PATH = Path("/etc/station-agent/station-agent.toml")
# csms.password of config/station-agent.toml as the package installs it: anyone who has
# the package knows it (tests/test_shipped_config.py keeps the two in step). A warning
# wherever it is used (agent.preflight), and what it seeds is provisional (agent.daemon).
SHIPPED_PASSWORD = "change-me-to-a-random-secret"
DEFAULT_STORAGE_DIR = Path("/var/lib/station-agent")
DEFAULT_INSTALL_TIMEOUT_S = 1800
# "mock" is the default because it is the safe one: it never closes a contactor. The
# installed config names the driver explicitly anyway, so a real charger says "hardware".
DEFAULT_HAL_DRIVER = "mock"
HAL_DRIVERS = ("mock", "hardware")
DEFAULT_PHASES = 3
DEFAULT_NOMINAL_VOLTAGE_V = 230.0

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
class FirmwareConfig:
    """How UpdateFirmware installs a verified image (hal.api.FirmwareInstaller)."""

    install_command: str | None = None   # None: the mock installer, or no updates on hardware
    version_command: str | None = None
    install_timeout_s: int = DEFAULT_INSTALL_TIMEOUT_S


@dataclass(frozen=True)
class EvseConfig:
    id: int
    max_current_a: float
    phases: int
    nominal_voltage_v: float
    # [evse.<role>] tables (hal.driver = "hardware"; "mock" takes [evse.power] only):
    # which driver, which settings.
    devices: tuple[DriverSpec, ...] = ()
    # A DC EVSE: a power module sets the output (max_current_a is the DC output's
    # rating; phases and nominal_voltage_v describe its AC supply).
    dc: bool = False


@dataclass(frozen=True)
class Config:
    path: Path
    station: StationConfig
    csms: CsmsConfig
    storage: StorageConfig
    hal: HalConfig
    evses: tuple[EvseConfig, ...]  # sorted by id: evses[i].id == i + 1
    firmware: FirmwareConfig = FirmwareConfig()


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


def _build(data: dict, base: Path, path: Path) -> Config:
    _check_structure(data)
    station = _station(data.get("station", {}))
    csms = _csms(data.get("csms", {}), base, station.id)
    storage = _storage(data.get("storage", {}), base)
    hal = _hal(data.get("hal", {}))
    evses = _evses(data.get("evse"), hal.driver)
    firmware = _firmware(data.get("firmware", {}))
    return Config(path=path, station=station, csms=csms, storage=storage, hal=hal, evses=evses,
                  firmware=firmware)


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


def _csms(table: dict, base: Path, identity: str) -> CsmsConfig:
    url = _str(table, "csms", "url", required=True)
    assert url is not None
    url = _check_url(url)
    profile = _int(table, "csms", "security_profile", required=False)
    if profile is None:
        profile = 1  # the documented example's; the least demanding, so tests and dev need no certs
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
        import difflib   # only for a config with a mistake: not in every daemon
        close = difflib.get_close_matches(driver.lower(), HAL_DRIVERS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _Invalid("hal.driver", f"must be 'mock' or 'hardware', got {_short(driver)}{hint}")
    return HalConfig(driver=driver)


def _firmware(table: dict) -> FirmwareConfig:
    install = _str(table, "firmware", "install_command", required=False)
    version = _str(table, "firmware", "version_command", required=False)
    timeout = _int(table, "firmware", "install_timeout_s", required=False)
    if timeout is not None and not 10 <= timeout <= 86400:
        raise _Invalid("firmware.install_timeout_s", f"must be 10 to 86400 seconds, got {timeout}")
    try:
        if install is not None:
            CommandInstaller(install, version)   # the same checks the daemon will make
        elif version is not None:
            raise HalConfigError("version_command", "needs install_command too")
    except HalConfigError as exc:
        raise _Invalid(f"firmware.{exc.key}", exc.message) from None
    return FirmwareConfig(install, version, timeout or DEFAULT_INSTALL_TIMEOUT_S)


def _devices(entry: dict, prefix: str, hal_driver: str) -> tuple[DriverSpec, ...]:
    """The [evse.<role>] tables, each checked by its driver (hal.drivers.check). The mock
    station takes one: a real power module (hal/drivers/mock/real_power.py)."""
    specs = []
    for role in DEVICE_ROLES:
        if role not in entry:
            continue
        name = f"{prefix}.{role}"
        table = entry[role]
        if hal_driver != "hardware" and role != "power":
            raise _Invalid(name, 'device tables need hal.driver = "hardware" (the mock '
                                 "takes only [evse.power]); remove the table or set the driver")
        if not isinstance(table, dict):
            raise _Invalid(name, f"expected a table [evse.{role}], got {_describe(table)}")
        driver = _str(table, name, "driver", required=True)
        assert driver is not None
        spec = DriverSpec(role, driver, settings_without_driver(table))
        try:
            check_driver(spec)
        except HalConfigError as exc:
            raise _Invalid(f"{name}.{exc.key}", exc.message) from None
        specs.append(spec)
    if hal_driver == "hardware":
        roles = {s.role for s in specs}
        if "meter" not in roles:
            raise _Invalid(f"{prefix}.meter", "missing: an EVSE needs a meter to bill; add [evse.meter]")
        if not roles & {"pilot", "power"}:
            raise _Invalid(f"{prefix}.pilot", "missing: an AC EVSE needs [evse.pilot] "
                                              "(a DC one [evse.power])")
    return tuple(specs)


def _evses(entries: list | None, hal_driver: str) -> tuple[EvseConfig, ...]:
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
        has_power = "power" in entry
        dc = entry.get("dc", has_power)
        if not isinstance(dc, bool):
            raise _Invalid(f"{prefix}.dc", f"must be true or false, got {_describe(dc)}")
        if (hal_driver == "hardware" or has_power) and dc != has_power:
            raise _Invalid(f"{prefix}.dc", "a DC EVSE needs [evse.power], and an EVSE with "
                                           "[evse.power] is DC; remove the key or fix the tables")
        evses.append(EvseConfig(id=evse_id, max_current_a=current, phases=phases,
                                nominal_voltage_v=voltage,
                                devices=_devices(entry, prefix, hal_driver), dc=dc))
    return tuple(sorted(evses, key=lambda e: e.id))


def _file(table: dict, prefix: str, key: str, base: Path) -> Path | None:
    """An optional path to a file the agent must be able to read, resolved against base.

    Here rather than in `agent.config_fields` because it opens the file: the value checks
    there stay free of I/O."""
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
