"""Firmware installers (hal): the command from the config and the mock station's, and the
[firmware] table that chooses between them."""

import asyncio
import sys

import pytest

from agent.config import ConfigError, parse_config
from hal.api import HalConfigError
from hal.drivers.command_installer import CommandInstaller
from hal.drivers.mock.installer import MockInstaller, mock_image

BASE = {"station": {"id": "CS-1", "vendor": "V", "model": "M"},
        "csms": {"url": "ws://127.0.0.1:9000/ocpp", "password": "x" * 16},
        "evse": [{"id": 1, "max_current_a": 32}]}


def python(code):
    return f"{sys.executable} -c '{code}'"


def test_command_gets_the_image_as_one_argument_and_exit_status_decides(tmp_path):
    image = tmp_path / "odd name; rm -rf x.img"
    image.write_bytes(b"data")
    seen = tmp_path / "seen"
    script = tmp_path / "record.py"
    script.write_text(f"import sys, pathlib\npathlib.Path({str(seen)!r}).write_text(sys.argv[1])\n")
    ok = CommandInstaller(f"{sys.executable} {script} {{file}}")
    outcome = asyncio.run(ok.install(image))
    assert outcome.ok
    assert seen.read_text() == str(image)     # one argument, no shell in between

    failing = CommandInstaller(python("import sys; print(\"disk on fire\"); sys.exit(4)") + " {file}")
    outcome = asyncio.run(failing.install(image))
    assert not outcome.ok
    assert "status 4" in outcome.detail and "disk on fire" in outcome.detail


def test_a_hanging_installer_is_killed_and_a_missing_one_named(tmp_path):
    image = tmp_path / "fw.img"
    image.write_bytes(b"data")
    hanging = CommandInstaller(python("import time; time.sleep(30)") + " {file}", timeout_s=0.3)
    outcome = asyncio.run(hanging.install(image))
    assert not outcome.ok and "did not finish within 0.3 s" in outcome.detail
    missing = CommandInstaller("/nonexistent/updater {file}")
    outcome = asyncio.run(missing.install(image))
    assert not outcome.ok and "/nonexistent/updater" in outcome.detail


def test_version_command(tmp_path):
    version = tmp_path / "version"
    version.write_text("4.2.0-rc1\nbuilt yesterday\n")
    installer = CommandInstaller("true {file}", f"cat {version}")
    assert installer.running_version() == "4.2.0-rc1"
    version.unlink()
    assert installer.running_version() is None        # the config's version counts then
    assert CommandInstaller("true {file}").running_version() is None


def test_command_without_placeholder_or_unsplittable_is_refused():
    with pytest.raises(HalConfigError, match=r"\{file\}"):
        CommandInstaller("apt-get install -y")
    with pytest.raises(HalConfigError, match="cannot be split"):
        CommandInstaller("install '{file}")


def test_mock_installer_records_the_version_of_a_mock_image(tmp_path):
    installer = MockInstaller(tmp_path / "state")
    assert installer.running_version() is None
    good, bad, foreign = tmp_path / "good", tmp_path / "bad", tmp_path / "foreign"
    good.write_bytes(mock_image("2.1.0", padding=100))
    bad.write_bytes(mock_image("9.9.9", fail=True))
    foreign.write_bytes(b"\x7fELF....")
    assert not asyncio.run(installer.install(bad)).ok
    assert not asyncio.run(installer.install(foreign)).ok
    assert installer.running_version() is None
    assert asyncio.run(installer.install(good)).ok
    assert installer.running_version() == "2.1.0"

    # What it recorded is the whole state: no temporary file left beside it.
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["mock-firmware-version"]


def test_mock_installer_that_cannot_record_fails_and_keeps_the_running_version(tmp_path):
    state = tmp_path / "state"
    installer = MockInstaller(state)
    image = tmp_path / "image"
    image.write_bytes(mock_image("2.1.0"))
    assert asyncio.run(installer.install(image)).ok
    (state / "mock-firmware-version.tmp").mkdir()      # the temporary file cannot be written
    image.write_bytes(mock_image("3.0.0"))
    outcome = asyncio.run(installer.install(image))
    assert not outcome.ok and "cannot record the version" in outcome.detail
    assert installer.running_version() == "2.1.0"


@pytest.mark.parametrize("table, message", [
    ({"install_command": "rauc install"}, "firmware.install_command: must name the image as {file}"),
    ({"version_command": "cat /etc/version"}, "firmware.version_command: needs install_command too"),
    ({"install_command": "x {file}", "install_timeout_s": 5}, "firmware.install_timeout_s: must be 10"),
    ({"install_command": "x {file}", "colour": "red"}, "firmware.colour"),
])
def test_firmware_table_errors_name_the_key(tmp_path, table, message):
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, "firmware": table}, tmp_path / "agent.toml")
    assert message in str(info.value)


def test_firmware_table_loads(tmp_path):
    config = parse_config({**BASE, "firmware": {"install_command": "rauc install {file}",
                                                "install_timeout_s": 600}}, tmp_path / "a.toml")
    assert config.firmware.install_command == "rauc install {file}"
    assert config.firmware.install_timeout_s == 600
    assert parse_config(BASE, tmp_path / "a.toml").firmware.install_command is None
