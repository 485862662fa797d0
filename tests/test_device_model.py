"""The device model: definitions, GetVariables/SetVariables semantics, persistence."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import ManualClock, format_datetime
from agent.model.definitions import standard_definitions
from agent.model.device_model import DeviceModel
from agent.model.types import (FEATURE_AUTH_CACHE, FEATURE_LOCAL_AUTH_LIST, FEATURE_RESERVATION,
                               FEATURE_SMART_CHARGING, FEATURES, AttributeDefinition,
                               AttributeType, Characteristics, Component, DataType, EvseSpec,
                               Mutability, StationSpec, Variable, VariableDefinition)
from agent.model.validation import Invalid, canonical
from agent.store import Store

PASSWORD = "0123456789abcdef-XYZ"
COMM = Component("OCPPCommCtrlr")


def spec(**changes: object) -> StationSpec:
    values: dict[str, object] = dict(
        vendor="Example", model="AC-22", serial_number="0001", firmware_version="1.0.0",
        evses=(EvseSpec(1, 32, 3, 230), EvseSpec(2, 16, 1, 230, connectors=2)),
        security_profile=1, organization_name="Example CPO")
    values.update(changes)
    return StationSpec(**values)  # type: ignore[arg-type]


class Opener:
    """Opens the model on one database, again and again, as restarts would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stores: list[Store] = []

    def __call__(self, station: StationSpec | None = None,
                 definitions: list[VariableDefinition] | None = None) -> DeviceModel:
        store = Store(self.path)
        self.stores.append(store)
        return DeviceModel(store, definitions if definitions is not None
                           else standard_definitions(station or spec()))

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
def open_model(tmp_path: Path):
    opener = Opener(tmp_path / "station-agent.db")
    yield opener
    opener.close()


@pytest.fixture
def fresh():
    """Models on throw-away in-memory databases, for tests that do not restart."""
    opener = Opener(Path(":memory:"))
    yield opener
    opener.close()


@pytest.fixture
def model(fresh: Opener) -> DeviceModel:
    return fresh()


# --- definitions ------------------------------------------------------------------------

CORE_REQUIRED = [
    # Part 1 minimum device model, per tier
    ("ChargingStation", None, None, "AvailabilityState", None),
    ("ChargingStation", None, None, "Available", None),
    ("ChargingStation", None, None, "SupplyPhases", None),
    ("EVSE", 1, None, "AvailabilityState", None),
    ("EVSE", 1, None, "Available", None),
    ("EVSE", 1, None, "Power", None),
    ("EVSE", 1, None, "SupplyPhases", None),
    ("EVSE", 2, None, "Power", None),
    ("Connector", 1, 1, "AvailabilityState", None),
    ("Connector", 2, 2, "Available", None),
    ("Connector", 2, 2, "ConnectorType", None),
    ("Connector", 2, 1, "SupplyPhases", None),
    # OCPPCommCtrlr (Part 2 §2.1, Part 4 §8)
    ("OCPPCommCtrlr", None, None, "FileTransferProtocols", None),
    ("OCPPCommCtrlr", None, None, "MessageTimeout", "Default"),
    ("OCPPCommCtrlr", None, None, "MessageAttempts", "TransactionEvent"),
    ("OCPPCommCtrlr", None, None, "MessageAttemptInterval", "TransactionEvent"),
    ("OCPPCommCtrlr", None, None, "NetworkConfigurationPriority", None),
    ("OCPPCommCtrlr", None, None, "NetworkProfileConnectionAttempts", None),
    ("OCPPCommCtrlr", None, None, "OfflineThreshold", None),
    ("OCPPCommCtrlr", None, None, "ResetRetries", None),
    ("OCPPCommCtrlr", None, None, "RetryBackOffRandomRange", None),
    ("OCPPCommCtrlr", None, None, "RetryBackOffRepeatTimes", None),
    ("OCPPCommCtrlr", None, None, "RetryBackOffWaitMinimum", None),
    ("OCPPCommCtrlr", None, None, "UnlockOnEVSideDisconnect", None),
    ("OCPPCommCtrlr", None, None, "WebSocketPingInterval", None),
    ("SecurityCtrlr", None, None, "CertificateEntries", None),
    ("SecurityCtrlr", None, None, "OrganizationName", None),
    ("SecurityCtrlr", None, None, "SecurityProfile", None),
    ("SecurityCtrlr", None, None, "BasicAuthPassword", None),
    ("DeviceDataCtrlr", None, None, "ItemsPerMessage", "GetReport"),
    ("DeviceDataCtrlr", None, None, "ItemsPerMessage", "GetVariables"),
    ("DeviceDataCtrlr", None, None, "ItemsPerMessage", "SetVariables"),
    ("DeviceDataCtrlr", None, None, "BytesPerMessage", "GetReport"),
    ("DeviceDataCtrlr", None, None, "BytesPerMessage", "GetVariables"),
    ("DeviceDataCtrlr", None, None, "BytesPerMessage", "SetVariables"),
    ("ClockCtrlr", None, None, "DateTime", None),
    ("ClockCtrlr", None, None, "TimeSource", None),
    ("AuthCtrlr", None, None, "AuthorizeRemoteStart", None),
    ("AuthCtrlr", None, None, "LocalAuthorizeOffline", None),
    ("AuthCtrlr", None, None, "LocalPreAuthorize", None),
    ("TxCtrlr", None, None, "EVConnectionTimeOut", None),
    ("TxCtrlr", None, None, "StopTxOnEVSideDisconnect", None),
    ("TxCtrlr", None, None, "StopTxOnInvalidId", None),
    ("TxCtrlr", None, None, "TxStartPoint", None),
    ("TxCtrlr", None, None, "TxStopPoint", None),
    ("SampledDataCtrlr", None, None, "TxEndedMeasurands", None),
    ("SampledDataCtrlr", None, None, "TxEndedInterval", None),
    ("SampledDataCtrlr", None, None, "TxStartedMeasurands", None),
    ("SampledDataCtrlr", None, None, "TxUpdatedMeasurands", None),
    ("SampledDataCtrlr", None, None, "TxUpdatedInterval", None),
    ("AlignedDataCtrlr", None, None, "Measurands", None),
    ("AlignedDataCtrlr", None, None, "Interval", None),
    ("AlignedDataCtrlr", None, None, "TxEndedMeasurands", None),
    ("AlignedDataCtrlr", None, None, "TxEndedInterval", None),
]


