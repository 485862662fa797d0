"""Reports of the device model: schema-valid NotifyReport data, the right selection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import ocpp
import pytest

from agent.model.definitions import standard_definitions
from agent.model.device_model import DeviceModel
from agent.model.report import base_report, custom_report
from agent.model.types import (FEATURE_AUTH_CACHE, FEATURES, AttributeDefinition, Characteristics,
                               Component, DataType, EvseSpec, Mutability, StationSpec, Variable,
                               VariableDefinition)
from agent.store import Store

PASSWORD = "0123456789abcdef-XYZ"
SCHEMAS = Path(ocpp.__file__).parent / "v201" / "schemas"


@pytest.fixture(scope="module")
def notify_report_schema() -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / "NotifyReportRequest.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def spec(**changes: object) -> StationSpec:
    values: dict[str, object] = dict(
        vendor="Example", model="AC-22", serial_number="0001", firmware_version="1.0.0",
        evses=(EvseSpec(1, 32, 3, 230), EvseSpec(2, 16, 1, 230, connectors=2)),
        security_profile=1, organization_name="Example CPO", identity="CS-001")
    values.update(changes)
    return StationSpec(**values)  # type: ignore[arg-type]


def make(station: StationSpec | None = None) -> DeviceModel:
    return DeviceModel(Store(":memory:"), standard_definitions(station or spec()))


@pytest.fixture
def model() -> DeviceModel:
    m = make()
    assert m.set(Component("SecurityCtrlr"), Variable("BasicAuthPassword"),
                 PASSWORD).status == "Accepted"
    return m


def check(validator: jsonschema.protocols.Validator, items: list[dict[str, Any]]) -> None:
    request = {"requestId": 7, "generatedAt": "2026-01-01T00:00:00.000Z", "seqNo": 0,
               "tbc": False, "reportData": items}
    errors = sorted(validator.iter_errors(request), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def names(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(component, instance, evse, connector, variable, instance) of each item."""
    out = []
    for item in items:
        c, v = item["component"], item["variable"]
        evse = c.get("evse", {})
        out.append((c["name"], c.get("instance"), evse.get("id"), evse.get("connectorId"),
                    v["name"], v.get("instance")))
    return out


# --- base reports ------------------------------------------------------------------------

@pytest.mark.parametrize("features", [frozenset(), FEATURES])
@pytest.mark.parametrize("base", ["FullInventory", "ConfigurationInventory", "SummaryInventory"])
def test_base_reports_validate_against_the_official_schema(notify_report_schema, base: str,
                                                           features: frozenset[str]):
    m = make(spec(features=features))
    items = base_report(m, base)
    assert items
    check(notify_report_schema, items)


def test_full_inventory_is_everything(model: DeviceModel):
    items = base_report(model, "FullInventory")
    assert len(items) == len(model.definitions())
    by_name = {(n[0], n[2], n[4], n[5]): item for n, item in zip(names(items), items)}
    power = by_name[("EVSE", 1, "Power", None)]
    assert power["variableCharacteristics"] == {
        "unit": "W", "dataType": "decimal", "maxLimit": 22080, "supportsMonitoring": False}
    assert [a["type"] for a in power["variableAttribute"]] == ["Actual", "MaxSet"]
    ping = by_name[("OCPPCommCtrlr", None, "WebSocketPingInterval", None)]
    assert ping["variableAttribute"] == [{"type": "Actual", "value": "900",
                                          "mutability": "ReadWrite", "persistent": True,
                                          "constant": False}]
    assert ping["variableCharacteristics"]["unit"] == "s"
    vendor = by_name[("ChargingStation", None, "VendorName", None)]
    assert vendor["variableAttribute"][0]["constant"] is True


def test_configuration_inventory_lists_what_the_operator_can_set(model: DeviceModel):
    items = base_report(model, "ConfigurationInventory")
    found = {(n[0], n[4], n[5]) for n in names(items)}
    assert ("OCPPCommCtrlr", "HeartbeatInterval", None) in found
    assert ("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent") in found
    assert ("SecurityCtrlr", "BasicAuthPassword", None) in found
    assert ("ChargingStation", "VendorName", None) not in found
    assert ("OCPPCommCtrlr", "MessageTimeout", "Default") not in found
    for item in items:
        assert any(a["mutability"] != "ReadOnly" for a in item["variableAttribute"])
    writable = [d for d in model.definitions() if d.writable]
    assert len(items) == len(writable)


