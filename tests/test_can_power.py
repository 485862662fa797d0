"""The CAN power-module driver against simulated modules on python-can's `virtual` bus.

Time is a ManualClock shared by driver and simulated modules: answer timeouts, keep-alive
rounds and the modules' 10 s watchdog move only when a test advances it. What a test does
wait for in real time is python-can's reader threads handing frames over (`eventually`).
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, TypeVar

import can
import pytest
from hypothesis import given, strategies as st

from agent.clock import ManualClock
from hal.api import HalConfigError, PowerCapabilities
from hal.drivers import backend
from hal.drivers.can_power import CanPowerModule, split_current
from hal.drivers.infy.protocol import (
    STATUS_BITS, Capabilities, Command, DeviceNumber, ErrorCode, Frame, FrameId, ModuleCount,
    Output, ProtocolError, SetOutput, Status, Switch, answer, decode_answer, decode_request,
    request, status_word)
from tests.can_module_sim import DEFAULT_CAPABILITIES, SimModule

T = TypeVar("T")
_channels = itertools.count()


def run(scenario: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(scenario, 15))


async def eventually(condition: Callable[[], bool], what: str = "condition") -> None:
    """Wait (real time, bounded) for frames to cross python-can's reader threads."""
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting for {what}")


class Rig:
    def __init__(self, driver: CanPowerModule, sims: list[SimModule], clock: ManualClock) -> None:
        self.driver, self.sims, self.clock = driver, sims, clock
        self.changes = 0
        self.started = clock.monotonic()
        driver.subscribe(self._count)

    def _count(self) -> None:
        self.changes += 1

    async def keepalive_round(self) -> None:
        """Advance exactly to the next keep-alive round (rounds run at a fixed rate from
        start) and let it finish; its answer timers lie beyond, so they do not fire."""
        done = self.driver.keepalive_rounds
        due = self.started + (done + 1) * self.driver.settings.keepalive_s
        await self.clock.advance(due - self.clock.monotonic())
        await eventually(lambda: self.driver.keepalive_rounds > done, "a keep-alive round")

    async def time_out(self, silent: list[SimModule], operation: Awaitable[T]) -> T:
        """Run an operation that waits for answers the `silent` modules will not give, and
        expire that wait once nothing else is pending."""
        task = asyncio.ensure_future(operation)
        heard = [len(sim.requests) for sim in silent]
        # Armed timers then: the keep-alive's and one per exchange still waiting.
        await eventually(lambda: all(len(sim.requests) > n for sim, n in zip(silent, heard))
                         and self.clock.sleepers == 1 + len(silent),
                         "the driver waiting for the silent modules alone")
        await self.clock.advance(self.driver.settings.timeout_s)
        return await asyncio.wait_for(task, 5)


@asynccontextmanager
async def rig(addresses: tuple[int, ...] = (1,), *, group: int | None = None,
              capabilities: Mapping[int, Capabilities] | None = None,
              **settings: Any) -> AsyncIterator[Rig]:
    clock = ManualClock()
    channel = f"can-power-test-{next(_channels)}"
    sims = [SimModule(can.Bus(interface="virtual", channel=channel), address, clock=clock,
                      group=group or 0, group_size=len(addresses),
                      capabilities=(capabilities or {}).get(address, DEFAULT_CAPABILITIES))
            for address in addresses]
    for sim in sims:
        sim.start()
    target = {"group": group} if group is not None else {"modules": list(addresses)}
    driver = CanPowerModule.from_config(
        {"interface": "virtual", "channel": channel, **target, **settings}, clock=clock)
    await driver.start()
    try:
        yield Rig(driver, sims, clock)
    finally:
        for sim in sims:
            sim.silent = False
        await driver.stop()
        for sim in sims:
            sim.stop()


# -- one module -----------------------------------------------------------------------------

def test_set_point_goes_out_as_millivolts_and_milliamperes():
    async def scenario() -> None:
        async with rig() as r:
            await r.driver.set_output(400.5, 12.25)
            sim = r.sims[0]
            assert (sim.voltage_mv, sim.current_ma) == (400_500, 12_250)
            frame = sim.heard(Command.SET_OUTPUT)[-1]
            # error 0, device 0x0A, command 0x1C, to module 1, from the controller 0xF0
            assert frame.arbitration_id == 0x029C01F0
            assert frame.data == struct.pack(">II", 400_500, 12_250)
    run(scenario())


