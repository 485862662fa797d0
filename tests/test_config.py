"""The config file contract of docs/architecture.md: what loads, and the one line when it does not."""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path

import pytest

import agent
from agent.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    CsmsConfig,
    EvseConfig,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "0123456789abcdefXYZ"  # 19 characters of the passwordString set

BASE = {
    "station": {"id": "CS-001", "vendor": "Example", "model": "AC-22"},
    "csms": {"url": "ws://127.0.0.1:9000/ocpp", "security_profile": 1, "password": PASSWORD},
    "evse": [{"id": 1, "max_current_a": 32}],
}


def doc(**changes: dict) -> dict:
    """BASE with tables merged in; a None value deletes the key (or the table)."""
    data = copy.deepcopy(BASE)
    for table, values in changes.items():
        if values is None:
            data.pop(table, None)
            continue
        target = data.setdefault(table, {})
        for key, value in values.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
    return data


def parse(data: dict, path: Path | None = None) -> Config:
    return parse_config(data, path or Path("/etc/station-agent/station-agent.toml"))


def error(data: dict, path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(data, path)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def write(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, str]:
    """Three readable files, named relative to tmp_path (where the config will live)."""
    (tmp_path / "certs").mkdir()
    names = {"ca_file": "certs/ca.pem", "cert_file": "certs/station.pem", "key_file": "certs/station.key"}
    for relative in names.values():
        (tmp_path / relative).write_text("-----BEGIN DUMMY-----\n")
    return names


# --- what loads ------------------------------------------------------------------------------


def test_minimal_config_gets_the_documented_defaults():
    config = parse(BASE)
    assert config.station.id == "CS-001"
    assert config.station.serial_number is None
    assert config.station.firmware_version == agent.__version__
    assert config.csms.security_profile == 1
    assert config.csms.ca_file is None and config.csms.cert_file is None and config.csms.key_file is None
    assert config.storage.dir == Path("/var/lib/station-agent")
    assert config.hal.driver == "mock"
    assert config.evses == (EvseConfig(id=1, max_current_a=32.0, phases=3, nominal_voltage_v=230.0),)
    assert isinstance(config.evses[0].max_current_a, float)


def test_default_config_path():
    assert DEFAULT_CONFIG_PATH == Path("/etc/station-agent/station-agent.toml")


def test_design_example_loads(tmp_path: Path, pem: dict[str, str]):
    # The documented config example, with a real password and files.
    path = write(
        tmp_path,
        f"""
[station]
id = "CS-001"
vendor = "Example"
model = "AC-22"
serial_number = "0001"
firmware_version = "1.0.0"

[csms]
url = "ws://127.0.0.1:9000/ocpp"
security_profile = 1
password = "{PASSWORD}"
ca_file = "certs/ca.pem"
cert_file = "certs/station.pem"
key_file = "certs/station.key"

[storage]
dir = "/var/lib/station-agent"

[hal]
driver = "mock"

[[evse]]
id = 1
max_current_a = 32
phases = 3
nominal_voltage_v = 230
""",
    )
    config = load_config(path)
    assert config.path == path
    assert config.station.serial_number == "0001"
    assert config.station.firmware_version == "1.0.0"
    assert config.csms.ca_file == tmp_path / "certs/ca.pem"
    assert config.csms.cert_file == tmp_path / "certs/station.pem"
    assert config.csms.key_file == tmp_path / "certs/station.key"


def test_evses_are_sorted_by_id_and_take_floats():
    config = parse(
        doc(evse=None)
        | {
            "evse": [
                {"id": 2, "max_current_a": 16.5, "phases": 1, "nominal_voltage_v": 120},
                {"id": 1, "max_current_a": 32},
            ]
        }
    )
    assert [e.id for e in config.evses] == [1, 2]
    assert config.evses[1] == EvseConfig(id=2, max_current_a=16.5, phases=1, nominal_voltage_v=120.0)


def test_config_is_frozen():
    config = parse(BASE)
    with pytest.raises(AttributeError):
        config.station.id = "other"  # type: ignore[misc]


def test_password_never_in_repr():
    config = parse(BASE)
    assert PASSWORD not in repr(config)
    assert PASSWORD not in repr(config.csms)
    assert config.csms.password == PASSWORD


def test_shipped_configs_load():
    installed = load_config(REPO / "config" / "station-agent.toml")
    assert installed.hal.driver == "mock"
    assert installed.storage.dir == Path("/var/lib/station-agent")
    assert len(installed.evses) == 1

    dev = load_config(REPO / "config" / "dev.toml")
    assert dev.csms.url == "ws://127.0.0.1:9000/ocpp"
    assert dev.csms.security_profile == 1 and dev.csms.password
    assert dev.storage.dir == REPO / "config" / "../.state/dev"
    assert dev.hal.driver == "mock"


def test_installed_config_documents_every_key():
    text = (REPO / "config" / "station-agent.toml").read_text()
    keys = {
        "station": ["id", "vendor", "model", "serial_number", "firmware_version"],
        "csms": ["url", "security_profile", "password", "ca_file", "cert_file", "key_file"],
        "storage": ["dir"],
        "hal": ["driver"],
        "firmware": ["install_command", "version_command", "install_timeout_s"],
        "evse": ["id", "max_current_a", "phases", "nominal_voltage_v", "dc"],
    }
    lines = text.splitlines()
    for table, names in keys.items():
        for name in names:
            # The key appears (possibly commented out) right after a comment that explains it.
            hits = [i for i, line in enumerate(lines) if line.lstrip("#").startswith(f"{name} = ")]
            assert hits, f"{table}.{name} not in the installed config"
            assert any(lines[i - 1].startswith("#") for i in hits), f"{table}.{name} has no comment"
    for needle in ["default 3", "default 230", 'default "mock"', 'default "/var/lib/station-agent"', "default 1"]:
        assert needle in text


# --- the file itself -------------------------------------------------------------------------


def test_missing_file_names_it(tmp_path: Path):
    path = tmp_path / "nope.toml"
    message = load_error(path)
    assert str(path) in message and "not found" in message


def test_directory_instead_of_file_names_it(tmp_path: Path):
    message = load_error(tmp_path)
    assert str(tmp_path) in message and "directory" in message


def test_unreadable_path_names_it(tmp_path: Path):
    # A path through a regular file fails to open even for root (ENOTDIR).
    blocker = write(tmp_path, "x")
    message = load_error(blocker / "agent.toml")
    assert str(blocker / "agent.toml") in message and "cannot read" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied_names_it(tmp_path: Path):
    path = write(tmp_path, "")
    path.chmod(0)
    message = load_error(path)
    assert str(path) in message and "permission denied" in message


def test_syntax_error_names_file_and_line(tmp_path: Path):
    path = write(tmp_path, '[station]\nid = "CS-001"\nvendor = Example\n')
    message = load_error(path)
    assert str(path) in message and "line 3" in message and "TOML syntax error" in message


def test_syntax_error_at_end_of_file_still_has_a_line(tmp_path: Path):
    path = write(tmp_path, '[station]\nid = "CS-001"\nvendor =\n')
    message = load_error(path)
    assert "line 3" in message


def test_duplicate_key_is_a_syntax_error(tmp_path: Path):
    path = write(tmp_path, '[station]\nid = "a"\nid = "b"\n[csms]\n')
    assert "line" in load_error(path)


def test_not_utf8_names_file_and_line(tmp_path: Path):
    path = tmp_path / "agent.toml"
    path.write_bytes(b'[station]\nvendor = "\xff"\n')
    message = load_error(path)
    assert str(path) in message and "line 2" in message and "UTF-8" in message


def test_utf8_bom_is_tolerated(tmp_path: Path):
    text = (REPO / "config" / "dev.toml").read_text()
    path = tmp_path / "agent.toml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_config(path).station.id == "CS-DEV-001"


def test_errors_name_the_file():
    message = error(doc(station={"id": None}), Path("/some/where/agent.toml"))
    assert message.startswith("/some/where/agent.toml: station.id: ")


def test_error_carries_key_and_path():
    with pytest.raises(ConfigError) as info:
        parse(doc(csms={"url": None}), Path("/x/agent.toml"))
    assert info.value.key == "csms.url"
    assert info.value.path == Path("/x/agent.toml")


# --- unknown keys ----------------------------------------------------------------------------


def test_unknown_top_level_table_suggests_closest():
    message = error(doc() | {"stations": {"id": "x"}})
    assert "stations: unknown table" in message and "did you mean 'station'" in message


def test_unknown_top_level_key_says_where_it_belongs():
    message = error(doc() | {"vendor": "Example"})
    assert "vendor: unknown key" in message and "[station]" in message


def test_unknown_key_in_table_suggests_closest():
    message = error(doc(station={"vendr": "x"}))
    assert "station.vendr: unknown key" in message and "did you mean 'station.vendor'" in message


def test_unknown_key_in_table_without_close_match_lists_known_keys():
    message = error(doc(hal={"colour": "blue"}))
    assert "hal.colour: unknown key" in message and "driver" in message


def test_key_in_the_wrong_table_says_where_it_belongs():
    message = error(doc(station={"max_current_a": 32}))
    assert "station.max_current_a: unknown key" in message and "[[evse]]" in message


def test_unknown_key_in_evse_entry():
    data = doc()
    data["evse"].append({"id": 2, "max_current_a": 16, "max_curent_a": 16})
    message = error(data)
    assert "evse[2].max_curent_a: unknown key" in message and "did you mean 'evse[2].max_current_a'" in message


def test_unknown_key_reported_before_the_missing_key_it_replaces():
    message = error(doc(station={"vendor": None, "vendor_name": "Example"}))
    assert "station.vendor_name: unknown key" in message


# --- types -----------------------------------------------------------------------------------


def test_string_for_number_names_key_expected_and_got():
    message = error(doc(evse=None) | {"evse": [{"id": 1, "max_current_a": "32"}]})
    assert "evse[1].max_current_a: expected a number, got string '32'" in message
    assert "without quotes" in message


def test_bool_is_not_an_integer():
    message = error(doc(csms={"security_profile": True}))
    assert "csms.security_profile: expected an integer, got boolean true" in message


def test_bool_is_not_a_number():
    message = error(doc(evse=None) | {"evse": [{"id": 1, "max_current_a": True}]})
    assert "evse[1].max_current_a: expected a number, got boolean" in message


def test_float_is_not_an_id():
    message = error(doc(evse=None) | {"evse": [{"id": 1.0, "max_current_a": 32}]})
    assert "evse[1].id: expected an integer, got float 1.0" in message


def test_float_phases_rejected():
    message = error(doc(evse=None) | {"evse": [{"id": 1, "max_current_a": 32, "phases": 3.0}]})
    assert "evse[1].phases: expected an integer, got float" in message


def test_number_for_string():
    message = error(doc(station={"id": 1}))
    assert "station.id: expected a string, got integer 1" in message


def test_date_for_string(tmp_path: Path):
    text = (REPO / "config" / "dev.toml").read_text().replace('serial_number = "DEV-0001"', "serial_number = 2024-01-01")
    message = load_error(write(tmp_path, text))
    assert "station.serial_number: expected a string, got date" in message


def test_wrong_type_of_password_does_not_echo_it():
    message = error(doc(csms={"password": 12345678901234567}))
    assert "csms.password: expected a string, got integer" in message
    assert "12345678901234567" not in message


def test_table_expected():
    message = error(doc() | {"hal": "mock"})
    assert "hal: expected a table [hal], got string 'mock'" in message


def test_single_evse_table_instead_of_array():
    message = error(doc(evse=None) | {"evse": {"id": 1, "max_current_a": 32}})
    assert "evse:" in message and "[[evse]]" in message and "double brackets" in message


def test_nan_and_inf_rejected():
    for value in (float("nan"), float("inf")):
        message = error(doc(evse=None) | {"evse": [{"id": 1, "max_current_a": value}]})
        assert "evse[1].max_current_a: expected a finite number" in message


# --- required keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table, key",
    [("station", "id"), ("station", "vendor"), ("station", "model"), ("csms", "url")],
)
def test_missing_required_key_names_it(table: str, key: str):
    message = error(doc(**{table: {key: None}}))
    assert f"{table}.{key}: missing" in message and f"[{table}]" in message


