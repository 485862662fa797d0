"""One MeterValueType from one meter reading: the pure heart of metering (block J).

What goes on the wire, and why (OCPP 2.0.1 SampledValueType, Part 2 appendix 2, errata
2023-12; requirement ids in brackets):

- measurand is always written, context too. Both have schema defaults
  (Energy.Active.Import.Register, Sample.Periodic), but CSMSs commonly look for the
  measurand by name, and with permessage-deflate (context takeover) a repeated name
  costs a few bytes, not 40.
- unitOfMeasure is left out exactly where the schema's default applies: "Wh" for the
  Energy registers (UnitOfMeasureType.unit: default "Wh" for an Energy measurand;
  appendix 2: "Default value of unit is always Wh"). Everything else carries its unit
  (W, A, V, Hz, Percent): an absent unit means Wh, so power without {"unit": "W"} would
  read as energy. The multiplier is always 0 (its default), never written.
- location is left out when it is Outlet (the schema default, where the agent's meters
  sit); SoC is measured by the EV and says location EV.
- phase: totals (energy registers, power, frequency, offered values, SoC) carry none
  ("when phase is absent, the value is an overall value", PhaseEnumType). Current and
  voltage of a multi-phase EVSE are reported per phase, as the meter measures them
  (J01 §2.3 / J01.FR.14 as corrected by the errata: all phases for which a configured
  measurand is supported): Current.Import L1/L2/L3, Voltage L1-N/L2-N/L3-N (the HAL's
  voltages are line-to-neutral). A single-phase or DC EVSE has one current and one
  voltage: reported as the overall value, without a phase.
- Power.Active.Import is the power flowing to the EV; a negative reading (energy
  flowing back) is reported as Power.Active.Import 0 and Power.Active.Export |P|.
  Current.Export is not derivable from RMS currents and is never reported.
- A measurand the meter (or the caller) cannot supply is skipped silently: the
  *Measurands variables list what the station's meter type supports, and a reading may
  still lack a value (a meter without a frequency register, a phase that is not wired).
- Values are rounded to the meter's meaningful resolution (_RESOLUTION), which also
  removes float noise (230.10000000001 -> 230.1); whole numbers are written as JSON
  integers (12345, not 12345.0). NaN and infinities are not JSON numbers: skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from agent.clock import format_datetime
from agent.ocpp.v201.schema import ENUMS
from hal.api import MeterReading

# From the validation tables the daemon holds anyway: the typed messages module
# (agent.ocpp.v201.messages) is for type checkers and costs 2 MB when imported.
READING_CONTEXTS: frozenset[str] = frozenset(ENUMS["ReadingContextEnumType"])
LOCATIONS: frozenset[str] = frozenset(ENUMS["LocationEnumType"])

# Decimal places kept per unit. Energy to 1 Wh: the resolution of a MID meter's kWh
# register with three decimals and far below any meter's accuracy class over a session;
# power to 1 W; current to 0.1 A (the resolution of charging limits, one decimal);
# voltage to 0.1 V; frequency to 0.01 Hz (grid deviations are that small); SoC to 1 %
# (ISO 15118 and CHAdeMO report whole percent).
_RESOLUTION = {"Wh": 0, "W": 0, "A": 1, "V": 1, "Hz": 2, "Percent": 0}

_PHASE_CURRENT = ("L1", "L2", "L3")
_PHASE_VOLTAGE = ("L1-N", "L2-N", "L3-N")


@dataclass(frozen=True)
class Extras:
    """Inputs from outside the meter: what smart charging offers the EV, the EV's SoC."""

    offered_current_a: float | None = None
    offered_power_w: float | None = None
    soc_percent: float | None = None


