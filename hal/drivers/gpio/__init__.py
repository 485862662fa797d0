"""Contactor, control pilot and connector lock on the Linux GPIO character device.

The lines go through the libgpiod bindings (python3-libgpiod 1.6 on Debian 12, or gpiod
2.x), imported only when a device starts or its config is checked; the pilot's PWM goes
through sysfs. Each device requests all of its lines in one go under the consumer name
"station-agent", so `gpioinfo` shows who holds them.

    contactor.py  relay output + auxiliary-contact feedback: welded / stuck-open detection
    pilot.py      CP state from comparator inputs, offered current as sysfs PWM duty
    lock.py       connector lock motor or solenoid with feedback
    lines.py      the adapter over both gpiod APIs
    watch.py      input reads on edge events (or polling), on the injectable clock
"""

from hal.drivers.gpio.contactor import GpioContactor
from hal.drivers.gpio.lock import GpioLock
from hal.drivers.gpio.pilot import GpioPilot

__all__ = ["GpioContactor", "GpioLock", "GpioPilot"]
