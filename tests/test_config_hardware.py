"""hal.driver = "hardware": per-EVSE device tables, each checked by its driver."""

import os
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config

BASE = """
[station]
id = "CS-1"
vendor = "Example"
model = "AC-22"

[csms]
url = "ws://127.0.0.1:9000/ocpp"
password = "s3cret-password-0001"

[storage]
dir = "state"

[hal]
driver = "{driver}"

[[evse]]
id = 1
max_current_a = 32
"""


def write(tmp_path: Path, devices: str, driver: str = "hardware") -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(BASE.format(driver=driver) + devices)
    return path


def error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


@pytest.fixture
def pty_port(tmp_path):
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_ac_board_tables_are_parsed(tmp_path, pty_port):
    devices = f"""
[evse.meter]
driver = "modbus_meter"
port = "{pty_port}"
address = 2
map = "sdm630"

[evse.pilot]
driver = "gpio"
chip = "{pty_port}"
lines = [4, 5, 6, 7]
pwm_sysfs = "{tmp_path}"
"""
    try:
        import gpiod  # noqa: F401
    except ImportError:
        # Without the gpiod bindings the GPIO driver says so, naming the table.
        assert "evse[1].pilot.driver" in error(write(tmp_path, devices))
        assert "gpiod" in error(write(tmp_path, devices))
        devices = devices.replace('[evse.pilot]\ndriver = "gpio"', '[evse.power]\ndriver = "can_power"')
        devices = devices.replace(f'chip = "{pty_port}"\nlines = [4, 5, 6, 7]\npwm_sysfs = "{tmp_path}"',
                                  'interface = "virtual"\nchannel = "test"\nmodules = [1]')
    config = load_config(write(tmp_path, devices))
    roles = {spec.role: spec for spec in config.evses[0].devices}
    assert roles["meter"].driver == "modbus_meter"
    assert roles["meter"].settings == {"port": pty_port, "address": 2, "map": "sdm630"}


def test_driver_setting_errors_name_the_table_and_key(tmp_path):
    message = error(write(tmp_path, '[evse.meter]\ndriver = "modbus_meter"\nport = "/dev/ttyNOPE9"\n'))
    assert "evse[1].meter.port" in message and "/dev/ttyNOPE9" in message
    message = error(write(tmp_path, '[evse.meter]\ndriver = "sdm_magic"\nport = "/dev/null"\n'))
    assert "evse[1].meter.driver" in message and "modbus_meter" in message


def test_hardware_needs_a_meter_and_a_pilot_or_power_module(tmp_path, pty_port):
    assert "evse[1].meter" in error(write(tmp_path, ""))
    message = error(write(tmp_path, f'[evse.meter]\ndriver = "modbus_meter"\nport = "{pty_port}"\n'))
    assert "evse[1].pilot" in message


def test_dc_key_agrees_with_the_power_module(tmp_path, pty_port):
    meter = f'dc = true\n[evse.meter]\ndriver = "modbus_meter"\nport = "{pty_port}"\n'
    message = error(write(tmp_path, meter))
    assert "evse[1].dc" in message and "[evse.power]" in message
    assert "evse[1].dc" in error(write(tmp_path, 'dc = "yes"\n', driver="mock"))
    mock = load_config(write(tmp_path, "dc = true\n", driver="mock"))
    assert mock.evses[0].dc is True


def test_device_tables_need_the_hardware_driver(tmp_path, pty_port):
    message = error(write(tmp_path, f'[evse.meter]\ndriver = "modbus_meter"\nport = "{pty_port}"\n',
                          driver="mock"))
    assert "evse[1].meter" in message and 'hal.driver = "hardware"' in message
