"""A simulated InfyPower-style DC power module on a python-can bus, written from the public
descriptions of the protocol and sharing no code with the driver: nothing here comes from
`hal/` or `agent/`, so a misreading of the protocol in the driver shows up as a
disagreement with this module, and the golden frames (GOLDEN, below) decide who is right.

The vendor's document ("REG/CEG/LRG series Charger Module CAN Communication Protocol V1.13",
Shenzhen Infypower) is not public. What is, and what this module follows:

  [E1] EVerest/EVerest modules/HardwareDrivers/PowerSupplies/InfyPower/README.md
       "CAN Protocol Details": 29-bit ids (bits 28-26 error code, 25-22 device number
       0x0A single / 0x0B group, 21-16 command, 15-8 destination, 7-0 source), 8-byte
       payloads, 125 kbit/s, controller 0xF0, the command table; "Safety Notes": "If the
       charger module did not receive the message for 10 seconds from the controller,
       the charger module will off" (quoted from V1.13).
  [E2] EVerest/EVerest .../InfyPower/can_driver_acdc/CanPackets.cpp and Conversions.hpp:
       payloads big-endian; 0x03 float32 V, float32 A; 0x0A u16 V max, u16 V min,
       u16 A max in 0.1 A, u16 rated power in 10 W; 0x02 count in byte 2; 0x1C u32 mV,
       u32 mA; 0x1A byte 0 = 0x00 on, 0x01 off; 0x04 status tables in bytes 7 (table 0),
       6 (table 1), 5 (table 2) with the bit names used in STATUS_BITS.
  [E3] EVerest/EVerest .../InfyPower/wireshark/infypower_can.lua: the same layouts, and
       0x04 byte 2 = group number, byte 4 = ambient temperature (int8, degrees C).
  [E4] EVerest/EVerest .../InfyPower/wireshark/sim_module0_responses.sh: frames of
       module 0 answering the controller (used verbatim as golden frames).
  [Y]  a public C driver for Infypower ("yfy") modules found in the code search index
       (its repository is not named there): broadcast address 0x3F; the same status
       tables with table 0 bit 2 "module internal communication fault" and bit 3 "input
       or bus abnormal"; reads sent to a group (device 0x0B, destination = group number)
       are answered by each member from its own address, while the group's module-count
       answer is keyed by the group number; set commands are answered with their data.
  [D]  a public CHARX DPM1000 header with the same id layout: error codes 0 normal,
       2 command invalid, 3 data invalid, 7 start of processing.

Where the sources say nothing, this module makes a choice and says so in a comment
("assumed"); the driver must work whichever way a real module decides those points.

In a test: `SimModule(can.Bus(interface="virtual", channel=...), 1, clock=clock)` with the
test's ManualClock, so the 10 s watchdog runs on time the test drives. As a program (another
process, e.g. on `udp_multicast`):

    python -m tests.infy_module_sim --interface udp_multicast --channel 239.74.163.2 --address 1

prints `ready` once it listens, then one JSON line per command it obeys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import can

# -- the wire, from [E1] [E2] [E3] [Y] [D] ---------------------------------------------------

CONTROLLER = 0xF0          # [E1] the controller's (our) address
BROADCAST = 0x3F           # [Y] destination meaning every module
SINGLE, GROUP = 0x0A, 0x0B  # [E1] device number: one module / a group of modules

READ_COUNT = 0x02          # [E1] number of modules (of a group)
READ_OUTPUT = 0x03         # [E1] output voltage and current
READ_STATUS = 0x04         # [E1] status flags (and group, temperature [E3])
READ_LIMITS = 0x0A         # [E1] voltage range, current and power limits
ON_OFF = 0x1A              # [E1] switch the output on or off
SET_OUTPUT = 0x1C          # [E1] voltage and current set-point

NORMAL, COMMAND_INVALID, DATA_INVALID = 0, 2, 3   # [D] error codes

WATCHDOG_S = 10.0          # [E1] off after 10 s without a message from the controller

# Status bits: name -> (payload byte, bit). [E2] CanPackets.cpp PowerModuleStatus and [E3]
# STATUS0_BITS/STATUS1_BITS/STATUS2_BITS: table 0 is byte 7, table 1 byte 6, table 2 byte 5.
# Table 0 bits 2 and 3 are only in [Y]; bits 1, 6, 7 of table 0 are named nowhere.
STATUS_BITS: dict[str, tuple[int, int]] = {
    "output_short_circuit": (7, 0),
    "internal_communication_fault": (7, 2),   # [Y]
    "input_or_bus_abnormal": (7, 3),          # [Y]
    "sleeping": (7, 4),
    "discharge_abnormal": (7, 5),
    "dc_side_off": (6, 0),
    "fault_alarm": (6, 1),
    "protection_alarm": (6, 2),
    "fan_fault": (6, 3),
    "over_temperature": (6, 4),
    "output_over_voltage": (6, 5),
    "walk_in_enabled": (6, 6),
    "communication_interrupted": (6, 7),
    "power_limited": (5, 0),
    "duplicate_id": (5, 1),
    "load_sharing_alarm": (5, 2),
    "input_phase_lost": (5, 3),
    "input_unbalanced": (5, 4),
    "input_under_voltage": (5, 5),
    "input_over_voltage": (5, 6),
    "pfc_side_off": (5, 7),
}
# What the module sets by itself: its own output state. Everything else is a fault (or a
# state such as walk-in) a test injects through `SimModule.faults`.
FOLLOWS_OUTPUT = "dc_side_off"


def can_id(command: int, destination: int, source: int, *, device: int = SINGLE,
           error: int = NORMAL) -> int:
    """The 29-bit id [E1]."""
    return error << 26 | device << 22 | command << 16 | destination << 8 | source


@dataclass(frozen=True)
class Id:
    error: int
    device: int
    command: int
    destination: int
    source: int


def split_id(value: int) -> Id:
    return Id(error=value >> 26 & 0x07, device=value >> 22 & 0x0F, command=value >> 16 & 0x3F,
              destination=value >> 8 & 0xFF, source=value & 0xFF)


@dataclass(frozen=True)
class Limits:
    """READ_LIMITS [E2]: u16 V max, u16 V min, u16 current in 0.1 A, u16 power in 10 W."""

    max_v: int
    min_v: int
    max_a: float
    power_w: int

    def payload(self) -> bytes:
        return struct.pack(">HHHH", self.max_v, self.min_v, round(self.max_a * 10),
                           round(self.power_w / 10))


DEFAULT_LIMITS = Limits(max_v=1000, min_v=150, max_a=100.0, power_w=30000)


def status_payload(faults: set[str] | frozenset[str], *, group: int, temperature_c: int) -> bytes:
    """READ_STATUS answer [E2][E3]: byte 2 group, byte 4 int8 temperature, 5..7 tables."""
    data = bytearray(8)
    data[2] = group
    data[4] = temperature_c & 0xFF
    for name in faults:
        byte, bit = STATUS_BITS[name]
        data[byte] |= 1 << bit
    return bytes(data)


def describe(arbitration_id: int, data: bytes) -> dict[str, Any]:
    """What a frame says, per the sources: the id's fields, then the payload's, read as a
    request when it comes from the controller and as an answer otherwise. For tests (the
    golden frames) and the module's own use."""
    fid = split_id(arbitration_id)
    out: dict[str, Any] = {"error": fid.error, "device": fid.device, "command": fid.command,
                           "destination": fid.destination, "source": fid.source}
    if len(data) != 8:
        raise ValueError(f"payload of {len(data)} bytes; the protocol uses 8 [E1]")
    request = fid.source == CONTROLLER
    if fid.command == SET_OUTPUT:
        out["voltage_mv"], out["current_ma"] = struct.unpack(">II", data)
    elif fid.command == ON_OFF:
        out["on"] = data[0] == 0x00
    elif request:
        out["read"] = data == bytes(8)
    elif fid.command == READ_OUTPUT:
        out["voltage_v"], out["current_a"] = struct.unpack(">ff", data)
    elif fid.command == READ_STATUS:
        out["group"] = data[2]
        out["temperature_c"] = struct.unpack(">b", data[4:5])[0]
        out["faults"] = {n for n, (byte, bit) in STATUS_BITS.items() if data[byte] >> bit & 1}
    elif fid.command == READ_LIMITS:
        vmax, vmin, deciamps, decawatts = struct.unpack(">HHHH", data)
        out["limits"] = Limits(vmax, vmin, deciamps / 10, decawatts * 10)
    elif fid.command == READ_COUNT:
        out["count"] = data[2]
    return out