@pytest.mark.parametrize("name,evse,connector,variable,instance", CORE_REQUIRED)
def test_core_required_variables_are_defined(model: DeviceModel, name: str, evse: int | None,
                                             connector: int | None, variable: str,
                                             instance: str | None):
    model.definition(Component(name, evse=evse, connector=connector), Variable(variable, instance))


def test_standard_definitions_are_consistent_for_every_feature_set():
    for features in (frozenset(), FEATURES):
        for profile in (1, 2, 3):
            station = spec(features=features, security_profile=profile, identity="CS-001")
            definitions = standard_definitions(station)
            # DeviceModel's own checks: unique, valid defaults, lists with values.
            DeviceModel(Store(":memory:"), definitions)
            for d in definitions:
                assert d.attributes and d.characteristics.supports_monitoring is False


def test_evse_power_is_rated_from_current_phases_and_voltage():
    d = {(x.component, x.variable.name): x for x in standard_definitions(spec())}
    power = d[(Component("EVSE", evse=1), "Power")]
    assert power.characteristics.max_limit == 32 * 3 * 230
    assert power.characteristics.unit == "W"
    assert power.attribute("MaxSet").default == "22080"
    dc = standard_definitions(spec(evses=(EvseSpec(1, 125, 0, 400),)))
    dc_power = next(x for x in dc if x.variable.name == "Power")
    assert dc_power.characteristics.max_limit == 125 * 400


def test_unlock_on_ev_side_disconnect_is_read_only_false_for_fixed_cables(fresh: Opener):
    cables = fresh(spec(evses=(EvseSpec(1, 32, 3, 230, connector_type="cType2"),)))
    result = cables.set(COMM, Variable("UnlockOnEVSideDisconnect"), "true")
    assert (result.status, result.reason_code) == ("Rejected", "ReadOnly")
    assert cables.get_bool("OCPPCommCtrlr", "UnlockOnEVSideDisconnect") is False
    assert cables.get_str("Connector", "ConnectorType", evse=1, connector=1) == "cType2"


def test_security_profile_comes_from_the_station(fresh: Opener):
    model = fresh(spec(security_profile=2))
    assert model.get_int("SecurityCtrlr", "SecurityProfile") == 2
    assert model.get_str("SecurityCtrlr", "OrganizationName") == "Example CPO"


@pytest.mark.parametrize("feature,component", [
    (FEATURE_AUTH_CACHE, "AuthCacheCtrlr"), (FEATURE_LOCAL_AUTH_LIST, "LocalAuthListCtrlr"),
    (FEATURE_RESERVATION, "ReservationCtrlr"), (FEATURE_SMART_CHARGING, "SmartChargingCtrlr"),
])
def test_unimplemented_features_report_unavailable(fresh: Opener, feature: str,
                                                   component: str):
    absent = fresh(spec())
    assert absent.get(Component(component), Variable("Available")).value == "false"
    assert absent.get(Component(component), Variable("Enabled")).value == "false"
    assert absent.set(Component(component), Variable("Enabled"), "true").status == "Rejected"
    present = fresh(spec(features=frozenset({feature})))
    assert present.get(Component(component), Variable("Available")).value == "true"
    assert present.set(Component(component), Variable("Enabled"), "false").status == "Accepted"


# --- GetVariables ----------------------------------------------------------------------

