"""The `can_power` driver of the registry: InfyPower-style DC power modules on CAN.

The implementation lives in hal.drivers.infy (protocol, settings, output, module); this
is the name the config and the registry use.
"""

from hal.drivers.infy.module import CanPowerModule
from hal.drivers.infy.output import ModuleState, split_current
from hal.drivers.infy.settings import CanPowerSettings

__all__ = ["CanPowerModule", "CanPowerSettings", "ModuleState", "split_current"]