def test_missing_station_table_names_first_key():
    assert "station.id: missing" in error(doc(station=None))


def test_missing_evse():
    assert "evse: no [[evse]] table" in error(doc(evse=None))


def test_empty_evse_array():
    assert "evse: no [[evse]] table" in error(doc(evse=None) | {"evse": []})


@pytest.mark.parametrize("key", ["id", "max_current_a"])
def test_missing_evse_key(key: str):
    entry = {"id": 1, "max_current_a": 32}
    del entry[key]
    message = error(doc(evse=None) | {"evse": [entry]})
    assert f"evse[1].{key}: missing" in message and "[[evse]]" in message


def test_empty_file_reports_station_first(tmp_path: Path):
    assert "station.id: missing" in load_error(write(tmp_path, ""))


# --- station ---------------------------------------------------------------------------------


@pytest.mark.parametrize("identity", ["A", "x" * 48, "CS-001_a.b*c=d+e|f@g", "RDAM 123"])
def test_valid_identities(identity: str):
    assert parse(doc(station={"id": identity})).station.id == identity


@pytest.mark.parametrize(
    "identity, words",
    [
        ("", "1 to 48 characters, got 0"),
        ("x" * 49, "1 to 48 characters, got 49"),
        ("CS:001", "':'"),
        ("CS\t001", "not allowed"),
        ("CS\n001", "not allowed"),
        ("CSé001", "not allowed"),
        (" CS-001", "leading or trailing spaces"),
    ],
)
def test_invalid_identities(identity: str, words: str):
    message = error(doc(station={"id": identity}))
    assert message.startswith("/etc/station-agent/station-agent.toml: station.id: ")
    assert words in message


