"""A simulated InfyPower-style DC power module speaking the protocol on a python-can bus.

In a test: `SimModule(can.Bus(interface="virtual", channel=...), 1, clock=clock)`, with the
test's ManualClock, so the module's own 10 s watchdog runs on time the test drives.
As a program (another process, e.g. on `udp_multicast`):

    python -m tests.can_module_sim --interface udp_multicast --channel 239.74.163.2 --address 1

prints `ready` once it listens, then one JSON line per command it obeys.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from typing import Any, Callable, Protocol

import can

from hal.drivers.infy.protocol import (
    BROADCAST, CONTROLLER, Capabilities, Command, DeviceNumber, ErrorCode, Frame, FrameId,
    ModuleCount, Output, ProtocolError, SetOutput, Status, Switch, answer, decode_request,
    status_word)

WATCHDOG_S = 10.0   # the module switches its output off after this long without traffic
DEFAULT_CAPABILITIES = Capabilities(max_voltage_v=1000, min_voltage_v=150, max_current_a=100.0,
                                    rated_power_w=30000)


class MonotonicClock(Protocol):
    def monotonic(self) -> float: ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()


class SimModule:
    """One module. `silent` stops its answers but not its ears (a broken transmitter: it
    still obeys commands, so a driver can still switch it off); `status_word` is what it
    reports besides `module_off`, which follows its output."""

    def __init__(self, bus: can.BusABC, address: int, *, clock: MonotonicClock, group: int = 0,
                 group_size: int = 1, capabilities: Capabilities = DEFAULT_CAPABILITIES,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.bus = bus
        self.address = address
        self.group = group
        self.group_size = group_size
        self.capabilities = capabilities
        self.silent = False
        self.status_word = 0
        self.temperature_c = 35
        self.voltage_mv = 0
        self.current_ma = 0
        self.requests: list[Frame] = []   # every request it heard, answered or not
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
    def output(self) -> Output:
        if not self.on:
            return Output(0.0, 0.0)
        return Output(self.voltage_mv / 1000, self.current_ma / 1000)

    def heard(self, command: Command) -> list[Frame]:
        return [f for f in self.requests if f.id.command is command]

    def _watchdog(self) -> None:
        # Evaluated lazily (on every frame and every look at `on`), so the simulation
        # arms no timer of its own on the shared clock.
        if self._on and self._clock.monotonic() - self._last_heard >= WATCHDOG_S:
            self._on = False
            self.watchdog_trips += 1
            self._on_event({"event": "watchdog_off"})

    def _on_message(self, msg: can.Message) -> None:
        if self._stopped or msg.is_error_frame or not msg.is_extended_id:
            return   # (frames the reader thread handed over just before stop())
        try:
            frame = decode_request(msg.arbitration_id, bytes(msg.data))
        except ProtocolError:
            return
        if frame.id.source != CONTROLLER or not self._addressed(frame.id):
            return
        self._watchdog()
        self._last_heard = self._clock.monotonic()
        self.requests.append(frame)
        reply = self._obey(frame)
        if not self.silent:
            self.bus.send(can.Message(arbitration_id=reply.arbitration_id, data=reply.data,
                                      is_extended_id=True))

    def _addressed(self, frame_id: FrameId) -> bool:
        if frame_id.device is DeviceNumber.GROUP:
            return frame_id.destination == self.group
        return frame_id.destination in (self.address, BROADCAST)

    def _obey(self, frame: Frame) -> Frame:
        command, body = frame.id.command, frame.body
        if isinstance(body, SetOutput):
            caps = self.capabilities
            if not (caps.min_voltage_v * 1000 <= body.voltage_mv <= caps.max_voltage_v * 1000
                    and body.current_ma <= caps.max_current_a * 1000):
                return answer(frame.id, self.address, None, ErrorCode.DATA_INVALID)
            self.voltage_mv, self.current_ma = body.voltage_mv, body.current_ma
            self._on_event({"event": "set_output", "voltage_mv": body.voltage_mv,
                            "current_ma": body.current_ma})
            return answer(frame.id, self.address, body)
        if isinstance(body, Switch):
            self._on = body.on
            self._on_event({"event": "switch", "on": body.on})
            return answer(frame.id, self.address, body)
        if command is Command.READ_OUTPUT:
            return answer(frame.id, self.address, self.output)
        if command is Command.READ_STATUS:
            word = self.status_word | (0 if self._on else status_word("module_off"))
            return answer(frame.id, self.address, Status(word, self.temperature_c, self.group))
        if command is Command.READ_CAPABILITIES:
            return answer(frame.id, self.address, self.capabilities)
        if command is Command.MODULE_COUNT:
            return answer(frame.id, self.address, ModuleCount(self.group_size))
        return answer(frame.id, self.address, None, ErrorCode.COMMAND_INVALID)


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interface", default="udp_multicast")
    parser.add_argument("--channel", default="239.74.163.2")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--address", type=int, default=1)
    parser.add_argument("--group", type=int, default=0)
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
