"""DataTransfer (block P, use case P01 "Data Transfer to the Charging Station"): the CSMS's
vendor-specific messages, and the hook for a charger maker's own extensions.

A DataTransferRequest is answered with a DataTransferResponse, never a CALLERROR:
- no handler for its vendorId: UnknownVendorId (P01.FR.05);
- handlers for the vendorId, none for its messageId: UnknownMessageId (P01.FR.06);
- else the handler's answer: status Accepted or Rejected, optional data (any JSON value).
A handler that fails (raises, times out, or answers something that is not a
DataTransferResponse) gets Rejected, and the error is logged: vendor code must not take
the daemon down or make it send a CALLERROR it does not mean.

The hook (docs/data_transfer.md): a vendor extension is a Python package that declares an
entry point in the group `station_agent.data_transfer`, naming a function that receives
the registry and registers its handlers:

    # pyproject.toml of the extension
    [project.entry-points."station_agent.data_transfer"]
    acme = "acme_station.ocpp:register"

    # acme_station/ocpp.py
    def register(registry):
        registry.register("com.acme", "SetLed", set_led)         # one messageId
        registry.register("com.acme", None, everything_else)     # any other messageId

    async def set_led(request):      # request: the DataTransferRequest payload
        return {"status": "Accepted", "data": {"led": request.get("data")}}

Handlers may be plain or async functions. Extensions are loaded at the first
DataTransferRequest (importlib.metadata costs memory that a station without any should not
pay at start), once per run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Callable, Union

from agent.ocpp.session import Payload, Router

log = logging.getLogger(__name__)

ACTION = "DataTransfer"
ENTRY_POINT_GROUP = "station_agent.data_transfer"
STATUSES = frozenset({"Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId"})
HANDLER_TIMEOUT_S = 10.0
ADDITIONAL_INFO_MAX = 512

Handler = Callable[[Payload], Union[Payload, Awaitable[Payload]]]
Loader = Callable[["DataTransferRegistry"], None]


class DataTransferRegistry:
    """vendorId -> messageId (None: any other) -> handler. vendorId is compared exactly
    (a CiString in the schema, but in practice a reversed domain name; exact matching
    keeps two vendors apart), messageId too."""

    def __init__(self) -> None:
        self._handlers: dict[str, dict[str | None, Handler]] = {}

    def register(self, vendor_id: str, message_id: str | None, handler: Handler) -> None:
        if not vendor_id or len(vendor_id) > 255:
            raise ValueError("vendorId must be 1 to 255 characters")
        if message_id is not None and (not message_id or len(message_id) > 50):
            raise ValueError("messageId must be 1 to 50 characters, or None for any")
        self._handlers.setdefault(vendor_id, {})[message_id] = handler

    def vendors(self) -> list[str]:
        return sorted(self._handlers)

    def find(self, vendor_id: str, message_id: str | None) -> Handler | str:
        """The handler, or the status that says why there is none."""
        by_message = self._handlers.get(vendor_id)
        if by_message is None:
            return "UnknownVendorId"
        handler = by_message.get(message_id) if message_id is not None else None
        handler = handler or by_message.get(None)
        return handler if handler is not None else "UnknownMessageId"


def installed_extensions() -> list[Loader]:
    """The loaders declared by installed packages in ENTRY_POINT_GROUP."""
    from importlib.metadata import entry_points
    loaders = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaders.append(point.load())
        except Exception:  # noqa: BLE001 - one broken extension must not stop the rest
            log.exception("DataTransfer extension %s (%s) cannot be loaded", point.name,
                          point.value)
    return loaders


class DataTransfer:
    def __init__(self, router: Router, *,
                 extensions: Callable[[], list[Loader]] = installed_extensions,
                 handler_timeout: float = HANDLER_TIMEOUT_S) -> None:
        self.registry = DataTransferRegistry()
        self._extensions = extensions
        self._loaded = False
        self._timeout = handler_timeout
        router.register(ACTION, self._on_data_transfer)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for loader in self._extensions():
            try:
                loader(self.registry)
            except Exception:  # noqa: BLE001
                log.exception("DataTransfer extension %r failed to register", loader)
        if self.registry.vendors():
            log.info("DataTransfer handlers for: %s", ", ".join(self.registry.vendors()))

    async def _on_data_transfer(self, request: Payload) -> Payload:
        self._load()
        vendor_id, message_id = request["vendorId"], request.get("messageId")
        found = self.registry.find(vendor_id, message_id)
        if isinstance(found, str):
            log.info("DataTransfer %s/%s: %s", vendor_id, message_id, found)
            return {"status": found}
        try:
            answer: Any = found(request)
            if isinstance(answer, Awaitable):
                answer = await asyncio.wait_for(answer, self._timeout)
        except Exception as exc:  # noqa: BLE001 - vendor code: see the module docstring
            log.exception("DataTransfer %s/%s: the handler failed", vendor_id, message_id)
            return _rejected(f"handler error: {type(exc).__name__}")
        problem = _invalid(answer)
        if problem is not None:
            log.error("DataTransfer %s/%s: the handler answered %.200r, not a valid "
                      "DataTransferResponse: %s", vendor_id, message_id, answer, problem)
            return _rejected("handler answered no valid DataTransferResponse")
        return answer


def _invalid(answer: Any) -> str | None:
    """Why `answer` is no valid DataTransferResponse (the schema's word), or None."""
    if not isinstance(answer, dict) or answer.get("status") not in STATUSES:
        return "no status of DataTransferStatusEnumType"
    from agent.ocpp.validation import PayloadError, validate
    try:
        validate(ACTION, "response", answer)
    except PayloadError as exc:
        return f"{exc.code}: {exc.description}"
    return None


def _rejected(info: str) -> Payload:
    return {"status": "Rejected", "statusInfo": {
        "reasonCode": "InternalError", "additionalInfo": info[:ADDITIONAL_INFO_MAX]}}