def test_get_returns_defaults(model: DeviceModel):
    got = model.get(COMM, Variable("WebSocketPingInterval"))
    assert (got.status, got.value) == ("Accepted", "900")
    got = model.get(COMM, Variable("MessageTimeout", "Default"))
    assert (got.status, got.value) == ("Accepted", "30")
    assert model.get(Component("ChargingStation"), Variable("VendorName")).value == "Example"


@pytest.mark.parametrize("component,variable,attribute,status", [
    (Component("NoSuchCtrlr"), Variable("Enabled"), "Actual", "UnknownComponent"),
    (Component("EVSE", evse=9), Variable("Available"), "Actual", "UnknownComponent"),
    (Component("Connector", evse=1, connector=2), Variable("Available"), "Actual",
     "UnknownComponent"),
    (Component("EVSE"), Variable("Available"), "Actual", "UnknownComponent"),
    (Component("OCPPCommCtrlr", instance="Other"), Variable("HeartbeatInterval"), "Actual",
     "UnknownComponent"),
    (COMM, Variable("NoSuchVariable"), "Actual", "UnknownVariable"),
    # B06.FR.15: a variable that exists only with an instance is unknown without one.
    (COMM, Variable("MessageTimeout"), "Actual", "UnknownVariable"),
    (COMM, Variable("MessageTimeout", "Other"), "Actual", "UnknownVariable"),
    (COMM, Variable("HeartbeatInterval"), "Target", "NotSupportedAttributeType"),
    (COMM, Variable("HeartbeatInterval"), "MaxSet", "NotSupportedAttributeType"),
])
def test_get_statuses(model: DeviceModel, component: Component, variable: Variable,
                      attribute: str, status: str):
    got = model.get(component, variable, attribute)
    assert got.status == status and got.value is None


def test_names_match_case_insensitively(model: DeviceModel):
    got = model.get(Component("ocppcommctrlr"), Variable("messagetimeout", "DEFAULT"))
    assert (got.status, got.value) == ("Accepted", "30")
    assert model.set(Component("OcppCommCtrlr"), Variable("heartbeatinterval"),
                     "600").status == "Accepted"
    assert model.get_int("OCPPCommCtrlr", "HeartbeatInterval") == 600


def test_other_attributes_are_readable(model: DeviceModel):
    got = model.get(Component("EVSE", evse=1), Variable("Power"), "MaxSet")
    assert (got.status, got.value) == ("Accepted", "22080")


# --- SetVariables ----------------------------------------------------------------------

def test_accepted_write_is_read_back(model: DeviceModel):
    result = model.set(COMM, Variable("HeartbeatInterval"), "900")
    assert (result.status, result.reason_code, result.status_info()) == ("Accepted", None, None)
    assert model.get(COMM, Variable("HeartbeatInterval")).value == "900"
    assert model.get_int("OCPPCommCtrlr", "HeartbeatInterval") == 900


@pytest.mark.parametrize("component,variable,value,attribute,status,reason", [
    (Component("NoSuchCtrlr"), Variable("Enabled"), "true", "Actual", "UnknownComponent", None),
    (Component("EVSE", evse=3), Variable("Power"), "1", "Actual", "UnknownComponent", None),
    (COMM, Variable("NoSuchVariable"), "1", "Actual", "UnknownVariable", None),
    (COMM, Variable("HeartbeatInterval"), "1", "Target", "NotSupportedAttributeType", None),
    (Component("ChargingStation"), Variable("VendorName"), "Other", "Actual", "Rejected",
     "ReadOnly"),
    (COMM, Variable("MessageTimeout", "Default"), "10", "Actual", "Rejected", "ReadOnly"),
    (Component("EVSE", evse=1), Variable("Power"), "1000", "MaxSet", "Rejected", "ReadOnly"),
    (COMM, Variable("HeartbeatInterval"), "abc", "Actual", "Rejected", "InvalidValue"),
    (COMM, Variable("HeartbeatInterval"), "1.5", "Actual", "Rejected", "InvalidValue"),
    (COMM, Variable("HeartbeatInterval"), "", "Actual", "Rejected", "InvalidValue"),
    (Component("TxCtrlr"), Variable("StopTxOnInvalidId"), "yes", "Actual", "Rejected", "InvalidValue"),
    (Component("TxCtrlr"), Variable("StopTxOnInvalidId"), "1", "Actual", "Rejected", "InvalidValue"),
    (COMM, Variable("WebSocketPingInterval"), "-1", "Actual", "Rejected", "ValueOutOfRange"),
    (COMM, Variable("MessageAttempts", "TransactionEvent"), "0", "Actual", "Rejected",
     "ValueOutOfRange"),
    (COMM, Variable("NetworkConfigurationPriority"), "3", "Actual", "Rejected", "InvalidValue"),
    (COMM, Variable("NetworkConfigurationPriority"), "1,1", "Actual", "Rejected",
     "InvalidValue"),
    (Component("TxCtrlr"), Variable("TxStartPoint"), "ParkingBayOccupancy", "Actual",
     "Rejected", "InvalidValue"),
    (Component("TxCtrlr"), Variable("TxStopPoint"), "EVConnected,Nonsense", "Actual",
     "Rejected", "InvalidValue"),
    (Component("ClockCtrlr"), Variable("TimeSource"), "GPS", "Actual", "Rejected",
     "InvalidValue"),
    (Component("SecurityCtrlr"), Variable("OrganizationName"), "x" * 65, "Actual", "Rejected",
     "TooLargeElement"),
    (Component("AuthCtrlr"), Variable("MasterPassGroupId"), "g" * 37, "Actual", "Rejected",
     "TooLargeElement"),
    # Longer than DeviceDataCtrlr.ConfigurationValueSize (1000).
    (Component("SecurityCtrlr"), Variable("OrganizationName"), "x" * 1001, "Actual",
     "Rejected", "TooLargeElement"),
])
def test_set_statuses(model: DeviceModel, component: Component, variable: Variable, value: str,
                      attribute: str, status: str, reason: str | None):
    before = {d: model.value(d) for d in model.definitions() if d.attribute("Actual")}
    result = model.set(component, variable, value, attribute)
    assert (result.status, result.reason_code) == (status, reason)
    if reason is not None:
        assert result.status_info()["reasonCode"] == reason
        assert result.additional_info
    # Nothing changed.
    assert before == {d: model.value(d) for d in model.definitions() if d.attribute("Actual")}


