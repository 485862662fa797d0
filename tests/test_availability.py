"""Availability (block G): ChangeAvailability, AvailabilityState, faults as NotifyEvent.

The block runs in-process with a real store, device model and outbox (not delivering:
the queued rows are what the CSMS would get) and a stand-in for the connection.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import ocpp
import pytest

from agent.blocks.availability import Availability
from agent.clock import ManualClock
from agent.hardware import Hardware, HardwareBridge
from agent.model.definitions import standard_definitions
from agent.model.device_model import DeviceModel
from agent.model.types import Component, EvseSpec, StationSpec, Variable
from agent.ocpp.outbox import Outbox
from agent.ocpp.session import Reply, Router
from agent.ocpp.validation import validate
from agent.station import Connector, Evse, Station
from agent.store import Store
from hal.drivers.mock import MockStation
from hal.drivers.mock.ev import FAULT_TEXT
from hal.evse import EvseHardware

SCHEMAS = Path(ocpp.__file__).parent / "v201" / "schemas"


def official(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


NOTIFY_EVENT = official("NotifyEventRequest")
CHANGE_RESPONSE = official("ChangeAvailabilityResponse")


class Link:
    """What the block needs of the ConnectionManager."""

    def __init__(self) -> None:
        self.on_open: list[Any] = []
        self.on_close: list[Any] = []
        self.accepted = asyncio.Event()
        self.connected = False
        self.sent: list[tuple[str, dict]] = []

    async def probe(self) -> bool:
        return True

    async def call(self, action: str, payload: dict, **kwargs: Any) -> dict:
        self.sent.append((action, payload))
        return {}


class Rig:
    """One life of the station's work on a store that outlives it (a restart = a new Rig)."""

    def __init__(self, store: Store, busy: set[int] | None = None) -> None:
        self.store = store
        self.clock = ManualClock()
        self.busy = busy if busy is not None else set()
        evses = (EvseSpec(1, 32, 3, 230), EvseSpec(2, 16, 1, 230, connectors=2))
        self.model = DeviceModel(store, standard_definitions(StationSpec(
            vendor="Example", model="AC-22", serial_number="0001", firmware_version="1.0.0",
            evses=evses, security_profile=1)))
        self.station = Station([
            Evse(e.id, e.max_current_a, e.phases, e.nominal_voltage_v,
                 connectors={c: Connector(e.id, c) for c in range(1, e.connectors + 1)})
            for e in evses])
        self.heard: list[tuple[int, int, str]] = []
        self.station.subscribe(lambda e, c, s: self.heard.append((e, c, s)))
        self.link = Link()
        self.router = Router()
        self.outbox = Outbox(store, self.link, self.clock, self.model)
        self.availability = Availability(
            link=self.link, router=self.router,  # type: ignore[arg-type]
            station=self.station, model=self.model, store=store, outbox=self.outbox,
            clock=self.clock,
            is_busy=lambda e: bool(self.busy) if e is None else e in self.busy)

    async def change(self, status: str, evse: int | None = None,
                     connector: int | None = None) -> dict:
        request: dict[str, Any] = {"operationalStatus": status}
        if evse is not None:
            request["evse"] = {"id": evse}
            if connector is not None:
                request["evse"]["connectorId"] = connector
        validate("ChangeAvailability", "request", request)
        answer = await self.router.routes["ChangeAvailability"].handler(request)
        payload = answer.payload if isinstance(answer, Reply) else answer
        validate("ChangeAvailability", "response", payload)
        CHANGE_RESPONSE.validate(payload)
        if isinstance(answer, Reply) and answer.then is not None:
            await answer.then()   # the answer is on the wire: the change happens
        return payload

    def statuses(self) -> dict[tuple[int, int], str]:
        return {(c.evse_id, c.id): c.status for c in self.station.connectors()}

    def state(self, component: str, evse: int | None = None, connector: int | None = None,
              variable: str = "AvailabilityState") -> str:
        return self.model.get_str(component, variable, evse=evse, connector=connector)

    def queued(self) -> list[dict]:
        rows = self.store.query("SELECT action, payload FROM outbox ORDER BY id")
        return [json.loads(p) for a, p in rows if a == "NotifyEvent"]


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "db")


