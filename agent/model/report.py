"""The reportData of NotifyReportRequest (B07 GetBaseReport, B08 GetReport).

Each item is a ReportDataType in wire format (camelCase dicts). The value of a WriteOnly
attribute is never included. Values longer than DeviceDataCtrlr.ReportingValueSize are
truncated to it: the variable "limits" VariableAttribute.value, and cutting the value is
the only way to still report the variable. Splitting the items into NotifyReport
messages (seqNo, tbc) is the caller's job.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from agent.model.device_model import DeviceModel
from agent.model.types import Characteristics, Component, VariableDefinition

CONFIGURATION_INVENTORY = "ConfigurationInventory"
FULL_INVENTORY = "FullInventory"
SUMMARY_INVENTORY = "SummaryInventory"
REPORT_BASES = (CONFIGURATION_INVENTORY, FULL_INVENTORY, SUMMARY_INVENTORY)

# Variables that say a component is in an abnormal state (SummaryInventory).
_PROBLEM_VARIABLES = frozenset({"problem", "tripped", "overload", "fallback"})


def base_report(model: DeviceModel, report_base: str) -> list[dict[str, Any]]:
    """reportData for GetBaseReport; ValueError for an unknown report base."""
    definitions = model.definitions()
    if report_base == FULL_INVENTORY:
        # "Everything except monitoring settings."
        chosen = definitions
    elif report_base == CONFIGURATION_INVENTORY:
        # "All Components/Variables that can be set by the operator."
        chosen = [d for d in definitions if d.writable]
    elif report_base == SUMMARY_INVENTORY:
        chosen = _summary(model, definitions)
    else:
        raise ValueError(f"unknown reportBase {report_base!r}")
    return _items(model, chosen)


def custom_report(model: DeviceModel, component_criteria: Sequence[str] | None,
                  component_variables: Sequence[Mapping[str, Any]] | None
                  ) -> list[dict[str, Any]]:
    """reportData for GetReport; [] when nothing matches (the answer is EmptyResultSet).

    componentVariable entries select as B08.FR.11 and errata B08.FR.22-25 say: a missing
    evse matches every EVSE tier and the top level, a missing connectorId every connector
    of that EVSE, a missing instance every instance; a missing variable every variable
    of the component, a variable without instance every instance of it.

    componentCriteria select components as B08.FR.07-10 say: Active, Available, Enabled
    match a component whose variable of that name is true or that has no such variable;
    Problem matches one whose Problem is true. A component meeting any criterion counts.
    With both, only what both select is reported.
    """
    chosen = model.definitions()
    if component_variables:
        chosen = [d for d in chosen if any(_selects(f, d) for f in component_variables)]
    if component_criteria:
        meets = _criteria_filter(model, component_criteria)
        chosen = [d for d in chosen if meets(d.component)]
    return _items(model, chosen)


def report_item(model: DeviceModel, definition: VariableDefinition,
                value_size: int | None = None) -> dict[str, Any]:
    """One ReportDataType."""
    size = model.reporting_value_size() if value_size is None else value_size
    attributes = []
    for attribute in definition.attributes:
        item: dict[str, Any] = {"type": attribute.type.value}
        if attribute.readable:
            item["value"] = model.value(definition, attribute.type)[:size]
        item["mutability"] = attribute.mutability.value
        item["persistent"] = attribute.persistent
        item["constant"] = attribute.constant
        attributes.append(item)
    return {
        "component": component_data(definition.component),
        "variable": variable_data(definition),
        "variableAttribute": attributes,
        "variableCharacteristics": _characteristics(definition.characteristics),
    }


def component_data(component: Component) -> dict[str, Any]:
    """ComponentType in wire format."""
    data: dict[str, Any] = {"name": component.name}
    if component.instance:
        data["instance"] = component.instance
    if component.evse is not None:
        evse: dict[str, Any] = {"id": component.evse}
        if component.connector is not None:
            evse["connectorId"] = component.connector
        data["evse"] = evse
    return data


def _items(model: DeviceModel, definitions: Iterable[VariableDefinition]) -> list[dict[str, Any]]:
    size = model.reporting_value_size()
    return [report_item(model, d, size) for d in definitions]


def variable_data(definition: VariableDefinition) -> dict[str, Any]:
    """VariableType in wire format."""
    data: dict[str, Any] = {"name": definition.variable.name}
    if definition.variable.instance:
        data["instance"] = definition.variable.instance
    return data


def _characteristics(chars: Characteristics) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if chars.unit:
        data["unit"] = chars.unit
    data["dataType"] = chars.data_type.value
    if chars.min_limit is not None:
        data["minLimit"] = _number(chars.min_limit)
    if chars.max_limit is not None:
        data["maxLimit"] = _number(chars.max_limit)
    if chars.values_list:
        data["valuesList"] = ",".join(chars.values_list)
    data["supportsMonitoring"] = chars.supports_monitoring
    return data


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _is_true(model: DeviceModel, definition: VariableDefinition) -> bool:
    attribute = definition.attribute("Actual")
    return attribute is not None and attribute.readable \
        and model.value(definition).strip().lower() == "true"


def _summary(model: DeviceModel, definitions: list[VariableDefinition]) -> list[VariableDefinition]:
    """ReportBaseEnumType SummaryInventory: AvailabilityState of the ChargingStation and of
    each EVSE, of each Connector where it differs from its EVSE's; and of components in an
    abnormal state their Problem, Tripped, Overload and Fallback variables that are true.
    (The agent has no monitoring, so there are no monitoring alerts to add.)"""
    def availability(d: VariableDefinition) -> bool:
        return d.variable.name.lower() == "availabilitystate" and not d.variable.instance

    evse_state = {d.component.evse: model.value(d) for d in definitions
                  if availability(d) and d.component.name.lower() == "evse"}
    chosen = []
    for d in definitions:
        tier = d.component.name.lower()
        if availability(d) and tier in ("chargingstation", "evse"):
            chosen.append(d)
        elif availability(d) and tier == "connector":
            if model.value(d) != evse_state.get(d.component.evse):
                chosen.append(d)
        elif d.variable.name.lower() in _PROBLEM_VARIABLES and _is_true(model, d):
            chosen.append(d)
    return chosen


def _selects(selector: Mapping[str, Any], definition: VariableDefinition) -> bool:
    """Whether a ComponentVariableType (wire format) selects this definition."""
    wanted = selector["component"]
    component = definition.component
    if wanted["name"].lower() != component.name.lower():
        return False
    instance = wanted.get("instance")
    if instance and instance.lower() != (component.instance or "").lower():
        return False
    evse = wanted.get("evse")
    if evse is not None:
        if evse["id"] != component.evse:
            return False
        connector = evse.get("connectorId")
        if connector is not None and connector != component.connector:
            return False
    variable = selector.get("variable")
    if variable:
        if variable["name"].lower() != definition.variable.name.lower():
            return False
        instance = variable.get("instance")
        if instance and instance.lower() != (definition.variable.instance or "").lower():
            return False
    return True


def _criteria_filter(model: DeviceModel, criteria: Sequence[str]) -> Callable[[Component], bool]:
    by_component: dict[Component, dict[str, VariableDefinition]] = {}
    for d in model.definitions():
        if not d.variable.instance:
            by_component.setdefault(d.component, {})[d.variable.name.lower()] = d

    def meets(component: Component) -> bool:
        variables = by_component.get(component, {})
        for criterion in criteria:
            found = variables.get(criterion.lower())
            if criterion.lower() == "problem":
                if found is not None and _is_true(model, found):
                    return True
            elif found is None or _is_true(model, found):
                return True
        return False

    cache: dict[Component, bool] = {}

    def cached(component: Component) -> bool:
        if component not in cache:
            cache[component] = meets(component)
        return cache[component]

    return cached
