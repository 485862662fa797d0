"""Device model access of block B: GetVariables, SetVariables, GetBaseReport, GetReport.

Reports are answered first and then delivered as NotifyReport pages (seqNo from 0, tbc on
all but the last), as B07/B08 require. Size limits come from DeviceDataCtrlr.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from agent.clock import Clock, format_datetime
from agent.model.device_model import DeviceModel
from agent.model.report import base_report, custom_report
from agent.model.types import Component, Variable
from agent.ocpp.connection import ConnectionManager
from agent.ocpp.session import CallFailed, OcppError, Payload, Reply, Router

log = logging.getLogger(__name__)

# reportData entries per NotifyReport: large enough to keep the message count (and
# per-message overhead) low, small enough that a page stays well under typical limits.
REPORT_PAGE_ITEMS = 40
# The schemas cap attributeValue at 2500 characters in GetVariablesResult.
MAX_GET_VALUE = 2500


def component_of(data: Payload) -> Component:
    evse = data.get("evse") or {}
    return Component(data["name"], data.get("instance"), evse.get("id"), evse.get("connectorId"))


def variable_of(data: Payload) -> Variable:
    return Variable(data["name"], data.get("instance"))


class Variables:
    def __init__(self, *, link: ConnectionManager, router: Router, model: DeviceModel,
                 clock: Clock) -> None:
        self._link = link
        self._model = model
        self._clock = clock
        # Work to do once a SetVariables answer that accepted (component, variable) is on
        # the wire, e.g. reconnecting with a new BasicAuthPassword (A01).
        self.after_set: dict[tuple[str, str], Callable[[], Awaitable[None]]] = {}
        limit = self._device_data
        router.register("GetVariables", self._on_get_variables,
                        max_bytes=lambda: limit("BytesPerMessage", "GetVariables"))
        router.register("SetVariables", self._on_set_variables,
                        max_bytes=lambda: limit("BytesPerMessage", "SetVariables"))
        router.register("GetBaseReport", self._on_get_base_report)
        router.register("GetReport", self._on_get_report,
                        max_bytes=lambda: limit("BytesPerMessage", "GetReport"))

    def _device_data(self, name: str, instance: str) -> int:
        return self._model.get_int("DeviceDataCtrlr", name, instance=instance)

    def _check_items(self, items: list[Any], instance: str) -> None:
        most = self._device_data("ItemsPerMessage", instance)
        if len(items) > most:
            raise OcppError("OccurrenceConstraintViolation",
                            f"{len(items)} items exceed ItemsPerMessage {instance} of {most}")

    async def _on_get_variables(self, request: Payload) -> Payload:
        items = request["getVariableData"]
        self._check_items(items, "GetVariables")
        size = min(MAX_GET_VALUE, self._model.get_int("DeviceDataCtrlr", "ReportingValueSize"))
        results = []
        for item in items:
            attribute = item.get("attributeType", "Actual")
            got = self._model.get(component_of(item["component"]), variable_of(item["variable"]),
                                  attribute)
            result: Payload = {"attributeStatus": got.status, "attributeType": attribute,
                               "component": item["component"], "variable": item["variable"]}
            if got.status == "Accepted" and got.value is not None:
                result["attributeValue"] = got.value[:size]
            info = got.status_info()
            if info:
                result["attributeStatusInfo"] = info
            results.append(result)
        return {"getVariableResult": results}

    async def _on_set_variables(self, request: Payload) -> Payload | Reply:
        items = request["setVariableData"]
        self._check_items(items, "SetVariables")
        results = []
        follow_ups: list[Callable[[], Awaitable[None]]] = []
        for item in items:
            attribute = item.get("attributeType", "Actual")
            done = self._model.set(component_of(item["component"]), variable_of(item["variable"]),
                                   item["attributeValue"], attribute)
            result: Payload = {"attributeType": attribute, "attributeStatus": done.status,
                               "component": item["component"], "variable": item["variable"]}
            info = done.status_info()
            if info:
                result["attributeStatusInfo"] = info
            results.append(result)
            follow_up = self.after_set.get((item["component"]["name"], item["variable"]["name"]))
            if done.status == "Accepted" and follow_up and follow_up not in follow_ups:
                follow_ups.append(follow_up)
        if not follow_ups:
            return {"setVariableResult": results}

        async def then() -> None:
            for follow_up in follow_ups:
                await follow_up()
        return Reply({"setVariableResult": results}, then)

    async def _on_get_base_report(self, request: Payload) -> Payload | Reply:
        data = base_report(self._model, request["reportBase"])
        return self._answer_report(request["requestId"], data)

    async def _on_get_report(self, request: Payload) -> Payload | Reply:
        filters = request.get("componentVariable")
        if filters is not None:
            self._check_items(filters, "GetReport")
        data = custom_report(self._model, request.get("componentCriteria"), filters)
        return self._answer_report(request["requestId"], data)

    def _answer_report(self, request_id: int, data: list[Payload]) -> Payload | Reply:
        if not data:
            return {"status": "EmptyResultSet"}
        return Reply({"status": "Accepted"}, lambda: self._send_report(request_id, data))

    async def _send_report(self, request_id: int, data: list[Payload]) -> None:
        generated = format_datetime(self._clock.now())
        pages = [data[i:i + REPORT_PAGE_ITEMS] for i in range(0, len(data), REPORT_PAGE_ITEMS)]
        for seq, page in enumerate(pages):
            payload: Payload = {"requestId": request_id, "generatedAt": generated,
                                "seqNo": seq, "reportData": page}
            if seq < len(pages) - 1:
                payload["tbc"] = True
            try:
                # Asked for by the CSMS, so allowed while Pending too (B02.FR.xx).
                await self._link.call("NotifyReport", payload, before_accepted=True)
            except CallFailed as exc:
                log.warning("NotifyReport %d page %d not delivered: %s", request_id, seq, exc)
                return