def test_limits_accept_their_bounds(model: DeviceModel):
    assert model.set(COMM, Variable("WebSocketPingInterval"), "0").status == "Accepted"
    assert model.set(Component("SecurityCtrlr"), Variable("OrganizationName"),
                     "y" * 64).status == "Accepted"


@pytest.mark.parametrize("component,variable,written,stored", [
    ("TxCtrlr", "StopTxOnInvalidId", "FALSE", "false"),
    ("OCPPCommCtrlr", "HeartbeatInterval", "+0042", "42"),
    ("TxCtrlr", "TxStopPoint", " evconnected , AUTHORIZED", "EVConnected,Authorized"),
])
def test_values_are_stored_in_canonical_form(open_model: Opener, component: str, variable: str,
                                             written: str, stored: str):
    assert open_model().set(Component(component), Variable(variable), written).status == "Accepted"
    again = open_model()
    assert again.get_str(component, variable) == stored
    assert again.get(Component(component), Variable(variable)).value == stored


def test_member_list_takes_any_subset_in_canonical_spelling(model: DeviceModel):
    tx = Component("TxCtrlr")
    assert model.set(tx, Variable("TxStartPoint"), "authorized, evconnected").status == "Accepted"
    assert model.get_list("TxCtrlr", "TxStartPoint") == ["Authorized", "EVConnected"]
    # The empty subset, where the variable allows it (TxStartPoint does not).
    sampled = Component("SampledDataCtrlr")
    assert model.set(sampled, Variable("TxEndedMeasurands"), "").status == "Accepted"
    assert model.get_list("SampledDataCtrlr", "TxEndedMeasurands") == []


def test_option_list(fresh: Opener):
    model = fresh(spec(features=frozenset({FEATURE_AUTH_CACHE})))
    cache = Component("AuthCacheCtrlr")
    assert model.set(cache, Variable("Policy"), "lfu").status == "Accepted"
    assert model.get_str("AuthCacheCtrlr", "Policy") == "LFU"
    assert model.set(cache, Variable("Policy"), "LRU,LFU").status == "Rejected"


# --- WriteOnly -------------------------------------------------------------------------

