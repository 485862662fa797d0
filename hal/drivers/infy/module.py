"""CanPowerModule: one DC output fed by InfyPower-style power modules on a CAN bus.

Several modules in parallel share the output (the rules are in `output`): a module that
stops answering or reports a fault of its own is dropped from the split and told to
switch off, the others take over its part, and the loss shows in `degraded` and the
read-back's `faults`; `fault` only when the output as a whole cannot work. A dropped
module that answers again rejoins.

The modules switch themselves off after 10 s without traffic, so a keep-alive round on the
injected clock re-sends set-point and on/off and polls every module every `keepalive_s`.
All waiting (answers, rounds) is on that clock; python-can's Notifier delivers frames on
the event loop, so nothing here blocks it.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, Awaitable, Callable, Mapping, TypeVar

import can

from hal.api import Clock, PowerCapabilities, PowerModule, PowerReadback
from hal.drivers.infy.output import (
    ModuleState, Target, available, judge, readback, split_current)
from hal.drivers.infy.protocol import (
    CONTROLLER, Capabilities, Command, DeviceNumber, ErrorCode, Frame, ModuleCount, Output,
    ProtocolError, SetOutput, Status, Switch, decode_answer, request)
from hal.drivers.infy.settings import CanPowerSettings, parse

log = logging.getLogger(__name__)
T = TypeVar("T")

# Interfaces without a file descriptor (virtual, USB adapters) are read by python-can in a
# thread that blocks this long per call; it bounds how long stop() waits for that thread.
RX_THREAD_POLL_S = 0.2
# A full transmit queue (socketcan's default is 10 frames) drains in ~1 ms a frame at
# 125 kbit/s: retry briefly instead of blocking the loop in send().
SEND_RETRIES = 20
SEND_RETRY_S = 0.002


class _Receiver(can.Listener):
    """Hands python-can's frames (delivered on the event loop) to the driver."""

    def __init__(self, on_frame: Callable[[can.Message], None],
                 on_error: Callable[[Exception], None]) -> None:
        super().__init__()
        self._on_frame = on_frame
        self._on_error = on_error

    def on_message_received(self, msg: can.Message) -> None:
        self._on_frame(msg)

    def on_error(self, exc: Exception) -> None:
        self._on_error(exc)

    def stop(self) -> None:
        pass


class _Discovery:
    """What a group's members said while the driver looked for them."""

    def __init__(self) -> None:
        self.count = 0                        # the group's own count of its modules
        self.members: dict[int, Status] = {}  # address -> its status answer
        self.complete = asyncio.Event()

    def heard(self, frame: Frame) -> None:
        if isinstance(frame.body, ModuleCount):
            self.count = max(self.count, frame.body.count)
        elif isinstance(frame.body, Status):
            self.members[frame.id.source] = frame.body
        if self.count and len(self.members) >= self.count:
            self.complete.set()


