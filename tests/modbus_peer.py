"""A simulated Modbus RTU meter on a pseudo-terminal, for tests and bench/meter_polling.py.

    driver (pyserial) -- pty A -- LineProxy -- pty B -- pymodbus ModbusSerialServer

pymodbus 3.16 is the protocol peer: it opens pty B's slave by name, like a real port.
The driver opens pty A's slave. The proxy between the two masters copies bytes both
ways and is where faults are made: a silent meter, late answers, corrupted or garbage
answers, stray bytes on the line. Registers are a dict the test sets at any time; the
SimDevice `action` hook copies them into pymodbus's store on every read. Addresses never
given are undefined in pymodbus, which answers "illegal data address" for them.

pymodbus 3.16's SimDevice/SimData take wire addresses as they are (0-based); the older
ModbusSequentialDataBlock, deprecated in 3.16, shifts them by one (docs/architecture.md, pitfalls).
A pty master has no path pymodbus (or our driver) could open, hence two pairs and the
proxy rather than one pair with one side on the master fd.

Run as a program it serves a simulated SDM630 and prints the driver's port:
    python tests/modbus_peer.py [--baudrate 9600]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import struct
import sys
import tty
from typing import Any

from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

INPUT, HOLDING = 4, 3


class LineProxy:
    """Two pty pairs joined through this object; fault knobs apply to the next frames."""

    def __init__(self) -> None:
        self._driver_master, self._driver_slave = os.openpty()
        self._meter_master, self._meter_slave = os.openpty()
        for fd in (self._driver_slave, self._meter_slave):
            tty.setraw(fd)  # no echo, no line editing before pyserial configures it
        self.driver_port = os.ttyname(self._driver_slave)
        self.meter_port = os.ttyname(self._meter_slave)
        self.silent = False                 # drop requests: the meter never hears them
        self.corrupt: int = 0               # flip a CRC bit in this many next answers
        self.delays: list[float] = []       # hold the next answers this long each
        self.replacements: list[bytes] = []  # send these instead of the next answers
        self.requests: list[bytes] = []
        self.held = 0                       # delayed answers not sent yet
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._driver_master, self._from_driver)
        self._loop.add_reader(self._meter_master, self._from_meter)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._driver_master)
            self._loop.remove_reader(self._meter_master)
        # The slaves we hold keep the masters from EIO while the two ends come and go.
        for fd in (self._driver_master, self._driver_slave, self._meter_master, self._meter_slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def inject(self, data: bytes) -> None:
        """Bytes on the line towards the driver, now, outside any transaction."""
        os.write(self._driver_master, data)

    def _from_driver(self) -> None:
        data = os.read(self._driver_master, 4096)
        self.requests.append(data)
        if not self.silent:
            os.write(self._meter_master, data)

    def _from_meter(self) -> None:
        data = os.read(self._meter_master, 4096)
        if self.replacements:
            data = self.replacements.pop(0)
        elif self.corrupt > 0:
            self.corrupt -= 1
            data = data[:-1] + bytes([data[-1] ^ 0x01])
        delay = self.delays.pop(0) if self.delays else 0.0
        if delay > 0:
            assert self._loop is not None
            self.held += 1
            self._loop.call_later(delay, self._late, data)
        else:
            os.write(self._driver_master, data)


    def _late(self, data: bytes) -> None:
        self.held -= 1
        os.write(self._driver_master, data)


def float_words(value: float) -> list[int]:
    """An IEEE-754 float32 as two registers, high word first (Eastron's order)."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


class SimulatedMeter:
    """pymodbus serving `registers` ({(function, address): word}) as unit `unit`.

    The set of addresses is fixed when the server starts; values change at any time.
    """

    def __init__(self, registers: dict[tuple[int, int], int], *, unit: int = 1,
                 baudrate: int = 9600, parity: str = "N", stopbits: int = 1) -> None:
        self.registers = dict(registers)
        self.unit = unit
        self.serial = dict(baudrate=baudrate, parity=parity, stopbits=stopbits)
        self.reads: list[tuple[int, int, int]] = []  # (function, address, count) served
        self.proxy = LineProxy()
        self._server: ModbusSerialServer | None = None

    @property
    def port(self) -> str:
        return self.proxy.driver_port

    def set_words(self, address: int, words: list[int], function: int = INPUT) -> None:
        for offset, word in enumerate(words):
            key = (function, address + offset)
            if key not in self.registers:
                raise KeyError(f"register {key} was not defined when the server started")
            self.registers[key] = word

    def set_float(self, address: int, value: float, function: int = INPUT) -> None:
        self.set_words(address, float_words(value), function)

    async def __aenter__(self) -> SimulatedMeter:
        self.proxy.start()
        self._server = ModbusSerialServer(
            SimDevice(self.unit, simdata=self._simdata(), action=self._action),
            port=self.proxy.meter_port, **self.serial)  # type: ignore[arg-type]
        await self._server.serve_forever(background=True)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._server is not None:
            await self._server.shutdown()
        self.proxy.close()

    def _simdata(self) -> tuple[list[SimData], ...]:
        blocks: dict[int, list[SimData]] = {HOLDING: [], INPUT: []}
        for function in (HOLDING, INPUT):
            addresses = sorted(a for f, a in self.registers if f == function)
            run: list[int] = []
            for address in addresses + [-2]:
                if run and address != run[-1] + 1:
                    words = [self.registers[(function, a)] for a in run]
                    blocks[function].append(
                        SimData(run[0], values=words, datatype=DataType.REGISTERS))
                    run = []
                run.append(address)
            if not blocks[function]:  # pymodbus wants every table non-empty
                blocks[function].append(SimData(0xFFFE, datatype=DataType.INVALID))
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return (bits, list(bits), blocks[HOLDING], blocks[INPUT])

    async def _action(self, function: int, start: int, address: int, count: int,
                      registers: list[int], values: Any) -> None:
        self.reads.append((function, address, count))
        for a in range(address, address + count):
            registers[a - start] = self.registers.get((function, a), 0)
        return None


# Eastron SDM630 float32 input registers (addresses as in hal/drivers/modbus/maps.py).
SDM630_DEFAULTS = {
    0x0000: 230.1, 0x0002: 231.2, 0x0004: 229.3,   # V L1..L3
    0x0006: 10.5, 0x0008: 11.25, 0x000A: 9.75,     # A L1..L3
    0x0034: 7245.5,                                 # total system power, W
    0x0046: 50.0,                                   # Hz
    0x0048: 1234.5, 0x004A: 0.25,                   # import / export kWh
}


class SimulatedSdm630(SimulatedMeter):
    def __init__(self, floats: dict[int, float] | None = None, **kwargs: Any) -> None:
        floats = SDM630_DEFAULTS if floats is None else floats
        registers: dict[tuple[int, int], int] = {}
        for address, value in floats.items():
            high, low = float_words(value)
            registers[(INPUT, address)], registers[(INPUT, address + 1)] = high, low
        super().__init__(registers, **kwargs)


async def _serve(args: argparse.Namespace) -> None:
    async with SimulatedSdm630(unit=args.address, baudrate=args.baudrate) as meter:
        print(meter.port, flush=True)
        reader = asyncio.StreamReader()
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        await reader.read()  # until the parent closes our stdin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument("--address", type=int, default=1)
    asyncio.run(_serve(parser.parse_args()))  # ends when stdin closes


if __name__ == "__main__":
    main()
