"""Remote control (block F): TriggerMessage (F06) and UnlockConnector (F05).

The block alone first (real router, station and mock hardware, producers that record),
then the daemon's wiring: in-process on a ManualClock for a Pending station, and the real
agent process against the test CSMS.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable

import jsonschema
import ocpp
import pytest

from agent.blocks.remote_control import RemoteControl, meter_values, notification
from agent.clock import ManualClock
from agent.config import load_config
from agent.daemon import run_daemon
from agent.demo.csms import Csms
from agent.hardware import Hardware
from agent.ocpp.session import CallTimeout, NotConnected, Reply, Router
from agent.ocpp.validation import validate
from agent.station import Connector, Evse, Station
from hal.api import ConnectorLock, ContactorState, EvseDevices
from hal.drivers.mock import MockStation
from hal.evse import EvseHardware
from tests.harness import PASSWORD, AgentProcess, quiesce, write_config
from tests.test_sim_agent import sim_async, wait_for_socket

SCHEMAS = Path(ocpp.__file__).parent / "v201" / "schemas"
STATION = "CS-TEST"


def official(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


TRIGGER_RESPONSE = official("TriggerMessageResponse")
UNLOCK_RESPONSE = official("UnlockConnectorResponse")


def run(coro: Any, timeout: float = 10) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class FakeLock(ConnectorLock):
    """A lock whose unlock confirms, fails, raises or hangs, as a test says."""

    def __init__(self, outcome: str = "ok") -> None:
        super().__init__()
        self.outcome = outcome
        self.unlocks = 0
        self.release = asyncio.Event()
        self.finished = False
        self._locked: bool | None = True

    async def lock(self) -> bool:
        self._locked = True
        return True

    async def unlock(self) -> bool:
        self.unlocks += 1
        if self.outcome == "raise":
            raise OSError("H-bridge driver not responding")
        if self.outcome == "hang":
            await self.release.wait()
            self.finished = True
        if self.outcome == "jammed":
            self.fault = "lock feedback stuck at locked"
            return False
        self._locked = False
        return True

    @property
    def locked(self) -> bool | None:
        return self._locked


class Tx:
    def __init__(self, authorized: bool, connector_id: int = 1) -> None:
        self.id = "tx-1"
        self.authorized = authorized
        self.connector_id = connector_id


class Rig:
    """EVSE 1: mock hardware (lock, contactor); EVSE 2: two connectors and FakeLock;
    EVSE 3: no lock at all (a fixed cable)."""

    def __init__(self, lock_outcome: str = "ok") -> None:
        self.clock = ManualClock()
        self.station = Station([
            Evse(1, 32, 3, 230, connectors={1: Connector(1, 1)}),
            Evse(2, 16, 1, 230, connectors={1: Connector(2, 1), 2: Connector(2, 2)}),
            Evse(3, 16, 1, 230, connectors={1: Connector(3, 1)})])
        self.mock = MockStation(list(self.station.evses.values())[:1], self.clock)
        self.lock = FakeLock(lock_outcome)
        self.hardware = Hardware({
            1: EvseHardware(1, self.mock.devices(1)),
            2: EvseHardware(2, EvseDevices(lock=self.lock)),
            3: EvseHardware(3, EvseDevices())})
        self.transactions: dict[int, Tx] = {}
        self.router = Router()
        self.block = RemoteControl(self.router, self.station, self.hardware, clock=self.clock,
                                   transaction_on=self.transactions.get)
        self.produced: list[tuple[str, tuple[Any, ...]]] = []

    def recorder(self, name: str, result: Any = None, fail: Exception | None = None) -> Any:
        async def produce(*args: Any) -> Any:
            self.produced.append((name, args))
            if fail is not None:
                raise fail
            return result
        return produce

    async def trigger(self, message: str, evse: dict[str, int] | None = None,
                      then: bool = True) -> dict[str, Any]:
        request: dict[str, Any] = {"requestedMessage": message}
        if evse is not None:
            request["evse"] = evse
        validate("TriggerMessage", "request", request)
        answer = await self.router.routes["TriggerMessage"].handler(request)
        payload = answer.payload if isinstance(answer, Reply) else answer
        validate("TriggerMessage", "response", payload)
        TRIGGER_RESPONSE.validate(payload)
        # The triggered message only once the answer is on the wire (F06.FR.04).
        assert (payload["status"] == "Accepted") == (isinstance(answer, Reply)
                                                     and answer.then is not None)
        if isinstance(answer, Reply) and answer.then is not None:
            assert not self.produced
            if then:
                await answer.then()
        return payload

    async def unlock(self, evse_id: int, connector_id: int) -> dict[str, Any]:
        request = {"evseId": evse_id, "connectorId": connector_id}
        validate("UnlockConnector", "request", request)
        payload = await self.router.routes["UnlockConnector"].handler(request)
        validate("UnlockConnector", "response", payload)
        UNLOCK_RESPONSE.validate(payload)
        return payload


# --- TriggerMessage ------------------------------------------------------------------------

@pytest.mark.parametrize("message", ["SignChargingStationCertificate", "SignV2GCertificate",
                                     "SignCombinedCertificate",
                                     "PublishFirmwareStatusNotification"])
def test_unregistered_messages_are_not_implemented(message: str) -> None:
    async def main() -> None:
        rig = Rig()
        answer = await rig.trigger(message, {"id": 1})
        assert answer["status"] == "NotImplemented"
        assert answer["statusInfo"]["reasonCode"] == "UnsupportedRequest"
    run(main())


def test_station_scope_ignores_the_evse_even_an_unknown_one() -> None:
    async def main() -> None:
        rig = Rig()
        rig.block.register("Heartbeat", rig.recorder("Heartbeat"))
        for evse in (None, {"id": 1}, {"id": 9, "connectorId": 4}):
            rig.produced.clear()
            assert await rig.trigger("Heartbeat", evse) == {"status": "Accepted"}
            assert rig.produced == [("Heartbeat", ())]     # F06.FR.02: sent all the same
    run(main())


def test_station_scope_check_rejects_with_its_reason() -> None:
    async def main() -> None:
        rig = Rig()
        accepted = False
        rig.block.register("BootNotification", rig.recorder("Boot"),
                           check=lambda e: ("Unspecified", "already Accepted") if accepted
                           else None)
        assert await rig.trigger("BootNotification") == {"status": "Accepted"}
        assert rig.produced == [("Boot", ())]
        rig.produced.clear()
        accepted = True
        answer = await rig.trigger("BootNotification")
        assert answer == {"status": "Rejected", "statusInfo": {
            "reasonCode": "Unspecified", "additionalInfo": "already Accepted"}}
        assert rig.produced == []
    run(main())


def test_evse_scope_one_evse_all_evses_and_unknown_ones() -> None:
    async def main() -> None:
        rig = Rig()
        busy = {2}
        rig.block.register("TransactionEvent", rig.recorder("Tx"), scope="evse",
                           check=lambda e: None if (busy if e is None else {e}) & busy
                           else "TxNotFound")
        assert await rig.trigger("TransactionEvent", {"id": 2}) == {"status": "Accepted"}
        assert rig.produced == [("Tx", (2,))]
        rig.produced.clear()
        assert await rig.trigger("TransactionEvent") == {"status": "Accepted"}
        assert rig.produced == [("Tx", (None,))]       # the producer covers every EVSE
        rig.produced.clear()
        answer = await rig.trigger("TransactionEvent", {"id": 1})
        assert answer == {"status": "Rejected", "statusInfo": {"reasonCode": "TxNotFound"}}
        for evse_id in (0, 7):
            answer = await rig.trigger("TransactionEvent", {"id": evse_id})
            assert answer["status"] == "Rejected"
            assert answer["statusInfo"]["reasonCode"] == "UnknownEvse"
        busy.clear()
        assert (await rig.trigger("TransactionEvent"))["status"] == "Rejected"
        assert rig.produced == []
    run(main())


def test_connector_scope_expands_to_connectors() -> None:
    async def main() -> None:
        rig = Rig()
        rig.block.register("StatusNotification", rig.recorder("Status"), scope="connector")
        cases = [({"id": 2, "connectorId": 2}, [(2, 2)]),
                 ({"id": 2}, [(2, 1), (2, 2)]),              # errata F06.FR.12: MAY serve
                 (None, [(1, 1), (2, 1), (2, 2), (3, 1)])]
        for evse, expected in cases:
            rig.produced.clear()
            assert await rig.trigger("StatusNotification", evse) == {"status": "Accepted"}
            assert rig.produced == [("Status", args) for args in expected]
        rig.produced.clear()
        answer = await rig.trigger("StatusNotification", {"id": 1, "connectorId": 2})
        assert answer["status"] == "Rejected"
        assert answer["statusInfo"]["reasonCode"] == "UnknownConnectorId"
        answer = await rig.trigger("StatusNotification", {"id": 5, "connectorId": 1})
        assert answer["statusInfo"]["reasonCode"] == "UnknownEvse"
        assert rig.produced == []
    run(main())


def test_a_failed_send_does_not_stop_the_others_and_sync_producers_work() -> None:
    async def main() -> None:
        rig = Rig()
        calls: list[tuple[int, int]] = []

        async def flaky(evse_id: int, connector_id: int) -> None:
            calls.append((evse_id, connector_id))
            if evse_id == 1:
                raise CallTimeout("StatusNotification: no answer within 30 s")

        rig.block.register("StatusNotification", flaky, scope="connector")
        assert await rig.trigger("StatusNotification") == {"status": "Accepted"}
        assert calls == [(1, 1), (2, 1), (2, 2), (3, 1)]
        queued: list[int | None] = []
        rig.block.register("TransactionEvent", lambda e: queued.append(e) or 1, scope="evse")
        assert await rig.trigger("TransactionEvent", {"id": 1}) == {"status": "Accepted"}
        assert queued == [1]
    run(main())


def test_registration_rules() -> None:
    rig = Rig()
    with pytest.raises(ValueError):
        rig.block.register("Heartbeat", rig.recorder("x"), scope="everywhere")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        rig.block.register("StatusNotification", rig.recorder("x"), scope="connector",
                           check=lambda e: None)
    rig.block.register("FirmwareStatusNotification", rig.recorder("stand-in"))
    rig.block.register("FirmwareStatusNotification", rig.recorder("firmware block"))
    assert rig.block.supported == ["FirmwareStatusNotification"]

    async def main() -> None:
        await rig.trigger("FirmwareStatusNotification")
        assert rig.produced == [("firmware block", ())]
    run(main())


class SentLink:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.fail = fail

    async def call(self, action: str, payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.fail:
            raise NotConnected(f"{action}: not connected to the CSMS")
        self.sent.append((action, payload, kwargs))
        return {}


def test_producer_helpers_send_before_registration_without_waiting() -> None:
    async def main() -> None:
        link = SentLink()
        await notification(link, "LogStatusNotification", {"status": "Idle"})()
        payloads = {1: [{"evseId": 1, "meterValue": []}], None: [
            {"evseId": 1, "meterValue": []}, {"evseId": 2, "meterValue": []}]}
        await meter_values(link, lambda e: payloads[e])(None)
        assert [(a, p.get("evseId")) for a, p, _ in link.sent] == [
            ("LogStatusNotification", None), ("MeterValues", 1), ("MeterValues", 2)]
        assert all(kw == {"before_accepted": True, "wait": False} for _, _, kw in link.sent)
        # Offline: the trigger was answered, the message is lost, nothing breaks.
        rig = Rig()
        rig.block.register("LogStatusNotification",
                           notification(SentLink(fail=True), "LogStatusNotification",
                                        {"status": "Idle"}))
        assert await rig.trigger("LogStatusNotification") == {"status": "Accepted"}
    run(main())


# --- UnlockConnector -----------------------------------------------------------------------

def test_unlock_unknown_evse_or_connector() -> None:
    async def main() -> None:
        rig = Rig()
        for evse_id, connector_id, reason in ((9, 1, "UnknownEvse"), (1, 2, "UnknownConnectorId"),
                                              (0, 1, "UnknownEvse")):
            answer = await rig.unlock(evse_id, connector_id)
            assert answer["status"] == "UnknownConnector"
            assert answer["statusInfo"]["reasonCode"] == reason
    run(main())


def test_unlock_releases_the_mock_lock_without_a_transaction() -> None:
    async def main() -> None:
        rig = Rig()
        lock = rig.mock.devices(1).lock
        assert lock is not None
        await lock.lock()
        assert rig.mock.snapshot(1)["locked"] is True
        assert await rig.unlock(1, 1) == {"status": "Unlocked"}
        assert rig.mock.snapshot(1)["locked"] is False
        # Nothing plugged in: the lock is driven all the same.
        assert await rig.unlock(1, 1) == {"status": "Unlocked"}
    run(main())


def test_no_unlock_during_an_authorized_transaction() -> None:
    async def main() -> None:
        rig = Rig()
        rig.transactions[2] = Tx(authorized=True, connector_id=2)
        answer = await rig.unlock(2, 2)
        assert answer["status"] == "OngoingAuthorizedTransaction"      # F05.FR.02
        assert answer["statusInfo"]["reasonCode"] == "TxInProgress"
        assert rig.lock.unlocks == 0
        # The other connector of that EVSE holds no transaction.
        assert await rig.unlock(2, 1) == {"status": "Unlocked"}
        # A transaction not authorized (started on EVConnected) does not hold the cable.
        rig.transactions[2] = Tx(authorized=False, connector_id=2)
        assert await rig.unlock(2, 2) == {"status": "Unlocked"}
    run(main())


def test_fixed_cable_and_closed_power_path_fail() -> None:
    async def main() -> None:
        rig = Rig()
        answer = await rig.unlock(3, 1)
        assert answer["status"] == "UnlockFailed"
        assert answer["statusInfo"]["reasonCode"] == "FixedCable"
        # Charging as the rules drive it: plugged in, locked, offered, contactor closed.
        hw = rig.hardware.evses[1]
        rig.mock.plug(1)
        assert await hw.engage_lock() and await hw.offer(16) and await hw.close_contactor()
        assert rig.mock.devices(1).contactor.state is ContactorState.CLOSED  # type: ignore[union-attr]
        answer = await rig.unlock(1, 1)
        assert answer["status"] == "UnlockFailed"
        assert "not unlocked under load" in answer["statusInfo"]["additionalInfo"]
    run(main())


@pytest.mark.parametrize("outcome,reason,info", [
    ("jammed", "Unspecified", "lock feedback stuck at locked"),
    ("raise", "InternalError", "H-bridge driver not responding")])
def test_lock_that_does_not_confirm_fails(outcome: str, reason: str, info: str) -> None:
    async def main() -> None:
        rig = Rig(outcome)
        answer = await rig.unlock(2, 1)
        assert answer["status"] == "UnlockFailed"
        assert answer["statusInfo"]["reasonCode"] == reason
        assert info in answer["statusInfo"]["additionalInfo"]
    run(main())


def test_a_hanging_lock_is_answered_and_left_to_finish() -> None:
    async def main() -> None:
        rig = Rig("hang")
        pending = asyncio.ensure_future(rig.unlock(2, 1))
        for _ in range(5):
            await asyncio.sleep(0)
        assert rig.clock.sleepers == 1
        await rig.clock.advance(10)
        answer = await pending
        assert answer["status"] == "UnlockFailed"
        assert "did not finish within 10 s" in answer["statusInfo"]["additionalInfo"]
        rig.lock.release.set()            # not cancelled half way: the move completes
        for _ in range(5):
            await asyncio.sleep(0)
        assert rig.lock.finished and rig.lock.locked is False
    run(main())


# --- the daemon's wiring -------------------------------------------------------------------

def frame_order(link: Any, answered: str, triggered: str,
                where: Callable[[dict], bool] = lambda payload: True) -> tuple[int, int]:
    """Indexes of the station's answer to the last `answered` CALL and of its first
    `triggered` CALL (matching `where`: other messages of that action may flow meanwhile)
    after that CALL went out."""
    frames = [(f.direction, json.loads(f.text)) for f in link.frames]
    out = max(i for i, (d, m) in enumerate(frames)
              if d == "out" and m[0] == 2 and m[2] == answered)
    call_id = frames[out][1][1]
    answer = next(i for i, (d, m) in enumerate(frames)
                  if d == "in" and m[0] == 3 and m[1] == call_id)
    sent = next(i for i, (d, m) in enumerate(frames)
                if i > out and d == "in" and m[0] == 2 and m[2] == triggered
                and where(m[3]))
    return answer, sent


def test_pending_station_sends_triggered_messages_and_registers_by_trigger(tmp_path):
    """B02: while Pending only what the CSMS asks for goes out; a triggered Heartbeat and
    StatusNotification do; a triggered BootNotification (reason Triggered) answered
    Accepted registers the station; after that, the trigger is Rejected (F06.FR.17)."""
    async def main():
        async with Csms(passwords={STATION: PASSWORD}, boot_status="Pending",
                        heartbeat_interval=60) as csms:
            config = load_config(write_config(tmp_path, csms.url))
            stop = asyncio.Event()
            task = asyncio.ensure_future(run_daemon(config, stop, clock=ManualClock()))
            try:
                link = await csms.wait_station(STATION)
                await link.expect_call("BootNotification")
                assert await quiesce()
                assert (await link.call("TriggerMessage", {"requestedMessage": "Heartbeat"}))[
                    "status"] == "Accepted"
                await link.expect_call("Heartbeat")
                answer = await link.call("TriggerMessage", {
                    "requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}})
                assert answer["status"] == "Accepted"
                status = await link.expect_call("StatusNotification")
                assert (status["evseId"], status["connectorId"], status["connectorStatus"]) == (
                    1, 1, "Available")
                answered, sent = frame_order(link, "TriggerMessage", "StatusNotification")
                assert answered < sent                                      # F06.FR.04
                csms.boot_status = "Accepted"
                assert (await link.call("TriggerMessage", {
                    "requestedMessage": "BootNotification"}))["status"] == "Accepted"
                boot = await link.expect_call("BootNotification")
                assert boot["reason"] == "Triggered"
                # Registered now: the station reports what the CSMS has not heard (the
                # connector's status it heard already is not repeated).
                hb = await asyncio.wait_for(_heartbeat_interval(link), 5)
                assert hb == "60"
                answer = await link.call("TriggerMessage", {"requestedMessage": "BootNotification"})
                assert answer["status"] == "Rejected"                      # F06.FR.17
                assert await quiesce()
                assert len(link.calls("BootNotification")) == 2
                assert len(link.calls("StatusNotification")) == 1
            finally:
                stop.set()
                await asyncio.wait_for(task, 5)
            assert csms.schema_errors == []
    run(main(), 30)


def test_no_boot_after_a_triggered_one_was_accepted(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}, boot_status="Pending",
                        heartbeat_interval=60) as csms:
            config = load_config(write_config(tmp_path, csms.url))
            stop = asyncio.Event()
            clock = ManualClock()
            task = asyncio.ensure_future(run_daemon(config, stop, clock=clock))
            try:
                link = await csms.wait_station(STATION)
                await link.expect_call("BootNotification")
                csms.boot_status = "Accepted"
                await link.call("TriggerMessage", {"requestedMessage": "BootNotification"})
                await link.expect_call("BootNotification")
                await link.expect_call("StatusNotification")
                assert await quiesce()
                await clock.advance(61)          # the Pending retry interval runs out
                assert await quiesce()
                assert len(link.calls("BootNotification")) == 2
            finally:
                stop.set()
                await asyncio.wait_for(task, 5)
    run(main(), 30)


async def _heartbeat_interval(link: Any) -> str:
    got = await link.call("GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
    return got["getVariableResult"][0]["attributeValue"]


def test_trigger_and_unlock_on_the_agent_process(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url, evses=2)
            agent = await AgentProcess(config).start()
            try:
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("StatusNotification", timeout=10,
                                       where=lambda p: p["evseId"] == 2)
                await wait_for_socket(config)

                async def trigger(message, evse=None):
                    request = {"requestedMessage": message}
                    if evse is not None:
                        request["evse"] = evse
                    return await link.call("TriggerMessage", request)

                # Station-scope: an evse is not relevant and ignored (F06.FR.02).
                assert (await trigger("FirmwareStatusNotification", {"id": 2}))["status"] == \
                    "Accepted"
                assert await link.expect_call("FirmwareStatusNotification") == {"status": "Idle"}
                assert (await trigger("LogStatusNotification"))["status"] == "Accepted"
                assert await link.expect_call("LogStatusNotification") == {"status": "Idle"}
                assert (await trigger("Heartbeat"))["status"] == "Accepted"
                await link.expect_call("Heartbeat")
                assert (await trigger("BootNotification"))["status"] == "Rejected"
                assert (await trigger("SignCombinedCertificate"))["status"] == "NotImplemented"

                # StatusNotification for every connector of the station.
                before = len(link.calls("StatusNotification"))
                assert (await trigger("StatusNotification"))["status"] == "Accepted"
                for evse_id in (1, 2):
                    await link.expect_call("StatusNotification",
                                           where=lambda p, e=evse_id: p["evseId"] == e)
                assert len(link.calls("StatusNotification")) == before + 2
                assert (await trigger("StatusNotification", {"id": 3, "connectorId": 1}))[
                    "status"] == "Rejected"

                # MeterValues: context Trigger, the AlignedDataCtrlr.Measurands.
                assert (await trigger("MeterValues", {"id": 2}))["status"] == "Accepted"
                mv = await link.expect_call("MeterValues")
                assert mv["evseId"] == 2
                sampled = mv["meterValue"][0]["sampledValue"]
                assert {v["context"] for v in sampled} == {"Trigger"}
                assert {v.get("measurand") for v in sampled} == {"Energy.Active.Import.Register"}
                assert (await trigger("MeterValues", {"id": 9}))["status"] == "Rejected"

                # TransactionEvent: Rejected without a transaction; then during one.
                assert (await trigger("TransactionEvent"))["status"] == "Rejected"
                unlocked = await link.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
                assert unlocked == {"status": "Unlocked"}
                assert (await sim_async(config, "plug", "1")).returncode == 0
                await link.call("RequestStartTransaction", {
                    "idToken": {"idToken": "REMOTE1", "type": "Central"}, "remoteStartId": 7,
                    "evseId": 1})
                started = await link.expect_call("TransactionEvent", timeout=10,
                                                 where=lambda p: p["eventType"] == "Started")
                tx_id = started["transactionInfo"]["transactionId"]
                assert (await trigger("TransactionEvent", {"id": 2}))["status"] == "Rejected"
                assert (await trigger("TransactionEvent", {"id": 1}))["status"] == "Accepted"
                event = await link.expect_call("TransactionEvent", timeout=10,
                                               where=lambda p: p["triggerReason"] == "Trigger")
                assert event["eventType"] == "Updated"
                assert event["transactionInfo"]["transactionId"] == tx_id
                assert {v["context"] for m in event["meterValue"] for v in m["sampledValue"]} == {
                    "Trigger"}
                answered, sent = frame_order(link, "TriggerMessage", "TransactionEvent",
                                             lambda p: p["triggerReason"] == "Trigger")
                assert answered < sent                                      # F06.FR.04

                # UnlockConnector during the authorized transaction, and unknown ones.
                answer = await link.call("UnlockConnector", {"evseId": 1, "connectorId": 1})
                assert answer["status"] == "OngoingAuthorizedTransaction"
                answer = await link.call("UnlockConnector", {"evseId": 3, "connectorId": 1})
                assert answer["status"] == "UnknownConnector"
                assert (await link.call("UnlockConnector", {"evseId": 2, "connectorId": 1}))[
                    "status"] == "Unlocked"
                events = [p for p in link.calls("TransactionEvent")
                          if p["transactionInfo"]["transactionId"] == tx_id]
                assert [p["seqNo"] for p in events] == list(range(len(events)))
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    run(main(), 60)
