"""modbus_meter: the RTU wire format without a port, then the driver against a real
Modbus peer (pymodbus 3.16 on a pseudo-terminal, tests/modbus_peer.py) with faults made
by the pty proxy between the two. Serial timeouts here are real (0.1 s) but short."""

from __future__ import annotations

import asyncio
import os
import struct
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pytest
import serial
from hypothesis import given, settings, strategies as st

from agent.clock import ManualClock
from hal import drivers
from hal.api import DriverSpec, HalConfigError
from hal.drivers.modbus import maps, rtu
from hal.drivers.modbus.link import RtuLink
from hal.drivers.modbus.maps import Register, plan
from hal.drivers.modbus.settings import MeterSettings
from hal.drivers.modbus_meter import REOPEN_DELAY_S, ModbusMeter
from tests.modbus_peer import HOLDING, INPUT, SimulatedMeter, SimulatedSdm630, float_words

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait for the other end of a real pty to have done something."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.005)


IMPORT_KWH = {"quantity": "energy_import_wh", "address": 0x48, "type": "float32", "scale": 1000}


def pending_input(meter: ModbusMeter) -> int:
    """Bytes waiting in the driver's port (only while no transaction runs)."""
    return meter.link._port.in_waiting  # type: ignore[union-attr]


def meter_for(peer: SimulatedMeter, clock: ManualClock | None = None, **extra: Any) -> ModbusMeter:
    config = {"port": peer.port, "timeout_s": 0.1, "retries": 2, **extra}
    ModbusMeter.check_config(config)
    return ModbusMeter.from_config(config, clock=clock or ManualClock())


# -- RTU framing, no port ----------------------------------------------------------------------

def test_crc16_known_values() -> None:
    assert rtu.crc16(b"123456789") == 0x4B37  # the CRC-16/MODBUS check value
    # Read 2 input registers from 0 at address 1, as printed in Eastron's manuals.
    assert rtu.ReadRequest(1, 4, 0, 2).encode() == bytes.fromhex("01 04 00 00 00 02 71 CB")


def test_parse_a_good_response() -> None:
    request = rtu.ReadRequest(1, 4, 0, 2)
    frame = rtu.with_crc(bytes.fromhex("01 04 04 43 66 00 00"))
    assert rtu.parse_response(request, frame) == (0x4366, 0x0000)
    assert Register("voltage_l1", 0).decode((0x4366, 0x0000)) == 230.0


@pytest.mark.parametrize("frame, error, text", [
    (rtu.with_crc(bytes.fromhex("01 84 02")), rtu.ExceptionResponse,
     "exception 2 (illegal data address)"),
    (rtu.with_crc(bytes.fromhex("01 84 0B")), rtu.ExceptionResponse,
     "target device failed to respond"),
    (bytes.fromhex("01 04 04 43 66 00 00 00 00"), rtu.CrcError, "CRC error"),
    (rtu.with_crc(bytes.fromhex("02 04 04 43 66 00 00")), rtu.FrameError, "from address 2"),
    (rtu.with_crc(bytes.fromhex("01 03 04 43 66 00 00")), rtu.FrameError, "function 0x03"),
    (rtu.with_crc(bytes.fromhex("01 04 02 43 66")), rtu.FrameError, "2 data bytes"),
    (rtu.with_crc(bytes.fromhex("01 84 02 00")), rtu.FrameError, "exception response of 6 bytes"),
    (b"\x01\x04", rtu.FrameError, "too short"),
])
def test_parse_rejects(frame: bytes, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text.replace("(", r"\(").replace(")", r"\)")):
        rtu.parse_response(rtu.ReadRequest(1, 4, 0, 2), frame)


def test_expected_size_tells_exception_from_data() -> None:
    request = rtu.ReadRequest(7, 3, 0x100, 10)
    assert request.expected_size(b"\x07\x83") == 5
    assert request.expected_size(b"\x07\x03") == 25
    assert request.describe() == "holding registers 0x0100..0x0109"


def test_request_limits() -> None:
    for args in [(0, 4, 0, 1), (248, 4, 0, 1), (1, 6, 0, 1), (1, 4, 0, 126), (1, 4, 0xFFFF, 2)]:
        with pytest.raises(ValueError):
            rtu.ReadRequest(*args)


requests = st.builds(rtu.ReadRequest, st.integers(1, 247), st.sampled_from([3, 4]),
                     st.integers(0, 1000), st.integers(1, 125))