# -- golden frames ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Golden:
    name: str
    arbitration_id: int
    data: bytes
    says: dict[str, Any]      # what describe() must read from it (the fields that matter)
    source: str


_E4 = "EVerest/EVerest modules/HardwareDrivers/PowerSupplies/InfyPower/wireshark/" \
      "sim_module0_responses.sh"
_E2 = "EVerest/EVerest modules/HardwareDrivers/PowerSupplies/InfyPower/can_driver_acdc/" \
      "CanPackets.cpp (+ Conversions.hpp: big-endian)"

GOLDEN: tuple[Golden, ...] = (
    Golden("read output of module 0", 0x028300F0, bytes(8),
           {"device": SINGLE, "command": READ_OUTPUT, "destination": 0, "source": CONTROLLER,
            "read": True},
           _E4 + ', header comment "028300F0 for cmd 0x03"'),
    Golden("module 0: output 500 V, 3.5 A", 0x0283F000, bytes.fromhex("43FA000040600000"),
           {"command": READ_OUTPUT, "destination": CONTROLLER, "source": 0, "voltage_v": 500.0,
            "current_a": 3.5},
           _E4 + ', "0283F000#43FA000040600000"'),
    Golden("module 0: status, group 0, 27 C, walk-in enabled", 0x0284F000,
           bytes.fromhex("000000021B004000"),
           {"command": READ_STATUS, "source": 0, "group": 0, "temperature_c": 27,
            "faults": {"walk_in_enabled"}},
           _E4 + ', "0284F000#000000021B004000" (bits: CanPackets.cpp, infypower_can.lua)'),
    Golden("module 0: limits 500/200 V, 100 A, 10 kW", 0x028AF000,
           bytes.fromhex("01F400C803E803E8"),
           {"command": READ_LIMITS, "source": 0,
            "limits": Limits(max_v=500, min_v=200, max_a=100.0, power_w=10000)},
           _E4 + ', "028AF000#01F400C803E803E8" (scaling: CanPackets.cpp)'),
    Golden("module count 1", 0x0282F000, bytes.fromhex("0000010000000000"),
           {"command": READ_COUNT, "count": 1},
           _E4 + ', "0282F000#0000010000000000"'),
    Golden("set-point 400 V, 20 A to module 1", 0x029C01F0, bytes.fromhex("00061A8000004E20"),
           {"device": SINGLE, "command": SET_OUTPUT, "destination": 1, "source": CONTROLLER,
            "voltage_mv": 400_000, "current_ma": 20_000},
           _E2 + " SetModuleVI: u32 V*1000, u32 A*1000; id layout README.md"),
    Golden("switch module 1 on", 0x029A01F0, bytes(8),
           {"command": ON_OFF, "destination": 1, "on": True},
           _E2 + " SetModuleOnOff: byte 0 = 0x00 on, rest 0"),
    Golden("switch module 1 off", 0x029A01F0, bytes.fromhex("0100000000000000"),
           {"command": ON_OFF, "destination": 1, "on": False},
           _E2 + " SetModuleOnOff: byte 0 = 0x01 off"),
    Golden("module count of group 3", 0x02C203F0, bytes(8),
           {"device": GROUP, "command": READ_COUNT, "destination": 3, "source": CONTROLLER},
           "README.md device number 0x0B = group; InfyCanDevice.cpp sends ReadModuleCount "
           "to the group address with the group flag"),
    Golden("module 1: status, group 3, 35 C, AC phase lost, over-temperature, DC side off, "
           "sleeping, discharge abnormal", 0x0284F001, bytes.fromhex("0000030023081130"),
           {"command": READ_STATUS, "source": 1, "group": 3, "temperature_c": 35,
            "faults": {"input_phase_lost", "over_temperature", "dc_side_off", "sleeping",
                       "discharge_abnormal"}},
           "bits: CanPackets.cpp PowerModuleStatus (table 2 byte 5 bit 3, table 1 byte 6 "
           "bits 0 and 4, table 0 byte 7 bits 4 and 5), infypower_can.lua"),
    Golden("module 1 refuses a set-point: data invalid", 0x0E9CF001, bytes(8),
           {"error": DATA_INVALID, "command": SET_OUTPUT, "source": 1,
            "destination": CONTROLLER},
           "error code 3 in bits 28-26: DPM1000 header [D], id layout README.md"),
)