@pytest.mark.parametrize(
    "key, limit", [("vendor", 50), ("model", 20), ("serial_number", 25), ("firmware_version", 50)]
)
def test_bootnotification_string_limits(key: str, limit: int):
    assert getattr(parse(doc(station={key: "x" * limit})).station, key) == "x" * limit
    message = error(doc(station={key: "x" * (limit + 1)}))
    assert f"station.{key}: must be at most {limit} characters" in message


@pytest.mark.parametrize("key", ["vendor", "model", "serial_number", "firmware_version"])
def test_empty_or_multiline_station_text_rejected(key: str):
    assert f"station.{key}: is empty" in error(doc(station={key: " "}))
    assert f"station.{key}: must be one line" in error(doc(station={key: "a\nb"}))


# --- csms: url and security profile ----------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ws://csms.example.com/ocpp", "ws://127.0.0.1:9000", "ws://[::1]:9000/ocpp", "WS://host/ocpp"],
)
def test_valid_urls(url: str):
    assert parse(doc(csms={"url": url})).csms.url == url


def test_trailing_slash_dropped():
    assert parse(doc(csms={"url": "ws://host:9000/ocpp/"})).csms.url == "ws://host:9000/ocpp"
    assert parse(doc(csms={"url": "ws://host:9000/"})).csms.url == "ws://host:9000"


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://host/ocpp", "scheme must be ws:// or wss://, got http://"),
        ("host/ocpp", "scheme must be ws:// or wss://"),
        ("ws:///ocpp", "no host"),
        ("ws://host/ocpp?x=1", "query"),
        ("ws://host/ocpp#frag", "fragment"),
        ("ws://host/ocpp?", "query"),
        ("ws://host:99999/ocpp", "not a valid URL"),
        ("ws://host:0/ocpp", "port 0"),
        ("ws://host:x/ocpp", "not a valid URL"),
        ("ws://user:pw@host/ocpp", "user info"),
        ("ws://host/my ocpp", "contains ' '"),
        ("", "scheme must be ws:// or wss://"),
    ],
)
def test_invalid_urls(url: str, words: str):
    message = error(doc(csms={"url": url}))
    assert "csms.url: " in message and words in message