def test_write_only_is_writable_but_never_readable(model: DeviceModel,
                                                   caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    security, password = Component("SecurityCtrlr"), Variable("BasicAuthPassword")
    assert model.set(security, password, PASSWORD).status == "Accepted"
    got = model.get(security, password)
    assert (got.status, got.value, got.reason_code) == ("Rejected", None, "WriteOnly")
    # The agent itself needs it to connect.
    assert model.get_str("SecurityCtrlr", "BasicAuthPassword") == PASSWORD
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("bad", ["short-0123456", "x" * 41, "has space 0123456789",
                                 "naïve-0123456789ab"])
def test_password_must_be_a_password_string(model: DeviceModel, bad: str):
    result = model.set(Component("SecurityCtrlr"), Variable("BasicAuthPassword"), bad)
    assert result.status == "Rejected"
    assert bad not in (result.additional_info or "")


# --- RebootRequired --------------------------------------------------------------------

def test_reboot_required_value_applies_only_after_restart(open_model: Opener):
    model = open_model()
    seen: list[tuple[str, str]] = []
    model.subscribe(lambda c, v, a, value: seen.append((v.name, value)))
    result = model.set(COMM, Variable("NetworkConfigurationPriority"), "2,1")
    assert result.status == "RebootRequired"
    assert seen == [("NetworkConfigurationPriority", "2,1")]
    # Still the effective value until the next start.
    assert model.get(COMM, Variable("NetworkConfigurationPriority")).value == "1"
    assert model.get_list("OCPPCommCtrlr", "NetworkConfigurationPriority") == ["1"]
    assert [d.variable.name for d, _ in model.reboot_pending()] == ["NetworkConfigurationPriority"]

    restarted = open_model()
    assert restarted.get_list("OCPPCommCtrlr", "NetworkConfigurationPriority") == ["2", "1"]
    assert restarted.reboot_pending() == []
    # Writing the value already in effect needs no reboot.
    assert restarted.set(COMM, Variable("NetworkConfigurationPriority"),
                         "2,1").status == "Accepted"


def test_writing_back_the_effective_value_cancels_a_pending_one(model: DeviceModel):
    model.set(COMM, Variable("NetworkConfigurationPriority"), "2")
    assert model.set(COMM, Variable("NetworkConfigurationPriority"), "1").status == "Accepted"
    assert model.reboot_pending() == []


# --- listeners -------------------------------------------------------------------------

def test_listeners_hear_accepted_writes_only(model: DeviceModel):
    seen: list[tuple[Component, Variable, str, str]] = []
    model.subscribe(lambda *args: seen.append(args))
    model.set(Component("ocppcommctrlr"), Variable("HEARTBEATINTERVAL"), "120")
    model.set(COMM, Variable("HeartbeatInterval"), "nope")
    model.set(Component("ChargingStation"), Variable("Model"), "x")
    model.set_actual(Component("ChargingStation"), Variable("AvailabilityState"), "Faulted")
    # Spelling of the definitions, not of the request.
    assert seen == [(COMM, Variable("HeartbeatInterval"), "Actual", "120")]


def test_a_failing_listener_does_not_fail_the_write(model: DeviceModel):
    calls: list[str] = []

    def broken(*args: object) -> None:
        raise RuntimeError("listener bug")

    model.subscribe(broken)
    model.subscribe(lambda c, v, a, value: calls.append(value))
    assert model.set(COMM, Variable("OfflineThreshold"), "300").status == "Accepted"
    assert calls == ["300"] and model.get_int("OCPPCommCtrlr", "OfflineThreshold") == 300
    model.unsubscribe(broken)


# --- persistence -----------------------------------------------------------------------

def test_a_set_value_survives_reopening_the_store(open_model: Opener):
    first = open_model()
    assert first.set(COMM, Variable("HeartbeatInterval"), "120").status == "Accepted"
    assert first.set(Component("SecurityCtrlr"), Variable("BasicAuthPassword"),
                     PASSWORD).status == "Accepted"
    first.set_actual(Component("SecurityCtrlr"), Variable("SecurityProfile"), "2")
    open_model.close()

    again = open_model()
    assert again.get_int("OCPPCommCtrlr", "HeartbeatInterval") == 120
    assert again.get_str("SecurityCtrlr", "BasicAuthPassword") == PASSWORD
    assert again.get_int("SecurityCtrlr", "SecurityProfile") == 2


def test_live_state_is_not_persisted(open_model: Opener):
    first = open_model()
    first.set_actual(Component("EVSE", evse=1), Variable("AvailabilityState"), "Faulted")
    first.set_actual(Component("EVSE", evse=1), Variable("Power"), "7200.5")
    assert first.get_str("EVSE", "AvailabilityState", evse=1) == "Faulted"
    assert first.get_float("EVSE", "Power", evse=1) == 7200.5
    again = open_model()
    assert again.get_str("EVSE", "AvailabilityState", evse=1) == "Available"
    assert again.get_float("EVSE", "Power", evse=1) == 0.0


def test_station_updates_of_settings_persist(open_model: Opener):
    open_model().set_actual(COMM, Variable("HeartbeatInterval"), "300")
    assert open_model().get_int("OCPPCommCtrlr", "HeartbeatInterval") == 300


def test_persisted_values_win_over_a_changed_config_but_constants_follow_it(open_model: Opener):
    open_model(spec(security_profile=1, organization_name="First"))
    again = open_model(spec(security_profile=2, organization_name="Second", vendor="NewVendor"))
    # Seeded on the first start: the persisted device model is the truth from then on.
    assert again.get_int("SecurityCtrlr", "SecurityProfile") == 1
    assert again.get_str("SecurityCtrlr", "OrganizationName") == "First"
    # Constants are no settings: they always come from the definitions.
    assert again.get_str("ChargingStation", "VendorName") == "NewVendor"


def test_new_variables_are_added_and_old_values_kept(open_model: Opener):
    open_model().set(COMM, Variable("OfflineThreshold"), "1200")
    again = open_model(spec(features=frozenset({FEATURE_AUTH_CACHE})))
    assert again.get_int("AuthCacheCtrlr", "LifeTime") == 30 * 86400
    assert again.get_int("OCPPCommCtrlr", "OfflineThreshold") == 1200
    assert again.set(Component("AuthCacheCtrlr"), Variable("LifeTime"), "60").status == "Accepted"
    assert open_model(spec(features=frozenset({FEATURE_AUTH_CACHE}))).get_int(
        "AuthCacheCtrlr", "LifeTime") == 60


def test_an_invalid_persisted_value_falls_back_to_the_default(open_model: Opener,
                                                               caplog: pytest.LogCaptureFixture):
    first = open_model()
    first.set(COMM, Variable("WebSocketPingInterval"), "60")
    first.set(Component("TxCtrlr"), Variable("TxStartPoint"), "EnergyTransfer")
    store = open_model.stores[-1]
    store.execute("UPDATE device_model_value SET value = 'garbage' WHERE variable = ?",
                  ("WebSocketPingInterval",))
    # A newer software that no longer offers EnergyTransfer as a start point.
    changed = [_without_value(d, "EnergyTransfer") if d.variable.name == "TxStartPoint" else d
               for d in standard_definitions(spec())]
    with caplog.at_level(logging.WARNING):
        again = open_model(definitions=changed)
    assert again.get_int("OCPPCommCtrlr", "WebSocketPingInterval") == 900
    assert again.get_list("TxCtrlr", "TxStartPoint") == ["PowerPathClosed"]
    assert "WebSocketPingInterval" in caplog.text and "TxStartPoint" in caplog.text
    assert {str(r.definition.variable) for r in again.repairs} == {"WebSocketPingInterval",
                                                                   "TxStartPoint"}
    # Until the repair is settled (with its report to the CSMS) the store keeps the bad
    # value, so a kill before the report repeats both; afterwards no warning.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        open_model(definitions=changed).settle_repairs()
    assert "WebSocketPingInterval" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        open_model(definitions=changed)
    assert caplog.text == ""


def _without_value(d: VariableDefinition, value: str) -> VariableDefinition:
    values = tuple(v for v in d.characteristics.values_list if v != value)
    chars = Characteristics(d.characteristics.data_type, values_list=values)
    return VariableDefinition(d.component, d.variable, d.attributes, chars)


# --- the station's own accessors -------------------------------------------------------

def test_typed_accessors(model: DeviceModel):
    assert model.get_int("OCPPCommCtrlr", "MessageTimeout", instance="Default") == 30
    assert model.get_bool("AuthCtrlr", "LocalAuthorizeOffline") is True
    assert model.get_float("EVSE", "Power", evse=2, attribute="MaxSet") == 16 * 230
    assert model.get_list("SampledDataCtrlr", "TxUpdatedMeasurands") == [
        "Energy.Active.Import.Register", "Power.Active.Import"]
    assert model.get_str("Connector", "ConnectorType", evse=2, connector=2) == "sType2"
    assert len(model.definitions()) == len(standard_definitions(spec()))


@pytest.mark.parametrize("call", [
    lambda m: m.get_int("OCPPCommCtrlr", "NoSuch"),
    lambda m: m.get_int("OCPPCommCtrlr", "MessageTimeout"),
    lambda m: m.get_bool("EVSE", "Available", evse=7),
    lambda m: m.get_str("Connector", "ConnectorType", evse=1, connector=2),
    lambda m: m.get_int("OCPPCommCtrlr", "HeartbeatInterval", attribute="Target"),
    lambda m: m.set_actual(Component("NoSuch"), Variable("Problem"), "true"),
])
def test_undefined_variables_raise_key_error(model: DeviceModel, call):
    with pytest.raises(KeyError):
        call(model)


def test_set_actual_checks_the_value(model: DeviceModel):
    cs = Component("ChargingStation")
    with pytest.raises(ValueError):
        model.set_actual(cs, Variable("AvailabilityState"), "Sleeping")
    with pytest.raises(ValueError):   # declared constant
        model.set_actual(cs, Variable("VendorName"), "Other")
    model.set_actual(cs, Variable("AvailabilityState"), "unavailable")
    assert model.get_str("ChargingStation", "AvailabilityState") == "Unavailable"


def test_live_values_come_from_their_source(model: DeviceModel):
    clock = ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc))
    model.provide(Component("ClockCtrlr"), Variable("DateTime"),
                  lambda: format_datetime(clock.now()))
    got = model.get(Component("ClockCtrlr"), Variable("DateTime"))
    assert (got.status, got.value) == ("Accepted", "2026-03-01T12:00:00.000Z")
    clock.set_time(datetime(2026, 3, 2, tzinfo=timezone.utc))
    assert model.get_str("ClockCtrlr", "DateTime") == "2026-03-02T00:00:00.000Z"