ALL_AVAILABLE = {(1, 1): "Available", (2, 1): "Available", (2, 2): "Available"}


# --- ChangeAvailability ----------------------------------------------------------------

def test_station_inoperative_and_back(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store)
        rig.station.update(1, 1, plugged=True)
        assert await rig.change("Inoperative") == {"status": "Accepted"}
        assert set(rig.statuses().values()) == {"Unavailable"}
        assert rig.state("ChargingStation") == "Unavailable"
        assert rig.state("EVSE", 2) == "Unavailable"
        assert rig.state("Connector", 2, 2) == "Unavailable"
        assert await rig.change("Operative") == {"status": "Accepted"}
        # Back to what the hardware says: the EV is still plugged in.
        assert rig.statuses() == {**ALL_AVAILABLE, (1, 1): "Occupied"}
        assert rig.state("EVSE", 1) == "Occupied"
        assert rig.state("ChargingStation") == "Available"
    run(main())


def test_evse_and_connector_settings_nest_under_the_station(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store)
        assert await rig.change("Inoperative", evse=2, connector=2) == {"status": "Accepted"}
        assert rig.statuses() == {**ALL_AVAILABLE, (2, 2): "Unavailable"}
        # One connector of EVSE 2 still serves: the EVSE is available.
        assert rig.state("EVSE", 2) == "Available"
        assert rig.state("Connector", 2, 2) == "Unavailable"
        assert await rig.change("Inoperative", evse=1) == {"status": "Accepted"}
        assert await rig.change("Inoperative") == {"status": "Accepted"}
        assert set(rig.statuses().values()) == {"Unavailable"}
        # The station back in service brings back each part as the CSMS had set it.
        assert await rig.change("Operative") == {"status": "Accepted"}
        assert rig.statuses() == {(1, 1): "Unavailable", (2, 1): "Available",
                                  (2, 2): "Unavailable"}
        assert rig.state("EVSE", 1) == "Unavailable"
        assert rig.state("ChargingStation") == "Available"
        # An EVSE set Operative does not override its connector's own setting.
        assert await rig.change("Operative", evse=2) == {"status": "Accepted"}
        assert rig.statuses()[(2, 2)] == "Unavailable"
        assert await rig.change("Operative", evse=2, connector=2) == {"status": "Accepted"}
        assert await rig.change("Operative", evse=1) == {"status": "Accepted"}
        assert rig.statuses() == ALL_AVAILABLE
    run(main())


def test_a_fault_still_shows_as_faulted_when_inoperative(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store)
        rig.station.update(1, 1, faulted=True)
        assert await rig.change("Inoperative", evse=1) == {"status": "Accepted"}
        assert rig.statuses()[(1, 1)] == "Faulted"
        rig.station.update(1, 1, faulted=False)
        assert rig.statuses()[(1, 1)] == "Unavailable"
    run(main())


@pytest.mark.parametrize(("evse", "connector", "reason"), [
    (3, None, "UnknownEvse"), (0, None, "UnknownEvse"), (1, 2, "UnknownConnectorId"),
    (2, 0, "UnknownConnectorId")])
def test_unknown_evse_or_connector_is_rejected(store: Store, evse: int, connector: int | None,
                                               reason: str) -> None:
    async def main() -> None:
        rig = Rig(store)
        answer = await rig.change("Inoperative", evse=evse, connector=connector)
        assert answer["status"] == "Rejected"
        assert answer["statusInfo"]["reasonCode"] == reason
        assert rig.statuses() == ALL_AVAILABLE and rig.heard == []
        assert store.query("SELECT COUNT(*) FROM availability")[0][0] == 0
    run(main())


def test_the_state_already_set_is_accepted_and_changes_nothing(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store)
        assert await rig.change("Operative") == {"status": "Accepted"}
        assert await rig.change("Operative", evse=1) == {"status": "Accepted"}
        assert rig.heard == []
        assert await rig.change("Inoperative", evse=1) == {"status": "Accepted"}
        assert rig.heard == [(1, 1, "Unavailable")]
        assert await rig.change("Inoperative", evse=1) == {"status": "Accepted"}
        assert rig.heard == [(1, 1, "Unavailable")]
    run(main())