def meter_value(reading: MeterReading, measurands: Iterable[str], context: str, *,
                phases: int, location: str = "Outlet", timestamp: datetime | None = None,
                offered_current_a: float | None = None, offered_power_w: float | None = None,
                soc_percent: float | None = None) -> dict[str, Any] | None:
    """A MeterValueType with one sampledValue per supplied measurand (and phase), in the
    order of `measurands`; None when none of them could be sampled.

    `phases`: the EVSE's supply phases (0 = DC, 1, 2 or 3); only that many entries of
    the reading's per-phase tuples are used. `timestamp` defaults to the reading's
    own; clock-aligned values pass the aligned instant. Raises ValueError for a context
    or location that OCPP does not define (a programming error, not input).
    """
    if context not in READING_CONTEXTS:
        raise ValueError(f"not a ReadingContextEnumType: {context!r}")
    if location not in LOCATIONS:
        raise ValueError(f"not a LocationEnumType: {location!r}")
    extras = Extras(offered_current_a, offered_power_w, soc_percent)
    sampled: list[dict[str, Any]] = []
    seen: set[str] = set()
    for measurand in measurands:
        if measurand in seen:
            continue
        seen.add(measurand)
        for value, unit, phase, where in _quantities(reading, measurand, phases, extras):
            entry = _sampled(measurand, value, unit, phase, where or location, context)
            if entry is not None:
                sampled.append(entry)
    if not sampled:
        return None
    return {"timestamp": format_datetime(timestamp or reading.timestamp),
            "sampledValue": sampled}


_Quantity = tuple[float | None, str, str | None, str | None]  # value, unit, phase, location


def _quantities(r: MeterReading, measurand: str, phases: int,
                extras: Extras) -> list[_Quantity]:
    power = _finite(r.power_w)
    if measurand == "Energy.Active.Import.Register":
        return [(r.energy_import_wh, "Wh", None, None)]
    if measurand == "Energy.Active.Export.Register":
        return [(r.energy_export_wh, "Wh", None, None)]
    if measurand == "Power.Active.Import":
        return [(None if power is None else max(power, 0.0), "W", None, None)]
    if measurand == "Power.Active.Export":
        return [(None if power is None else max(-power, 0.0), "W", None, None)]
    if measurand == "Current.Import":
        return _per_phase(r.current_a, "A", _PHASE_CURRENT, phases)
    if measurand == "Voltage":
        return _per_phase(r.voltage_v, "V", _PHASE_VOLTAGE, phases)
    if measurand == "Frequency":
        return [(r.frequency_hz, "Hz", None, None)]
    if measurand == "Current.Offered":
        return [(extras.offered_current_a, "A", None, None)]
    if measurand == "Power.Offered":
        return [(extras.offered_power_w, "W", None, None)]
    if measurand == "SoC":
        return [(extras.soc_percent, "Percent", None, "EV")]
    return []   # not something this station can measure: skipped silently


def _per_phase(values: tuple[float | None, ...], unit: str, names: tuple[str, ...],
               phases: int) -> list[_Quantity]:
    used = values[:max(1, min(phases, len(names)))]
    if len(used) == 1:
        return [(used[0], unit, None, None)]
    return [(v, unit, name, None) for v, name in zip(used, names)]


def _sampled(measurand: str, value: float | None, unit: str, phase: str | None,
             location: str, context: str) -> dict[str, Any] | None:
    number = rounded(value, unit)
    if number is None:
        return None
    entry: dict[str, Any] = {"value": number, "context": context, "measurand": measurand}
    if phase is not None:
        entry["phase"] = phase
    if location != "Outlet":
        entry["location"] = location
    if unit != "Wh":
        entry["unitOfMeasure"] = {"unit": unit}
    return entry


def _finite(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def rounded(value: float | None, unit: str) -> int | float | None:
    """`value` at the resolution kept for `unit`; an int when whole; None if not a number."""
    number = _finite(value)
    if number is None:
        return None
    number = round(number, _RESOLUTION.get(unit, 3))
    if number.is_integer():
        return int(number)   # also turns -0.0 into 0
    return number