def test_read_back_and_on_off():
    async def scenario() -> None:
        async with rig() as r:
            await r.driver.set_output(400, 20)
            assert not r.sims[0].on
            await r.driver.enable(True)
            assert r.sims[0].on
            readback = await r.driver.read()
            assert readback is not None
            assert (readback.voltage_v, readback.current_a, readback.on) == (400, 20, True)
            assert readback.faults == frozenset()
            await r.driver.enable(False)
            assert not r.sims[0].on
            readback = await r.driver.read()
            assert readback is not None and not readback.on and readback.current_a == 0
            assert r.driver.fault is None
    run(scenario())


def test_capabilities_add_up_and_set_points_are_clamped_to_them():
    async def scenario() -> None:
        async with rig((1, 2)) as r:
            assert await r.driver.capabilities() == PowerCapabilities(
                min_voltage_v=150, max_voltage_v=1000, max_current_a=200, max_power_w=60000)
            await r.driver.set_output(1200, 500)     # 60 kW at 1000 V is 60 A in all
            assert [(s.voltage_mv, s.current_ma) for s in r.sims] == [(1_000_000, 30_000)] * 2
            await r.driver.set_output(10, 500)       # below the range: its lower end
            assert [(s.voltage_mv, s.current_ma) for s in r.sims] == [(150_000, 100_000)] * 2
    run(scenario())


def test_keepalive_keeps_the_module_on_past_its_10_s_watchdog():
    async def scenario() -> None:
        async with rig(keepalive_s=3) as r:
            await r.driver.set_output(400, 20)
            await r.driver.enable(True)
            for _ in range(10):                      # 30 s of the module's time
                await r.keepalive_round()
            sim = r.sims[0]
            assert sim.on and sim.watchdog_trips == 0
            assert len(sim.heard(Command.SET_OUTPUT)) >= 10    # re-sent every round
            assert len(sim.heard(Command.READ_OUTPUT)) >= 10
            assert r.driver.fault is None
    run(scenario())


def test_the_simulated_module_does_switch_off_after_10_s_of_silence():
    async def scenario() -> None:
        clock = ManualClock()
        channel = f"can-power-test-{next(_channels)}"
        sim = SimModule(can.Bus(interface="virtual", channel=channel), 1, clock=clock)
        sim.start()
        with can.Bus(interface="virtual", channel=channel) as controller:
            on = request(Command.SWITCH, 1, Switch(True))
            controller.send(can.Message(arbitration_id=on.arbitration_id, data=on.data,
                                        is_extended_id=True))
            await eventually(lambda: sim.on, "the module switched on")
            await clock.advance(9.9)
            assert sim.on
            await clock.advance(0.1)
            assert not sim.on and sim.watchdog_trips == 1
        sim.stop()
    run(scenario())


def test_status_bits_become_a_readable_fault_and_clear_again():
    async def scenario() -> None:
        async with rig() as r:
            await r.driver.set_output(400, 20)
            await r.driver.enable(True)
            r.sims[0].status_word = status_word("over_temperature", "fan_fault")
            readback = await r.driver.read()
            assert r.driver.fault == "power module 1: fan fault, over-temperature"
            assert readback is not None
            assert readback.faults == {"power module 1: fan fault, over-temperature"}
            await eventually(lambda: not r.sims[0].on, "the faulted module told off")
            r.sims[0].status_word = 0
            await r.driver.read()
            assert r.driver.fault is None and r.sims[0].on
            r.sims[0].status_word = status_word("output_short_circuit")
            await r.driver.read()
            assert r.driver.fault == "DC output: output short circuit (module 1)"
            assert r.changes >= 3
    run(scenario())


def test_a_module_that_never_answers_is_a_fault_not_an_exception():
    async def scenario() -> None:
        async with rig() as r:
            r.sims[0].silent = True
            assert await r.time_out([r.sims[0]], r.driver.read()) is None
            assert r.driver.fault == "power module 1: no answer"
    run(scenario())


def test_a_bus_that_cannot_be_opened_is_a_fault():
    async def scenario() -> None:
        driver = CanPowerModule.from_config(
            {"interface": "socketcan", "channel": "nosuchcan0", "modules": [1]},
            clock=ManualClock())
        await driver.start()
        assert driver.fault is not None and "cannot be opened" in driver.fault
        assert await driver.read() is None
        assert await driver.capabilities() == PowerCapabilities(0, 0, 0, 0)
        await driver.stop()
    run(scenario())


def test_stop_switches_the_modules_off():
    async def scenario() -> None:
        async with rig((1, 2)) as r:
            await r.driver.set_output(400, 20)
            await r.driver.enable(True)
            assert all(s.on for s in r.sims)
            await r.driver.stop()
            assert not any(s.on for s in r.sims)
            assert all(s.heard(Command.SWITCH)[-1].body == Switch(False) for s in r.sims)
    run(scenario())


# -- several modules on one output ----------------------------------------------------------

