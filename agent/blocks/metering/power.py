"""EVSE.Power (Actual): the measured power, read from the meter when the CSMS asks."""

from __future__ import annotations

import logging
from typing import Callable, Mapping

from agent.blocks.metering.values import rounded
from agent.model.device_model import DeviceModel
from agent.model.types import Component, Variable
from hal.api import MeterReading

log = logging.getLogger(__name__)


def provide_evse_power(model: DeviceModel,
                       meters: Mapping[int, Callable[[], MeterReading | None]]) -> None:
    """Make GetVariables/reports of EVSE.Power Actual return the latest measured power
    (W, 0 when unknown): read at each request, so nothing is stored or polled."""
    for evse_id, read in meters.items():
        try:
            model.provide(Component("EVSE", evse=evse_id), Variable("Power"),
                          _source(evse_id, read))
        except KeyError:
            log.debug("EVSE %d has no Power variable; not provided", evse_id)


def _source(evse_id: int, read: Callable[[], MeterReading | None]) -> Callable[[], str]:
    def value() -> str:
        try:
            reading = read()
        except Exception:
            log.exception("meter of EVSE %d could not be read", evse_id)
            return "0"
        power = rounded(None if reading is None else reading.power_w, "W")
        return str(max(power, 0) if power is not None else 0)
    return value