@pytest.mark.parametrize("base", ["FullInventory", "ConfigurationInventory"])
def test_write_only_values_are_never_reported(model: DeviceModel, base: str):
    items = base_report(model, base)
    password = [i for i in items if i["variable"]["name"] == "BasicAuthPassword"]
    assert password and password[0]["variableAttribute"] == [
        {"type": "Actual", "mutability": "WriteOnly", "persistent": True, "constant": False}]
    assert PASSWORD not in json.dumps(items)
    assert PASSWORD not in json.dumps(custom_report(model, None, [
        {"component": {"name": "SecurityCtrlr"}}]))


def test_summary_inventory(model: DeviceModel):
    # Only availability at first: connectors agree with their EVSEs, no problems.
    assert names(base_report(model, "SummaryInventory")) == [
        ("ChargingStation", None, None, None, "AvailabilityState", None),
        ("EVSE", None, 1, None, "AvailabilityState", None),
        ("EVSE", None, 2, None, "AvailabilityState", None),
    ]
    model.set_actual(Component("Connector", evse=2, connector=2), Variable("AvailabilityState"),
                     "Faulted")
    model.set_actual(Component("Connector", evse=2, connector=2), Variable("Problem"), "true")
    items = base_report(model, "SummaryInventory")
    assert names(items)[3:] == [
        ("Connector", None, 2, 2, "AvailabilityState", None),
        ("Connector", None, 2, 2, "Problem", None),
    ]
    assert items[3]["variableAttribute"][0]["value"] == "Faulted"
    assert items[4]["variableAttribute"][0]["value"] == "true"


def test_unknown_report_base(model: DeviceModel):
    with pytest.raises(ValueError):
        base_report(model, "MonitoringInventory")


# --- custom reports (GetReport) ------------------------------------------------------------

def cv(name: str, *, instance: str | None = None, evse: int | None = None,
       connector: int | None = None, variable: str | None = None,
       variable_instance: str | None = None) -> dict[str, Any]:
    component: dict[str, Any] = {"name": name}
    if instance:
        component["instance"] = instance
    if evse is not None:
        component["evse"] = {"id": evse}
        if connector is not None:
            component["evse"]["connectorId"] = connector
    data: dict[str, Any] = {"component": component}
    if variable:
        data["variable"] = {"name": variable}
        if variable_instance:
            data["variable"]["instance"] = variable_instance
    return data


def test_component_without_variable_reports_all_its_variables(model: DeviceModel):
    items = custom_report(model, None, [cv("TxCtrlr")])
    expected = [d for d in model.definitions() if d.component.name == "TxCtrlr"]
    assert len(items) == len(expected) > 3
    assert {n[0] for n in names(items)} == {"TxCtrlr"}


def test_variable_without_instance_reports_every_instance(model: DeviceModel):
    items = custom_report(model, None, [cv("DeviceDataCtrlr", variable="ItemsPerMessage")])
    assert [n[5] for n in names(items)] == ["GetReport", "GetVariables", "SetVariables"]
    items = custom_report(model, None, [cv("DeviceDataCtrlr", variable="ItemsPerMessage",
                                           variable_instance="GetReport")])
    assert [n[5] for n in names(items)] == ["GetReport"]


def test_evse_and_connector_wildcards(model: DeviceModel):
    # B08.FR.23: no evse -> every EVSE.
    items = custom_report(model, None, [cv("EVSE", variable="AvailabilityState")])
    assert [(n[0], n[2]) for n in names(items)] == [("EVSE", 1), ("EVSE", 2)]
    # B08.FR.22: evse without connectorId -> every connector of that EVSE.
    items = custom_report(model, None, [cv("Connector", evse=2, variable="ConnectorType")])
    assert [(n[2], n[3]) for n in names(items)] == [(2, 1), (2, 2)]
    items = custom_report(model, None, [cv("Connector", evse=2, connector=2,
                                           variable="ConnectorType")])
    assert [(n[2], n[3]) for n in names(items)] == [(2, 2)]
    items = custom_report(model, None, [cv("EVSE", evse=1)])
    assert {(n[0], n[2]) for n in names(items)} == {("EVSE", 1)}
    # Several selectors add up; names match case-insensitively.
    items = custom_report(model, None, [cv("evse", evse=1, variable="power"),
                                        cv("CONNECTOR", evse=1, variable="Available")])
    assert [(n[0], n[4]) for n in names(items)] == [("EVSE", "Power"), ("Connector", "Available")]