def test_two_modules_split_the_current():
    async def scenario() -> None:
        async with rig((1, 2)) as r:
            await r.driver.set_output(400, 60)
            await r.driver.enable(True)
            assert [s.current_ma for s in r.sims] == [30_000, 30_000]
            readback = await r.driver.read()
            assert readback is not None and (readback.voltage_v, readback.current_a) == (400, 60)
    run(scenario())


def test_a_smaller_module_gets_what_it_can_carry_and_the_other_the_rest():
    async def scenario() -> None:
        small = Capabilities(max_voltage_v=750, min_voltage_v=200, max_current_a=40,
                             rated_power_w=12000)
        async with rig((1, 2), capabilities={2: small}) as r:
            assert await r.driver.capabilities() == PowerCapabilities(200, 750, 140, 42000)
            await r.driver.set_output(400, 100)      # module 2: 12 kW at 400 V is 30 A
            await r.driver.enable(True)
            assert [s.current_ma for s in r.sims] == [70_000, 30_000]
            await r.driver.set_output(400, 120)      # 30 + 75 A is all there is at 400 V
            assert [s.current_ma for s in r.sims] == [75_000, 30_000]
            assert r.driver.fault is None
    run(scenario())


def test_a_silent_module_is_dropped_and_the_other_carries_the_current():
    async def scenario() -> None:
        async with rig((1, 2)) as r:
            one, two = r.sims
            await r.driver.set_output(400, 60)
            await r.driver.enable(True)
            two.silent = True
            readback = await r.time_out([two], r.driver.read())
            assert one.current_ma == 60_000
            await eventually(lambda: not two.on, "module 2 told off (it still hears)")
            assert r.driver.fault is None
            assert r.driver.degraded is not None
            assert r.driver.degraded == ("1 of 2 power modules share the output; "
                                         "power module 2: no answer")
            assert readback is not None and "power module 2: no answer" in readback.faults
            assert r.changes >= 1
            readback = await r.driver.read()         # module 1 alone now
            assert readback is not None and readback.current_a == 60

            two.silent = False                       # it answers again at the next round
            await r.keepalive_round()
            assert [s.current_ma for s in r.sims] == [30_000, 30_000] and two.on
            assert r.driver.degraded is None and r.driver.fault is None
    run(scenario())


def test_a_module_with_a_fault_of_its_own_is_dropped_from_the_split():
    async def scenario() -> None:
        async with rig((1, 2)) as r:
            await r.driver.set_output(400, 60)
            await r.driver.enable(True)
            r.sims[1].status_word = status_word("ac_phase_lost")
            await r.driver.read()
            assert r.driver.fault is None
            assert r.driver.degraded is not None and "AC input phase lost" in r.driver.degraded
            assert r.sims[0].current_ma == 60_000
            await eventually(lambda: not r.sims[1].on, "module 2 told off")
            assert await r.driver.capabilities() == PowerCapabilities(150, 1000, 100, 30000)
    run(scenario())


def test_too_little_capacity_left_is_an_output_fault():
    async def scenario() -> None:
        async with rig((1, 2)) as r:
            await r.driver.set_output(400, 150)      # 75 A each: 30 kW at 400 V
            await r.driver.enable(True)
            r.sims[1].silent = True
            await r.time_out([r.sims[1]], r.driver.read())
            assert r.driver.fault == ("power modules left (1) deliver at most 75 A at 400 V, "
                                      "150 A is set; power module 2: no answer")
            assert r.sims[0].current_ma == 75_000
            await r.driver.set_output(400, 70)       # asked for what is left: works again
            assert r.driver.fault is None and r.driver.degraded is not None
    run(scenario())


def test_no_module_left_is_a_fault():
    async def scenario() -> None:
        async with rig((1, 2)) as r:
            for sim in r.sims:
                sim.silent = True
            assert await r.time_out(r.sims, r.driver.read()) is None
            assert r.driver.fault == "power module 1: no answer; power module 2: no answer"
    run(scenario())


def test_a_group_is_discovered_and_shares_the_current():
    async def scenario() -> None:
        async with rig((4, 5), group=3) as r:
            assert sorted(r.driver.modules) == [4, 5]
            count = r.sims[0].heard(Command.MODULE_COUNT)[0]
            assert count.id.device is DeviceNumber.GROUP and count.id.destination == 3
            await r.driver.set_output(500, 50)
            await r.driver.enable(True)
            assert [s.current_ma for s in r.sims] == [25_000, 25_000]
    run(scenario())


def test_split_current_gives_equal_shares_within_limits():
    assert split_current(60, [100, 100]) == [30, 30]
    assert split_current(90, [20, None, 100]) == [20, 35, 35]
    assert split_current(300, [100, 100]) == [100, 100]
    assert split_current(10, []) == []