# --- value checks and size limits on synthetic variables ---------------------------------

def _definition(data_type: DataType, *, component: str = "TestCtrlr", name: str = "Value",
                default: str = "", **chars: object) -> VariableDefinition:
    return VariableDefinition(
        Component(component), Variable(name),
        (AttributeDefinition(AttributeType.ACTUAL, Mutability.READ_WRITE, True, False, default),),
        Characteristics(data_type, **chars))  # type: ignore[arg-type]


@pytest.mark.parametrize("data_type,good,bad", [
    (DataType.DATE_TIME, ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00.123+01:00"],
     ["2026-01-01", "2026-01-01T00:00:00", "yesterday"]),
    (DataType.DECIMAL, ["1", "-2.5", "0.125", "1e3"], ["1,5", "nan", "inf", "", "one"]),
    (DataType.INTEGER, ["0", "-7", "2147483647", "-2147483648", "+0012"],
     ["1.0", "1e3", "0x10", " 1", "", "1_000"]),
    (DataType.BOOLEAN, ["true", "False"], ["0", "on", ""]),
    (DataType.STRING, ["", "anything at all"], []),
])
def test_data_types(data_type: DataType, good: list[str], bad: list[str]):
    definition = _definition(data_type)
    for value in good:
        canonical(definition, value)
    for value in bad:
        with pytest.raises(Invalid) as caught:
            canonical(definition, value)
        assert caught.value.reason_code == "InvalidValue"


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=-10**6, max_value=10**6))
def test_integer_limits(number: int):
    definition = _definition(DataType.INTEGER, min_limit=-100, max_limit=100)
    if -100 <= number <= 100:
        assert canonical(definition, str(number)) == str(number)
    else:
        with pytest.raises(Invalid) as caught:
            canonical(definition, str(number))
        assert caught.value.reason_code == "ValueOutOfRange"