def test_nothing_matching_is_an_empty_result(model: DeviceModel):
    assert custom_report(model, None, [cv("NoSuchCtrlr")]) == []
    assert custom_report(model, None, [cv("EVSE", evse=9)]) == []
    assert custom_report(model, None, [cv("TxCtrlr", variable="NoSuch")]) == []
    assert custom_report(model, None, [cv("OCPPCommCtrlr", instance="Other")]) == []


def test_problem_criterion_selects_components_with_a_problem(model: DeviceModel):
    assert custom_report(model, ["Problem"], None) == []
    model.set_actual(Component("EVSE", evse=1), Variable("Problem"), "true")
    items = custom_report(model, ["Problem"], None)
    assert {(n[0], n[2], n[3]) for n in names(items)} == {("EVSE", 1, None)}
    assert len(items) == len([d for d in model.definitions()
                              if d.component == Component("EVSE", evse=1)])


def test_available_enabled_active_criteria(model: DeviceModel):
    # B08.FR.08/09: true, or the component has no such variable.
    available = {n[0] for n in names(custom_report(model, ["Available"], None))}
    assert "AuthCacheCtrlr" not in available          # Available = false
    assert {"ChargingStation", "EVSE", "Connector", "SampledDataCtrlr",
            "OCPPCommCtrlr"} <= available              # true, or no Available variable
    enabled = {n[0] for n in names(custom_report(model, ["Enabled"], None))}
    assert "ReservationCtrlr" not in enabled and "AuthCtrlr" in enabled
    model.set(Component("AuthCtrlr"), Variable("Enabled"), "false")
    assert "AuthCtrlr" not in {n[0] for n in names(custom_report(model, ["Enabled"], None))}
    # No component has an Active variable: all match (B08.FR.07).
    assert len(custom_report(model, ["Active"], None)) == len(model.definitions())
    # Criteria add up: a component meeting any of them is reported.
    both = {n[0] for n in names(custom_report(model, ["Enabled", "Available"], None))}
    assert "AuthCtrlr" in both and "ReservationCtrlr" not in both


def test_criteria_and_component_variables_intersect(model: DeviceModel):
    selector = [cv("EVSE", evse=1, variable="AvailabilityState")]
    items = custom_report(model, ["Available"], selector)
    assert names(items) == [("EVSE", None, 1, None, "AvailabilityState", None)]
    assert items[0]["variableAttribute"][0]["value"] == "Available"
    assert custom_report(model, ["Problem"], selector) == []
    assert custom_report(model, ["Available"], [cv("ReservationCtrlr")]) == []


def test_custom_reports_validate(notify_report_schema, model: DeviceModel):
    model.set_actual(Component("EVSE", evse=1), Variable("Problem"), "true")
    for criteria, selectors in [
        (None, None), (["Problem"], None), (["Active", "Available", "Enabled", "Problem"], None),
        (None, [cv("EVSE"), cv("SecurityCtrlr"),
                cv("DeviceDataCtrlr", variable="ItemsPerMessage")]),
    ]:
        items = custom_report(model, criteria, selectors)
        assert items
        check(notify_report_schema, items)


def test_reported_values_are_cut_to_reporting_value_size(notify_report_schema):
    definitions = [
        VariableDefinition(Component("DeviceDataCtrlr"), Variable("ReportingValueSize"),
                           (AttributeDefinition(default="8", constant=True, persistent=True),),
                           Characteristics(DataType.INTEGER)),
        VariableDefinition(Component("DisplayCtrlr", instance="Front"), Variable("Message"),
                           (AttributeDefinition(mutability=Mutability.READ_WRITE,
                                                persistent=True,
                                                default="Welcome to the station"),),
                           Characteristics(DataType.STRING)),
    ]
    m = DeviceModel(Store(":memory:"), definitions)
    items = base_report(m, "FullInventory")
    assert items[1]["component"] == {"name": "DisplayCtrlr", "instance": "Front"}
    assert items[1]["variableAttribute"][0]["value"] == "Welcome "
    check(notify_report_schema, items)


def test_features_change_what_is_reported():
    without = {n[:5] for n in names(base_report(make(), "FullInventory"))}
    with_cache = {n[:5] for n in names(base_report(make(spec(features=frozenset(
        {FEATURE_AUTH_CACHE}))), "FullInventory"))}
    assert ("AuthCacheCtrlr", None, None, None, "LifeTime") in with_cache - without