@pytest.mark.parametrize("profile", [0, 4, -1])
def test_security_profile_must_be_1_2_or_3(profile: int):
    assert "csms.security_profile: must be 1, 2 or 3" in error(doc(csms={"security_profile": profile}))


def test_profile_1_requires_ws():
    message = error(doc(csms={"url": "wss://host/ocpp"}))
    assert "csms.url: security_profile 1" in message and "'ws://host/ocpp'" in message


@pytest.mark.parametrize("profile", [2, 3])
def test_profiles_2_and_3_require_wss(profile: int, tmp_path: Path, pem: dict[str, str]):
    message = error(doc(csms={"security_profile": profile} | pem), tmp_path / "agent.toml")
    assert f"csms.url: security_profile {profile} needs a wss:// URL" in message
    assert "'wss://127.0.0.1:9000/ocpp'" in message


# --- csms: password --------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [1, 2])
def test_profiles_1_and_2_require_a_password(profile: int, tmp_path: Path, pem: dict[str, str]):
    url = "ws://host/ocpp" if profile == 1 else "wss://host/ocpp"
    data = doc(csms={"security_profile": profile, "url": url, "password": None} | pem)
    message = error(data, tmp_path / "agent.toml")
    assert "csms.password: missing" in message and f"security_profile {profile}" in message