def test_scheduled_while_a_transaction_runs(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store, busy={1})
        rig.station.update(1, 1, plugged=True)
        answer = await rig.change("Inoperative")
        assert answer == {"status": "Scheduled", "statusInfo": {"reasonCode": "TxInProgress"}}
        # The idle EVSE goes at once; the busy one keeps charging.
        assert rig.statuses() == {(1, 1): "Occupied", (2, 1): "Unavailable",
                                  (2, 2): "Unavailable"}
        assert rig.availability.scheduled(1) and not rig.availability.scheduled(2)
        # Asked again while it waits: still Scheduled, still waiting.
        assert (await rig.change("Inoperative", evse=1))["status"] == "Scheduled"
        assert rig.statuses()[(1, 1)] == "Occupied"
        # Status changes during the transaction do not take it out of service.
        rig.station.update(1, 1, plugged=False)
        rig.station.update(1, 1, plugged=True)
        assert rig.statuses()[(1, 1)] == "Occupied"
        rig.busy.clear()
        rig.availability.transaction_ended(1)
        assert rig.statuses()[(1, 1)] == "Unavailable"
        assert not rig.availability.scheduled()
    run(main())


def test_transaction_ended_applies_even_before_busy_says_so(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store, busy={1})
        assert (await rig.change("Inoperative", evse=1))["status"] == "Scheduled"
        rig.availability.transaction_ended(1)   # the transaction block has not updated yet
        assert rig.statuses()[(1, 1)] == "Unavailable"
    run(main())


def test_operative_never_waits_and_cancels_a_scheduled_change(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store, busy={1})
        assert (await rig.change("Inoperative", evse=1))["status"] == "Scheduled"
        assert await rig.change("Operative", evse=1) == {"status": "Accepted"}
        rig.busy.clear()
        rig.availability.transaction_ended(1)
        assert rig.statuses() == ALL_AVAILABLE
        # Back into service while a transaction runs: at once.
        assert await rig.change("Inoperative", evse=2) == {"status": "Accepted"}
        rig.busy.add(2)
        assert await rig.change("Operative", evse=2) == {"status": "Accepted"}
        assert rig.statuses() == ALL_AVAILABLE
    run(main())


def test_a_connector_change_waits_only_for_its_own_evse(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store, busy={1})
        assert await rig.change("Inoperative", evse=2, connector=1) == {"status": "Accepted"}
        assert rig.statuses()[(2, 1)] == "Unavailable"
        rig.busy.add(2)
        assert (await rig.change("Inoperative", evse=2, connector=2))["status"] == "Scheduled"
    run(main())


def test_settings_survive_a_restart_and_apply_before_any_status_is_sent(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store)
        await rig.change("Inoperative", evse=1)
        await rig.change("Inoperative", evse=2, connector=2)
        again = Rig(store)
        assert again.statuses() == {(1, 1): "Unavailable", (2, 1): "Available",
                                    (2, 2): "Unavailable"}
        assert again.state("EVSE", 1) == "Unavailable"
        assert again.state("Connector", 2, 2) == "Unavailable"
        # The first StatusNotifications already say so.
        again.link.accepted.set()
        task = asyncio.ensure_future(again.availability.run())
        assert await again.availability.reported(timeout=5)
        task.cancel()
        sent = {(p["evseId"], p["connectorId"]): p["connectorStatus"]
                for a, p in again.link.sent if a == "StatusNotification"}
        assert sent == again.statuses()
        assert len(again.link.sent) == 3
    run(main())


def test_a_scheduled_change_survives_a_restart(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store, busy={1})
        assert (await rig.change("Inoperative", evse=1))["status"] == "Scheduled"
        # Restarted with the transaction still running: it still waits.
        waiting = Rig(store, busy={1})
        assert waiting.statuses()[(1, 1)] == "Available"
        assert waiting.availability.scheduled(1)
        waiting.availability.transaction_ended(1)
        assert waiting.statuses()[(1, 1)] == "Unavailable"
        # Restarted after it ended with the power: applied at start.
        assert Rig(store).statuses()[(1, 1)] == "Unavailable"
    run(main())