class CanPowerModule(PowerModule):
    def __init__(self, settings: CanPowerSettings, *, clock: Clock) -> None:
        super().__init__()
        self.settings = settings
        self.modules: dict[int, ModuleState] = {a: ModuleState(a) for a in settings.modules}
        self.degraded: str | None = None   # modules lost while the output still works
        self.keepalive_rounds = 0          # rounds done (lets a test wait for one)
        self._clock = clock
        self._on = False
        self._setpoint: tuple[float, float] | None = None   # volts, amperes for the output
        self._bus: can.BusABC | None = None
        self._notifier: can.Notifier | None = None
        self._bus_problem: str | None = None
        self._pending: dict[tuple[int, Command], asyncio.Future[Frame]] = {}
        self._discovery: _Discovery | None = None          # while finding a group's members
        self._group_size = 0
        self._locks: dict[int, asyncio.Lock] = {}
        self._apply_lock = asyncio.Lock()
        self._reported: dict[int, str | None] = {}
        self._keepalive: asyncio.Task[None] | None = None

    @classmethod
    def check_config(cls, settings: Mapping[str, Any]) -> None:
        parse(settings)

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, clock: Clock) -> CanPowerModule:
        return cls(parse(settings), clock=clock)

    # -- PowerModule --------------------------------------------------------------------

    async def start(self) -> None:
        if self._open_bus():
            await self._guarded("start", self._bring_up(), None)
        self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())

    async def stop(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)
            self._keepalive = None
        self._on = False
        if self._bus is not None:
            await self._guarded("stop", self._apply(), None)
        self._close_bus()

    async def capabilities(self) -> PowerCapabilities:
        async def run() -> PowerCapabilities:
            unknown = [m for m in self.modules.values()
                       if m.capabilities is None and m.comm_problem is None]
            if unknown:
                await self._poll(unknown)
            return available(list(self.modules.values()))
        return await self._guarded("capabilities", run(), PowerCapabilities(0, 0, 0, 0))

    async def set_output(self, voltage_v: float, current_a: float) -> None:
        if not (math.isfinite(voltage_v) and math.isfinite(current_a)):
            raise ValueError(f"set-point {voltage_v} V, {current_a} A is not a number")

        async def run() -> None:
            caps = await self.capabilities()
            voltage, current = max(voltage_v, 0.0), max(current_a, 0.0)
            if caps.max_current_a > 0:
                voltage = min(max(voltage, caps.min_voltage_v), caps.max_voltage_v)
                current = min(current, caps.max_current_a,
                              caps.max_power_w / voltage if voltage > 0 else math.inf)
            self._setpoint = (voltage, current)
            await self._apply()
        await self._guarded("set_output", run(), None)

    async def enable(self, on: bool) -> None:
        self._on = on
        await self._guarded("enable", self._apply(), None)

    async def read(self) -> PowerReadback | None:
        async def run() -> PowerReadback | None:
            answering = [m for m in self.modules.values() if m.comm_problem is None]
            await self._poll(answering or list(self.modules.values()))
            return readback(list(self.modules.values()), self._on)
        return await self._guarded("read", run(), None)

    # -- rounds -------------------------------------------------------------------------

    async def _bring_up(self) -> None:
        """Learn who answers (one timeout at most), then put them in a known state: off."""
        if self.settings.group is not None:
            await self._discover()
        await self._poll(list(self.modules.values()))
        await self._apply()

    async def _keep_alive(self) -> None:
        period = self.settings.keepalive_s
        next_round = self._clock.monotonic() + period
        while True:
            await self._clock.sleep(next_round - self._clock.monotonic())
            # Fixed rate, so a slow round (a silent module) does not stretch the gap past
            # the modules' 10 s watchdog; after a long stall start counting afresh.
            next_round = max(next_round + period, self._clock.monotonic())
            if self._bus is None and not self._open_bus():
                continue
            await self._guarded("keep-alive", self._round(), None)
            self.keepalive_rounds += 1

    async def _round(self) -> None:
        if self.settings.group is not None and len(self.modules) < max(self._group_size, 1):
            await self._discover()
        await self._apply()
        await self._poll(list(self.modules.values()))

    async def _apply(self) -> None:
        """Send every working module its share and the on/off state; tell the others off.
        A module failing here is dropped and the split redone among the rest."""
        async with self._apply_lock:
            for _ in range(len(self.modules) + 1):
                working = [m for m in self.modules.values() if m.working]
                voltage, current = self._setpoint or (0.0, 0.0)
                shares = split_current(current, [m.limit_a(voltage) for m in working])
                results = await asyncio.gather(
                    *(self._command(m, share) for m, share in zip(working, shares)))
                if all(results):
                    break
            for m in self.modules.values():
                if not m.working:
                    # Best effort, unanswered: a module that hears but cannot answer stops.
                    await self._send(request(Command.SWITCH, m.address, Switch(False)))
            self._evaluate()

    async def _command(self, module: ModuleState, share_a: float) -> bool:
        frames = []
        if self._setpoint is not None:
            voltage = self._setpoint[0]
            if module.capabilities is not None:
                voltage = min(max(voltage, module.capabilities.min_voltage_v),
                              module.capabilities.max_voltage_v)
            frames.append(request(Command.SET_OUTPUT, module.address,
                                  SetOutput.from_units(voltage, share_a)))
        frames.append(request(Command.SWITCH, module.address, Switch(self._on)))
        return await self._exchange(module, frames) is not None

    async def _poll(self, modules: list[ModuleState]) -> None:
        """Read output and status (and capabilities, once) of these modules; re-split when
        a module dropped out or came back."""
        before = {m.address for m in self.modules.values() if m.working}
        await asyncio.gather(*(self._read_module(m) for m in modules))
        if before != {m.address for m in self.modules.values() if m.working}:
            await self._apply()
        else:
            self._evaluate()

    async def _read_module(self, module: ModuleState) -> None:
        commands = [Command.READ_OUTPUT, Command.READ_STATUS]
        if module.capabilities is None:
            commands.append(Command.READ_CAPABILITIES)
        answers = await self._exchange(module, [request(c, module.address) for c in commands])
        if answers is None:
            return
        module.output = _body(answers[Command.READ_OUTPUT], Output)
        module.status = _body(answers[Command.READ_STATUS], Status)
        if Command.READ_CAPABILITIES in answers:
            module.capabilities = _body(answers[Command.READ_CAPABILITIES], Capabilities)

    async def _discover(self) -> None:
        """Find the members of the group. MODULE_COUNT sent to the group says how many it
        has, but its answer comes on behalf of the group (public drivers key it by the group
        number, or take it from one master module), so its source is no member's address.
        A READ_STATUS sent to the group is answered by every member from its own address:
        those sources are the members. Waits until as many answered as the count says, or
        timeout_s."""
        group = self.settings.group
        assert group is not None
        self._discovery = _Discovery()
        timer = asyncio.ensure_future(self._clock.sleep(self.settings.timeout_s))
        complete = asyncio.ensure_future(self._discovery.complete.wait())
        try:
            failed = None
            for command in (Command.MODULE_COUNT, Command.READ_STATUS):
                failed = failed or await self._send(
                    request(command, group, device=DeviceNumber.GROUP))
            if failed is None:
                await asyncio.wait({timer, complete}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            complete.cancel()
            found, self._discovery = self._discovery, None
        self._group_size = found.count or len(found.members)
        for address, status in sorted(found.members.items()):
            if address not in self.modules:
                log.info("power module %d found in group %d", address, group)
                self.modules[address] = ModuleState(address, status=status)
        if len(self.modules) < self._group_size:
            log.warning("group %d has %d power modules, %d answered", group, self._group_size,
                        len(self.modules))
        self._evaluate()

    # -- frames -------------------------------------------------------------------------

    async def _exchange(self, module: ModuleState,
                        frames: list[Frame]) -> dict[Command, Frame] | None:
        """Send these requests to one module and wait (timeout_s on the clock) for all
        answers. None when it did not answer or refused; `comm_problem` says which."""
        loop = asyncio.get_running_loop()
        async with self._locks.setdefault(module.address, asyncio.Lock()):
            futures = {f.id.command: loop.create_future() for f in frames}
            for command, future in futures.items():
                self._pending[(module.address, command)] = future
            # Armed before sending: the timer's task is queued ahead of any answer.
            timer = asyncio.ensure_future(self._clock.sleep(self.settings.timeout_s))
            waiting: set[asyncio.Future[Any]] = set(futures.values())
            try:
                for frame in frames:
                    failed = await self._send(frame)
                    if failed is not None:
                        return self._problem(module, f"cannot send on the CAN bus: {failed}")
                while waiting and not timer.done():
                    done, _ = await asyncio.wait(waiting | {timer},
                                                 return_when=asyncio.FIRST_COMPLETED)
                    waiting -= done
            finally:
                timer.cancel()
                for command, future in futures.items():
                    future.cancel()
                    self._pending.pop((module.address, command), None)
            if waiting:
                return self._problem(module, "no answer")
            replies = {command: future.result() for command, future in futures.items()}
            for command, reply in replies.items():
                if reply.id.error is not ErrorCode.NORMAL:
                    if command is Command.SET_OUTPUT:
                        # Its limits may have changed (derating): read them again.
                        module.capabilities = None
                    return self._problem(module, f"refused {command.name}: {reply.id.error.text}")
            module.comm_problem = None
            return replies

    @staticmethod
    def _problem(module: ModuleState, text: str) -> None:
        module.comm_problem = text
        return None

    async def _send(self, frame: Frame) -> str | None:
        """Put one frame on the bus; the error text if that failed."""
        if self._bus is None:
            return "bus not open"
        msg = can.Message(arbitration_id=frame.arbitration_id, data=frame.data,
                          is_extended_id=True)
        error = ""
        for _ in range(SEND_RETRIES):
            try:
                self._bus.send(msg, timeout=0)   # 0: never block the loop waiting for room
                return None
            except can.CanError as exc:
                error = str(exc) or type(exc).__name__
                await asyncio.sleep(SEND_RETRY_S)
        log.warning("CAN send failed: %s", error)
        return error

    def _on_frame(self, msg: can.Message) -> None:
        if msg.is_error_frame or msg.is_remote_frame or not msg.is_extended_id:
            return
        try:
            frame = decode_answer(msg.arbitration_id, bytes(msg.data))
        except ProtocolError as exc:
            log.debug("ignoring CAN frame 0x%08X: %s", msg.arbitration_id, exc)
            return
        if frame.id.destination != CONTROLLER:
            return                     # another node's request (or our own, looped back)
        if self._discovery is not None:
            self._discovery.heard(frame)
        future = self._pending.get((frame.id.source, frame.id.command))
        if future is not None and not future.done():
            future.set_result(frame)

    def _on_rx_error(self, exc: Exception) -> None:
        # python-can's reader thread has ended: drop the bus so the next round reopens it.
        log.error("CAN receive failed: %s", exc)
        self._close_bus()
        self._bus_problem = f"CAN receive failed on {self.settings.channel}: {exc}"
        self._evaluate()

    def _open_bus(self) -> bool:
        s = self.settings
        try:
            bus = can.Bus(interface=s.interface, channel=s.channel, bitrate=s.bitrate,
                          can_filters=[{"can_id": CONTROLLER << 8, "can_mask": 0xFF00,
                                        "extended": True}])
        except Exception as exc:  # noqa: BLE001 - any interface's failure is a fault
            problem = (f"CAN bus {s.interface} {s.channel} cannot be opened: {exc}"
                       + (f" (is it up? ip link set {s.channel} up type can bitrate "
                          f"{s.bitrate})" if s.interface == "socketcan" else ""))
            if problem != self._bus_problem:     # retried every round: log it once
                log.error("%s", problem)
            self._bus_problem = problem
            self._evaluate()
            return False
        receiver = _Receiver(self._on_frame, self._on_rx_error)
        self._notifier = can.Notifier(bus, [receiver], timeout=RX_THREAD_POLL_S,
                                      loop=asyncio.get_running_loop())
        self._bus, self._bus_problem = bus, None
        return True

    def _close_bus(self) -> None:
        notifier, bus, self._notifier, self._bus = self._notifier, self._bus, None, None
        try:
            if notifier is not None:
                notifier.stop(timeout=2 * RX_THREAD_POLL_S)
            if bus is not None:
                bus.shutdown()
        except Exception:  # noqa: BLE001 - releasing must not fail the caller
            log.exception("closing the CAN bus failed")

    # -- what it adds up to -------------------------------------------------------------

    def _evaluate(self) -> None:
        for m in self.modules.values():
            if m.problem != self._reported.get(m.address):
                if m.problem is None:
                    log.info("power module %d works again", m.address)
                else:
                    log.warning("power module %d: %s", m.address, m.problem)
                self._reported[m.address] = m.problem
        target = None if self._setpoint is None else Target(*self._setpoint, self._on)
        verdict = judge(list(self.modules.values()), target, bus_problem=self._bus_problem,
                        group=self.settings.group)
        if verdict.degraded != self.degraded:
            self.degraded = verdict.degraded
            self._changed()
        self._set_fault(verdict.fault)

    async def _guarded(self, what: str, work: Awaitable[T], default: T) -> T:
        """Run one operation; a driver bug becomes a fault, never an exception."""
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.exception("power module driver failed in %s", what)
            self._set_fault(f"power module driver error in {what}: {exc}")
            return default


def _body(frame: Frame, kind: type[T]) -> T:
    if not isinstance(frame.body, kind):
        raise ProtocolError(f"{frame.id.command.name} answer without {kind.__name__}")
    return frame.body
