"""Metering (OCPP 2.0.1 functional block J): meter values from the HAL's meters.

- values.py   meter_value(): one MeterValueType from one MeterReading (pure). The wire
              format decisions (units, phases, rounding, omitted defaults) are there.
- timing.py   next_aligned() and friends: clock-aligned instants from midnight UTC (pure).
- sampler.py  TxMeterSampler: a transaction's Started / Updated / Ended values and
              when they are due (J02), for the transaction block (sans-I/O).
- register.py RegisterFloor: no energy register of a transaction goes backwards; what
              was held instead (docs/energy-register.md).
- register_events.py  RegisterProblems: that problem as NotifyEvent FiscalMetering.Problem.
- aligned.py  AlignedMeterValues: the clock-aligned task; MeterValues for idle EVSEs,
              Sample.Clock values to the transaction block for busy ones (J01).
- power.py    provide_evse_power(): EVSE.Power Actual in the device model.
"""

from agent.blocks.metering.aligned import AlignedMeterValues
from agent.blocks.metering.power import provide_evse_power
from agent.blocks.metering.sampler import MeteringSettings, TxMeterSampler
from agent.blocks.metering.timing import (LATE_LIMIT_S, latest_aligned, next_aligned,
                                          next_from_start)
from agent.blocks.metering.values import Extras, meter_value, rounded

__all__ = ["AlignedMeterValues", "Extras", "LATE_LIMIT_S", "MeteringSettings",
           "TxMeterSampler", "latest_aligned", "meter_value", "next_aligned",
           "next_from_start", "provide_evse_power", "rounded"]
