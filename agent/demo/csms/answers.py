"""The CSMS's answers to station CALLs: test responders first, else the `@on` defaults.

`ocpp`'s ChargePoint keeps what it is good at, routing a station CALL to its `@on`
handler; the handlers here are the default answers, one per station-initiated action,
each valid against its response schema. What it is not good at is replaced: answers go
out verbatim (a test may answer with a deliberately broken frame) and requests are held
to the same strict oracle as `Csms.schema_errors`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
from typing import TYPE_CHECKING

from ocpp.charge_point import (
    _raise_key_error,
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.exceptions import InternalError, OCPPError, TypeConstraintViolationError
from ocpp.routing import on
from ocpp.v201 import ChargePoint as _OcppChargePoint
from ocpp.v201.enums import Action

from agent.demo.csms.oracle import _ocpp_error_for, _schema_error
from agent.demo.csms.values import LinkClosed, RawReply
from agent.demo.csms.wire import _CALLRESULT, _DESCRIPTION_MAX, _dumps

if TYPE_CHECKING:
    from agent.demo.csms.link import StationLink

LOGGER = logging.getLogger("agent.demo.csms")  # one logger for the whole peer


class _CpConnection:
    """What `ocpp`'s ChargePoint sees as its connection.

    recv() yields only what the ChargePoint should route (station CALLs, replies to its
    own `call()`); replies to `link.call()` and `send_raw()` never reach it, so they cannot
    disturb its call/response matching.
    """

    def __init__(self, link: StationLink):
        self._link = link
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()

    async def recv(self) -> str:
        text = await self.inbox.get()
        if text is None:
            raise LinkClosed(f"{self._link.station_id}: connection closed")
        return text

    async def send(self, text: str) -> None:
        await self._link._send(text, from_cp=True)


class _OcppLogger(logging.LoggerAdapter):
    """`ocpp` logs every CALLERROR it sends with a traceback; here those are answers the
    CSMS gives on purpose (the violation is in `schema_errors`), so: one line, DEBUG."""

    def exception(self, msg, *args, **kwargs):
        kwargs.pop("exc_info", None)
        self.debug(msg, *args, **kwargs)


class _CsmsChargePoint(_OcppChargePoint):
    """The CSMS's view of one station. `@on` handlers hold the default answers."""

    def __init__(self, link: StationLink, connection: _CpConnection):
        logger = _OcppLogger(logging.getLogger("agent.demo.csms.ocpp"), {})
        super().__init__(link.station_id, connection, response_timeout=30, logger=logger)
        self._link = link
        self._csms = link._csms

    async def _handle_call(self, msg):
        """Answer a station CALL: test responder first, else the `@on` default.

        Replaces ocpp's version so that answers go out verbatim (no snake_case round trip,
        no response validation that would turn a deliberately bad answer into a CALLERROR)
        and so that the request check uses the same strict oracle as `schema_errors`.
        """
        action = msg.action
        handlers = self.route_map.get(action, {})
        responder = self._link.responders.get(action) or self._csms.responders.get(action)
        try:
            if responder is None and "_on_action" not in handlers:
                _raise_key_error(action, self._ocpp_version)  # NotImplemented / NotSupported
            if not isinstance(msg.payload, dict):
                raise TypeConstraintViolationError(details={"cause": "payload is not an object"})
            err = _schema_error(action, "Request", msg.payload)
            if err is not None:
                raise _ocpp_error_for(err)
            try:
                if responder is not None:
                    result = responder(json.loads(json.dumps(msg.payload)))
                else:
                    result = handlers["_on_action"](**camel_to_snake_case(msg.payload))
                if inspect.isawaitable(result):
                    result = await result
            except OCPPError:
                raise
            except Exception as exc:
                LOGGER.exception("%s: responder for %s failed", self.id, action)
                raise InternalError(details={"cause": repr(exc)[:_DESCRIPTION_MAX]}) from exc
            if result is None:
                return None
            if self._csms.answer_delay > 0:
                await asyncio.sleep(self._csms.answer_delay)
            if isinstance(result, RawReply):
                await self._send(result.text)
            else:
                if dataclasses.is_dataclass(result) and not isinstance(result, type):
                    result = snake_to_camel_case(remove_nones(serialize_as_dict(result)))
                await self._send(_dumps([_CALLRESULT, msg.unique_id, result]))
            return result
        finally:
            self._link._station_call_settled(msg.unique_id)

    async def start(self):
        """ocpp's receive loop, made to survive a failing answer (a dead loop would leave
        the station unanswered on a link that looks open)."""
        while True:
            text = await self._connection.recv()  # raises LinkClosed at the end
            try:
                await self.route_message(text)
            except LinkClosed:
                return
            except Exception:
                LOGGER.exception("%s: handling %s failed", self.id, text[:200])

    # Default answers, one per station-initiated action. Keyword arguments are the
    # payload in snake_case, as `ocpp` passes them; the returned dict is camelCase.

    @on(Action.boot_notification)
    def _on_boot_notification(self, **kwargs):
        return {
            "currentTime": self._csms.now_text(),
            "interval": self._csms.heartbeat_interval,
            "status": self._csms.boot_status,
        }

    @on(Action.heartbeat)
    def _on_heartbeat(self, **kwargs):
        return {"currentTime": self._csms.now_text()}

    @on(Action.authorize)
    def _on_authorize(self, **kwargs):
        return {"idTokenInfo": {"status": "Accepted"}}

    @on(Action.transaction_event)
    def _on_transaction_event(self, id_token=None, **kwargs):
        return {"idTokenInfo": {"status": "Accepted"}} if id_token is not None else {}

    @on(Action.data_transfer)
    def _on_data_transfer(self, **kwargs):
        return {"status": "UnknownVendorId"}

    @on(Action.sign_certificate)
    def _on_sign_certificate(self, **kwargs):
        return {"status": "Accepted"}

    @on(Action.get_15118_ev_certificate)
    def _on_get_15118_ev_certificate(self, **kwargs):
        return {"status": "Failed", "exiResponse": ""}

    @on(Action.get_certificate_status)
    def _on_get_certificate_status(self, **kwargs):
        return {"status": "Failed"}

    @on(Action.notify_ev_charging_needs)
    def _on_notify_ev_charging_needs(self, **kwargs):
        return {"status": "Accepted"}

    @on(Action.notify_ev_charging_schedule)
    def _on_notify_ev_charging_schedule(self, **kwargs):
        return {"status": "Accepted"}

    @on(Action.status_notification)
    def _on_status_notification(self, **kwargs):
        return {}

    @on(Action.meter_values)
    def _on_meter_values(self, **kwargs):
        return {}

    @on(Action.notify_report)
    def _on_notify_report(self, **kwargs):
        return {}

    @on(Action.notify_event)
    def _on_notify_event(self, **kwargs):
        return {}

    @on(Action.security_event_notification)
    def _on_security_event_notification(self, **kwargs):
        return {}

    @on(Action.firmware_status_notification)
    def _on_firmware_status_notification(self, **kwargs):
        return {}

    @on(Action.log_status_notification)
    def _on_log_status_notification(self, **kwargs):
        return {}

    @on(Action.cleared_charging_limit)
    def _on_cleared_charging_limit(self, **kwargs):
        return {}

    @on(Action.notify_charging_limit)
    def _on_notify_charging_limit(self, **kwargs):
        return {}

    @on(Action.notify_customer_information)
    def _on_notify_customer_information(self, **kwargs):
        return {}

    @on(Action.notify_display_messages)
    def _on_notify_display_messages(self, **kwargs):
        return {}

    @on(Action.notify_monitoring_report)
    def _on_notify_monitoring_report(self, **kwargs):
        return {}

    @on(Action.publish_firmware_status_notification)
    def _on_publish_firmware_status_notification(self, **kwargs):
        return {}

    @on(Action.report_charging_profiles)
    def _on_report_charging_profiles(self, **kwargs):
        return {}

    @on(Action.reservation_status_update)
    def _on_reservation_status_update(self, **kwargs):
        return {}
