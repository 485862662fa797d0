"""Charging profile management (K01 SetChargingProfile, K09 GetChargingProfiles and
ReportChargingProfiles, K10 ClearChargingProfile): the rules, replacement, duplicates,
persistence, TxProfiles ending with their transaction, change notices. Every payload the
block produces is checked against the official OCPP 2.0.1 schemas."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from ocpp.messages import MessageType, get_validator

from agent.blocks.smart_charging.management import REPORT_PAGE_PROFILES, ChargingProfiles
from agent.blocks.smart_charging.model import ChargingProfile, Installed
from agent.blocks.smart_charging.profiles import Limits, ProfileStore, check_profile, overlaps
from agent.clock import ManualClock, format_datetime
from agent.model.definitions import standard_definitions
from agent.model.device_model import DeviceModel
from agent.model.types import FEATURE_SMART_CHARGING, Component, EvseSpec, StationSpec, Variable
from agent.ocpp.session import CallErrorReceived, OcppError, Reply, Router
from agent.ocpp import rpc
from agent.ocpp.validation import validate
from agent.store import Store
from tests.harness import close_stores

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TX1 = "tx-one"


def station(features=frozenset({FEATURE_SMART_CHARGING})) -> StationSpec:
    return StationSpec(vendor="Example", model="AC-22", serial_number="0001",
                       firmware_version="1.0.0",
                       evses=(EvseSpec(1, 32, 3, 230), EvseSpec(2, 32, 3, 230)),
                       security_profile=1, features=features)


def definitions(features=frozenset({FEATURE_SMART_CHARGING}), *, rate_unit: str | None = None,
                entries: int | None = None):
    """The standard definitions, with RateUnit or the Entries maxLimit changed if asked."""
    items = standard_definitions(station(features))
    for i, d in enumerate(items):
        if d.component.name != "SmartChargingCtrlr":
            continue
        if d.variable.name == "RateUnit" and rate_unit is not None:
            attrs = tuple(dataclasses.replace(a, default=rate_unit) for a in d.attributes)
            items[i] = dataclasses.replace(d, attributes=attrs)
        if d.variable.name == "Entries" and entries is not None:
            items[i] = dataclasses.replace(d, characteristics=dataclasses.replace(
                d.characteristics, max_limit=entries))
    return items


class FakeLink:
    """Records the CALLs the block sends, checked against the official schema."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = False

    async def call(self, action: str, payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        get_validator(MessageType.Call, action, "2.0.1").validate(payload)
        validate(action, "request", payload)
        if self.fail:
            raise CallErrorReceived(rpc.CallError("1", "InternalError", "boom", {}))
        self.calls.append((action, payload))
        return {}


class Env:
    """Store, device model, clock, router, link and block; `reopen()` is a restart."""

    def __init__(self, path: Path, **model_options: Any) -> None:
        self.path = path
        self.model_options = model_options
        self.clock = ManualClock(T0)
        self.running: dict[int, str] = {1: TX1}
        self.link = FakeLink()
        self.changes = 0
        self.stores: list[Store] = []
        self._open()

    def _open(self) -> None:
        self.store = Store(self.path)
        self.stores.append(self.store)
        self.model = DeviceModel(self.store, definitions(**self.model_options))
        self.router = Router()
        self.block = ChargingProfiles(self.router, self.model, self.store, self.clock,
                                      link=self.link, evse_ids=(1, 2),
                                      transaction_on=self.running.get)
        self.block.on_change.append(self._count)

    def _count(self) -> None:
        self.changes += 1

    def reopen(self) -> None:
        self.store.close()
        self._open()

    def call(self, action: str, request: dict[str, Any]) -> dict[str, Any]:
        """Handle a CSMS request as the session would (schema-checked both ways); runs the
        follow-up (the reports) as if the answer had gone out."""
        get_validator(MessageType.Call, action, "2.0.1").validate(request)
        validate(action, "request", request)
        answer = asyncio.run(self.router.routes[action].handler(request))
        then = None
        if isinstance(answer, Reply):
            answer, then = answer.payload, answer.then
        get_validator(MessageType.CallResult, action, "2.0.1").validate(answer)
        validate(action, "response", answer)
        if then is not None:
            asyncio.run(then())
        return answer

    def set(self, evse_id: int, profile: dict[str, Any]) -> dict[str, Any]:
        return self.call("SetChargingProfile", {"evseId": evse_id, "chargingProfile": profile})

    def ids(self, evse_id: int | None = None) -> list[int]:
        return [i.profile.id for i in self.block.installed(evse_id)]

    def reports(self) -> list[dict[str, Any]]:
        return [p for a, p in self.link.calls if a == "ReportChargingProfiles"]

    def close(self) -> None:
        close_stores(self.stores)


@pytest.fixture
def make_env(tmp_path: Path):
    made: list[Env] = []

    def make(**options: Any) -> Env:
        e = Env(tmp_path / f"db{len(made)}.db", **options)
        made.append(e)
        return e
    yield make
    for e in made:
        e.close()


@pytest.fixture
def env(make_env):
    return make_env()


def profile(profile_id: int = 1, purpose: str = "TxDefaultProfile", *, stack_level: int = 0,
            kind: str = "Absolute", periods=((0, 16.0),), unit: str = "A",
            start: datetime | None = T0, **extra: Any) -> dict[str, Any]:
    schedule: dict[str, Any] = {"id": profile_id, "chargingRateUnit": unit,
                                "chargingSchedulePeriod": [{"startPeriod": s, "limit": l}
                                                           for s, l in periods]}
    if start is not None and kind != "Relative":
        schedule["startSchedule"] = format_datetime(start)
    out: dict[str, Any] = {"id": profile_id, "stackLevel": stack_level,
                           "chargingProfilePurpose": purpose, "chargingProfileKind": kind,
                           "chargingSchedule": [schedule]}
    out.update(extra)
    return out


def tx_profile(profile_id: int = 1, transaction_id: str | None = TX1, **kw: Any) -> dict:
    extra = {} if transaction_id is None else {"transactionId": transaction_id}
    return profile(profile_id, "TxProfile", **kw, **extra)


def with_schedule(p: dict[str, Any], **changes: Any) -> dict[str, Any]:
    schedule = {**p["chargingSchedule"][0], **changes}
    return {**p, "chargingSchedule": [schedule]}


def with_period(p: dict[str, Any], **changes: Any) -> dict[str, Any]:
    period = {**p["chargingSchedule"][0]["chargingSchedulePeriod"][0], **changes}
    return with_schedule(p, chargingSchedulePeriod=[period])


def iso(value: datetime) -> str:
    return format_datetime(value)


# -- SetChargingProfile: accepted -----------------------------------------------------------

def test_a_valid_profile_is_installed_and_announced(env):
    assert env.set(0, profile(1)) == {"status": "Accepted"}
    assert env.set(1, tx_profile(2)) == {"status": "Accepted"}
    assert env.set(0, profile(3, "ChargingStationMaxProfile", unit="W",
                              periods=((0, 11000), (3600, 7000)))) == {"status": "Accepted"}
    assert env.ids() == [1, 2, 3] and env.ids(0) == [1, 3] and env.ids(1) == [2]
    installed = env.block.installed(1)[0]
    assert isinstance(installed, Installed) and installed.evse_id == 1
    assert installed.profile.transaction_id == TX1
    assert env.changes == 3
    assert env.model.get_int("SmartChargingCtrlr", "Entries", instance="ChargingProfiles") == 3


def test_relative_recurring_and_phases_that_are_allowed(env):
    assert env.set(1, profile(1, kind="Relative"))["status"] == "Accepted"
    assert env.set(1, profile(2, kind="Recurring", recurrencyKind="Daily", stack_level=1)
                   )["status"] == "Accepted"
    assert env.set(2, with_period(profile(3), numberPhases=1))["status"] == "Accepted"
    assert env.set(0, profile(4, stack_level=2, validFrom=iso(T0),
                              validTo=iso(T0 + timedelta(days=1)))
                   )["status"] == "Accepted"


# -- SetChargingProfile: every rejection ------------------------------------------------------

TOO_MANY_PERIODS = tuple((60 * i, 16.0) for i in range(49))   # PeriodsPerSchedule is 48

REJECTIONS = [
    # (name, evseId, profile, reasonCode)
    ("unknown EVSE", 3, profile(1), "UnknownEvse"),
    ("station max on an EVSE", 1, profile(1, "ChargingStationMaxProfile"), "InvalidProfile"),
    ("station max Relative", 0, profile(1, "ChargingStationMaxProfile", kind="Relative"),
     "InvalidProfile"),
    ("TxProfile on EVSE 0", 0, tx_profile(1), "InvalidProfile"),
    ("TxProfile without transactionId", 1, tx_profile(1, None), "TxNotFound"),
    ("TxProfile for another transaction", 1, tx_profile(1, "tx-other"), "TxNotFound"),
    ("TxProfile where nothing runs", 2, tx_profile(1), "TxNotFound"),
    ("transactionId on a TxDefaultProfile", 1, profile(1, transactionId=TX1),
     "InvalidProfile"),
    ("external constraints", 0, profile(1, "ChargingStationExternalConstraints"),
     "InvalidProfile"),
    ("Recurring without recurrencyKind", 1, profile(1, kind="Recurring"), "InvalidProfile"),
    ("recurrencyKind on Absolute", 1, profile(1, recurrencyKind="Weekly"), "InvalidProfile"),
    ("Absolute without startSchedule", 1, profile(1, start=None), "InvalidSchedule"),
    ("Recurring without startSchedule", 1,
     profile(1, kind="Recurring", recurrencyKind="Daily", start=None), "InvalidSchedule"),
    ("Relative with startSchedule", 1,
     with_schedule(profile(1, kind="Relative"), startSchedule=iso(T0)), "InvalidSchedule"),
    ("first period not at 0", 1, profile(1, periods=((10, 16.0),)), "InvalidSchedule"),
    ("periods not increasing", 1, profile(1, periods=((0, 16.0), (60, 8.0), (60, 6.0))),
     "InvalidSchedule"),
    ("periods decreasing", 1, profile(1, periods=((0, 16.0), (600, 8.0), (300, 6.0))),
     "InvalidSchedule"),
    ("numberPhases 0", 1, with_period(profile(1), numberPhases=0), "InvalidSchedule"),
    ("numberPhases 4", 1, with_period(profile(1), numberPhases=4), "InvalidSchedule"),
    ("phaseToUse with 3 phases", 1, with_period(profile(1), numberPhases=3, phaseToUse=1),
     "InvalidSchedule"),
    ("phaseToUse with phases left out", 1, with_period(profile(1), phaseToUse=1),
     "InvalidSchedule"),
    ("phaseToUse without phase switching", 1,
     with_period(profile(1), numberPhases=1, phaseToUse=2), "InvalidSchedule"),
    ("negative limit", 1, profile(1, periods=((0, 16.0), (60, -1.0))), "InvalidSchedule"),
    ("negative duration", 1, with_schedule(profile(1), duration=-1), "InvalidSchedule"),
    ("negative minChargingRate", 1, with_schedule(profile(1), minChargingRate=-0.5),
     "InvalidSchedule"),
    ("more periods than PeriodsPerSchedule", 1, profile(1, periods=TOO_MANY_PERIODS),
     "InvalidSchedule"),
    ("stackLevel above ProfileStackLevel", 1, profile(1, stack_level=11), "InvalidStackLevel"),
    ("negative stackLevel", 1, profile(1, stack_level=-1), "InvalidStackLevel"),
    ("two schedules without ISO 15118", 1,
     {**profile(1), "chargingSchedule": profile(1)["chargingSchedule"] * 2}, "InvalidProfile"),
    ("validTo before validFrom", 1,
     profile(1, validFrom=iso(T0 + timedelta(days=2)), validTo=iso(T0 + timedelta(days=1))),
     "InvalidProfile"),
    ("validTo equal to validFrom", 1,
     profile(1, validFrom=iso(T0 + timedelta(days=1)), validTo=iso(T0 + timedelta(days=1))),
     "InvalidProfile"),
    ("validTo in the past", 1, profile(1, validTo=iso(T0 - timedelta(seconds=1))),
     "InvalidProfile"),
]


@pytest.mark.parametrize("name,evse_id,charging_profile,reason", REJECTIONS,
                         ids=[r[0] for r in REJECTIONS])
def test_rejections(env, name, evse_id, charging_profile, reason):
    answer = env.set(evse_id, charging_profile)
    assert answer["status"] == "Rejected", name
    assert answer["statusInfo"]["reasonCode"] == reason, answer
    assert answer["statusInfo"]["additionalInfo"]
    assert env.ids() == [] and env.changes == 0


def test_unsupported_rate_unit(make_env):
    env = make_env(rate_unit="A")
    answer = env.set(0, profile(1, "ChargingStationMaxProfile", unit="W"))
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == "UnsupportedRateUnit"
    assert env.set(0, profile(1, "ChargingStationMaxProfile", unit="A"))["status"] == "Accepted"


def test_disabled_smart_charging_rejects_but_clear_and_get_still_work(env):
    env.set(0, profile(1))
    assert env.model.set(Component("SmartChargingCtrlr"), Variable("Enabled"),
                         "false").status == "Accepted"
    answer = env.set(0, profile(2, stack_level=1))
    assert answer["status"] == "Rejected" and answer["statusInfo"]["reasonCode"] == "NotEnabled"
    assert env.block.check_remote_start(1, tx_profile(5, None)) == "NotEnabled"
    assert env.call("GetChargingProfiles", {"requestId": 1, "chargingProfile": {}}
                    )["status"] == "Accepted"
    assert env.call("ClearChargingProfile", {"chargingProfileId": 1})["status"] == "Accepted"


def test_station_without_smart_charging_answers_not_supported(make_env):
    env = make_env(features=frozenset())
    for action, request in (
            ("SetChargingProfile", {"evseId": 0, "chargingProfile": profile(1)}),
            ("ClearChargingProfile", {"chargingProfileId": 1}),
            ("GetChargingProfiles", {"requestId": 1, "chargingProfile": {}})):
        with pytest.raises(OcppError) as caught:
            asyncio.run(env.router.routes[action].handler(request))
        assert caught.value.code == "NotSupported"


# -- replacement and duplicates -------------------------------------------------------------

def test_same_id_replaces_wherever_installed(env):
    env.set(1, profile(7, periods=((0, 16.0),)))
    env.set(2, profile(8))
    assert env.set(0, profile(7, "ChargingStationMaxProfile", unit="W",
                              periods=((0, 9000),)))["status"] == "Accepted"
    assert env.ids() == [8, 7]                         # installation order: 7 is newer now
    assert env.ids(1) == [] and env.ids(0) == [7]
    assert env.block.installed(0)[0].profile.purpose == "ChargingStationMaxProfile"
    assert env.changes == 3


def test_replacing_by_id_does_not_count_as_a_duplicate_of_itself(env):
    env.set(1, profile(1, stack_level=2))
    assert env.set(1, profile(1, stack_level=2, periods=((0, 6.0),)))["status"] == "Accepted"
    assert env.block.installed()[0].profile.schedules[0].periods[0].limit == 6.0


@pytest.mark.parametrize("first,second", [
    ((1, profile(1, stack_level=3)), (1, profile(2, stack_level=3))),           # K01.FR.06
    ((0, profile(1, "ChargingStationMaxProfile")),
     (0, profile(2, "ChargingStationMaxProfile"))),
    ((0, profile(1)), (2, profile(2))),                                         # K01.FR.53
    ((2, profile(1)), (0, profile(2))),                                         # K01.FR.52
    ((1, tx_profile(1)), (1, tx_profile(2))),                                   # K01.FR.39
    ((1, profile(1, validTo=iso(T0 + timedelta(days=2)))),
     (1, profile(2, validFrom=iso(T0 + timedelta(days=1))))),
])
def test_duplicate_profile(env, first, second):
    assert env.set(*first)["status"] == "Accepted"
    answer = env.set(*second)
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == "DuplicateProfile"
    assert f"profile {first[1]['id']}" in answer["statusInfo"]["additionalInfo"]
    assert env.ids() == [first[1]["id"]]


@pytest.mark.parametrize("first,second", [
    ((1, profile(1, stack_level=3)), (1, profile(2, stack_level=4))),           # other level
    ((1, profile(1)), (2, profile(2))),                                         # other EVSE
    ((1, profile(1)), (1, tx_profile(2))),                                      # other purpose
    ((1, profile(1, validTo=iso(T0 + timedelta(days=1)))),                      # one after
     (1, profile(2, validFrom=iso(T0 + timedelta(days=1))))),                   # the other
])
def test_no_duplicate(env, first, second):
    assert env.set(*first)["status"] == "Accepted"
    assert env.set(*second)["status"] == "Accepted"


def test_tx_profiles_of_other_transactions_do_not_collide(env):
    env.running[2] = "tx-two"
    assert env.set(1, tx_profile(1))["status"] == "Accepted"
    assert env.set(2, tx_profile(2, "tx-two"))["status"] == "Accepted"


def test_an_expired_profile_neither_collides_nor_stays(env):
    env.set(1, profile(1, validTo=iso(T0 + timedelta(hours=1))))
    asyncio.run(env.clock.advance(3600))
    assert env.set(1, profile(2))["status"] == "Accepted"
    assert env.ids() == [2]


def test_external_constraints_cannot_be_replaced_by_id(env):
    ProfileStore(env.store).put(0, profile(9, "ChargingStationExternalConstraints"), "EMS")
    answer = env.set(0, profile(9))
    assert answer["status"] == "Rejected"
    assert answer["statusInfo"]["reasonCode"] == "DuplicateProfile"
    assert env.block.installed()[0].profile.purpose == "ChargingStationExternalConstraints"


# -- Entries --------------------------------------------------------------------------------

def test_entries_limit(make_env):
    env = make_env(entries=3)
    for i in (1, 2, 3):
        assert env.set(i % 3, profile(i, stack_level=i))["status"] == "Accepted"
    answer = env.set(1, profile(4, stack_level=4))
    assert answer == {"status": "Rejected", "statusInfo": {
        "reasonCode": "TooManyElements", "additionalInfo": answer["statusInfo"]["additionalInfo"]}}
    assert "Entries" in answer["statusInfo"]["additionalInfo"]
    # Replacing one is no new entry; clearing one makes room.
    assert env.set(1, profile(1, stack_level=1, periods=((0, 10.0),)))["status"] == "Accepted"
    env.call("ClearChargingProfile", {"chargingProfileId": 2})
    assert env.set(1, profile(4, stack_level=4))["status"] == "Accepted"
    assert env.model.get_int("SmartChargingCtrlr", "Entries", instance="ChargingProfiles") == 3


def test_an_expired_profile_frees_its_entry(make_env):
    env = make_env(entries=1)
    env.set(1, profile(1, validTo=iso(T0 + timedelta(minutes=5))))
    assert env.set(2, profile(2))["statusInfo"]["reasonCode"] == "TooManyElements"
    asyncio.run(env.clock.advance(300))
    assert env.set(2, profile(2))["status"] == "Accepted"
    assert env.ids() == [2]


# -- ClearChargingProfile ---------------------------------------------------------------------

def clear(env, request):
    return env.call("ClearChargingProfile", request)["status"]


def test_clear_by_id(env):
    env.set(1, profile(1))
    env.set(2, profile(2))
    changes = env.changes
    assert clear(env, {"chargingProfileId": 1}) == "Accepted"
    assert env.ids() == [2] and env.changes == changes + 1
    answer = env.call("ClearChargingProfile", {"chargingProfileId": 1})
    assert answer["status"] == "Unknown" and answer["statusInfo"]["reasonCode"] == "NotFound"
    assert env.changes == changes + 1


def test_clear_by_id_ignores_the_criteria(env):
    env.set(1, profile(1))
    assert clear(env, {"chargingProfileId": 1, "chargingProfileCriteria": {
        "evseId": 2, "chargingProfilePurpose": "ChargingStationMaxProfile"}}) == "Accepted"
    assert env.ids() == []


def test_clear_by_criteria_matches_all_of_them(env):
    env.set(0, profile(1, stack_level=3))
    env.set(1, profile(2, stack_level=1))
    env.set(1, profile(3, stack_level=2))
    env.set(1, tx_profile(4, stack_level=1))
    env.set(0, profile(5, "ChargingStationMaxProfile", stack_level=1))
    assert clear(env, {"chargingProfileCriteria": {"evseId": 2}}) == "Unknown"
    assert clear(env, {"chargingProfileCriteria": {"evseId": 1, "stackLevel": 1,
                                                   "chargingProfilePurpose": "TxDefaultProfile"}}
                 ) == "Accepted"
    assert env.ids() == [1, 3, 4, 5]
    assert clear(env, {"chargingProfileCriteria": {"stackLevel": 1}}) == "Accepted"
    assert env.ids() == [1, 3]
    assert clear(env, {"chargingProfileCriteria": {"evseId": 0}}) == "Accepted"
    assert env.ids() == [3]
    assert clear(env, {"chargingProfileCriteria": {"chargingProfilePurpose": "TxProfile"}}
                 ) == "Unknown"
    assert clear(env, {"chargingProfileCriteria": {"evseId": 1}}) == "Accepted"
    assert env.ids() == []


def test_clear_without_anything_clears_all_the_csms_set(env):
    env.set(0, profile(1))
    env.set(1, tx_profile(2))
    ProfileStore(env.store).put(0, profile(9, "ChargingStationExternalConstraints"), "EMS")
    assert clear(env, {}) == "Accepted"
    assert env.ids() == [9]
    assert clear(env, {"chargingProfileCriteria": {}}) == "Unknown"


def test_external_constraints_are_never_cleared(env):
    ProfileStore(env.store).put(0, profile(9, "ChargingStationExternalConstraints"), "EMS")
    assert clear(env, {"chargingProfileId": 9}) == "Unknown"
    assert clear(env, {"chargingProfileCriteria": {
        "chargingProfilePurpose": "ChargingStationExternalConstraints"}}) == "Unknown"
    assert clear(env, {"chargingProfileCriteria": {"evseId": 0}}) == "Unknown"
    assert env.ids() == [9] and env.changes == 0


# -- GetChargingProfiles / ReportChargingProfiles -----------------------------------------------

def get(env, criteria=None, evse_id=None, request_id=7):
    request: dict[str, Any] = {"requestId": request_id, "chargingProfile": criteria or {}}
    if evse_id is not None:
        request["evseId"] = evse_id
    before = len(env.reports())
    status = env.call("GetChargingProfiles", request)["status"]
    return status, env.reports()[before:]


def reported(pages):
    return [(p["evseId"], [c["id"] for c in p["chargingProfile"]]) for p in pages]


@pytest.fixture
def filled(env):
    for evse_id, charging_profile in (
            (0, profile(1, stack_level=1)),
            (0, profile(2, "ChargingStationMaxProfile", unit="W", periods=((0, 20000),))),
            (1, profile(3, stack_level=2)), (1, tx_profile(4)), (2, profile(5))):
        assert env.set(evse_id, charging_profile)["status"] == "Accepted"
    return env


def test_no_profiles(env):
    assert get(env) == ("NoProfiles", [])
    env.set(1, profile(1))
    assert get(env, evse_id=2) == ("NoProfiles", [])
    assert get(env, {"chargingProfilePurpose": "TxProfile"}) == ("NoProfiles", [])


def test_everything_one_request_per_evse_station_first(filled):
    status, pages = get(filled, request_id=42)
    assert status == "Accepted"
    assert reported(pages) == [(0, [1, 2]), (1, [3, 4]), (2, [5])]
    assert [p.get("tbc", False) for p in pages] == [True, True, False]
    assert all(p["requestId"] == 42 and p["chargingLimitSource"] == "CSO" for p in pages)


@pytest.mark.parametrize("criteria,evse_id,expected", [
    ({}, 0, [(0, [1, 2])]),
    ({}, 1, [(1, [3, 4])]),
    ({"chargingProfilePurpose": "TxDefaultProfile"}, None, [(0, [1]), (1, [3]), (2, [5])]),
    ({"chargingProfilePurpose": "TxDefaultProfile"}, 1, [(1, [3])]),
    ({"stackLevel": 0}, None, [(0, [2]), (1, [4]), (2, [5])]),
    ({"stackLevel": 0, "chargingProfilePurpose": "TxProfile"}, None, [(1, [4])]),
    ({"chargingProfileId": [5, 2, 99]}, None, [(0, [2]), (2, [5])]),
    ({"chargingProfileId": [5, 2]}, 0, [(0, [2])]),
    ({"chargingLimitSource": ["CSO"]}, 2, [(2, [5])]),
    ({"chargingLimitSource": ["EMS", "Other"]}, None, []),
])
def test_filters(filled, criteria, evse_id, expected):
    status, pages = get(filled, criteria, evse_id)
    assert status == ("Accepted" if expected else "NoProfiles")
    assert reported(pages) == expected


def test_reports_profiles_verbatim_and_per_source(env):
    sent = profile(1, customData={"vendorId": "example.com", "note": "kept"},
                   validFrom="2026-01-01T00:00:00+01:00")
    env.set(1, sent)
    ProfileStore(env.store).put(1, profile(9, "ChargingStationExternalConstraints"), "EMS")
    status, pages = get(env)
    assert status == "Accepted"
    assert [(p["evseId"], p["chargingLimitSource"], p.get("tbc", False)) for p in pages] == [
        (1, "CSO", True), (1, "EMS", False)]
    assert pages[0]["chargingProfile"] == [sent]
    assert get(env, {"chargingLimitSource": ["EMS"]})[1][0]["chargingProfile"][0]["id"] == 9


def test_many_profiles_on_one_evse_come_in_pages(env):
    count = REPORT_PAGE_PROFILES * 2 + 1
    for i in range(count):
        env.set(1, profile(100 + i, validFrom=iso(T0 + timedelta(days=i)),
                           validTo=iso(T0 + timedelta(days=i + 1))))
    status, pages = get(env, evse_id=1)
    assert status == "Accepted"
    assert [len(p["chargingProfile"]) for p in pages] == [REPORT_PAGE_PROFILES] * 2 + [1]
    assert [p.get("tbc", False) for p in pages] == [True, True, False]
    assert [c["id"] for p in pages for c in p["chargingProfile"]] == \
        list(range(100, 100 + count))


def test_a_report_that_fails_stops_the_rest(filled):
    filled.link.fail = True
    status, pages = get(filled)
    assert status == "Accepted" and pages == []


def test_without_a_link_the_answer_still_goes(filled, caplog):
    filled.block.link = None
    assert get(filled) == ("Accepted", [])
    assert "no link" in caplog.text


# -- persistence, transactions, prune ---------------------------------------------------------

def test_profiles_survive_a_restart(env):
    env.set(0, profile(1, customData={"vendorId": "example.com"}))
    env.set(1, tx_profile(2))
    env.set(2, profile(3, kind="Recurring", recurrencyKind="Weekly", stack_level=4))
    before = env.block.installed()
    env.reopen()
    assert env.block.installed() == before
    assert env.model.get_int("SmartChargingCtrlr", "Entries", instance="ChargingProfiles") == 3
    status, pages = get(env, evse_id=0)
    assert pages[0]["chargingProfile"][0]["customData"] == {"vendorId": "example.com"}
    # The rules see them too.
    assert env.set(1, tx_profile(5))["statusInfo"]["reasonCode"] == "DuplicateProfile"


def test_transaction_end_removes_its_tx_profiles_only(env):
    env.running[2] = "tx-two"
    env.set(1, tx_profile(1))
    env.set(1, tx_profile(2, stack_level=1))
    env.set(2, tx_profile(3, "tx-two"))
    env.set(1, profile(4))
    changes = env.changes
    env.block.transaction_ended(TX1)
    assert env.ids() == [3, 4] and env.changes == changes + 1
    env.block.transaction_ended(TX1)
    env.block.transaction_ended("no-such-tx")
    assert env.changes == changes + 1
    assert env.model.get_int("SmartChargingCtrlr", "Entries", instance="ChargingProfiles") == 2


def test_prune_at_start(env):
    env.running[2] = "tx-two"
    env.set(1, tx_profile(1))
    env.set(2, tx_profile(2, "tx-two"))
    env.set(1, profile(3, validTo=iso(T0 + timedelta(minutes=1))))
    env.set(1, profile(4, stack_level=1))
    env.reopen()
    changes = env.changes
    asyncio.run(env.clock.advance(60))
    env.block.prune(["tx-two"])
    assert env.ids() == [2, 4] and env.changes == changes + 1
    env.block.prune(["tx-two"])
    assert env.changes == changes + 1
    env.block.prune([])
    assert env.ids() == [4]


def test_store_prune_of_tx_profiles(env):
    env.running[2] = "tx-two"
    env.set(1, tx_profile(1))
    env.set(2, tx_profile(2, "tx-two"))
    store = ProfileStore(env.store)
    assert store.prune(["tx-two", "tx-three"]) == 1
    assert [s.profile.id for s in store.all()] == [2]


# -- RequestStartTransaction's chargingProfile -------------------------------------------------

def test_remote_start_profile_is_checked_then_installed_for_its_transaction(env):
    start_profile = tx_profile(6, None, kind="Relative", periods=((0, 8.0),))
    assert env.block.check_remote_start(2, start_profile) is None
    assert env.ids() == [] and env.changes == 0
    env.running[2] = "tx-new"
    assert env.block.set_from_remote_start(2, start_profile, "tx-new") is None
    (installed,) = env.block.installed(2)
    assert installed.profile.id == 6 and installed.profile.transaction_id == "tx-new"
    assert env.changes == 1
    env.block.transaction_ended("tx-new")
    assert env.ids() == []


def test_remote_start_profile_rejections(env):
    assert env.block.check_remote_start(1, profile(6)) == "InvalidProfile"
    assert env.block.check_remote_start(0, tx_profile(6, None)) == "InvalidProfile"
    assert env.block.check_remote_start(1, tx_profile(6, None, periods=((5, 8.0),))
                                        ) == "InvalidSchedule"
    assert env.block.check_remote_start(9, tx_profile(6, None)) == "UnknownEvse"
    assert env.block.set_from_remote_start(
        1, tx_profile(6, None, stack_level=99), TX1) == "InvalidStackLevel"
    # A transactionId the CSMS could not know is replaced by the real one.
    assert env.block.set_from_remote_start(1, tx_profile(6, "made-up"), TX1) is None
    assert env.block.installed(1)[0].profile.transaction_id == TX1
    assert env.ids() == [6]


# -- notices, pure helpers --------------------------------------------------------------------

def test_a_failing_listener_does_not_undo_the_change(env):
    def broken() -> None:
        raise RuntimeError("listener bug")
    env.block.on_change.insert(0, broken)
    assert env.set(1, profile(1))["status"] == "Accepted"
    assert env.ids() == [1] and env.changes == 1


def test_overlaps():
    def p(valid_from=None, valid_to=None):
        return ChargingProfile.from_ocpp(profile(
            1, **({"validFrom": iso(valid_from)} if valid_from else {}),
            **({"validTo": iso(valid_to)} if valid_to else {})))
    day = timedelta(days=1)
    assert overlaps(p(), p())
    assert overlaps(p(T0), p(None, T0 + day))
    assert not overlaps(p(T0, T0 + day), p(T0 + day, T0 + 2 * day))
    assert overlaps(p(T0, T0 + 2 * day), p(T0 + day))
    assert not overlaps(p(None, T0), p(T0))


def test_limits_come_from_the_device_model(env):
    limits = Limits.from_model(env.model)
    assert limits == Limits(max_stack_level=10, max_periods=48, rate_units=frozenset({"A", "W"}),
                            phase_switching=False, max_entries=100)


@pytest.mark.parametrize("extra, rejected", [
    ({"numberPhases": 3}, True), ({"numberPhases": 1, "phaseToUse": 2}, True), ({}, False)])
def test_a_dc_evse_takes_no_phase_values(extra, rejected):
    """K01.FR.44: numberPhases/phaseToUse mean nothing on a DC output; refused there, as
    EVerest does, and still accepted for an AC EVSE of the same station."""
    limits = Limits(max_stack_level=8, max_periods=24, rate_units=frozenset({"A", "W"}),
                    phase_switching=True)
    data = with_period(profile(unit="W", periods=((0, 50_000.0),)), **extra)
    found = [check_profile(ChargingProfile.from_ocpp(data), evse_id, limits=limits, now=T0,
                           evse_ids=(1, 2), transaction_on=lambda e: None, dc_evse_ids=(2,))
             for evse_id in (1, 2)]
    assert found[0] is None
    if rejected:
        assert found[1].reason == "InvalidSchedule" and "EVSE 2 is DC" in found[1].info
    else:
        assert found[1] is None


# -- issue 14: schema-valid values at the edges ------------------------------------------------

EDGE_LATE = "9999-12-31T23:59:59.999-12:00"   # in UTC: year 10000
EDGE_EARLY = "0001-01-01T00:00:00+14:00"      # in UTC: year 0


def test_date_times_beyond_year_9999_or_before_year_1_are_taken_as_such(env):
    # These raised OverflowError in parse_datetime: an InternalError for the CSMS.
    forever = profile(1, validFrom=EDGE_EARLY, validTo=EDGE_LATE)
    assert env.set(0, forever) == {"status": "Accepted"}
    installed = env.block.installed(0)[0].profile
    assert installed.valid_from < env.clock.now() < installed.valid_to
    since_ever = with_schedule(profile(2, stack_level=1, start=None), startSchedule=EDGE_EARLY)
    assert env.set(1, since_ever) == {"status": "Accepted"}
    never = with_schedule(profile(3, stack_level=2, start=None), startSchedule=EDGE_LATE)
    assert env.set(2, never) == {"status": "Accepted"}
    # validTo that lies before year 1 is simply in the past.
    assert env.set(0, profile(4, stack_level=3, validTo=EDGE_EARLY)) == {
        "status": "Rejected", "statusInfo": {"reasonCode": "InvalidProfile",
                                             "additionalInfo": "validTo is in the past"}}
    # What the station reports is what the CSMS sent, edges included.
    status, pages = get(env)
    assert status == "Accepted"
    assert [c for p in pages for c in p["chargingProfile"]] == [forever, since_ever, never]