def test_profile_3_needs_no_password(tmp_path: Path, pem: dict[str, str]):
    data = doc(csms={"security_profile": 3, "url": "wss://host/ocpp", "password": None} | pem)
    config = parse(data, tmp_path / "agent.toml")
    assert config.csms.password is None
    assert config.csms.key_file == tmp_path / "certs/station.key"


@pytest.mark.parametrize("password", ["a" * 16, "Z" * 40, "azAZ09*-_=:+|@.xyz"])
def test_valid_passwords(password: str):
    assert parse(doc(csms={"password": password})).csms.password == password


@pytest.mark.parametrize(
    "password, words",
    [
        ("a" * 15, "16 to 40 characters"),
        ("a" * 41, "16 to 40 characters"),
        ("", "16 to 40 characters"),
        ("0123456789abcdef#", "character 17 is not allowed"),
        ("0123456789 abcdef", "character 11 is not allowed"),
        ("0123456789abcdefé", "character 17 is not allowed"),
    ],
)
def test_invalid_passwords_never_echoed(password: str, words: str):
    message = error(doc(csms={"password": password}))
    assert "csms.password: " in message and words in message
    if password:
        assert password not in message


# --- csms: certificate files -----------------------------------------------------------------


@pytest.mark.parametrize("profile", [2, 3])
def test_profiles_2_and_3_require_ca_file(profile: int, tmp_path: Path, pem: dict[str, str]):
    data = doc(csms={"security_profile": profile, "url": "wss://host/ocpp"} | pem | {"ca_file": None})
    assert "csms.ca_file: missing" in error(data, tmp_path / "agent.toml")


@pytest.mark.parametrize("key", ["cert_file", "key_file"])
def test_profile_3_requires_cert_and_key(key: str, tmp_path: Path, pem: dict[str, str]):
    data = doc(csms={"security_profile": 3, "url": "wss://host/ocpp"} | pem | {key: None})
    assert f"csms.{key}: missing" in error(data, tmp_path / "agent.toml")


