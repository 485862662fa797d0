"""Values of the device model (OCPP 2.0.1 Part 1 §4, Part 2 appendices 3 and 4).

A component (ChargingStation, EVSE, Connector, a controller such as OCPPCommCtrlr) has
variables; a variable has up to four attributes (Actual, Target, MinSet, MaxSet), each
with its own mutability and value, and one set of characteristics (data type, unit,
limits, allowed values). These classes hold that structure as plain, frozen data so the
standardized model can be written down as a table (definitions.py) and checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class AttributeType(StrEnum):
    ACTUAL = "Actual"
    TARGET = "Target"
    MIN_SET = "MinSet"
    MAX_SET = "MaxSet"


class Mutability(StrEnum):
    READ_ONLY = "ReadOnly"
    WRITE_ONLY = "WriteOnly"
    READ_WRITE = "ReadWrite"


class DataType(StrEnum):
    STRING = "string"
    DECIMAL = "decimal"
    INTEGER = "integer"
    DATE_TIME = "dateTime"
    BOOLEAN = "boolean"
    OPTION_LIST = "OptionList"
    SEQUENCE_LIST = "SequenceList"
    MEMBER_LIST = "MemberList"


LIST_TYPES = frozenset({DataType.OPTION_LIST, DataType.SEQUENCE_LIST, DataType.MEMBER_LIST})


@dataclass(frozen=True)
class Component:
    """ComponentType: `evse` is the EVSE id, `connector` the connectorId on that EVSE.

    An EVSE is the component named "EVSE" with evse=<id>; a connector is the component
    named "Connector" with evse=<id>, connector=<connectorId> (errata 2023-12, Part 1 §4.1).
    """

    name: str
    instance: str | None = None
    evse: int | None = None
    connector: int | None = None

    def __str__(self) -> str:
        text = self.name + (f"[{self.instance}]" if self.instance else "")
        if self.evse is not None:
            text += f"@{self.evse}" + (f".{self.connector}" if self.connector is not None else "")
        return text


@dataclass(frozen=True)
class Variable:
    name: str
    instance: str | None = None

    def __str__(self) -> str:
        return self.name + (f"[{self.instance}]" if self.instance else "")


@dataclass(frozen=True)
class AttributeDefinition:
    """One attribute of a variable.

    `persistent`: the value survives a reboot (what VariableAttributeType.persistent says).
    `constant`: the station never changes it at run time; constants always come from the
    definitions (they are derived from the config and the software), never from the store.
    `default`: the value before the CSMS or the station sets one; "" means "not set".
    """

    type: AttributeType = AttributeType.ACTUAL
    mutability: Mutability = Mutability.READ_ONLY
    persistent: bool = False
    constant: bool = False
    default: str = ""

    @property
    def readable(self) -> bool:
        return self.mutability != Mutability.WRITE_ONLY

    @property
    def writable(self) -> bool:
        return self.mutability != Mutability.READ_ONLY

    @property
    def stored(self) -> bool:
        """Kept in the database: survives restarts and can differ from the default."""
        return self.persistent and not self.constant


@dataclass(frozen=True)
class Characteristics:
    """VariableCharacteristicsType.

    For string and list types `max_limit` is the most characters the (CSV) value may have
    (as the schema's description of maxLimit says); for numbers it bounds the value.
    """

    data_type: DataType
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None
    values_list: tuple[str, ...] = ()
    supports_monitoring: bool = False


@dataclass(frozen=True)
class VariableDefinition:
    component: Component
    variable: Variable
    attributes: tuple[AttributeDefinition, ...]
    characteristics: Characteristics
    # A write is stored at once but takes effect only at the next start: the answer to
    # SetVariables is RebootRequired and reads keep returning the old value until then.
    reboot_required: bool = False
    # Extra syntax a CSMS write must match (re.fullmatch), where the type alone is too
    # loose (e.g. passwordString). Not reported: the wire format has no field for it.
    pattern: str | None = None

    def attribute(self, type_: str) -> AttributeDefinition | None:
        for attribute in self.attributes:
            if attribute.type == type_:
                return attribute
        return None

    @property
    def writable(self) -> bool:
        return any(a.writable for a in self.attributes)

    def __str__(self) -> str:
        return f"{self.component}.{self.variable}"


# Optional functional blocks. A controller whose feature is absent reports
# Available=false and Enabled=false (read-only) and none of its other variables.
FEATURE_AUTH_CACHE = "AuthCache"
FEATURE_LOCAL_AUTH_LIST = "LocalAuthList"
FEATURE_RESERVATION = "Reservation"
FEATURE_SMART_CHARGING = "SmartCharging"
FEATURES = frozenset({FEATURE_AUTH_CACHE, FEATURE_LOCAL_AUTH_LIST, FEATURE_RESERVATION,
                      FEATURE_SMART_CHARGING})

# What a typical AC meter behind the agent measures (MeasurandEnumType names); the
# valuesList of the *Measurands variables. A station with another meter passes its own.
DEFAULT_MEASURANDS: tuple[str, ...] = (
    "Energy.Active.Import.Register", "Power.Active.Import", "Current.Import",
    "Current.Offered", "Power.Offered", "Voltage",
)


@dataclass(frozen=True)
class EvseSpec:
    id: int
    max_current_a: float
    phases: int                     # 1 or 3 for AC, 0 for DC
    nominal_voltage_v: float
    connectors: int = 1
    # ConnectorEnumType (plus cGBT, cChaoJi, OppCharge); None: sType2 for AC, cCCS2 for DC.
    connector_type: str | None = None

    @property
    def max_power_w(self) -> float:
        # DC (phases 0) still has one current path: count it once.
        return self.max_current_a * max(self.phases, 1) * self.nominal_voltage_v

    @property
    def effective_connector_type(self) -> str:
        if self.connector_type:
            return self.connector_type
        return "cCCS2" if self.phases == 0 else "sType2"


@dataclass(frozen=True)
class StationSpec:
    vendor: str
    model: str
    serial_number: str | None
    firmware_version: str
    evses: tuple[EvseSpec, ...]
    security_profile: int
    organization_name: str = ""
    features: frozenset[str] = field(default_factory=frozenset)
    identity: str | None = None     # SecurityCtrlr.Identity (the station id), if known
    measurands: tuple[str, ...] = DEFAULT_MEASURANDS


@dataclass(frozen=True)
class GetResult:
    """Outcome of reading one attribute (GetVariableResultType without the echo)."""

    status: str                     # GetVariableStatusEnumType
    value: str | None = None
    reason_code: str | None = None
    additional_info: str | None = None

    def status_info(self) -> dict[str, str] | None:
        return _status_info(self.reason_code, self.additional_info)


@dataclass(frozen=True)
class SetResult:
    """Outcome of a CSMS write (SetVariableResultType without the echo)."""

    status: str                     # SetVariableStatusEnumType
    reason_code: str | None = None
    additional_info: str | None = None

    def status_info(self) -> dict[str, str] | None:
        return _status_info(self.reason_code, self.additional_info)


def _status_info(reason_code: str | None, additional_info: str | None) -> dict[str, str] | None:
    if reason_code is None:
        return None
    info = {"reasonCode": reason_code}
    if additional_info:
        info["additionalInfo"] = additional_info[:512]
    return info
