"""The agent against the test CSMS when a meter's register goes back: a meter that lost
its memory in a power cut, one replaced during a session, one that cannot be read after
the cut (docs/energy-register.md). The daemon runs in this process on a ManualClock;
two lives of it on the same state directory stand for a power cut (the second ends the
open transaction with PowerLoss). Meter values on demand: TriggerMessage."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

import agent.daemon as daemon
from agent.blocks.metering.register import BELOW_PREVIOUS, BELOW_REPORTED, NOT_READ
from agent.clock import ManualClock
from agent.demo.csms import Csms
from agent.hardware import Hardware
from hal.api import EnergyMeter, MeterReading
from hal.evse import EvseHardware
from tests.harness import PASSWORD, InProcessAgent, until_registered, write_config

STATION = "CS-TEST"
ENERGY = "Energy.Active.Import.Register"


def registers(event: dict[str, Any], context: str | None = None) -> list[float]:
    return [v["value"] for mv in event.get("meterValue", []) for v in mv["sampledValue"]
            if v.get("measurand", ENERGY) == ENERGY
            and (context is None or v.get("context") == context)]


def is_event(kind: str, trigger: str | None = None):
    return lambda p: p["eventType"] == kind and (trigger is None or p["triggerReason"] == trigger)


def fiscal(p: dict[str, Any]) -> bool:
    return any(d["component"]["name"] == "FiscalMetering" for d in p["eventData"])


async def start_session(agent: InProcessAgent, link: Any, remote_start_id: int) -> dict[str, Any]:
    await until_registered(link)
    await agent.sim("plug", 1)
    answer = await link.call("RequestStartTransaction", {
        "idToken": {"idToken": f"R{remote_start_id}", "type": "Central"},
        "remoteStartId": remote_start_id, "evseId": 1})
    assert answer["status"] == "Accepted"
    return await link.expect_call("TransactionEvent", timeout=10, where=is_event("Started"))


async def charge(clock: ManualClock, seconds: int) -> None:
    """Let energy flow; a second at a time, each a poll of the mock meter. Kept below
    MessageTimeout: an answer still on its way must not time out meanwhile."""
    for _ in range(seconds):
        await clock.advance(1)


async def meter_value_now(link: Any) -> dict[str, Any]:
    """An Updated event with the register now (F06 TriggerMessage TransactionEvent)."""
    answer = await link.call("TriggerMessage", {"requestedMessage": "TransactionEvent",
                                                "evse": {"id": 1}})
    assert answer["status"] == "Accepted"
    return await link.expect_call("TransactionEvent", timeout=10,
                                  where=is_event("Updated", "Trigger"))


def capture_hardware(monkeypatch: pytest.MonkeyPatch, change=None) -> list[Hardware]:
    """The hardware each life of the daemon builds (and `change(hardware)` applied)."""
    built: list[Hardware] = []
    original = daemon.build_hardware

    def build(config: Any, clock: Any) -> Hardware:
        hardware = original(config, clock)
        if change is not None:
            change(hardware)
        built.append(hardware)
        return hardware

    monkeypatch.setattr(daemon, "build_hardware", build)
    return built


def test_power_loss_with_a_meter_that_lost_its_register(tmp_path: Path) -> None:
    """The old fault: after the cut the meter shows 0 Wh. The Ended event carries the
    register last reported instead, the CSMS is told, and the next session starts where
    the meter is (a new meter starts at its own register), with the CSMS told again."""
    async def main() -> None:
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            path = write_config(tmp_path, csms.url)
            register = tmp_path / "state" / "mock-meter-evse1.wh"
            register.parent.mkdir()
            register.write_text("5000.0\n")            # the meter has counted before
            clock = ManualClock()
            async with InProcessAgent(path, clock) as agent:
                link = await csms.wait_station(STATION, timeout=10)
                started = await start_session(agent, link, 1)
                tx_id = started["transactionInfo"]["transactionId"]
                assert registers(started) == [5000]
                await charge(clock, 20)                # 22 kW
                reported = registers(await meter_value_now(link))[0]
                assert reported > 5000
            register.unlink()                          # the cut takes the meter's memory
            async with InProcessAgent(path, clock) as agent:
                again = await csms.wait_station(STATION, timeout=10, after=link)
                ended = await again.expect_call("TransactionEvent", timeout=10,
                                                where=is_event("Ended"))
                assert ended["transactionInfo"] == {
                    "transactionId": tx_id, "chargingState": ended["transactionInfo"][
                        "chargingState"], "stoppedReason": "PowerLoss"}
                assert registers(ended, "Transaction.End") == [reported], "never 0 Wh"
                notify = await again.expect_call("NotifyEvent", timeout=10, where=fiscal)
                raised, cleared = notify["eventData"]
                assert raised["actualValue"] == "true" and raised["techCode"] == BELOW_REPORTED
                assert raised["transactionId"] == tx_id
                assert raised["component"] == {"name": "FiscalMetering", "evse": {"id": 1}}
                assert raised["variable"] == {"name": "Problem"}
                assert "read 0 Wh" in raised["techInfo"] and f"{reported} Wh" in raised["techInfo"]
                assert cleared["cleared"] is True and cleared["actualValue"] == "false"
                assert cleared["eventId"] == raised["eventId"] + 1
                # The next session: the meter's own register, sent as read, and told.
                started = await start_session(agent, again, 2)
                next_id = started["transactionInfo"]["transactionId"]
                assert registers(started) == [0]
                notify = await again.expect_call("NotifyEvent", timeout=10, where=fiscal)
                [raised] = notify["eventData"]
                assert raised["techCode"] == BELOW_PREVIOUS and raised["transactionId"] == next_id
                assert f"{reported} Wh" in raised["techInfo"]
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))


def test_meter_replaced_during_a_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A working meter swapped mid-session shows less than was reported: every later
    value of the transaction, the end included, carries the reported register; one
    problem raised, cleared with the end."""
    built = capture_hardware(monkeypatch)

    async def main() -> None:
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            path = write_config(tmp_path, csms.url)
            clock = ManualClock()
            async with InProcessAgent(path, clock) as agent:
                link = await csms.wait_station(STATION, timeout=10)
                started = await start_session(agent, link, 1)
                tx_id = started["transactionInfo"]["transactionId"]
                await charge(clock, 20)
                reported = registers(await meter_value_now(link))[0]
                assert reported > 100
                built[-1].mock.replace_meter(1, 0)
                await charge(clock, 2)
                held = await meter_value_now(link)
                assert registers(held) == [reported]
                await charge(clock, 2)
                assert registers(await meter_value_now(link)) == [reported]
                answer = await link.call("RequestStopTransaction", {"transactionId": tx_id})
                assert answer["status"] == "Accepted"
                ended = await link.expect_call("TransactionEvent", timeout=10,
                                               where=is_event("Ended"))
                assert registers(ended, "Transaction.Begin") == registers(started)
                assert registers(ended, "Transaction.End") == [reported]
                assert max(registers(ended)) == reported   # a Sample.Clock one, if any: below
                # Raised once (not at every sample), cleared with the end; the clear is
                # queued after the raise, so both are here once it is.
                await link.expect_call("NotifyEvent", timeout=10, where=lambda p: any(
                    d.get("cleared") for d in p["eventData"]))
                events = [d for p in link.calls("NotifyEvent") for d in p["eventData"]
                          if d["component"]["name"] == "FiscalMetering"]
                assert [(d["actualValue"], d["techCode"], d["transactionId"]) for d in events] \
                    == [("true", BELOW_REPORTED, tx_id), ("false", BELOW_REPORTED, tx_id)]
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))