def test_profile_2_loads_with_ca_file(tmp_path: Path, pem: dict[str, str]):
    data = doc(csms={"security_profile": 2, "url": "wss://host/ocpp", "ca_file": pem["ca_file"]})
    config = parse(data, tmp_path / "agent.toml")
    assert config.csms.ca_file == tmp_path / "certs/ca.pem"
    assert config.csms.cert_file is None


@pytest.mark.parametrize("key", ["ca_file", "cert_file", "key_file"])
def test_named_file_that_does_not_exist(key: str, tmp_path: Path, pem: dict[str, str]):
    data = doc(csms={"security_profile": 3, "url": "wss://host/ocpp"} | pem | {key: "certs/missing.pem"})
    message = error(data, tmp_path / "agent.toml")
    assert f"csms.{key}: file not found: {tmp_path / 'certs/missing.pem'}" in message


def test_named_file_checked_even_when_profile_does_not_need_it(tmp_path: Path):
    message = error(doc(csms={"ca_file": "nowhere.pem"}), tmp_path / "agent.toml")
    assert "csms.ca_file: file not found" in message


def test_named_file_that_is_a_directory(tmp_path: Path, pem: dict[str, str]):
    data = doc(csms={"security_profile": 2, "url": "wss://host/ocpp", "ca_file": "certs"})
    message = error(data, tmp_path / "agent.toml")
    assert f"csms.ca_file: is a directory, not a file: {tmp_path / 'certs'}" in message


def test_named_file_that_cannot_be_opened(tmp_path: Path, pem: dict[str, str]):
    data = doc(csms={"security_profile": 2, "url": "wss://host/ocpp", "ca_file": "certs/ca.pem/x"})
    message = error(data, tmp_path / "agent.toml")
    assert "csms.ca_file: cannot read" in message and str(tmp_path / "certs/ca.pem/x") in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_named_file_permission_denied(tmp_path: Path, pem: dict[str, str]):
    (tmp_path / pem["key_file"]).chmod(0)
    data = doc(csms={"security_profile": 3, "url": "wss://host/ocpp"} | pem)
    message = error(data, tmp_path / "agent.toml")
    assert "csms.key_file: cannot read" in message and "permission denied" in message


def test_absolute_file_path_kept(tmp_path: Path, pem: dict[str, str]):
    absolute = str(tmp_path / pem["ca_file"])
    data = doc(csms={"security_profile": 2, "url": "wss://host/ocpp", "ca_file": absolute})
    assert parse(data, Path("/elsewhere/agent.toml")).csms.ca_file == Path(absolute)


def test_empty_file_name():
    assert "csms.ca_file: is empty" in error(doc(csms={"ca_file": ""}))


# --- storage and hal -------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path, pem: dict[str, str], monkeypatch):
    text = (REPO / "config" / "dev.toml").read_text()
    text = text.replace('security_profile = 1', 'security_profile = 1\nca_file = "certs/ca.pem"')
    path = write(tmp_path, text)
    monkeypatch.chdir("/")
    config = load_config(path)
    assert config.storage.dir == tmp_path / "../.state/dev"
    assert config.csms.ca_file == tmp_path / "certs/ca.pem"


def test_relative_config_path_gives_absolute_paths(tmp_path: Path, monkeypatch):
    write(tmp_path, (REPO / "config" / "dev.toml").read_text())
    monkeypatch.chdir(tmp_path)
    config = load_config("agent.toml")
    assert config.path == tmp_path / "agent.toml"
    assert config.storage.dir.is_absolute()


def test_storage_dir_that_is_a_file(tmp_path: Path):
    write(tmp_path, "x", name="state")
    message = error(doc(storage={"dir": "state"}), tmp_path / "agent.toml")
    assert "storage.dir: " in message and "not a directory" in message


