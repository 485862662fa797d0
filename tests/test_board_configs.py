"""The example board configs in config/ are valid: every driver accepts its table.

Device paths are pointed at stand-ins (pseudo-terminals for the serial ports, a file for
the GPIO chip, the fake gpiod bindings) as on a bench before the board arrives.
"""

import os
import sys
from pathlib import Path

import pytest

from agent.config import load_config
from tests.fake_gpiod import Sim, make_v2

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


@pytest.fixture
def bench(tmp_path, monkeypatch):
    ptys = [os.openpty() for _ in range(2)]
    chip = tmp_path / "gpiochip0"
    chip.touch()
    sim = Sim()
    sim.add_chip(str(chip))
    monkeypatch.setitem(sys.modules, "gpiod", make_v2(sim))
    (tmp_path / "pwm" / "pwmchip0").mkdir(parents=True)
    replacements = {"/sys/class/pwm": str(tmp_path / "pwm"),"/dev/ttyUSB0": os.ttyname(ptys[0][1]), "/dev/ttyS1": os.ttyname(ptys[1][1]),
                    "/dev/gpiochip0": str(chip), "/var/lib/station-agent": str(tmp_path / "state")}
    yield tmp_path, replacements
    sim.close()
    for master, slave in ptys:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("name, roles", [
    ("ac-board.toml", {"meter", "contactor", "pilot", "lock", "reader"}),
    ("dc-board.toml", {"meter", "power", "contactor", "pilot", "reader"}),
])
def test_example_board_config_is_valid(bench, name, roles):
    tmp_path, replacements = bench
    text = (CONFIG_DIR / name).read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    config = load_config(path)
    assert config.hal.driver == "hardware"
    assert {spec.role for spec in config.evses[0].devices} == roles


def test_example_board_config_names_a_missing_port(tmp_path):
    # As shipped, on a machine without the board: the first missing device is named.
    path = tmp_path / "ac.toml"
    path.write_text((CONFIG_DIR / "ac-board.toml").read_text().replace(
        "/var/lib/station-agent", str(tmp_path)))
    from agent.config import ConfigError
    with pytest.raises(ConfigError, match=r"evse\[1\]\.meter\.port: .*/dev/ttyUSB0"):
        load_config(path)


def test_the_commented_pn532_reader_of_the_ac_board_is_valid(bench):
    """The commented alternative reader table, uncommented in place of the RDM6300 one, is
    a config the PN532 driver accepts (and names its mistakes in)."""
    tmp_path, replacements = bench
    text = (CONFIG_DIR / "ac-board.toml").read_text()
    rdm, marker, alternative = text.partition('# Or, for 13.56 MHz cards')
    alternative = marker + alternative
    assert '#driver = "pn532"' in alternative
    rdm = rdm[:rdm.index("[evse.reader]")]
    pn532 = "\n".join(line[1:] if line.startswith("#") and not line.startswith("# ") else line
                      for line in alternative.splitlines())
    text = rdm + pn532
    for old, new in replacements.items():
        text = text.replace(old, new)
    path = tmp_path / "ac-pn532.toml"
    path.write_text(text)
    config = load_config(path)
    reader = next(spec for spec in config.evses[0].devices if spec.role == "reader")
    assert reader.driver == "pn532"
    assert dict(reader.settings) == {"port": replacements["/dev/ttyS1"], "baudrate": 115200,
                                     "poll_s": 0.25, "repeat_s": 2.0, "timeout_s": 1.0,
                                     "retry_s": 5.0}
    from agent.config import ConfigError
    path.write_text(text.replace("poll_s = 0.25", "poll_s = 0"))
    with pytest.raises(ConfigError, match=r"evse\[1\]\.reader\.poll_s: must be a number"):
        load_config(path)
