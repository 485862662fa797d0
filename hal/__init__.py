"""Hardware abstraction: meters, power modules, RFID, relays. Knows nothing of OCPP."""