class DeadMeter(EnergyMeter):
    """A meter on a bus without power: no reading, a fault."""

    async def read(self) -> MeterReading | None:
        return None

    async def start(self) -> None:
        self._set_fault("no answer from meter at address 1")


def test_power_loss_with_a_meter_that_cannot_be_read_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lives = 0

    def second_life_without_a_meter(hardware: Hardware) -> None:
        nonlocal lives
        lives += 1
        if lives == 2:
            evse = hardware.evses[1]
            hardware.evses[1] = EvseHardware(1, dataclasses.replace(evse.devices,
                                                                   meter=DeadMeter()))
    capture_hardware(monkeypatch, second_life_without_a_meter)

    async def main() -> None:
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            path = write_config(tmp_path, csms.url)
            clock = ManualClock()
            async with InProcessAgent(path, clock) as agent:
                link = await csms.wait_station(STATION, timeout=10)
                started = await start_session(agent, link, 1)
                tx_id = started["transactionInfo"]["transactionId"]
                await charge(clock, 20)
                reported = registers(await meter_value_now(link))[0]
            async with InProcessAgent(path, clock) as agent:
                again = await csms.wait_station(STATION, timeout=10, after=link)
                ended = await again.expect_call("TransactionEvent", timeout=10,
                                                where=is_event("Ended"))
                assert ended["transactionInfo"]["stoppedReason"] == "PowerLoss"
                assert registers(ended, "Transaction.End") == [reported], "not 0, not missing"
                notify = await again.expect_call("NotifyEvent", timeout=10, where=fiscal)
                assert [(d["techCode"], d["transactionId"], d["actualValue"])
                        for d in notify["eventData"]] == [(NOT_READ, tx_id, "true"),
                                                          (NOT_READ, tx_id, "false")]
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))