@settings(max_examples=300, deadline=None)
@given(requests, st.binary(max_size=300))
def test_parser_raises_only_its_own_error(request: rtu.ReadRequest, data: bytes) -> None:
    try:
        words = rtu.parse_response(request, data)
    except rtu.RtuError:
        return
    assert len(words) == request.count


@settings(max_examples=200, deadline=None)
@given(requests, st.data())
def test_parser_round_trips_any_register_values(request: rtu.ReadRequest,
                                                data: st.DataObject) -> None:
    n = request.count
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n))
    body = bytes([request.unit, request.function, 2 * n]) + struct.pack(f">{n}H", *words)
    assert rtu.parse_response(request, rtu.with_crc(body)) == tuple(words)
    flipped = bytearray(rtu.with_crc(body))
    flipped[data.draw(st.integers(0, len(flipped) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(rtu.RtuError):  # one flipped bit is always caught
        rtu.parse_response(request, bytes(flipped))


def test_silent_interval_follows_the_baud_rate() -> None:
    assert rtu.silent_interval(9600, "N", 1) == pytest.approx(3.5 * 10 / 9600)   # 3.65 ms
    assert rtu.silent_interval(9600, "E", 1) == pytest.approx(3.5 * 11 / 9600)   # 4.01 ms
    assert rtu.silent_interval(2400, "N", 2) == pytest.approx(3.5 * 11 / 2400)
    assert rtu.silent_interval(19200, "N", 1) == pytest.approx(3.5 * 10 / 19200)
    assert rtu.silent_interval(38400, "N", 1) == 0.00175   # fixed above 19200 baud
    assert rtu.silent_interval(115200, "E", 1) == 0.00175


# -- register maps ------------------------------------------------------------------------------

def test_sdm630_is_read_in_three_requests() -> None:
    blocks = maps.SDM630.blocks()
    assert [(b.function, b.start, b.count) for b in blocks] == [
        (4, 0x00, 12), (4, 0x34, 2), (4, 0x46, 6)]


def test_sdm72_keeps_measurements_it_may_lack_apart() -> None:
    blocks = maps.SDM72.blocks()
    required = [(b.start, b.count) for b in blocks if not b.optional]
    optional = [(b.start, b.count) for b in blocks if b.optional]
    assert required == [(0x34, 2), (0x48, 4)]
    assert optional == [(0x00, 12), (0x46, 2)]


def test_plan_respects_limits_gaps_and_functions() -> None:
    many = [Register(f"q{i}", 100 + i, 3, "u16") for i in range(130)]
    assert [(b.start, b.count) for b in plan(many)] == [(100, 125), (225, 5)]
    assert [(b.start, b.count) for b in plan(many, 60)] == [(100, 60), (160, 60), (220, 10)]
    mixed = [Register("a", 0, 4, "u32"), Register("b", 3, 4, "u16"), Register("c", 2, 3, "u32"),
             Register("d", 8, 4, "u64")]
    assert [(b.function, b.start, b.count) for b in plan(mixed)] == [
        (3, 2, 2), (4, 0, 2), (4, 3, 1), (4, 8, 4)]


@pytest.mark.parametrize("kind, order, words, scale, value", [
    ("u16", "big", [0xFFFF], 1, 65535),
    ("s16", "big", [0xFFFE], 10, -20),
    ("u32", "big", [0x0001, 0x0002], 1, 0x00010002),
    ("u32", "little", [0x0002, 0x0001], 1, 0x00010002),
    ("s32", "big", [0xFFFF, 0xFFFF], 0.5, -0.5),
    ("s32", "little", [0xFFFE, 0xFFFF], 1, -2),
    ("u64", "big", [0, 0, 1, 0], 1, 65536),
    ("u64", "little", [0, 1, 0, 0], 1, 65536),
    ("float32", "big", float_words(230.1), 1, 230.1),
    ("float32", "little", float_words(1234.5)[::-1], 1000, 1234500.0),
])
def test_register_types(kind: str, order: str, words: list[int], scale: float,
                        value: float) -> None:
    assert Register("x", 0, 4, kind, order, scale).decode(words) == value


# -- settings ------------------------------------------------------------------------------------

POWER = {"quantity": "power_w", "address": 1, "type": "u16"}


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB0"
    port.touch()
    good = {"port": str(port)}
    MeterSettings.parse(good)

    def generic(*registers: dict[str, Any]) -> dict[str, Any]:
        return {**good, "map": "generic", "registers": list(registers)}
    assert MeterSettings.parse(generic(POWER)).map.registers == (Register("power_w", 1, 4, "u16"),)
    bad: list[tuple[dict[str, Any], str, str]] = [
        ({"port": str(tmp_path / "ttyUSB9")}, "port", "does not exist"),
        ({}, "port", "required"),
        ({**good, "baud": 9600}, "baud", "unknown setting"),
        ({**good, "baudrate": "9600"}, "baudrate", "not a whole number"),
        ({**good, "parity": "X"}, "parity", "'N', 'E', 'O'"),
        ({**good, "stopbits": 1.5}, "stopbits", "not one of"),
        ({**good, "address": 0}, "address", "1..247"),
        ({**good, "address": 248}, "address", "1..247"),
        ({**good, "map": "sdm120"}, "map", "sdm630, sdm72, generic"),
        ({**good, "registers": []}, "registers", "only for map = \"generic\""),
        ({**good, "map": "generic"}, "registers", "needs a list"),
        ({**good, "timeout_s": 0}, "timeout_s", "not a number"),
        ({**good, "poll_interval_s": True}, "poll_interval_s", "not a number"),
        ({**good, "retries": -1}, "retries", "0..10"),
        (generic({"quantity": "power_w", "address": 1}), "registers[0].type", "required"),
        (generic({**POWER, "quantity": "watts"}), "registers[0].quantity", "not one of"),
        (generic(POWER, {**POWER, "address": 2}), "registers[1].quantity", "twice"),
        (generic({**POWER, "type": "f32"}), "registers[0].type", "not one of"),
        (generic({**POWER, "type": "u32", "address": 65535}), "registers[0].address", "0..65534"),
        (generic({**POWER, "scale": 0}), "registers[0].scale", "non-zero"),
        (generic({**POWER, "function": 6}), "registers[0].function", "3, 4"),
        (generic({**POWER, "order": "big"}), "registers[0].order", "unknown"),
    ]
    for config, key, text in bad:
        with pytest.raises(HalConfigError) as caught:
            MeterSettings.parse(config)
        assert caught.value.key == key, config
        assert text in caught.value.message, (config, caught.value.message)


def test_the_registry_finds_the_driver(tmp_path: Path) -> None:
    spec = DriverSpec("meter", "modbus_meter", {"port": str(tmp_path / "absent"), "map": "sdm72"})
    with pytest.raises(HalConfigError, match="port: .*absent does not exist"):
        drivers.check(spec)
    meter = drivers.create(spec, ManualClock())  # the port may appear later: not checked here
    assert isinstance(meter, ModbusMeter) and meter.settings.map is maps.SDM72


# -- the link's timing, with a simulated line and clock (no real waiting) ------------------------

class FakeLine:
    """A serial port whose bytes arrive at given times on a clock that moves only when the
    link sleeps or waits in read(): lets the t3.5 logic be checked to the microsecond."""

    def __init__(self, answer: Callable[[bytes], bytes | None], delay: float = 0.02) -> None:
        self.delay = delay  # the meter's turn-around time
        self.now = 0.0
        self.timeout = 0.1
        self.answer = answer
        self.arrivals: list[tuple[float, bytes]] = []
        self.written: list[tuple[float, bytes]] = []
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def _arrived(self) -> int:
        return sum(len(d) for t, d in self.arrivals if t <= self.now)

    @property
    def in_waiting(self) -> int:
        return self._arrived()

    def read(self, n: int) -> bytes:
        deadline = self.now + self.timeout
        while self._arrived() < n:
            later = [t for t, _ in self.arrivals if t > self.now]
            if not later or min(later) > deadline:
                self.now = deadline
                break
            self.now = min(later)
        data = b"".join(d for t, d in self.arrivals if t <= self.now)
        self.arrivals = [(t, d) for t, d in self.arrivals if t > self.now]
        taken, rest = data[:n], data[n:]
        if rest:
            self.arrivals.insert(0, (self.now, rest))
        return taken

    def write(self, data: bytes) -> None:
        self.written.append((self.now, data))
        reply = self.answer(data)
        if reply is not None:
            self.arrivals.append((self.now + self.delay, reply))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def fake_link(line: FakeLine, **kwargs: Any) -> RtuLink:
    options = dict(baudrate=9600, parity="N", stopbits=1, timeout_s=0.1, retries=2)
    options.update(kwargs)
    link = RtuLink("fake", open_port=lambda *a, **k: line, monotonic=line.monotonic,
                   sleep=line.sleep, **options)  # type: ignore[arg-type]
    link.open()
    return link


def answer_two_registers(frame: bytes) -> bytes:
    return rtu.with_crc(frame[:2] + bytes.fromhex("04 43 66 00 00"))


def test_each_request_follows_3_5_characters_of_silence_and_stray_bytes_are_dropped() -> None:
    line = FakeLine(answer_two_registers)
    link = fake_link(line)
    t35 = 3.5 * 10 / 9600
    line.now = 1.0
    # Noise on the line just before we want to send, and more while we wait for quiet.
    line.arrivals += [(0.999, b"\x55\xaa"), (1.002, b"\x00")]
    request = rtu.ReadRequest(1, 4, 0, 2)
    assert link.transact(request) == (0x4366, 0)
    (sent_at, frame), = line.written
    assert frame == request.encode()
    assert sent_at >= 1.002 + t35 - 1e-9
    assert link.stats.stray_bytes == 3
    # The answer arrived at sent_at + 20 ms; the next request waits t3.5 after it.
    link.transact(request)
    assert line.written[1][0] == pytest.approx(sent_at + 0.02 + t35)


def test_silence_is_fixed_at_1_75_ms_above_19200_baud() -> None:
    line = FakeLine(answer_two_registers)
    link = fake_link(line, baudrate=115200)
    request = rtu.ReadRequest(1, 4, 0, 2)
    link.transact(request)
    link.transact(request)
    assert line.written[1][0] - line.written[0][0] == pytest.approx(0.02 + 0.00175)


@pytest.mark.parametrize("delay, ok", [(0.099, True), (0.101, False)])
def test_the_response_timeout_is_the_setting(delay: float, ok: bool) -> None:
    link = fake_link(FakeLine(answer_two_registers, delay), retries=0)
    if ok:
        assert link.transact(rtu.ReadRequest(1, 4, 0, 2)) == (0x4366, 0)
    else:
        with pytest.raises(rtu.NoResponse):
            link.transact(rtu.ReadRequest(1, 4, 0, 2))


def test_retries_then_reports_the_last_error() -> None:
    line = FakeLine(lambda frame: None)
    link = fake_link(line, retries=3)
    with pytest.raises(rtu.NoResponse, match="no answer within 0.1 s") as caught:
        link.transact(rtu.ReadRequest(1, 4, 0, 2))
    assert caught.value.attempts == 4 and len(line.written) == 4 and link.stats.retries == 3


def test_an_exception_answer_is_not_retried_unless_busy() -> None:
    codes = [6, 2]
    line = FakeLine(lambda frame: rtu.with_crc(frame[:1] + bytes([frame[1] | 0x80, codes.pop(0)])))
    link = fake_link(line)
    with pytest.raises(rtu.ExceptionResponse) as caught:
        link.transact(rtu.ReadRequest(1, 4, 0, 2))
    assert caught.value.code == 2 and caught.value.attempts == 2


# -- the driver against pymodbus on a pty --------------------------------------------------------

def test_sdm630_readings_in_si_units() -> None:
    async def main() -> None:
        async with SimulatedSdm630() as peer:
            clock = ManualClock()
            meter = meter_for(peer, clock)
            reading = await meter.read()
            assert reading is not None and meter.latest is reading and meter.fault is None
            assert reading.timestamp == clock.now()
            assert reading.voltage_v == (230.1, 231.2, 229.3)
            assert reading.current_a == (10.5, 11.25, 9.75)
            assert reading.power_w == 7245.5
            assert reading.frequency_hz == 50.0
            assert reading.energy_import_wh == 1_234_500.0
            assert reading.energy_export_wh == 250.0
            assert peer.reads == [(4, 0x00, 12), (4, 0x34, 2), (4, 0x46, 6)]
            peer.set_float(0x0048, 1234.75)
            peer.set_float(0x0034, -150.5)  # exporting
            await clock.advance(1)
            reading = await meter.read()
            assert reading is not None
            assert (reading.energy_import_wh, reading.power_w) == (1_234_750.0, -150.5)
            assert reading.timestamp == clock.now()
            await meter.stop()
    run(main())


def test_generic_map_integer_types_word_orders_and_functions() -> None:
    registers = {
        (HOLDING, 0x100): 0x0001, (HOLDING, 0x101): 0xE240,         # u32 big: 123456 Wh
        (HOLDING, 0x102): 0x3039, (HOLDING, 0x103): 0x0000,         # u32 little: 12345 * 10 Wh
        (INPUT, 0x10): 0xFF38,                                      # s16: -200 * 10 W
        (INPUT, 0x11): 2301, (INPUT, 0x12): 2302, (INPUT, 0x13): 2303,  # u16 dV
        (INPUT, 0x20): float_words(49.95)[1], (INPUT, 0x21): float_words(49.95)[0],
    }
    config_registers = [
        {"quantity": "energy_import_wh", "address": 0x100, "function": 3, "type": "u32"},
        {"quantity": "energy_export_wh", "address": 0x102, "function": 3, "type": "u32",
         "word_order": "little", "scale": 10},
        {"quantity": "power_w", "address": 0x10, "type": "s16", "scale": 10},
        {"quantity": "voltage_l1", "address": 0x11, "type": "u16", "scale": 0.1},
        {"quantity": "voltage_l2", "address": 0x12, "type": "u16", "scale": 0.1},
        {"quantity": "voltage_l3", "address": 0x13, "type": "u16", "scale": 0.1},
        {"quantity": "frequency_hz", "address": 0x20, "type": "float32", "word_order": "little"},
    ]

    async def main() -> None:
        async with SimulatedMeter(registers, unit=17) as peer:
            meter = meter_for(peer, map="generic", address=17, registers=config_registers)
            reading = await meter.read()
            assert meter.fault is None and reading is not None
            assert reading.energy_import_wh == 123456
            assert reading.energy_export_wh == 123450
            assert reading.power_w == -2000
            assert reading.voltage_v == (230.1, 230.2, 230.3)
            assert reading.current_a == (None, None, None)
            assert reading.frequency_hz == 49.95
            assert sorted(peer.reads) == [(3, 0x100, 4), (4, 0x10, 4), (4, 0x20, 2)]
            await meter.stop()
    run(main())


def test_crc_error_is_retried_and_then_a_fault_until_the_line_is_clean() -> None:
    async def main() -> None:
        async with SimulatedSdm630() as peer:
            meter = meter_for(peer)
            peer.proxy.corrupt = 1  # one bad answer: the retry fixes it
            first = await meter.read()
            assert first is not None and meter.fault is None and meter.link.stats.retries == 1
            peer.proxy.corrupt = 3  # every attempt of a request
            assert await meter.read() is None
            assert meter.fault == (f"meter at address 1 on {peer.port}: CRC error in a 29-byte "
                                   "response reading input registers 0x0000..0x000B (3 attempts)")
            assert meter.latest is first
            assert await meter.read() is not None and meter.fault is None
            await meter.stop()
    run(main())


def test_garbage_answer_is_a_fault_that_names_the_problem() -> None:
    async def main() -> None:
        async with SimulatedSdm630() as peer:
            meter = meter_for(peer, retries=0)
            peer.proxy.replacements = [b"\x01\x04\x18hello, I am not Modbus at all"]
            assert await meter.read() is None
            fault = meter.fault or ""
            assert "meter at address 1" in fault and "CRC error" in fault
            peer.proxy.replacements = [b"\x01\x04\x18short"]
            assert await meter.read() is None
            assert "answer cut short after 8 of 29 bytes" in (meter.fault or "")
            peer.proxy.replacements = [rtu.with_crc(b"\x09\x04\x18" + bytes(24))]
            assert await meter.read() is None
            assert "response from address 9, not 1" in (meter.fault or "")
            assert await meter.read() is not None and meter.fault is None
            await meter.stop()
    run(main())


def test_silent_meter_is_a_fault_and_recovers_without_blocking_the_loop() -> None:
    async def main() -> None:
        async with SimulatedSdm630() as peer:
            changes: list[str | None] = []
            meter = meter_for(peer)
            meter.subscribe(lambda: changes.append(meter.fault))
            good = await meter.read()
            peer.proxy.silent = True
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1
            task = asyncio.create_task(ticker())
            started = time.monotonic()
            assert await meter.read() is None
            elapsed = time.monotonic() - started
            task.cancel()
            assert 0.3 <= elapsed < 1.0  # 3 attempts of 0.1 s
            assert ticks >= 5, "the event loop was blocked during serial I/O"
            assert meter.fault == (f"meter at address 1 on {peer.port}: no answer within 0.1 s "
                                   "reading input registers 0x0000..0x000B (3 attempts)")
            assert meter.latest is good
            fault = meter.fault
            peer.proxy.silent = False
            assert await meter.read() is not None and meter.fault is None
            # Listeners heard: the first reading, the fault, its end (same values: no more).
            assert changes == [None, fault, None]
            await meter.stop()
    run(main())


def test_slow_meter_within_the_timeout_is_fine_beyond_it_is_retried() -> None:
    async def main() -> None:
        async with SimulatedSdm630() as peer:
            meter = meter_for(peer, timeout_s=0.2, map="generic", registers=[IMPORT_KWH])
            peer.proxy.delays = [0.05]
            assert await meter.read() is not None
            assert meter.link.stats.retries == 0 and meter.fault is None
            # Late by more than the timeout: the retry gets the answer; the late one turns
            # up afterwards as stray bytes and is dropped before the next request.
            peer.proxy.delays = [0.3]
            assert await meter.read() is not None
            assert meter.link.stats.retries == 1 and meter.fault is None
            await until(lambda: peer.proxy.held == 0 and pending_input(meter) == 9)
            assert await meter.read() is not None and meter.fault is None
            assert meter.link.stats.stray_bytes == 9
            await meter.stop()
    run(main())


def test_exception_response_names_the_exception() -> None:
    async def main() -> None:
        async with SimulatedSdm630() as peer:
            meter = meter_for(peer, map="generic", registers=[
                IMPORT_KWH, {"quantity": "power_w", "address": 0x200, "type": "s32"}])
            assert await meter.read() is None
            assert meter.fault == (f"meter at address 1 on {peer.port}: exception 2 (illegal "
                                   "data address) reading input registers 0x0200..0x0201")
            refused = rtu.ReadRequest(1, 4, 0x200, 2).encode()
            assert peer.proxy.requests.count(refused) == 1  # not retried
            await meter.stop()
    run(main())


def test_sdm72_without_voltage_registers_stops_asking_for_them() -> None:
    async def main() -> None:
        # An SDM72D-M as its V1.1 protocol sheet describes it: power and energy only.
        async with SimulatedSdm630({0x34: 1500.0, 0x48: 10.0, 0x4A: 0.0}) as peer:
            meter = meter_for(peer, map="sdm72")
            reading = await meter.read()
            assert reading is not None and meter.fault is None
            assert (reading.power_w, reading.energy_import_wh) == (1500.0, 10_000.0)
            assert reading.voltage_v == (None, None, None) and reading.frequency_hz is None
            first = len(peer.proxy.requests)
            assert await meter.read() is not None
            assert (first, len(peer.proxy.requests) - first) == (4, 2)
            await meter.stop()
    run(main())


def test_energy_going_back_is_a_fault_not_a_reading() -> None:
    async def main() -> None:
        async with SimulatedSdm630() as peer:
            meter = meter_for(peer)
            good = await meter.read()
            assert good is not None
            peer.set_float(0x48, 1000.0)  # was 1234.5 kWh: a replaced meter or a bad read
            assert await meter.read() is None
            assert meter.fault == (f"meter at address 1 on {peer.port}: energy_import_wh went back "
                                   "from 1234500.0 to 1000000.0 Wh (meter replaced or bad read); "
                                   "keeping the last good reading")
            assert meter.latest is good
            # One float32 step below is rounding, not going back.
            bits = struct.unpack(">I", struct.pack(">f", 1234.5))[0]
            below = struct.unpack(">f", struct.pack(">I", bits - 1))[0]
            peer.set_float(0x48, below)
            assert await meter.read() is not None and meter.fault is None
            await meter.stop()
    run(main())


def test_stray_bytes_before_a_request_are_discarded() -> None:
    async def main() -> None:
        async with SimulatedSdm630() as peer:
            meter = meter_for(peer)
            assert await meter.read() is not None
            peer.proxy.inject(b"\x00\xff\x13\x37 line noise")
            await until(lambda: pending_input(meter) == 15)  # across the pty, not yet read
            assert await meter.read() is not None and meter.fault is None
            assert meter.link.stats.stray_bytes == 15 and meter.link.stats.retries == 0
            await meter.stop()
    run(main())


def test_concurrent_reads_take_turns_on_the_bus() -> None:
    async def main() -> None:
        async with SimulatedSdm630() as peer:
            meter = meter_for(peer)
            readings = await asyncio.gather(*(meter.read() for _ in range(5)))
            assert all(r is not None for r in readings) and meter.fault is None
            assert meter.link.stats.requests == 15 and meter.link.stats.retries == 0
            await meter.stop()
    run(main())


def test_polling_on_the_clock_and_stop_closes_the_port() -> None:
    async def main() -> None:
        async with SimulatedSdm630() as peer:
            clock = ManualClock()
            meter = meter_for(peer, clock, poll_interval_s=2.0)
            await meter.start()
            await until(lambda: meter.latest is not None and clock.sleepers == 1)
            assert len(peer.reads) == 3
            peer.set_float(0x48, 1300.0)
            await clock.advance(1.9)
            assert len(peer.reads) == 3  # not yet
            await clock.advance(0.1)
            await until(lambda: getattr(meter.latest, "energy_import_wh", 0) == 1_300_000.0)
            assert meter.latest is not None and meter.latest.timestamp == clock.now()
            await until(lambda: clock.sleepers == 1)
            await meter.stop()
            assert not meter.link.is_open and clock.sleepers == 0
    run(main())


def test_a_port_that_is_missing_at_start_is_a_fault_then_picked_up(tmp_path: Path) -> None:
    async def main() -> None:
        async with SimulatedSdm630() as peer:
            clock = ManualClock()
            link = tmp_path / "ttyMeter"
            meter = ModbusMeter.from_config({"port": str(link), "timeout_s": 0.1}, clock=clock)
            await meter.start()  # no exception
            assert meter.fault is not None
            assert meter.fault.startswith(f"meter at address 1 on {link}: cannot open the port")
            await until(lambda: clock.sleepers == 1)
            os.symlink(peer.port, link)  # the adapter is plugged in
            await clock.advance(1.0)
            assert meter.latest is None  # too soon to try again
            await clock.advance(REOPEN_DELAY_S)
            await until(lambda: meter.latest is not None)
            assert meter.fault is None
            await meter.stop()
    run(main())


def test_a_second_meter_on_the_same_port_gets_a_clear_fault() -> None:
    async def main() -> None:
        async with SimulatedSdm630() as peer:
            first, second = meter_for(peer), meter_for(peer)
            assert await first.read() is not None
            assert await second.read() is None
            fault = second.fault or ""
            assert "cannot open the port" in fault and "in use by another program" in fault
            await first.stop()
            await second.stop()
    run(main())


def test_an_unplugged_adapter_is_a_fault_and_the_port_is_reopened_later() -> None:
    def answer_sdm630(frame: bytes) -> bytes:
        count = frame[5]
        return rtu.with_crc(frame[:2] + bytes([2 * count]) + bytes(2 * count))

    class Unplugged(FakeLine):
        def read(self, n: int) -> bytes:
            raise serial.SerialException("device reports readiness to read but returned no data")

    lines = [Unplugged(answer_sdm630), FakeLine(answer_sdm630)]
    opened: list[FakeLine] = []

    def open_port(*args: Any, **kwargs: Any) -> FakeLine:
        opened.append(lines.pop(0))
        return opened[-1]

    async def main() -> None:
        clock = ManualClock()
        link = RtuLink("/dev/ttyUSB0", baudrate=9600, parity="N", stopbits=1, timeout_s=0.1,
                       retries=2, open_port=open_port)
        meter = ModbusMeter(MeterSettings("/dev/ttyUSB0", maps.SDM630), clock=clock, link=link)
        assert await meter.read() is None
        assert meter.fault == ("meter at address 1 on /dev/ttyUSB0: port error: device reports "
                               "readiness to read but returned no data")
        assert not link.is_open
        assert await meter.read() is None and len(opened) == 1  # not yet: REOPEN_DELAY_S
        await clock.advance(REOPEN_DELAY_S)
        reading = await meter.read()
        assert reading is not None and meter.fault is None and len(opened) == 2
        assert reading.energy_import_wh == 0.0 and reading.voltage_v == (0.0, 0.0, 0.0)
        await meter.stop()
    run(main())
