"""Hardware faults of an EVSE as NotifyEvent on its Problem variable (block G with N).

A fault of an EVSE's hardware (a meter that stops answering, a pilot at -12 V, a driver
that could not start) makes its connectors Faulted, which StatusNotification reports; the
CSMS also learns *what* failed from a NotifyEvent on component EVSE, variable Problem:

- one event per fault, keyed by device role (the techCode, e.g. "meter"), with the
  fault text as techInfo; trigger Delta, eventNotificationType HardWiredNotification
  (the station's own built-in detection, not a monitor the CSMS set);
- actualValue is what EVSE.Problem is after the change ("true" while any fault remains),
  cleared = true on the event that reports a fault's end;
- the events of one change go in one NotifyEventRequest (seqNo 0, no tbc: a complete
  message, not a part of a report).

A problem of the connector lock (techCode "lock": a lock that did not lock or unlock, or
a fault of its driver) is reported on the component the specification names for it,
ConnectorPlugRetentionLock (evse, connectorId 1), variable Problem (appendix 3,
"Locking Failed"; G05 Lock Failure, as TC_G_20 checks: trigger Delta, actualValue
"true"), not on EVSE; its actualValue is the lock's own Problem. EVSE.Problem and
ChargingStation.Problem still say the EVSE has a problem.

Events go through the durable outbox, committed together with the record of which faults
the CSMS was told of: after a restart (or `kill -9`) nothing is lost and nothing is
repeated; a fault that ended while the agent was down is reported cleared at start, one
that began is reported then. A fault whose text changes while it lasts is the same fault:
not reported again.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping

from agent.clock import Clock, format_datetime
from agent.model.types import Component, Variable
from agent.ocpp.session import Payload
from agent.store import Store

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS evse_problem (
    evse_id INTEGER NOT NULL,
    tech_code TEXT NOT NULL,     -- device role: the fault the CSMS was told of
    tech_info TEXT NOT NULL,     -- its text as reported (repeated when it clears)
    PRIMARY KEY (evse_id, tech_code)
) WITHOUT ROWID;
"""

# eventId is unique for the life of the station, not only of this process.
NEXT_EVENT_ID = "notify_event.next_id"

# The role whose problems have a component of their own (appendix 3, 3.2.17).
LOCK_ROLE = "lock"
LOCK_COMPONENT = "ConnectorPlugRetentionLock"

# EventDataType limits (NotifyEventRequest schema).
TECH_CODE_SIZE = 50
TECH_INFO_SIZE = 500


class ProblemEvents:
    def __init__(self, *, store: Store, outbox: Any, model: Any, clock: Clock,
                 evse_ids: Iterable[int]) -> None:
        self._store = store
        self._outbox = outbox
        self._model = model
        self._clock = clock
        store.ensure_schema(SCHEMA)
        # What the CSMS was told (or will be: it is queued) of each EVSE's faults.
        self._told: dict[int, dict[str, str]] = {evse_id: {} for evse_id in evse_ids}
        for evse_id, code, info in store.query(
                "SELECT evse_id, tech_code, tech_info FROM evse_problem"):
            self._told.setdefault(evse_id, {})[code] = info
        self._problem: dict[int, bool] = {}
        for evse_id, told in self._told.items():
            self._set_problem(evse_id, bool(told))
            if LOCK_ROLE in told:
                set_actual_value(model, _lock_component(evse_id), "Problem", "true")

    def told(self, evse_id: int) -> dict[str, str]:
        """The faults of this EVSE the CSMS has been (or is being) told of."""
        return dict(self._told.get(evse_id, {}))

    def hardware_changed(self, evse_id: int, faults: Mapping[str, str]) -> None:
        """The EVSE's faults now, by device role (HardwareBridge.faults). Cheap when
        nothing changed: it is called on every hardware change, meter readings included."""
        current = {code[:TECH_CODE_SIZE]: text for code, text in faults.items()}
        told = self._told.setdefault(evse_id, {})
        raised = [code for code in current if code not in told]
        ended = [code for code in told if code not in current]
        self._set_problem(evse_id, bool(current))
        if raised or ended:
            set_actual_value(self._model, _lock_component(evse_id), "Problem",
                             "true" if LOCK_ROLE in current else "false")
        if not raised and not ended:
            return
        now = format_datetime(self._clock.now())
        problem = "true" if current else "false"
        with self._store.transaction() as db:
            first = int(self._store.get_meta(NEXT_EVENT_ID) or "1")
            ids = iter(range(first, first + len(raised) + len(ended)))
            data = []
            for code in raised:
                info = current[code][:TECH_INFO_SIZE]
                value = "true" if code == LOCK_ROLE else problem
                data.append(self._event(next(ids), now, evse_id, value, code, info))
                db.execute("INSERT OR REPLACE INTO evse_problem (evse_id, tech_code, tech_info) "
                           "VALUES (?, ?, ?)", (evse_id, code, info))
            for code in ended:
                value = "false" if code == LOCK_ROLE else problem
                data.append(self._event(next(ids), now, evse_id, value, code, told[code],
                                        cleared=True))
                db.execute("DELETE FROM evse_problem WHERE evse_id = ? AND tech_code = ?",
                           (evse_id, code))
            self._store.set_meta(NEXT_EVENT_ID, str(first + len(data)))
            self._outbox.enqueue("NotifyEvent", {"generatedAt": now, "seqNo": 0,
                                                 "eventData": data})
        for code in raised:
            told[code] = current[code][:TECH_INFO_SIZE]
            log.warning("EVSE %d: %s fault: %s", evse_id, code, current[code])
        for code in ended:
            told.pop(code)
            log.info("EVSE %d: %s fault cleared", evse_id, code)

    @staticmethod
    def _event(event_id: int, now: str, evse_id: int, problem: str, code: str, info: str,
               cleared: bool = False) -> Payload:
        event: Payload = {
            "eventId": event_id, "timestamp": now, "trigger": "Delta",
            "actualValue": problem, "techCode": code, "techInfo": info,
            "eventNotificationType": "HardWiredNotification",
            "component": {"name": LOCK_COMPONENT, "evse": {"id": evse_id, "connectorId": 1}}
            if code == LOCK_ROLE else {"name": "EVSE", "evse": {"id": evse_id}},
            "variable": {"name": "Problem"}}
        if cleared:
            event["cleared"] = True
        return event

    def _set_problem(self, evse_id: int, problem: bool) -> None:
        if self._problem.get(evse_id) == problem:
            return
        self._problem[evse_id] = problem
        set_actual_value(self._model, Component("EVSE", evse=evse_id), "Problem",
                    "true" if problem else "false")
        # The station has a problem while any of its EVSEs has one.
        set_actual_value(self._model, Component("ChargingStation"), "Problem",
                    "true" if any(self._problem.values()) else "false")


def _lock_component(evse_id: int) -> Component:
    return Component(LOCK_COMPONENT, evse=evse_id, connector=1)


def set_actual_value(model: Any, component: Component, variable: str, value: str) -> None:
    try:
        model.set_actual(component, Variable(variable), value)
    except KeyError:
        log.debug("no %s.%s in the device model", component, variable)