# -- settings -------------------------------------------------------------------------------

GOOD = {"interface": "socketcan", "channel": "can0", "modules": [1, 2]}


@pytest.mark.parametrize("change, key", [
    ({"interface": "cann"}, "interface"),
    ({"interface": None}, "interface"),
    ({"channel": ""}, "channel"),
    ({"bitrate": "fast"}, "bitrate"),
    ({"bitrate": 0}, "bitrate"),
    ({"modules": []}, "modules"),
    ({"modules": [1, 1]}, "modules"),
    ({"modules": [64]}, "modules"),
    ({"modules": [True]}, "modules"),
    ({"group": 1}, "modules"),                       # both
    ({"keepalive_s": 10}, "keepalive_s"),
    ({"keepalive_s": 0}, "keepalive_s"),
    ({"timeout_s": 5}, "timeout_s"),
    ({"timeout_s": "1"}, "timeout_s"),
    ({"address": 3}, "address"),
])
def test_check_config_names_the_bad_setting(change: dict[str, Any], key: str):
    settings = {k: v for k, v in {**GOOD, **change}.items() if v is not None}  # None: left out
    with pytest.raises(HalConfigError) as err:
        CanPowerModule.check_config(settings)
    assert err.value.key == key


def test_check_config_accepts_good_settings_through_the_registry():
    driver = backend("power", "can_power")
    driver.check_config(GOOD)
    driver.check_config({"interface": "virtual", "channel": "x", "group": 2, "bitrate": 250000,
                         "keepalive_s": 2.5, "timeout_s": 0.5})
    with pytest.raises(HalConfigError):
        driver.check_config({"interface": "virtual", "channel": "x"})   # neither


# -- the wire (sans-I/O) --------------------------------------------------------------------

frame_ids = st.builds(FrameId, st.sampled_from(Command), st.integers(0, 255), st.integers(0, 255),
                      st.sampled_from(DeviceNumber), st.sampled_from(ErrorCode))
u32 = st.integers(0, 2**32 - 1)
f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
u16 = st.integers(0, 65535)
_ANSWERS: dict[Command, st.SearchStrategy[Any]] = {
    Command.SET_OUTPUT: st.builds(SetOutput, u32, u32),
    Command.SWITCH: st.builds(Switch, st.booleans()),
    Command.READ_OUTPUT: st.builds(Output, f32, f32),
    Command.READ_CAPABILITIES: st.builds(Capabilities, u16, u16, u16.map(lambda n: n / 10),
                                         u16.map(lambda n: n * 10)),
    Command.READ_STATUS: st.builds(Status, st.integers(0, 2**24 - 1), st.integers(-128, 127),
                                   st.integers(0, 255)),
    Command.MODULE_COUNT: st.builds(ModuleCount, st.integers(0, 255)),
}
bodies = st.one_of(*_ANSWERS.values())


@given(frame_ids)
def test_ids_round_trip(frame_id: FrameId):
    value = frame_id.to_int()
    assert 0 <= value < 2**29
    assert FrameId.from_int(value) == frame_id


@given(bodies)
def test_payloads_round_trip(body: Any):
    data = body.encode()
    assert len(data) == 8
    assert type(body).decode(data) == body


@given(st.sampled_from(Command), st.integers(0, 62), st.data())
def test_requests_and_answers_round_trip(command: Command, address: int, data: st.DataObject):
    body = _ANSWERS[command] if command in (Command.SET_OUTPUT, Command.SWITCH) else st.none()
    sent = request(command, address, data.draw(body))
    assert decode_request(sent.arbitration_id, sent.data) == sent
    reply_body = data.draw(_ANSWERS[command])
    reply = answer(sent.id, address, reply_body)
    assert decode_answer(reply.arbitration_id, reply.data) == reply
    refusal = answer(sent.id, address, None, ErrorCode.DATA_INVALID)
    assert decode_answer(refusal.arbitration_id, refusal.data) == refusal




@given(st.integers(-1, 2**32), st.binary(max_size=64))
def test_decoding_random_frames_raises_only_protocol_errors(arbitration_id: int, data: bytes):
    for decode in (decode_request, decode_answer):
        try:
            frame = decode(arbitration_id, data)
        except ProtocolError:
            continue
        assert isinstance(frame, Frame)


def test_status_bit_table_is_consistent():
    bits = [b.bit for b in STATUS_BITS]
    assert len(set(bits)) == len(bits) and all(0 <= b < 24 for b in bits)
    assert Status(status_word("fan_fault", "module_off")).names == {"fan_fault", "module_off"}
    with pytest.raises(ProtocolError):
        Output.decode(struct.pack(">ff", float("nan"), 1.0))
