"""The device model (OCPP 2.0.1 Part 1 §4, Part 2 appendices 3-4): components, variables,
attributes, their persistence, and the reports built from them.

types.py        values (Component, Variable, VariableDefinition, StationSpec, ...)
definitions.py  the standardized components/variables this station reports, as data
validation.py   checking a value against a variable's characteristics
device_model.py the run-time model, persisted in the store
report.py       reportData for NotifyReport (GetBaseReport, GetReport)
"""
