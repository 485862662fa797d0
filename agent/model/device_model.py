"""The device model at run time: values of the defined variables, persisted in the store.

What survives a restart: every attribute that is persistent and not constant (the
settings the CSMS can write, plus read-only values the station changes and must keep,
such as SecurityProfile). Constants always come from the definitions, which are built
from the config and the software, so a new firmware or config shows at once. On the
first start the persisted attributes are seeded with their defaults; from then on the
stored value wins (docs/architecture.md: "the persisted device model is the truth"). A variable new
in this version is seeded when first seen; a stored value the definitions do not accept
(a bound tightened by a new version, a database edited by hand or damaged) falls back to
the default: start-up never fails on what the database holds. The repair is logged and
reported to the CSMS as a NotifyEvent (agent/blocks/model_repairs.py).

Names of components, variables and instances match case-insensitively, as the schemas
say; answers use the spelling of the definitions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

from agent.model.types import (LIST_TYPES, AttributeDefinition, AttributeType, Component,
                               GetResult, SetResult, Variable, VariableDefinition)
from agent.model.validation import (INVALID_VALUE, Invalid, canonical, parse_bool,
                                    split_list)
from agent.store import Store

log = logging.getLogger(__name__)

# The schemas' caps on a written value (SetVariableData.attributeValue) and on a reported
# one (GetVariableResult.attributeValue, VariableAttribute.value).
SCHEMA_SET_VALUE_SIZE = 1000
SCHEMA_REPORT_VALUE_SIZE = 2500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS device_model_value (
    component          TEXT    NOT NULL COLLATE NOCASE,
    component_instance TEXT    NOT NULL COLLATE NOCASE DEFAULT '',
    evse_id            INTEGER NOT NULL DEFAULT 0,
    connector_id       INTEGER NOT NULL DEFAULT 0,
    variable           TEXT    NOT NULL COLLATE NOCASE,
    variable_instance  TEXT    NOT NULL COLLATE NOCASE DEFAULT '',
    attribute          TEXT    NOT NULL,
    value              TEXT    NOT NULL,
    PRIMARY KEY (component, component_instance, evse_id, connector_id,
                 variable, variable_instance, attribute)
) WITHOUT ROWID;
"""
_COLUMNS = ("component, component_instance, evse_id, connector_id, variable, "
            "variable_instance, attribute")
_UPSERT = (f"INSERT INTO device_model_value ({_COLUMNS}, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
           f"ON CONFLICT({_COLUMNS}) DO UPDATE SET value = excluded.value")

@dataclass(frozen=True)
class Repair:
    """A stored value the definitions do not accept, replaced by the default at start-up:
    logged, and reported to the CSMS (agent/blocks/model_repairs.py)."""

    definition: VariableDefinition
    attribute: AttributeDefinition
    reason: str


Listener = Callable[[Component, Variable, str, str], None]
_CKey = tuple[str, str | None, int | None, int | None]
_VKey = tuple[str, str | None]
_Key = tuple[_CKey, _VKey, str]
_DEVICE_DATA: _CKey = ("devicedatactrlr", None, None, None)


def _fold(text: str | None) -> str | None:
    return text.lower() if text else None


def _ckey(component: Component) -> _CKey:
    return (component.name.lower(), _fold(component.instance), component.evse, component.connector)


def _vkey(variable: Variable) -> _VKey:
    return (variable.name.lower(), _fold(variable.instance))


def _key(definition: VariableDefinition, attribute: str) -> _Key:
    return (_ckey(definition.component), _vkey(definition.variable), attribute)


def _row(definition: VariableDefinition, attribute: str) -> tuple[object, ...]:
    c, v = definition.component, definition.variable
    return (c.name, c.instance or "", c.evse or 0, c.connector or 0, v.name, v.instance or "",
            attribute)


def _attribute_name(attribute: str | None) -> str:
    return AttributeType.ACTUAL.value if attribute is None else str(attribute)


