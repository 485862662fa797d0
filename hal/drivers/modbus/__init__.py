"""Modbus RTU over RS-485 for the `modbus_meter` driver (hal/drivers/modbus_meter.py).

Layered like websockets: `rtu` is the wire format with no I/O at all, `maps` says which
registers hold which quantity, `link` is the blocking pyserial side (one worker thread),
`settings` turns the config table into checked values. Only the stdlib and pyserial.
"""
