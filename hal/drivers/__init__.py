"""Backends by name, python-can style: the config says `driver = "modbus_meter"` and the
registry imports that module only then (a board without CAN never imports python-can).

Each backend class offers:
    check_config(settings) -> None        validate settings without touching hardware
                                          beyond what is cheap (e.g. the port exists);
                                          raises HalConfigError naming the setting
    from_config(settings, *, clock)       build the device (does not start it)
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from hal.api import Clock, Device, DriverSpec, HalConfigError

# role -> driver name -> "module:Class"
REGISTRY: dict[str, dict[str, str]] = {
    "meter": {"modbus_meter": "hal.drivers.modbus_meter:ModbusMeter"},
    "power": {"can_power": "hal.drivers.can_power:CanPowerModule"},
    "reader": {"serial_rfid": "hal.drivers.serial_rfid:SerialRfidReader",
               "pn532": "hal.drivers.pn532:Pn532Reader"},
    "contactor": {"gpio": "hal.drivers.gpio:GpioContactor"},
    "pilot": {"gpio": "hal.drivers.gpio:GpioPilot"},
    "lock": {"gpio": "hal.drivers.gpio:GpioLock"},
}

ROLES = tuple(REGISTRY)


def backend(role: str, driver: str) -> Any:
    """The backend class for a role and driver name; HalConfigError if there is none."""
    drivers = REGISTRY.get(role)
    if drivers is None:
        raise HalConfigError(role, f"unknown device role; known: {', '.join(ROLES)}")
    target = drivers.get(driver)
    if target is None:
        raise HalConfigError("driver", f"no {role} driver {driver!r}; known: {', '.join(drivers)}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HalConfigError("driver", f"{driver} needs {exc.name}, which is not installed") from None
    return getattr(module, class_name)


def check(spec: DriverSpec) -> None:
    backend(spec.role, spec.driver).check_config(spec.settings)


def create(spec: DriverSpec, clock: Clock) -> Device:
    return backend(spec.role, spec.driver).from_config(spec.settings, clock=clock)


def settings_without_driver(table: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in table.items() if k != "driver"}
