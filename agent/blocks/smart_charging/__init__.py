"""Smart charging (OCPP 2.0.1 block K): profiles as values (model.py), their rules and
store (profiles.py), the CSMS requests (management.py), the composite schedule as a pure
function (schedule.py, recurrence.py), the limits applied to the hardware (limits.py) and
the block the daemon wires (block.py)."""
