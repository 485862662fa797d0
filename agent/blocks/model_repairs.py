"""Reporting device-model values the station had to reset at start-up.

A stored value that the definitions do not accept (a bound tightened by a new version,
a damaged or hand-edited database) is replaced by its default when the device model
loads (agent/model/device_model.py). The CSMS set that value, or believes it is set, so
it is told: one NotifyEvent per start with an event per variable (trigger Delta, the
new actualValue, techCode InvalidStoredValue, the reason in techInfo), queued in the
outbox in the same store transaction that writes the defaults, so a kill in between
repeats both and the report is never lost.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.blocks.availability_events import NEXT_EVENT_ID, TECH_INFO_SIZE
from agent.clock import Clock, format_datetime
from agent.model.device_model import DeviceModel, Repair
from agent.model.report import component_data, variable_data
from agent.store import Store

log = logging.getLogger(__name__)

TECH_CODE = "InvalidStoredValue"


def report_repairs(model: DeviceModel, store: Store, outbox: Any, clock: Clock) -> int:
    """Queue the NotifyEvent for the model's repairs and settle them; how many."""
    repairs = model.repairs
    if not repairs:
        return 0
    now = format_datetime(clock.now())
    with store.transaction():
        first = int(store.get_meta(NEXT_EVENT_ID) or "1")
        data = [_event(first + i, now, model, repair) for i, repair in enumerate(repairs)]
        store.set_meta(NEXT_EVENT_ID, str(first + len(data)))
        outbox.enqueue("NotifyEvent", {"generatedAt": now, "seqNo": 0, "eventData": data})
        model.settle_repairs()
    return len(data)


def _event(event_id: int, now: str, model: DeviceModel, repair: Repair) -> dict[str, Any]:
    definition, attribute = repair.definition, repair.attribute
    # A write-only value (BasicAuthPassword) is never shown, not even its default.
    value = model.value(definition, attribute.type) if attribute.readable else ""
    info = f"{attribute.type} attribute: stored value not valid ({repair.reason}); " \
           f"reset to the default"
    return {"eventId": event_id, "timestamp": now, "trigger": "Delta",
            "actualValue": value[:2500], "techCode": TECH_CODE,
            "techInfo": info[:TECH_INFO_SIZE], "eventNotificationType": "HardWiredNotification",
            "component": component_data(definition.component),
            "variable": variable_data(definition)}