# -- the module ------------------------------------------------------------------------------

class MonotonicClock(Protocol):
    def monotonic(self) -> float: ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class Heard:
    """A frame from the controller that this module listened to (answered or not)."""

    arbitration_id: int
    data: bytes

    @property
    def fields(self) -> dict[str, Any]:
        return describe(self.arbitration_id, self.data)

    @property
    def command(self) -> int:
        return split_id(self.arbitration_id).command


class SimModule:
    """One module. `silent`: it stops answering but still obeys (a broken transmitter, so a
    controller can still switch it off). `faults`: status bits a test sets (names of
    STATUS_BITS); `dc_side_off` follows the output by itself."""

    def __init__(self, bus: can.BusABC, address: int, *, clock: MonotonicClock, group: int = 0,
                 group_size: int = 1, limits: Limits = DEFAULT_LIMITS,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.bus = bus
        self.address = address
        self.group = group
        self.group_size = group_size    # what it answers to READ_COUNT for its group
        self.limits = limits
        self.silent = False
        self.faults: set[str] = set()
        self.temperature_c = 35
        self.voltage_mv = 0             # the set-point it holds
        self.current_ma = 0
        self.requests: list[Heard] = []
        self.watchdog_trips = 0
        self._clock = clock
        self._on = False
        self._last_heard = clock.monotonic()
        self._on_event = on_event or (lambda event: None)
        self._notifier: can.Notifier | None = None
        self._stopped = False

    def start(self) -> None:
        self._notifier = can.Notifier(self.bus, [self._on_message], timeout=0.05,
                                      loop=asyncio.get_running_loop())

    def stop(self) -> None:
        self._stopped = True
        if self._notifier is not None:
            self._notifier.stop()
            self._notifier = None
        self.bus.shutdown()

    @property
    def on(self) -> bool:
        self._watchdog()
        return self._on

    @property
    def output(self) -> tuple[float, float]:
        """Volts, amperes at its terminals: the set-point while on (an ideal source)."""
        if not self.on:
            return 0.0, 0.0
        return self.voltage_mv / 1000, self.current_ma / 1000

    def heard(self, command: int) -> list[Heard]:
        return [h for h in self.requests if h.command == command]

    def _watchdog(self) -> None:
        # Looked at lazily (on every frame and every look at `on`): no timer of its own on
        # the test's clock.
        if self._on and self._clock.monotonic() - self._last_heard >= WATCHDOG_S:
            self._on = False
            self.watchdog_trips += 1
            self._on_event({"event": "watchdog_off"})

    def _on_message(self, msg: can.Message) -> None:
        if self._stopped or msg.is_error_frame or msg.is_remote_frame or not msg.is_extended_id:
            return
        fid = split_id(msg.arbitration_id)
        if fid.source != CONTROLLER or not self._addressed(fid) or len(msg.data) != 8:
            return
        self._watchdog()
        self._last_heard = self._clock.monotonic()   # any message keeps it alive [E1]
        heard = Heard(msg.arbitration_id, bytes(msg.data))
        self.requests.append(heard)
        error, data = self._obey(fid, heard.data)
        if self.silent:
            return
        if fid.command == READ_COUNT:
            # The count answer is keyed by whom it was asked of: the group number for a
            # group [Y] (not a member's address), its own address for one module [E4].
            source = fid.destination
        else:
            source = self.address
        # Assumed: the answer keeps the request's device number and command [E4][Y].
        self.bus.send(can.Message(
            arbitration_id=can_id(fid.command, CONTROLLER, source, device=fid.device,
                                  error=error),
            data=data, is_extended_id=True))

    def _addressed(self, fid: Id) -> bool:
        if fid.device == GROUP:
            return fid.destination == self.group
        if fid.device == SINGLE:
            return fid.destination in (self.address, BROADCAST)
        return False

    def _obey(self, fid: Id, data: bytes) -> tuple[int, bytes]:
        """(error code, answer payload) for one request; obeys it on the way."""
        command = fid.command
        if command == SET_OUTPUT:
            voltage_mv, current_ma = struct.unpack(">II", data)
            lim = self.limits
            if not (lim.min_v * 1000 <= voltage_mv <= lim.max_v * 1000
                    and current_ma <= lim.max_a * 1000):
                return DATA_INVALID, data          # assumed: out of range is "data invalid"
            self.voltage_mv, self.current_ma = voltage_mv, current_ma
            self._on_event({"event": "set_output", "voltage_mv": voltage_mv,
                            "current_ma": current_ma})
            return NORMAL, data                    # set commands echo their data [Y]
        if command == ON_OFF:
            if data[0] not in (0x00, 0x01):
                return DATA_INVALID, data
            self._on = data[0] == 0x00
            self._on_event({"event": "switch", "on": self._on})
            return NORMAL, data
        if command == READ_OUTPUT:
            volts, amps = self.output
            return NORMAL, struct.pack(">ff", volts, amps)
        if command == READ_STATUS:
            faults = set(self.faults)
            if not self._on:
                faults.add(FOLLOWS_OUTPUT)
            return NORMAL, status_payload(faults, group=self.group,
                                          temperature_c=self.temperature_c)
        if command == READ_LIMITS:
            return NORMAL, self.limits.payload()
        if command == READ_COUNT:
            return NORMAL, bytes([0, 0, self.group_size]) + bytes(5)
        return COMMAND_INVALID, bytes(8)


# -- as a program ----------------------------------------------------------------------------

async def _serve(args: argparse.Namespace) -> None:
    extra = {"port": args.port} if args.port else {}
    bus = can.Bus(interface=args.interface, channel=args.channel, **extra)
    sim = SimModule(bus, args.address, clock=RealClock(), group=args.group,
                    on_event=lambda event: print(json.dumps(event), flush=True))
    sim.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    print("ready", flush=True)
    await stopped.wait()
    sim.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--interface", default="udp_multicast")
    parser.add_argument("--channel", default="239.74.163.2")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--address", type=int, default=1)
    parser.add_argument("--group", type=int, default=0)
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
