"""External limits (K11-K13): a hardware input becomes a ChargingStationExternalConstraints
profile and NotifyChargingLimit / ClearedChargingLimit, across restarts. The block on a
real store and device model; every message it queues is checked against the official
OCPP 2.0.1 schema."""

from __future__ import annotations

from typing import Any

import pytest
from ocpp.messages import MessageType, get_validator

from agent.blocks.smart_charging.external import PROFILE_ID, ExternalConstraints, significant
from agent.blocks.smart_charging.model import EXTERNAL
from hal.api import ExternalLimitSignal
from agent.model.types import Component, Variable
from hal.drivers.mock import MockExternalLimit
from tests.harness import close_stores
from tests.test_charging_profiles import Env

CTRLR = Component("SmartChargingCtrlr")
ENABLED = Variable("ExternalControlSignalsEnabled")


class Outbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def enqueue(self, action: str, payload: dict[str, Any], **kwargs: Any) -> None:
        get_validator(MessageType.Call, action, "2.0.1").validate(payload)
        self.sent.append((action, payload))


class Rig:
    def __init__(self, tmp_path, enabled: bool = True) -> None:
        self.env = Env(tmp_path / "db.sqlite")
        self.outbox = Outbox()
        self.input = MockExternalLimit()
        self.enabled = enabled
        self.open()

    def open(self) -> None:
        env = self.env
        env.model.set(CTRLR, ENABLED, "true" if self.enabled else "false")
        self.block = ExternalConstraints(model=env.model, profiles=env.block,
                                         outbox=self.outbox, clock=env.clock, store=env.store,
                                         source=self.input)

    def restart(self) -> None:
        self.block.close()
        self.env.reopen()
        self.open()

    def limit(self, watts, source="EMS", critical=False) -> None:
        self.input.set(ExternalLimitSignal(watts, source, critical))

    def installed(self) -> list[Any]:
        return [s for s in self.env.block.store.all() if s.profile.purpose == EXTERNAL]

    def actions(self) -> list[str]:
        return [a for a, _ in self.outbox.sent]


@pytest.fixture
def rig(tmp_path):
    made = Rig(tmp_path)
    yield made
    close_stores(made.env.stores)


def test_a_limit_becomes_a_profile_and_one_notification(rig):
    rig.limit(4200, "SO", True)
    [stored] = rig.installed()
    assert stored.evse_id == 0 and stored.source == "SO" and stored.profile.id == PROFILE_ID
    assert stored.data["chargingSchedule"][0]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 4200}]
    assert rig.outbox.sent == [("NotifyChargingLimit", {"chargingLimit": {
        "chargingLimitSource": "SO", "isGridCritical": True}})]
    assert rig.env.changes >= 1, "the applied limits were told"


def test_restart_with_the_same_input_says_nothing_new_and_keeps_the_profile(rig):
    rig.limit(4200)
    rig.restart()
    assert rig.actions() == ["NotifyChargingLimit"]
    assert len(rig.installed()) == 1
    # The input comes back without a limit after the restart: released.
    rig.input.set(ExternalLimitSignal())
    assert rig.actions() == ["NotifyChargingLimit", "ClearedChargingLimit"]
    assert rig.installed() == []


def test_significance_is_measured_from_the_limit_last_notified(rig):
    rig.limit(10_000)
    for watts in (10_500, 10_900, 11_000):     # each within 10 % of 10 000
        rig.limit(watts)
        assert rig.installed()[0].data["chargingSchedule"][0][
            "chargingSchedulePeriod"][0]["limit"] == watts, "applied even when not notified"
    assert rig.actions() == ["NotifyChargingLimit"]
    rig.limit(11_001)                            # creeping past 10 % of the notified one
    assert rig.actions() == ["NotifyChargingLimit"] * 2
    rig.limit(11_001, source="Other")            # a new source is news whatever the size
    assert rig.actions() == ["NotifyChargingLimit"] * 3
    assert rig.installed()[0].source == "Other"


def test_disabled_input_is_ignored_and_disabling_releases(tmp_path):
    rig = Rig(tmp_path, enabled=False)
    try:
        rig.limit(4200)
        assert rig.installed() == [] and rig.outbox.sent == []
        rig.enabled = True
        rig.restart()
        assert rig.actions() == ["NotifyChargingLimit"]
        rig.env.model.set(CTRLR, ENABLED, "false")   # a CSMS write: acted on at once
        assert rig.actions() == ["NotifyChargingLimit", "ClearedChargingLimit"]
        assert rig.installed() == []
    finally:
        close_stores(rig.env.stores)


@pytest.mark.parametrize("last, signal, percent, expected", [
    (None, ExternalLimitSignal(5000), 10, True),
    ({"limit_w": 5000, "source": "EMS", "grid_critical": False}, ExternalLimitSignal(5400), 10, False),
    ({"limit_w": 5000, "source": "EMS", "grid_critical": False}, ExternalLimitSignal(4499), 10, True),
    ({"limit_w": 5000, "source": "EMS", "grid_critical": False}, ExternalLimitSignal(5001), 0, True),
    ({"limit_w": 5000, "source": "EMS", "grid_critical": False},
     ExternalLimitSignal(5000, "EMS", True), 10, True),
    ({"limit_w": 0, "source": "EMS", "grid_critical": False}, ExternalLimitSignal(0), 10, False),
    ({"limit_w": 0, "source": "EMS", "grid_critical": False}, ExternalLimitSignal(1), 10, True),
])
def test_significant(last, signal, percent, expected):
    assert significant(last, signal, percent) is expected