def test_a_reset_does_not_undo_what_the_csms_set(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store)
        # An EVSE Reset takes it out and puts it back (the daemon's reset_evse).
        rig.station.set_operative(2, False)
        assert rig.statuses()[(2, 1)] == "Unavailable"
        rig.station.set_operative(2, True)
        assert rig.statuses()[(2, 1)] == "Available"
        await rig.change("Inoperative", evse=1)
        rig.station.set_operative(1, False)
        rig.station.set_operative(1, True)
        assert rig.statuses()[(1, 1)] == "Unavailable"
        assert rig.state("EVSE", 1) == "Unavailable"
    run(main())


def test_a_change_whose_answer_was_lost_applies_on_the_next_connection(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store)
        request = {"operationalStatus": "Inoperative", "evse": {"id": 1}}
        answer = await rig.router.routes["ChangeAvailability"].handler(request)
        assert isinstance(answer, Reply)        # never sent: the connection went
        assert rig.statuses()[(1, 1)] == "Available"
        for hook in rig.link.on_open:
            await hook(object())
        assert rig.statuses()[(1, 1)] == "Unavailable"
    run(main())


@pytest.mark.parametrize(("offline_s", "threshold", "reported"), [
    (300, 300, {(1, 1)}),                       # not longer than the threshold: changes
    (301, 300, {(1, 1), (2, 1), (2, 2)}),       # longer: every connector (B04.FR.01)
    (301, 600, {(1, 1)}),                       # the threshold is read at each reconnect
])
def test_offline_threshold_decides_what_is_reported_on_reconnect(
        store: Store, offline_s: int, threshold: int, reported: set) -> None:
    async def main() -> None:
        rig = Rig(store)
        rig.link.accepted.set()
        task = asyncio.ensure_future(rig.availability.run())
        assert await rig.availability.reported(timeout=5)
        assert len(rig.link.sent) == 3
        for hook in rig.link.on_close:
            hook()                              # the connection is lost
        await rig.clock.advance(offline_s)
        assert rig.model.set(Component("OCPPCommCtrlr"), Variable("OfflineThreshold"),
                             str(threshold)).status == "Accepted"
        rig.link.sent.clear()
        # A change while offline (this stand-in link would deliver it at the next turn of
        # the loop, so the connection comes back before that).
        rig.station.update(1, 1, plugged=True)
        for hook in rig.link.on_open:
            await hook(object())
        assert await rig.availability.reported(timeout=5)
        task.cancel()
        sent = {(p["evseId"], p["connectorId"]): p["connectorStatus"]
                for a, p in rig.link.sent if a == "StatusNotification"}
        assert set(sent) == reported and len(rig.link.sent) == len(reported)
        assert sent[(1, 1)] == "Occupied"
    run(main())


# --- hardware faults -> NotifyEvent on EVSE.Problem -----------------------------------------

def events(rig: Rig) -> list[dict]:
    out = []
    for request in rig.queued():
        NOTIFY_EVENT.validate(request)
        validate("NotifyEvent", "request", request)
        assert request["seqNo"] == 0 and "tbc" not in request
        out.extend(request["eventData"])
    return out


