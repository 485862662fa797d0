"""The daemon on the example board configs, with real protocol peers for the hardware.

config/ac-board.toml and config/dc-board.toml as shipped, with device paths pointed at
stand-ins: the Modbus meter is pymodbus on a pseudo-terminal, the DC power modules are
simulated modules on python-can's virtual bus, GPIO is the fake gpiod. The agent runs in
this process (the same `run_daemon` that `station-agent run` calls) so that the fake
GPIO and the virtual CAN bus, which live in this process, can be shared with it.
"""

import asyncio
import os
import sys
from pathlib import Path

import can
import pytest

from agent.config import load_config
from agent.daemon import run_daemon
from agent.demo.csms import Csms
from tests.infy_module_sim import RealClock, SimModule
from tests.fake_gpiod import Sim, make_v2
from tests.modbus_peer import SimulatedSdm630

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
PASSWORD = "change-me-to-a-random-secret"
STATION = "CS-001"
PILOT_LINES = (5, 6, 13, 19)    # as in the example configs: thermometer code, 1111 = A


@pytest.fixture
def gpio(tmp_path, monkeypatch):
    chip_path = tmp_path / "gpiochip0"
    chip_path.touch()
    (tmp_path / "pwm" / "pwmchip0" / "pwm0").mkdir(parents=True)  # an exported channel
    sim = Sim()
    chip = sim.add_chip(str(chip_path))
    for line in PILOT_LINES:
        chip.levels[line] = True  # state A: nothing plugged
    monkeypatch.setitem(sys.modules, "gpiod", make_v2(sim))
    yield chip
    sim.close()


def set_pilot(chip, code):
    for line, bit in zip(PILOT_LINES, code):
        chip.set_input(line, bit == "1")


def board_config(tmp_path, name, csms_url, meter_port, reader_port, extra=None):
    text = (CONFIG_DIR / name).read_text()
    replacements = {"/dev/ttyUSB0": meter_port, "/dev/ttyS1": reader_port,
                    "/dev/gpiochip0": str(tmp_path / "gpiochip0"),
                    "/sys/class/pwm": str(tmp_path / "pwm"),
                    "/var/lib/station-agent": str(tmp_path / "state"),
                    "ws://127.0.0.1:9000/ocpp": csms_url, **(extra or {})}
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return load_config(path)


def reader_pty():
    master, slave = os.openpty()
    return master, slave, os.ttyname(slave)


async def status_of(link, evse, status):
    return await link.expect_call("StatusNotification", timeout=10, where=lambda p: (
        p["evseId"] == evse and p["connectorStatus"] == status))


def test_ac_board_runs_and_reports_what_the_hardware_does(tmp_path, gpio):
    async def main():
        master, slave, reader_port = reader_pty()
        async with Csms(passwords={STATION: PASSWORD}) as csms, SimulatedSdm630() as meter:
            config = board_config(tmp_path, "ac-board.toml", csms.url, meter.port, reader_port)
            stop = asyncio.Event()
            daemon = asyncio.ensure_future(run_daemon(config, stop))
            try:
                link = await csms.wait_station(STATION, timeout=10)
                await status_of(link, 1, "Available")
                set_pilot(gpio, "0111")        # an EV plugged in: state B
                await status_of(link, 1, "Occupied")
                meter.proxy.silent = True      # the meter stops answering
                await status_of(link, 1, "Faulted")
                meter.proxy.silent = False
                await status_of(link, 1, "Occupied")
                set_pilot(gpio, "1111")
                await status_of(link, 1, "Available")
                assert meter.reads, "the meter was polled"
            finally:
                stop.set()
                await asyncio.wait_for(daemon, 10)
                os.close(master)
                os.close(slave)
            relay = 17
            assert gpio.output(relay) is False, "the contactor is left open"
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))


def test_dc_board_runs_with_power_modules_on_the_can_bus(tmp_path, gpio):
    async def main():
        master, slave, reader_port = reader_pty()
        channel = f"dc-{os.getpid()}"
        # One bus object per module: on a virtual channel they all hear each other.
        buses = [can.Bus(interface="virtual", channel=channel) for _ in range(2)]
        modules = [SimModule(bus, address, clock=RealClock())
                   for bus, address in zip(buses, (1, 2))]
        for module in modules:
            module.start()
        dc_meter = {(3, a): 0 for a in (0x0000, 0x0001, 0x0010, 0x0011)}
        from tests.modbus_peer import SimulatedMeter
        async with Csms(passwords={STATION: PASSWORD}) as csms, SimulatedMeter(dc_meter) as meter:
            config = board_config(tmp_path, "dc-board.toml", csms.url, meter.port, reader_port,
                                  {'interface = "socketcan"': 'interface = "virtual"',
                                   'channel = "can0"': f'channel = "{channel}"',
                                   "address = 3\n": "address = 1\n"})
            stop = asyncio.Event()
            daemon = asyncio.ensure_future(run_daemon(config, stop))
            try:
                link = await csms.wait_station(STATION, timeout=10)
                await status_of(link, 1, "Available")
                assert all(m.requests for m in modules), "both modules were talked to"
                for module in modules:
                    module.silent = True       # the whole power stage stops answering
                await status_of(link, 1, "Faulted")
            finally:
                stop.set()
                await asyncio.wait_for(daemon, 10)
                for module, bus in zip(modules, buses):
                    module.stop()
                    bus.shutdown()
                os.close(master)
                os.close(slave)
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))