@settings(max_examples=40, deadline=None)
@given(st.permutations(["A", "B", "C", "D"]), st.integers(min_value=0, max_value=4))
def test_sequence_list_keeps_order(order: list[str], size: int):
    definition = _definition(DataType.SEQUENCE_LIST, values_list=("A", "B", "C", "D"))
    chosen = order[:size]
    assert canonical(definition, ",".join(c.lower() for c in chosen)) == ",".join(chosen)


def test_values_are_cut_to_the_reporting_value_size(fresh: Opener):
    definitions = [
        VariableDefinition(Component("DeviceDataCtrlr"), Variable("ReportingValueSize"),
                           (AttributeDefinition(default="10", constant=True),),
                           Characteristics(DataType.INTEGER)),
        VariableDefinition(Component("DeviceDataCtrlr"), Variable("ConfigurationValueSize"),
                           (AttributeDefinition(default="20", constant=True),),
                           Characteristics(DataType.INTEGER)),
        _definition(DataType.STRING),
    ]
    model = fresh(definitions=definitions)
    assert model.reporting_value_size() == 10 and model.configuration_value_size() == 20
    result = model.set(Component("TestCtrlr"), Variable("Value"), "x" * 21)
    assert (result.status, result.reason_code) == ("Rejected", "TooLargeElement")
    assert model.set(Component("TestCtrlr"), Variable("Value"), "0123456789abcdef").status \
        == "Accepted"
    assert model.get(Component("TestCtrlr"), Variable("Value")).value == "0123456789"
    # The agent's own reads are not cut.
    assert model.get_str("TestCtrlr", "Value") == "0123456789abcdef"


def test_bad_definitions_are_refused():
    store = Store(":memory:")
    with pytest.raises(ValueError, match="twice"):
        DeviceModel(store, [_definition(DataType.STRING), _definition(DataType.STRING)])
    with pytest.raises(ValueError, match="valuesList"):
        DeviceModel(store, [_definition(DataType.OPTION_LIST)])
    with pytest.raises(ValueError, match="default"):
        DeviceModel(store, [_definition(DataType.INTEGER, default="ten")])
    with pytest.raises(ValueError, match="EVSE"):
        DeviceModel(store, [VariableDefinition(
            Component("Connector", connector=1), Variable("Available"),
            (AttributeDefinition(),), Characteristics(DataType.BOOLEAN))])


# --- bounds: nothing a CSMS can write breaks the station later ---------------------------

NUMERIC = (DataType.INTEGER, DataType.DECIMAL)


@pytest.mark.parametrize("features", [frozenset(), FEATURES])
def test_every_number_the_station_keeps_has_real_bounds(features: frozenset[str]):
    """A writable or persisted number without a maximum once took 2^63 and then crashed
    every start: each one has both limits, inside OCPP's 32-bit integer."""
    for d in standard_definitions(spec(features=features)):
        chars = d.characteristics
        if chars.data_type not in NUMERIC or not any(a.writable or a.stored
                                                     for a in d.attributes):
            continue
        assert chars.min_limit is not None and chars.max_limit is not None, str(d)
        assert -2**31 <= chars.min_limit <= chars.max_limit <= 2**31 - 1, str(d)


