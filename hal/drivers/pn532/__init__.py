"""The `pn532` reader driver of the registry: an NXP PN532 on a UART (13.56 MHz, ISO/IEC
14443 type A cards). `frames` is the wire (sans-I/O), `reader` the driver."""

from hal.drivers.pn532.reader import Pn532Reader, Pn532Settings

__all__ = ["Pn532Reader", "Pn532Settings"]
