"""station-agent: the station side of OCPP 2.0.1 for Linux EV chargers."""

__version__ = "0.1.0"