# What an independent fuzz found accepted and then fatal (issue 14), and neighbours.
HUGE = ["9223372036854775808", "2147483648", str(10**30), "1" + "0" * 5000, "-1"]
CRASHED = [("SampledDataCtrlr", "TxUpdatedInterval", None),
           ("SampledDataCtrlr", "TxEndedInterval", None),
           ("AlignedDataCtrlr", "TxEndedInterval", None),
           ("AlignedDataCtrlr", "Interval", None),
           ("OCPPCommCtrlr", "HeartbeatInterval", None),
           ("OCPPCommCtrlr", "WebSocketPingInterval", None),
           ("OCPPCommCtrlr", "OfflineThreshold", None),
           ("OCPPCommCtrlr", "RetryBackOffWaitMinimum", None),
           ("OCPPCommCtrlr", "RetryBackOffRepeatTimes", None),
           ("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent"),
           ("TxCtrlr", "EVConnectionTimeOut", None),
           ("TxCtrlr", "MaxEnergyOnInvalidId", None),
           ("AuthCacheCtrlr", "LifeTime", None)]


@pytest.mark.parametrize("component,variable,instance", CRASHED)
def test_out_of_range_numbers_are_rejected_and_change_nothing(
        fresh: Opener, component: str, variable: str, instance: str | None):
    model = fresh(spec(features=FEATURES))
    before = model.get_str(component, variable, instance=instance)
    definition = model.definition(Component(component), Variable(variable, instance))
    top = definition.characteristics.max_limit
    assert top is not None
    for value in [*HUGE, str(int(top) + 1)]:
        result = model.set(Component(component), Variable(variable, instance), value)
        assert result.status == "Rejected", value[:30]
        # "1" + 5000 zeros is longer than ConfigurationValueSize: TooLargeElement.
        assert result.reason_code in ("ValueOutOfRange", "TooLargeElement"), value[:30]
        assert model.get_str(component, variable, instance=instance) == before
    assert model.set(Component(component), Variable(variable, instance),
                     str(int(top))).status == "Accepted"


def test_limits_are_reported_in_variable_characteristics(model: DeviceModel):
    from agent.model.report import report_item  # noqa: PLC0415 - local to this test
    definition = model.definition(Component("SampledDataCtrlr"), Variable("TxUpdatedInterval"))
    assert report_item(model, definition)["variableCharacteristics"] == {"dataType": "integer", "unit": "s",
                                              "minLimit": 0, "maxLimit": 86400,
                                              "supportsMonitoring": False}


@pytest.mark.parametrize("stored", [
    "9223372036854775808", "1" + "0" * 5000, "-5", "", "12.5", "0x10",
    b"\x00\xff", 3.5, 2**62, None])
def test_start_up_survives_whatever_the_database_holds(open_model: Opener, stored: object):
    first = open_model(spec(features=FEATURES))
    first.set(Component("SampledDataCtrlr"), Variable("TxUpdatedInterval"), "30")
    store = open_model.stores[-1]
    if stored is None:
        # Rows no definition can match: unknown names, ids of the wrong type.
        store.execute("INSERT INTO device_model_value VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      ("EVSE", "", "one", 0, "Power", "", "Actual", "1"))
        store.execute("INSERT INTO device_model_value VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      ("NoSuchCtrlr", "", 0, 0, "X", "", "Bogus", "1"))
        expected = 30
    else:
        store.execute("UPDATE device_model_value SET value = ? WHERE variable = ? "
                      "AND component = ?", (stored, "TxUpdatedInterval", "SampledDataCtrlr"))
        expected = 60
    again = open_model(spec(features=FEATURES))
    assert again.get_int("SampledDataCtrlr", "TxUpdatedInterval") == expected
    assert len(again.repairs) == (0 if stored is None else 1)


def test_a_stored_date_time_at_the_edge_of_the_range_is_repaired(fresh: Opener):
    definition = _definition(DataType.DATE_TIME)
    for edge in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999-12:00"):
        with pytest.raises(Invalid):
            canonical(definition, edge)


def test_an_empty_transaction_start_or_stop_point_is_refused_and_repaired(open_model: Opener):
    model = open_model()
    for name in ("TxStartPoint", "TxStopPoint"):
        assert model.set(Component("TxCtrlr"), Variable(name), " , ").status == "Rejected"
    open_model.stores[-1].execute(
        "UPDATE device_model_value SET value = '' WHERE variable = 'TxStopPoint'")
    again = open_model()
    assert again.get_list("TxCtrlr", "TxStopPoint") == ["EVConnected", "Authorized"]
    assert [str(r.definition.variable) for r in again.repairs] == ["TxStopPoint"]


def test_fiscal_metering_problem_is_defined_per_evse(model: DeviceModel):
    for evse in (1, 2):
        result = model.get(Component("FiscalMetering", evse=evse), Variable("Problem"))
        assert (result.status, result.value) == ("Accepted", "false")
