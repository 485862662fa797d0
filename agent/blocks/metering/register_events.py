"""A transaction's register problem as NotifyEvent on FiscalMetering.Problem.

Appendix 3 (standardized components): FiscalMetering "provides energy transfer readings
that are the basis for billing", its variable Problem is a "metering fault (e.g. read
error)". When the station sends a held register (register.py) instead of what its
meter showed, or a transaction starts below the previous one's end, the CSMS learns it
here, linked to the transaction by EventDataType.transactionId:

- raised once per transaction, at the first problem: actualValue "true", trigger Delta,
  eventNotificationType HardWiredNotification (the station's own detection), techCode
  RegisterBelowReported / RegisterNotRead / RegisterBelowPrevious, techInfo what the
  meter showed and what was sent instead;
- cleared when that transaction ends (actualValue "false", cleared true): the values
  of later transactions are the meter's own again. A transaction ended at start-up
  after a power cut gets both in one message.

The caller commits this together with the TransactionEvent that carries the held value
(one store transaction), so the CSMS never sees one without the other, whatever moment
a power cut picks. eventIds share the station-wide counter of the EVSE Problem events.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.blocks.availability_events import NEXT_EVENT_ID
from agent.clock import Clock, format_datetime
from agent.model.types import Component, Variable
from agent.store import Store

log = logging.getLogger(__name__)

COMPONENT = "FiscalMetering"
TECH_INFO_SIZE = 500      # EventDataType.techInfo maxLength


class RegisterProblems:
    def __init__(self, *, store: Store, outbox: Any, model: Any, clock: Clock) -> None:
        self._store = store
        self._outbox = outbox
        self._model = model
        self._clock = clock

    def report(self, evse_id: int, transaction_id: str, *,
               raise_: tuple[str, str] | None = None, clear: str | None = None) -> None:
        """Queue the events: `raise_` = (techCode, techInfo) of a new problem, `clear`
        the techCode of a problem that ends. Call inside the store transaction of the
        event it belongs to."""
        if raise_ is None and clear is None:
            return
        now = format_datetime(self._clock.now())
        with self._store.transaction():
            first = int(self._store.get_meta(NEXT_EVENT_ID) or "1")
            data = []
            if raise_ is not None:
                code, info = raise_
                data.append(self._event(first + len(data), now, evse_id, transaction_id,
                                        "true", code, info))
                log.warning("EVSE %d, transaction %s: %s", evse_id, transaction_id, info)
            if clear is not None:
                data.append(self._event(first + len(data), now, evse_id, transaction_id,
                                        "false", clear, "the transaction ended", cleared=True))
            self._store.set_meta(NEXT_EVENT_ID, str(first + len(data)))
            self._outbox.enqueue("NotifyEvent", {"generatedAt": now, "seqNo": 0,
                                                 "eventData": data})
        self._set_problem(evse_id, "false" if clear is not None else "true")

    @staticmethod
    def _event(event_id: int, now: str, evse_id: int, transaction_id: str, actual: str,
               code: str, info: str, cleared: bool = False) -> dict[str, Any]:
        event: dict[str, Any] = {
            "eventId": event_id, "timestamp": now, "trigger": "Delta", "actualValue": actual,
            "techCode": code, "techInfo": info[:TECH_INFO_SIZE],
            "transactionId": transaction_id, "eventNotificationType": "HardWiredNotification",
            "component": {"name": COMPONENT, "evse": {"id": evse_id}},
            "variable": {"name": "Problem"}}
        if cleared:
            event["cleared"] = True
        return event

    def _set_problem(self, evse_id: int, value: str) -> None:
        # For GetVariables, where the device model declares FiscalMetering.
        try:
            self._model.set_actual(Component(COMPONENT, evse=evse_id), Variable("Problem"), value)
        except (KeyError, ValueError):
            log.debug("no %s.Problem for EVSE %d in the device model", COMPONENT, evse_id)