def test_storage_dir_empty():
    assert "storage.dir: is empty" in error(doc(storage={"dir": ""}))


def test_hal_driver_mock():
    assert parse(doc(hal={"driver": "mock"})).hal.driver == "mock"


def test_unknown_hal_driver_suggests():
    message = error(doc(hal={"driver": "Mock"}))
    assert "hal.driver: must be 'mock' or 'hardware', got 'Mock'" in message and "did you mean 'mock'" in message


# --- evse ------------------------------------------------------------------------------------


def evses(*entries: dict) -> dict:
    return doc(evse=None) | {"evse": list(entries)}


def test_duplicate_evse_id():
    message = error(evses({"id": 1, "max_current_a": 32}, {"id": 1, "max_current_a": 32}))
    assert "evse[2].id: duplicate id 1" in message


def test_evse_id_gap():
    message = error(evses({"id": 1, "max_current_a": 32}, {"id": 3, "max_current_a": 32}))
    assert "evse[2].id: EVSE ids must run 1..2 without gaps" in message and "missing: 2" in message


def test_evse_ids_must_start_at_1():
    assert "evse[1].id: must be 1 or more" in error(evses({"id": 0, "max_current_a": 32}))
    assert "evse[1].id: EVSE ids must run 1..1" in error(evses({"id": 2, "max_current_a": 32}))


def test_evse_entry_must_be_a_table():
    assert "evse[1]: expected a table" in error(doc(evse=None) | {"evse": [1]})


@pytest.mark.parametrize("current", [0, -1, 1000.5, 5000])
def test_max_current_out_of_range(current: float):
    message = error(evses({"id": 1, "max_current_a": current}))
    assert "evse[1].max_current_a: must be more than 0 and at most 1000 A" in message


def test_max_current_limit_inclusive():
    assert parse(evses({"id": 1, "max_current_a": 1000})).evses[0].max_current_a == 1000.0


@pytest.mark.parametrize("phases", [0, 2, 4])
def test_phases_1_or_3(phases: int):
    assert "evse[1].phases: must be 1 or 3" in error(evses({"id": 1, "max_current_a": 32, "phases": phases}))


@pytest.mark.parametrize("voltage", [99.9, 1000.1, 0, -230])
def test_nominal_voltage_out_of_range(voltage: float):
    message = error(evses({"id": 1, "max_current_a": 32, "nominal_voltage_v": voltage}))
    assert "evse[1].nominal_voltage_v: must be 100 to 1000 V" in message


@pytest.mark.parametrize("voltage", [100, 1000, 400.0])
def test_nominal_voltage_bounds_inclusive(voltage: float):
    assert parse(evses({"id": 1, "max_current_a": 32, "nominal_voltage_v": voltage})).evses[0].nominal_voltage_v == voltage


def test_toml_arrays_of_tables_roundtrip(tmp_path: Path):
    text = (REPO / "config" / "dev.toml").read_text() + "\n[[evse]]\nid = 2\nmax_current_a = 16\nphases = 1\n"
    config = load_config(write(tmp_path, text))
    assert [(e.id, e.phases) for e in config.evses] == [(1, 3), (2, 1)]
    assert tomllib.loads(text)["evse"][1]["id"] == 2


# --- permission denied without needing a non-root user -------------------------------------


def test_permission_denied_on_config_file_simulated(tmp_path: Path, monkeypatch):
    path = write(tmp_path, "")

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    message = load_error(path)
    assert str(path) in message and "permission denied" in message


def test_permission_denied_on_named_file_simulated(tmp_path: Path, pem: dict[str, str], monkeypatch):
    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr("agent.config.open", denied, raising=False)
    data = doc(csms={"security_profile": 3, "url": "wss://host/ocpp"} | pem)
    message = error(data, tmp_path / "agent.toml")
    assert f"csms.ca_file: cannot read {tmp_path / 'certs/ca.pem'}: permission denied" in message
