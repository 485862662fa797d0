"""Charging profiles as values (OCPP 2.0.1 ChargingProfileType and its parts), read from
and written back to the JSON of SetChargingProfile / ReportChargingProfiles.

Times are timezone-aware UTC datetimes; limits are floats in the schedule's unit (A per
phase, or W for all phases together). Nothing here validates the rules of K01 (that is
profiles.py) or combines profiles (schedule.py): these are the shapes both share.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.clock import format_datetime, parse_datetime

# ChargingProfilePurposeEnumType
STATION_MAX = "ChargingStationMaxProfile"
TX_DEFAULT = "TxDefaultProfile"
TX = "TxProfile"
EXTERNAL = "ChargingStationExternalConstraints"
PURPOSES = (STATION_MAX, TX_DEFAULT, TX, EXTERNAL)

# ChargingProfileKindEnumType / RecurrencyKindEnumType
ABSOLUTE, RECURRING, RELATIVE = "Absolute", "Recurring", "Relative"
DAILY, WEEKLY = "Daily", "Weekly"

DEFAULT_PHASES = 3   # ChargingSchedulePeriodType.numberPhases: "when omitted, 3 assumed"


@dataclass(frozen=True)
class Period:
    start_period: int                 # seconds from the start of the schedule
    limit: float
    number_phases: int | None = None
    phase_to_use: int | None = None

    @classmethod
    def from_ocpp(cls, data: dict[str, Any]) -> "Period":
        return cls(int(data["startPeriod"]), float(data["limit"]),
                   data.get("numberPhases"), data.get("phaseToUse"))

    def to_ocpp(self) -> dict[str, Any]:
        out: dict[str, Any] = {"startPeriod": self.start_period, "limit": _number(self.limit)}
        if self.number_phases is not None:
            out["numberPhases"] = self.number_phases
        if self.phase_to_use is not None:
            out["phaseToUse"] = self.phase_to_use
        return out


@dataclass(frozen=True)
class Schedule:
    id: int
    rate_unit: str                    # "A" or "W"
    periods: tuple[Period, ...]       # sorted by start_period, the first at 0
    start_schedule: datetime | None = None
    duration: int | None = None       # seconds; None: the last period runs on
    min_charging_rate: float | None = None

    @classmethod
    def from_ocpp(cls, data: dict[str, Any]) -> "Schedule":
        start = data.get("startSchedule")
        minimum = data.get("minChargingRate")
        return cls(int(data["id"]), data["chargingRateUnit"],
                   tuple(Period.from_ocpp(p) for p in data["chargingSchedulePeriod"]),
                   parse_datetime(start, clamp=True) if start else None, data.get("duration"),
                   float(minimum) if minimum is not None else None)

    def to_ocpp(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "chargingRateUnit": self.rate_unit,
                               "chargingSchedulePeriod": [p.to_ocpp() for p in self.periods]}
        if self.start_schedule is not None:
            out["startSchedule"] = format_datetime(self.start_schedule)
        if self.duration is not None:
            out["duration"] = self.duration
        if self.min_charging_rate is not None:
            out["minChargingRate"] = _number(self.min_charging_rate)
        return out


@dataclass(frozen=True)
class ChargingProfile:
    id: int
    stack_level: int
    purpose: str
    kind: str
    schedules: tuple[Schedule, ...]   # 1..3; more than one only for ISO 15118, else one
    recurrency: str | None = None     # Daily / Weekly for Recurring
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str | None = None  # TxProfile only

    @classmethod
    def from_ocpp(cls, data: dict[str, Any]) -> "ChargingProfile":
        """From a schema-valid ChargingProfileType; ValueError on a bad date-time."""
        valid_from, valid_to = data.get("validFrom"), data.get("validTo")
        return cls(int(data["id"]), int(data["stackLevel"]), data["chargingProfilePurpose"],
                   data["chargingProfileKind"],
                   tuple(Schedule.from_ocpp(s) for s in data["chargingSchedule"]),
                   data.get("recurrencyKind"),
                   parse_datetime(valid_from, clamp=True) if valid_from else None,
                   parse_datetime(valid_to, clamp=True) if valid_to else None,
                   data.get("transactionId"))

    def to_ocpp(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "stackLevel": self.stack_level,
                               "chargingProfilePurpose": self.purpose,
                               "chargingProfileKind": self.kind,
                               "chargingSchedule": [s.to_ocpp() for s in self.schedules]}
        if self.recurrency is not None:
            out["recurrencyKind"] = self.recurrency
        if self.valid_from is not None:
            out["validFrom"] = format_datetime(self.valid_from)
        if self.valid_to is not None:
            out["validTo"] = format_datetime(self.valid_to)
        if self.transaction_id is not None:
            out["transactionId"] = self.transaction_id
        return out


@dataclass(frozen=True)
class Installed:
    """A profile as the station holds it: on which EVSE (0 = the whole station)."""
    evse_id: int
    profile: ChargingProfile


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