def test_a_fault_and_its_end_as_notify_event(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store)
        rig.availability.hardware_changed(1, {})
        assert rig.queued() == []
        rig.availability.hardware_changed(1, {"meter": "no answer from the meter"})
        [raised] = events(rig)
        assert raised["component"] == {"name": "EVSE", "evse": {"id": 1}}
        assert raised["variable"] == {"name": "Problem"}
        assert raised["actualValue"] == "true" and "cleared" not in raised
        assert raised["trigger"] == "Delta"
        assert raised["eventNotificationType"] == "HardWiredNotification"
        assert raised["techCode"] == "meter"
        assert raised["techInfo"] == "no answer from the meter"
        assert raised["timestamp"] == rig.queued()[0]["generatedAt"]
        assert rig.state("EVSE", 1, variable="Problem") == "true"
        assert rig.state("ChargingStation", variable="Problem") == "true"
        assert rig.state("EVSE", 2, variable="Problem") == "false"
        # Called on every hardware change: the same fault (new text too) is not news.
        rig.availability.hardware_changed(1, {"meter": "no answer from the meter"})
        rig.availability.hardware_changed(1, {"meter": "CRC error"})
        assert len(rig.queued()) == 1
        await rig.clock.advance(60)
        rig.availability.hardware_changed(1, {})
        raised, cleared = events(rig)
        assert cleared["actualValue"] == "false" and cleared["cleared"] is True
        assert cleared["techCode"] == "meter"
        assert cleared["techInfo"] == "no answer from the meter"
        assert cleared["eventId"] != raised["eventId"]
        assert cleared["timestamp"] > raised["timestamp"]
        assert rig.state("EVSE", 1, variable="Problem") == "false"
        assert rig.state("ChargingStation", variable="Problem") == "false"
    run(main())


def test_several_faults_of_one_evse(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store)
        rig.availability.hardware_changed(2, {"pilot": "state F", "contactor": "welded"})
        assert len(rig.queued()) == 1                      # one message for one change
        rig.availability.hardware_changed(2, {"contactor": "welded"})
        rig.availability.hardware_changed(1, {"power": "x" * 900})
        data = events(rig)
        assert [(e["techCode"], e["actualValue"], e.get("cleared", False)) for e in data] == [
            ("pilot", "true", False), ("contactor", "true", False),
            # The pilot fault ended, the contactor's goes on: EVSE 2 still has a problem.
            ("pilot", "true", True),
            ("power", "true", False)]
        assert len(data[-1]["techInfo"]) == 500
        assert len({e["eventId"] for e in data}) == 4
        assert data[3]["component"]["evse"] == {"id": 1}
        assert rig.state("EVSE", 2, variable="Problem") == "true"
    run(main())


def test_faults_across_a_restart(store: Store) -> None:
    async def main() -> None:
        rig = Rig(store)
        rig.availability.hardware_changed(1, {"meter": "no answer"})
        rig.availability.hardware_changed(2, {"lock": "stuck"})
        first = [e["eventId"] for e in events(rig)]
        # Restarted: EVSE 1's fault lasts (not repeated), EVSE 2's ended while down.
        again = Rig(store)
        assert again.state("EVSE", 1, variable="Problem") == "true"
        again.availability.hardware_changed(1, {"meter": "no answer"})
        again.availability.hardware_changed(2, {})
        data = events(again)[2:]
        assert [(e["techCode"], e["actualValue"], e.get("cleared")) for e in data] == [
            ("lock", "false", True)]
        assert data[0]["eventId"] not in first
        assert again.state("EVSE", 2, variable="Problem") == "false"
    run(main())


def test_the_bridge_reports_faults_by_device_role() -> None:
    async def main() -> None:
        clock = ManualClock()
        mock = MockStation([EvseSpec(1, 32, 3, 230), EvseSpec(2, 32, 3, 230)], clock)
        hardware = Hardware({e: EvseHardware(e, mock.devices(e)) for e in (1, 2)}, mock)
        await hardware.start()
        station = Station([Evse(e, 32, 3, 230, connectors={1: Connector(e, 1)}) for e in (1, 2)])
        bridge = HardwareBridge(station, hardware)
        heard: list[tuple[int, dict[str, str]]] = []
        bridge.watch_faults(lambda evse_id, faults: heard.append((evse_id, faults)))
        assert heard == [(1, {}), (2, {})]
        mock.fault(2)
        assert heard[-1] == (2, {"pilot": FAULT_TEXT})
        assert station.connector(2, 1).status == "Faulted"
        mock.clear(2)
        assert heard[-1] == (2, {})
        # A driver that failed to start is a fault of its role.
        hw = hardware.evses[1]
        meter = hw.devices.meter
        assert meter is not None
        hw._start_faults["meter"] = f"{type(meter).__name__} failed to start: no port"
        bridge.sync(1)
        assert heard[-1] == (1, {"meter": f"{type(meter).__name__} failed to start: no port"})
        bridge.close()
        await hardware.stop()
    run(main())
