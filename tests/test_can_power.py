"""The CAN power-module driver against simulated modules on python-can's `virtual` bus.

The simulated modules (tests/infy_module_sim.py) are written from the public descriptions
of the InfyPower protocol and share no code with the driver; their golden frames, taken
from those descriptions, are checked against both sides first, so where the two disagree
the published frames decide.

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
from tests import infy_module_sim as infy
from tests.infy_module_sim import GOLDEN, Golden, Limits, SimModule

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


def golden(name: str) -> Golden:
    return next(g for g in GOLDEN if g.name == name)


# -- the golden frames decide -----------------------------------------------------------------

@pytest.mark.parametrize("frame", GOLDEN, ids=[g.name for g in GOLDEN])
def test_the_simulator_reads_each_golden_frame_as_its_source_says(frame: Golden):
    said = infy.describe(frame.arbitration_id, frame.data)
    assert {key: said[key] for key in frame.says} == frame.says, frame.source


def test_the_driver_writes_the_golden_requests_byte_for_byte():
    cases = [
        ("read output of module 0", request(Command.READ_OUTPUT, 0)),
        ("set-point 400 V, 20 A to module 1",
         request(Command.SET_OUTPUT, 1, SetOutput.from_units(400, 20))),
        ("switch module 1 on", request(Command.SWITCH, 1, Switch(True))),
        ("switch module 1 off", request(Command.SWITCH, 1, Switch(False))),
        ("module count of group 3",
         request(Command.MODULE_COUNT, 3, device=DeviceNumber.GROUP)),
    ]
    for name, frame in cases:
        g = golden(name)
        assert (hex(frame.arbitration_id), frame.data.hex()) == (
            hex(g.arbitration_id), g.data.hex()), (name, g.source)


def test_the_driver_reads_the_golden_answers_as_their_sources_say():
    def read(name: str) -> Frame:
        g = golden(name)
        return decode_answer(g.arbitration_id, g.data)

    output = read("module 0: output 500 V, 3.5 A")
    assert (output.id.source, output.body) == (0, Output(500.0, 3.5))
    status = read("module 0: status, group 0, 27 C, walk-in enabled")
    assert isinstance(status.body, Status)
    assert (status.body.group, status.body.temperature_c, status.body.names) == (
        0, 27, {"walk_in"})
    limits = read("module 0: limits 500/200 V, 100 A, 10 kW")
    assert limits.body == Capabilities(max_voltage_v=500, min_voltage_v=200,
                                       max_current_a=100.0, rated_power_w=10000)
    assert read("module count 1").body == ModuleCount(1)
    faults = read("module 1: status, group 3, 35 C, AC phase lost, over-temperature, "
                  "DC side off, sleeping, discharge abnormal")
    assert isinstance(faults.body, Status)
    assert (faults.id.source, faults.body.group, faults.body.temperature_c) == (1, 3, 35)
    # Table 0 bit 4 is "sleeping" (a state) and bit 5 "discharge abnormal" (a fault).
    assert faults.body.names == {"ac_phase_lost", "over_temperature", "module_off",
                                 "sleeping", "discharge_abnormal"}
    refusal = read("module 1 refuses a set-point: data invalid")
    assert (refusal.id.error, refusal.id.command, refusal.body) == (
        ErrorCode.DATA_INVALID, Command.SET_OUTPUT, None)


def test_the_simulator_answers_with_the_golden_frames():
    """The simulated module, asked as the sources ask, answers byte for byte what they show."""
    async def scenario() -> None:
        channel = f"can-power-test-{next(_channels)}"
        clock = ManualClock()
        zero = SimModule(can.Bus(interface="virtual", channel=channel), 0, clock=clock,
                         limits=Limits(max_v=500, min_v=200, max_a=100.0, power_w=10000))
        one = SimModule(can.Bus(interface="virtual", channel=channel), 1, clock=clock, group=3)
        one.temperature_c = 35
        one.faults = {"input_phase_lost", "over_temperature", "sleeping", "discharge_abnormal"}
        for sim in (zero, one):
            sim.start()
        answers: list[can.Message] = []
        with can.Bus(interface="virtual", channel=channel) as controller:
            async def ask(arbitration_id: int, data: bytes) -> can.Message:
                controller.send(can.Message(arbitration_id=arbitration_id, data=data,
                                            is_extended_id=True))
                msg = await asyncio.to_thread(controller.recv, 5)
                assert msg is not None, f"no answer to 0x{arbitration_id:08X}"
                return msg
            for module, command, data in [
                    (0, infy.SET_OUTPUT, struct.pack(">II", 500_000, 3_500)),
                    (0, infy.ON_OFF, bytes(8)),
                    (0, infy.READ_OUTPUT, bytes(8)),
                    (0, infy.READ_LIMITS, bytes(8)),
                    (0, infy.READ_COUNT, bytes(8)),
                    (1, infy.READ_STATUS, bytes(8))]:
                answers.append(await ask(infy.can_id(command, module, infy.CONTROLLER), data))
        for sim in (zero, one):
            sim.stop()
        got = {(m.arbitration_id, bytes(m.data)) for m in answers}
        for name in ("module 0: output 500 V, 3.5 A", "module 0: limits 500/200 V, 100 A, 10 kW",
                     "module count 1", "module 1: status, group 3, 35 C, AC phase lost, "
                     "over-temperature, DC side off, sleeping, discharge abnormal"):
            g = golden(name)
            assert (g.arbitration_id, g.data) in got, (name, g.source)
    run(scenario())


def test_the_simulated_modules_follow_broadcast_and_group_addressing():
    """Destination 0x3F (device 0x0A) reaches every module, a group number (device 0x0B)
    every member of that group, a module address that module alone."""
    async def scenario() -> None:
        clock = ManualClock()
        channel = f"can-power-test-{next(_channels)}"
        sims = [SimModule(can.Bus(interface="virtual", channel=channel), address, clock=clock,
                          group=group) for address, group in ((1, 5), (2, 5), (3, 6))]
        for sim in sims:
            sim.start()
        with can.Bus(interface="virtual", channel=channel) as controller:
            def send(destination: int, on: bool, device: int = infy.SINGLE) -> None:
                controller.send(can.Message(
                    arbitration_id=infy.can_id(infy.ON_OFF, destination, infy.CONTROLLER,
                                               device=device),
                    data=bytes([0x00 if on else 0x01]) + bytes(7), is_extended_id=True))
            send(infy.BROADCAST, True)
            await eventually(lambda: all(s.on for s in sims), "all on")
            send(5, False, device=infy.GROUP)
            await eventually(lambda: [s.on for s in sims] == [False, False, True], "group 5 off")
            send(3, False)
            await eventually(lambda: not sims[2].on, "module 3 off")
        for sim in sims:
            sim.stop()
    run(scenario())


# -- the driver against simulated modules -----------------------------------------------------

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
              limits: Mapping[int, Limits] | None = None, group_size: int | None = None,
              **settings: Any) -> AsyncIterator[Rig]:
    clock = ManualClock()
    channel = f"can-power-test-{next(_channels)}"
    sims = [SimModule(can.Bus(interface="virtual", channel=channel), address, clock=clock,
                      group=group or 0, group_size=group_size or len(addresses),
                      limits=(limits or {}).get(address, infy.DEFAULT_LIMITS))
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

def test_set_point_goes_out_as_the_golden_frame():
    async def scenario() -> None:
        async with rig() as r:
            await r.driver.set_output(400, 20)
            sim = r.sims[0]
            assert (sim.voltage_mv, sim.current_ma) == (400_000, 20_000)
            sent = sim.heard(infy.SET_OUTPUT)[-1]
            g = golden("set-point 400 V, 20 A to module 1")
            assert (sent.arbitration_id, sent.data) == (g.arbitration_id, g.data)
            await r.driver.set_output(400.5, 12.25)
            assert (sim.voltage_mv, sim.current_ma) == (400_500, 12_250)
    run(scenario())


def test_read_back_and_on_off():
    async def scenario() -> None:
        async with rig() as r:
            await r.driver.set_output(400, 20)
            assert not r.sims[0].on
            await r.driver.enable(True)
            assert r.sims[0].on
            on = r.sims[0].heard(infy.ON_OFF)[-1]
            assert (on.arbitration_id, on.data) == (golden("switch module 1 on").arbitration_id,
                                                    golden("switch module 1 on").data)
            readback = await r.driver.read()
            assert readback is not None
            assert (readback.voltage_v, readback.current_a, readback.on) == (400, 20, True)
            assert readback.faults == frozenset()
            await r.driver.enable(False)
            assert not r.sims[0].on
            off = r.sims[0].heard(infy.ON_OFF)[-1]
            assert off.data == golden("switch module 1 off").data
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
            assert len(sim.heard(infy.SET_OUTPUT)) >= 10    # re-sent every round
            assert len(sim.heard(infy.READ_OUTPUT)) >= 10
            assert r.driver.fault is None
    run(scenario())


def test_the_simulated_module_does_switch_off_after_10_s_of_silence():
    async def scenario() -> None:
        clock = ManualClock()
        channel = f"can-power-test-{next(_channels)}"
        sim = SimModule(can.Bus(interface="virtual", channel=channel), 1, clock=clock)
        sim.start()
        with can.Bus(interface="virtual", channel=channel) as controller:
            on = golden("switch module 1 on")
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
            r.sims[0].faults = {"over_temperature", "fan_fault"}
            readback = await r.driver.read()
            assert r.driver.fault == "power module 1: fan fault, over-temperature"
            assert readback is not None
            assert readback.faults == {"power module 1: fan fault, over-temperature"}
            await eventually(lambda: not r.sims[0].on, "the faulted module told off")
            r.sims[0].faults = set()
            await r.driver.read()
            assert r.driver.fault is None and r.sims[0].on
            r.sims[0].faults = {"output_short_circuit"}
            await r.driver.read()
            assert r.driver.fault == "DC output: output short circuit (module 1)"
            assert r.changes >= 3
    run(scenario())


def test_a_sleeping_module_is_not_a_faulted_one():
    """Table 0 bit 4 is the module sleeping; read one bit too low it was a discharge fault."""
    async def scenario() -> None:
        async with rig((1, 2)) as r:
            await r.driver.set_output(400, 60)
            await r.driver.enable(True)
            r.sims[1].faults = {"sleeping"}
            await r.driver.read()
            assert r.driver.fault is None and r.driver.degraded is None
            assert [s.current_ma for s in r.sims] == [30_000, 30_000]
            r.sims[1].faults = {"discharge_abnormal"}
            await r.driver.read()
            assert r.driver.fault is None
            assert r.driver.degraded == ("1 of 2 power modules share the output; "
                                         "power module 2: output discharge abnormal")
            assert r.sims[0].current_ma == 60_000
    run(scenario())


# Every status bit the sources name, and what a charger maker expects the driver to make of
# it when module 2 of two reports it: "output" - the shared DC output is bad, a fault of the
# whole output; "module" - module 2 cannot deliver: it is switched off and module 1 carries
# the current; None - a state, nothing changes.
STATUS_EFFECTS: dict[str, str | None] = {
    "output_short_circuit": "output",
    "output_over_voltage": "output",
    "internal_communication_fault": "module",
    "input_or_bus_abnormal": "module",
    "discharge_abnormal": "module",
    "fault_alarm": "module",
    "protection_alarm": "module",
    "fan_fault": "module",
    "over_temperature": "module",
    "communication_interrupted": "module",
    "duplicate_id": "module",
    "load_sharing_alarm": "module",
    "input_phase_lost": "module",
    "input_unbalanced": "module",
    "input_under_voltage": "module",
    "input_over_voltage": "module",
    "sleeping": None,
    "walk_in_enabled": None,
    "power_limited": None,
    "pfc_side_off": None,
}


def test_every_status_bit_of_the_sources_is_covered():
    assert set(STATUS_EFFECTS) == set(infy.STATUS_BITS) - {infy.FOLLOWS_OUTPUT}


@pytest.mark.parametrize("bit", sorted(STATUS_EFFECTS))
def test_each_module_fault_has_its_effect_on_a_shared_output(bit: str):
    async def scenario() -> None:
        async with rig((1, 2)) as r:
            one, two = r.sims
            await r.driver.set_output(400, 60)
            await r.driver.enable(True)
            two.faults = {bit}
            readback = await r.driver.read()
            effect = STATUS_EFFECTS[bit]
            if effect == "output":
                assert r.driver.fault is not None and r.driver.fault.startswith("DC output: ")
                assert "(module 2)" in r.driver.fault
            elif effect == "module":
                assert r.driver.fault is None
                assert r.driver.degraded is not None
                assert r.driver.degraded.startswith("1 of 2 power modules share the output; "
                                                    "power module 2: ")
                assert one.current_ma == 60_000
                await eventually(lambda: not two.on, "module 2 switched off")
                assert readback is not None and any("power module 2" in f
                                                    for f in readback.faults)
            else:
                assert (r.driver.fault, r.driver.degraded) == (None, None)
                assert [s.current_ma for s in r.sims] == [30_000, 30_000] and two.on
            two.faults = set()                       # it clears: all back to normal
            await r.driver.read()
            assert (r.driver.fault, r.driver.degraded) == (None, None)
            assert [s.current_ma for s in r.sims] == [30_000, 30_000]
            assert one.on and two.on
    run(scenario())


def test_a_module_that_never_answers_is_a_fault_not_an_exception():
    async def scenario() -> None:
        async with rig() as r:
            r.sims[0].silent = True
            assert await r.time_out([r.sims[0]], r.driver.read()) is None
            assert r.driver.fault == "power module 1: no answer"
    run(scenario())


def test_a_refused_set_point_drops_the_module():
    async def scenario() -> None:
        async with rig() as r:
            await r.driver.capabilities()            # 100 A, read at start
            await r.driver.enable(True)
            r.sims[0].limits = Limits(max_v=1000, min_v=150, max_a=50.0, power_w=30000)
            await r.driver.set_output(400, 80)       # 75 A (30 kW): derated since, it refuses
            assert r.sims[0].current_ma == 0
            await eventually(lambda: not r.sims[0].on, "the refusing module told off")
            assert r.driver.fault == "power module 1: refused SET_OUTPUT: data invalid"
            await r.driver.read()                    # its limits are read again
            assert await r.driver.capabilities() == PowerCapabilities(150, 1000, 50, 30000)
            assert r.sims[0].current_ma == 50_000
            assert r.driver.fault == ("power modules left (1) deliver at most 50 A at 400 V, "
                                      "75 A is set")
            await r.driver.set_output(400, 40)
            assert r.sims[0].current_ma == 40_000 and r.driver.fault is None
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
            assert all(s.heard(infy.ON_OFF)[-1].fields["on"] is False for s in r.sims)
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
        small = Limits(max_v=750, min_v=200, max_a=40, power_w=12000)
        async with rig((1, 2), limits={2: small}) as r:
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


def test_a_group_is_discovered_from_its_members_answers():
    """The group's count answer comes from the group number (3), not from a member: the
    members are the sources of the per-module status answers (4 and 5)."""
    async def scenario() -> None:
        async with rig((4, 5), group=3) as r:
            assert sorted(r.driver.modules) == [4, 5]
            count = r.sims[0].heard(infy.READ_COUNT)[0].fields
            assert (count["device"], count["destination"]) == (infy.GROUP, 3)
            asked = r.sims[0].heard(infy.READ_STATUS)[0].fields
            assert (asked["device"], asked["destination"]) == (infy.GROUP, 3)
            await r.driver.set_output(500, 50)
            await r.driver.enable(True)
            assert [s.current_ma for s in r.sims] == [25_000, 25_000]
            assert (r.driver.fault, r.driver.degraded) == (None, None)
    run(scenario())


def test_a_group_member_that_answers_late_joins_at_the_next_round():
    async def scenario() -> None:
        clock = ManualClock()
        channel = f"can-power-test-{next(_channels)}"
        sims = [SimModule(can.Bus(interface="virtual", channel=channel), address, clock=clock,
                          group=2, group_size=2) for address in (7, 8)]
        sims[1].silent = True                        # still starting up
        for sim in sims:
            sim.start()
        driver = CanPowerModule.from_config(
            {"interface": "virtual", "channel": channel, "group": 2}, clock=clock)
        start = asyncio.ensure_future(driver.start())
        # Discovery waits for the second member until its timeout, on the test's clock,
        # once the first one's answers have reached the driver.
        await eventually(lambda: driver._discovery is not None
                         and 7 in driver._discovery.members and driver._discovery.count == 2
                         and clock.sleepers == 1, "discovery waiting for module 8")
        await clock.advance(driver.settings.timeout_s)
        await asyncio.wait_for(start, 5)
        try:
            assert sorted(driver.modules) == [7]
            sims[1].silent = False
            rounds = driver.keepalive_rounds
            await clock.advance(driver.settings.keepalive_s)
            await eventually(lambda: driver.keepalive_rounds > rounds, "a keep-alive round")
            assert sorted(driver.modules) == [7, 8]
            await driver.set_output(400, 40)
            await driver.enable(True)
            assert [s.current_ma for s in sims] == [20_000, 20_000]
        finally:
            await driver.stop()
            for sim in sims:
                sim.stop()
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