class DeviceModel:
    def __init__(self, store: Store, definitions: Iterable[VariableDefinition]) -> None:
        self._store = store
        self._definitions = list(definitions)
        self._by_key: dict[tuple[_CKey, _VKey], VariableDefinition] = {}
        self._components: set[_CKey] = set()
        self._effective: dict[_Key, str] = {}     # what reads return now
        self._persisted: dict[_Key, str] = {}     # what the next start will take
        self._providers: dict[_Key, Callable[[], str]] = {}
        self._listeners: list[Listener] = []
        self._repairs_by_key: dict[_Key, Repair] = {}
        for definition in self._definitions:
            self._index(definition)
        store.ensure_schema(_SCHEMA)
        self._load()

    # -- set-up -------------------------------------------------------------------------

    def _index(self, definition: VariableDefinition) -> None:
        c = definition.component
        if c.connector is not None and c.evse is None:
            raise ValueError(f"{definition}: a connector needs an EVSE id")
        if c.evse is not None and c.evse < 1 or c.connector is not None and c.connector < 1:
            raise ValueError(f"{definition}: EVSE and connector ids start at 1")
        key = (_ckey(c), _vkey(definition.variable))
        if key in self._by_key:
            raise ValueError(f"{definition} is defined twice")
        types = [a.type for a in definition.attributes]
        if not types or len(set(types)) != len(types):
            raise ValueError(f"{definition}: needs one or more distinct attributes")
        chars = definition.characteristics
        if chars.data_type in LIST_TYPES and not chars.values_list:
            raise ValueError(f"{definition}: a {chars.data_type} needs a valuesList")
        if len(",".join(chars.values_list)) > SCHEMA_SET_VALUE_SIZE:
            raise ValueError(f"{definition}: valuesList longer than {SCHEMA_SET_VALUE_SIZE}")
        for attribute in definition.attributes:
            if attribute.default:
                try:
                    canonical(definition, attribute.default, check_pattern=False)
                except Invalid as exc:
                    shown = repr(attribute.default) if attribute.readable else "(hidden)"
                    raise ValueError(f"{definition} {attribute.type}: default {shown} is "
                                     f"invalid: {exc.message}") from None
        self._by_key[key] = definition
        self._components.add(key[0])

    def _load(self) -> None:
        rows = self._store.query(f"SELECT {_COLUMNS}, value FROM device_model_value")
        stored: dict[_Key, object] = {}
        for comp, comp_inst, evse, conn, var, var_inst, attribute, value in rows:
            try:
                component = Component(str(comp), comp_inst or None, evse or None, conn or None)
                key = (_ckey(component), _vkey(Variable(str(var), var_inst or None)), attribute)
            except (TypeError, ValueError, AttributeError):
                continue    # a row no definition can match (written by hand?): ignored
            stored[key] = value
        with self._store.transaction() as db:
            for definition in self._definitions:
                for attribute in definition.attributes:
                    key = _key(definition, attribute.type)
                    value = attribute.default
                    if attribute.stored:
                        if key not in stored:
                            db.execute(_UPSERT, (*_row(definition, attribute.type), value))
                        else:
                            value = self._restored(definition, attribute, stored[key])
                            if value != stored[key] and key not in self._repairs_by_key:
                                db.execute(_UPSERT, (*_row(definition, attribute.type), value))
                        self._persisted[key] = value
                    self._effective[key] = value

    def _restored(self, definition: VariableDefinition, attribute: AttributeDefinition,
                  value: object) -> str:
        """The stored value in canonical form; the default (and a Repair noted) when the
        stored value is not one this variable can take, whatever the database holds."""
        if value == attribute.default:
            return attribute.default
        try:
            if not isinstance(value, str):
                raise Invalid(INVALID_VALUE, f"stored as {type(value).__name__}, not text")
            return canonical(definition, value)
        except Invalid as exc:
            reason = exc.message
        except Exception as exc:  # noqa: BLE001 - start-up must survive any stored value
            reason = f"unreadable ({type(exc).__name__})"
        readable = attribute.readable and isinstance(value, str)
        shown = repr(value[:40]) if readable else "(hidden)"
        log.warning("stored value %s of %s %s is not valid (%s): using the default %s",
                    shown, definition, attribute.type, reason,
                    repr(attribute.default) if attribute.readable else "(hidden)")
        repair = Repair(definition, attribute, reason)
        self._repairs_by_key[_key(definition, attribute.type)] = repair
        return attribute.default

    @property
    def repairs(self) -> list[Repair]:
        """Stored values found invalid at start-up and replaced by their defaults, not yet
        reported (see settle_repairs)."""
        return list(self._repairs_by_key.values())

    def settle_repairs(self) -> None:
        """Write the defaults of the repaired values to the store. Call it in the same
        store transaction that queues the report, so a kill in between repeats both."""
        for key, repair in self._repairs_by_key.items():
            self._store.execute(_UPSERT, (*_row(repair.definition, repair.attribute.type),
                                          self._persisted[key]))
        self._repairs_by_key.clear()

    # -- the CSMS's view: GetVariables / SetVariables -------------------------------------

    def _attribute(self, component: Component, variable: Variable,
                   attribute: str) -> tuple[VariableDefinition, AttributeDefinition] | str:
        """The definition and attribute addressed, or the status saying why there is none."""
        found = self._find(component, variable)
        if isinstance(found, str):
            return found
        attr = found.attribute(_attribute_name(attribute))
        if attr is None:
            return "NotSupportedAttributeType"
        return found, attr

    def get(self, component: Component, variable: Variable,
            attribute: str = "Actual") -> GetResult:
        found = self._attribute(component, variable, attribute)
        if isinstance(found, str):
            return GetResult(found)
        definition, attr = found
        if not attr.readable:
            return GetResult("Rejected", reason_code="WriteOnly",
                             additional_info=f"{definition} is write-only")
        # B06.FR.13: a supported attribute without a value reads as "".
        value = self._value(definition, attr.type)
        return GetResult("Accepted", value[:self.reporting_value_size()])

    def set(self, component: Component, variable: Variable, value: str,
            attribute: str = "Actual") -> SetResult:
        found = self._attribute(component, variable, attribute)
        if isinstance(found, str):
            return SetResult(found)
        definition, attr = found
        if not attr.writable:
            return SetResult("Rejected", "ReadOnly", f"{definition} is read-only")
        try:
            value = canonical(definition, value, size_limit=self.configuration_value_size())
        except Invalid as exc:
            info = exc.message
            if not attr.readable and value in info:
                info = f"not a valid value for {definition}"   # never echo a secret
            return SetResult("Rejected", exc.reason_code, info)
        key = _key(definition, attr.type)
        if attr.stored:
            self._store.execute(_UPSERT, (*_row(definition, attr.type), value))
            self._persisted[key] = value
        shown = value if attr.readable else "(hidden)"
        if definition.reboot_required and value != self._effective[key]:
            log.info("SetVariables %s %s = %s: takes effect after a reboot",
                     definition, attr.type, shown)
            status = "RebootRequired"
        else:
            log.info("SetVariables %s %s = %s", definition, attr.type, shown)
            self._effective[key] = value
            status = "Accepted"
        self._notify(definition, attr.type, value)
        return SetResult(status)

    def _find(self, component: Component, variable: Variable) -> VariableDefinition | str:
        ckey = _ckey(component)
        if ckey not in self._components:
            return "UnknownComponent"
        definition = self._by_key.get((ckey, _vkey(variable)))
        return "UnknownVariable" if definition is None else definition

    # -- the station's own view -----------------------------------------------------------

    def set_actual(self, component: Component, variable: Variable, value: str,
                   attribute: str = "Actual") -> None:
        """The station's own update of a value (e.g. AvailabilityState, HeartbeatInterval
        from BootNotificationResponse). Takes effect at once; persisted if the attribute is.

        Raises KeyError for an undefined variable/attribute, ValueError for a value the
        variable cannot take or an attribute declared constant.
        """
        definition = self.definition(component, variable)
        attr = definition.attribute(_attribute_name(attribute))
        if attr is None:
            raise KeyError(f"{definition} has no {attribute} attribute")
        if attr.constant:
            raise ValueError(f"{definition} {attr.type} is declared constant")
        if value != "":
            value = canonical(definition, value, check_pattern=False)
        key = _key(definition, attr.type)
        if attr.stored and self._persisted.get(key) != value:
            self._store.execute(_UPSERT, (*_row(definition, attr.type), value))
            self._persisted[key] = value
        self._effective[key] = value

    def provide(self, component: Component, variable: Variable, source: Callable[[], str],
                attribute: str = "Actual") -> None:
        """Take the value from `source()` at each read (e.g. ClockCtrlr.DateTime)."""
        definition = self.definition(component, variable)
        if definition.attribute(_attribute_name(attribute)) is None:
            raise KeyError(f"{definition} has no {attribute} attribute")
        self._providers[_key(definition, _attribute_name(attribute))] = source

    def subscribe(self, callback: Listener) -> None:
        """Call `callback(component, variable, attribute, value)` after each accepted CSMS
        write (also for RebootRequired, where `value` is the one the next start will use)."""
        self._listeners.append(callback)

    def unsubscribe(self, callback: Listener) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _notify(self, definition: VariableDefinition, attribute: str, value: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(definition.component, definition.variable, attribute, value)
            except Exception:
                # A listener's bug must not turn an accepted write into a failed request.
                log.exception("device model listener failed for %s", definition)

    # -- typed accessors for the agent (WriteOnly values included) ------------------------

    def get_str(self, component_name: str, variable_name: str, *, instance: str | None = None,
                evse: int | None = None, connector: int | None = None,
                attribute: str = "Actual") -> str:
        definition = self.definition(Component(component_name, evse=evse, connector=connector),
                                     Variable(variable_name, instance))
        attr = definition.attribute(_attribute_name(attribute))
        if attr is None:
            raise KeyError(f"{definition} has no {attribute} attribute")
        return self._value(definition, attr.type)

    def get_int(self, component_name: str, variable_name: str, *, instance: str | None = None,
                evse: int | None = None, connector: int | None = None,
                attribute: str = "Actual") -> int:
        return int(self.get_str(component_name, variable_name, instance=instance, evse=evse,
                                connector=connector, attribute=attribute))

    def get_float(self, component_name: str, variable_name: str, *,
                  instance: str | None = None, evse: int | None = None,
                  connector: int | None = None, attribute: str = "Actual") -> float:
        return float(self.get_str(component_name, variable_name, instance=instance, evse=evse,
                                  connector=connector, attribute=attribute))

    def get_bool(self, component_name: str, variable_name: str, *,
                 instance: str | None = None, evse: int | None = None,
                 connector: int | None = None, attribute: str = "Actual") -> bool:
        return parse_bool(self.get_str(component_name, variable_name, instance=instance,
                                       evse=evse, connector=connector, attribute=attribute))

    def get_list(self, component_name: str, variable_name: str, *,
                 instance: str | None = None, evse: int | None = None,
                 connector: int | None = None, attribute: str = "Actual") -> list[str]:
        return split_list(self.get_str(component_name, variable_name, instance=instance,
                                       evse=evse, connector=connector, attribute=attribute))

    # -- introspection (reports, diagnostics) ----------------------------------------------

    def definitions(self) -> list[VariableDefinition]:
        return list(self._definitions)

    def definition(self, component: Component, variable: Variable) -> VariableDefinition:
        """The definition of this component's variable; KeyError if there is none."""
        found = self._by_key.get((_ckey(component), _vkey(variable)))
        if found is None:
            raise KeyError(f"no variable {component}.{variable} in the device model")
        return found

    def value(self, definition: VariableDefinition, attribute: str = "Actual") -> str:
        """The current value of one attribute of a defined variable, WriteOnly included:
        for reports, which must leave WriteOnly values out themselves."""
        return self._value(definition, _attribute_name(attribute))

    def reboot_pending(self) -> list[tuple[VariableDefinition, str]]:
        """Written values that take effect only after the next start."""
        pending = []
        for definition in self._definitions:
            for attribute in definition.attributes:
                key = _key(definition, attribute.type)
                if key in self._persisted and self._persisted[key] != self._effective[key]:
                    pending.append((definition, attribute.type.value))
        return pending

    def configuration_value_size(self) -> int:
        """Most characters of a value the CSMS may write (SetVariableData.attributeValue)."""
        return self._limit(("ConfigurationValueSize", "ValueSize"), SCHEMA_SET_VALUE_SIZE)

    def reporting_value_size(self) -> int:
        """Most characters of a value the station reports; longer ones are truncated."""
        return self._limit(("ReportingValueSize", "ValueSize"), SCHEMA_REPORT_VALUE_SIZE)

    def _limit(self, names: tuple[str, ...], cap: int) -> int:
        limit = cap
        for name in names:
            definition = self._by_key.get((_DEVICE_DATA, (name.lower(), None)))
            if definition is not None:
                text = self._value(definition, AttributeType.ACTUAL.value)
                if text:
                    limit = min(limit, int(text))
        return limit

    def _value(self, definition: VariableDefinition, attribute: str) -> str:
        key = _key(definition, attribute)
        source = self._providers.get(key)
        if source is not None:
            return source()
        return self._effective[key]

