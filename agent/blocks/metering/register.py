"""A transaction's energy registers never go backwards (docs/energy-register.md). Pure.

A CSMS bills a transaction from its Energy.Active.Import.Register values: the
Transaction.End value minus the Transaction.Begin one, and it shows the Updated ones as
progress. A meter register only ever counts up, so a reading below a value already
reported for the same transaction is not the energy delivered: the meter was reset or
replaced, lost its memory, or the reading is bad. `RegisterFloor` holds, per register
measurand, the highest value put into any meterValue of the transaction so far (as sent
on the wire, after rounding) and:

- `hold()`: a register sampledValue below that floor carries the floor's value instead
  (the true register can be no lower: it never goes back), and each such hold is
  returned as a `HeldRegister` for the transaction block to report;
- `fill()`: the Transaction.End value gets the floor for a configured register the
  reading could not give (no reading at all: meter fault, bus without power, not polled
  yet after a restart), so the Ended event never lacks its end register, and never
  carries 0 Wh for a meter that could not be read.

Held values are lower bounds: the customer is never billed for energy no meter counted.
Which measurands: every "*.Register" one (energy registers, import and export).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from agent.clock import format_datetime

MeterValue = dict[str, Any]
# SampledValueType.measurand's default (schema): a value without one is this register.
DEFAULT_MEASURAND = "Energy.Active.Import.Register"

# techCode of the FiscalMetering Problem events (docs/energy-register.md).
BELOW_REPORTED = "RegisterBelowReported"      # the meter shows less than was reported
NOT_READ = "RegisterNotRead"                  # no reading for the end: the floor is sent
BELOW_PREVIOUS = "RegisterBelowPrevious"      # a start below the previous session's end


def is_register(measurand: str) -> bool:
    return measurand.endswith(".Register")


@dataclass(frozen=True)
class HeldRegister:
    """A register value the station did not send as read: `sent` went instead."""

    measurand: str
    sent: float
    read: float | None          # what the meter showed; None: no reading to be had
    context: str

    @property
    def tech_code(self) -> str:
        return NOT_READ if self.read is None else BELOW_REPORTED

    def describe(self) -> str:
        if self.read is None:
            return (f"{self.measurand} {self.context}: no reading; the {_wh(self.sent)} "
                    "already reported sent instead")
        return (f"{self.measurand} {self.context}: read {_wh(self.read)}, below the "
                f"{_wh(self.sent)} already reported; {_wh(self.sent)} sent instead")


class RegisterFloor:
    """The highest value of each register reported for one transaction."""

    def __init__(self, highest: dict[str, float] | None = None) -> None:
        self.highest: dict[str, float] = dict(highest or {})

    def hold(self, value: MeterValue | None) -> tuple[MeterValue | None, list[HeldRegister]]:
        """`value` with every register below the floor raised to it (a new dict; the
        input is not changed), the floor raised by the others, and what was held."""
        if value is None:
            return None, []
        held: list[HeldRegister] = []
        sampled = []
        for entry in value["sampledValue"]:
            measurand = entry.get("measurand", DEFAULT_MEASURAND)
            if not is_register(measurand):
                sampled.append(entry)
                continue
            key = _key(entry, measurand)
            floor = self.highest.get(key)
            if floor is not None and entry["value"] < floor:
                held.append(HeldRegister(measurand, floor, entry["value"],
                                         entry.get("context", "Sample.Periodic")))
                entry = {**entry, "value": floor}
            else:
                self.highest[key] = entry["value"]
            sampled.append(entry)
        return {**value, "sampledValue": sampled}, held

    def fill(self, value: MeterValue | None, measurands: Iterable[str], context: str,
             timestamp: datetime) -> tuple[MeterValue | None, list[HeldRegister]]:
        """`value` (None: no reading) completed with the floor of every register among
        `measurands` it lacks, stamped `timestamp` when it is made from the floor alone."""
        present = {_key(e, e.get("measurand", DEFAULT_MEASURAND))
                   for e in (value["sampledValue"] if value else [])}
        added: list[dict[str, Any]] = []
        held: list[HeldRegister] = []
        for measurand in dict.fromkeys(measurands):
            if not is_register(measurand) or measurand in present:
                continue
            floor = self.highest.get(measurand)
            if floor is None:
                continue   # never reported: there is nothing the CSMS could miss
            added.append({"value": floor, "context": context, "measurand": measurand})
            held.append(HeldRegister(measurand, floor, None, context))
        if not added:
            return value, []
        if value is None:
            return {"timestamp": format_datetime(timestamp), "sampledValue": added}, held
        return {**value, "sampledValue": value["sampledValue"] + added}, held

    def below(self, previous: dict[str, float]) -> list[str]:
        """Descriptions of the registers below `previous` (the last transaction's end on
        this EVSE): a start that is sent as read all the same, since a new or reset meter
        starts where it is and billing needs begin and end from the same meter."""
        return [f"{key} starts at {_wh(value)}, below the {_wh(previous[key])} the previous "
                "transaction ended with (meter replaced or reset?)"
                for key, value in self.highest.items()
                if key in previous and value < previous[key]]

    def to_json(self) -> dict[str, float]:
        return dict(self.highest)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> "RegisterFloor":
        return cls({str(k): v for k, v in (data or {}).items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})

    @classmethod
    def of(cls, values: Iterable[MeterValue | None]) -> "RegisterFloor":
        """The floor of values already reported (a transaction saved before floors were)."""
        floor = cls()
        for value in values:
            floor.hold(value)
        return floor


def _key(entry: dict[str, Any], measurand: str) -> str:
    phase = entry.get("phase")
    return f"{measurand}@{phase}" if phase else measurand


def _wh(value: float) -> str:
    return f"{value:g} Wh"
