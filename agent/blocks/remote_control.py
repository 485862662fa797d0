"""Remote control (block F): TriggerMessage (F06) and UnlockConnector (F05).

RequestStartTransaction / RequestStopTransaction (F01-F04) live with the transactions
they start and stop (transactions.py).

TriggerMessage (F06). This block knows no message by itself: the daemon registers, per
MessageTriggerEnumType value, a producer from the block that owns that message (Heartbeat
from provisioning, StatusNotification from availability, ...). A value nobody registered
is answered NotImplemented (the Sign*Certificate triggers until the security block
exists; PublishFirmwareStatusNotification, which is for local controllers). A producer
has one of three scopes:
- "station": the message is about the station; an evse in the request is ignored and the
  message still sent (F06.FR.02), whatever its id.
- "evse": MeterValues, TransactionEvent. An evse in the request must exist (else Rejected,
  UnknownEvse; id 0 is not an EVSE here); none means every EVSE, which the producer gets
  as None.
- "connector": StatusNotification, sent per connector. evse.id + connectorId: that
  connector; evse.id alone: every connector of that EVSE; no evse: every connector of the
  station. The errata (F06.FR.12, 2023-06) made rejecting the last two a MAY, since the
  CSMS must give a connectorId anyway (F06.FR.13); serving them costs nothing.
A producer may come with a check, asked before the answer: it names the reason (an
Appendix 5 reasonCode) when there is nothing to send, and the answer is Rejected (no
transaction for TransactionEvent, no reading for MeterValues, a BootNotification once
Accepted: F06.FR.17). Otherwise the answer is Accepted and the producer runs once the
answer is on the wire (F06.FR.04, via Reply.then). Producers send with
before_accepted=True: a CSMS may trigger messages from a Pending station (B02); a
Rejected one never gets here (the router gate answers SecurityError, B03.FR.08 errata).

UnlockConnector (F05), for a detachable cable held by the EVSE's ConnectorLock:
- an EVSE or connector the station does not have: UnknownConnector (F05.FR.03);
- an authorized transaction ongoing on that connector: OngoingAuthorizedTransaction, the
  lock is not touched (F05.FR.02). A transaction not (yet) authorized, e.g. started on
  EVConnected, does not hold the cable: its power path is open and the driver may
  unplug, which ends it (EVCommunicationLost);
- no lock on that EVSE: the station has a fixed cable that cannot be unlocked:
  UnlockFailed with reasonCode FixedCable (Appendix 5 names FixedCable for exactly this;
  UnknownConnector would deny a connector that exists);
- the power path closed or welded: UnlockFailed; a lock is never released under load;
- otherwise the lock is told to unlock: Unlocked when its feedback confirms it, else
  UnlockFailed (also when it does not finish within UNLOCK_TIMEOUT_S; the movement is
  left to finish on its own rather than cut off half way). With no cable plugged in the
  lock is still driven: an empty socket unlocks as well (TC_F_07). A lock that failed
  before is tried again: the request is the CSO's retry (TC_F_05's purpose); a cable
  left locked after the EV side was unplugged (UnlockOnEVSideDisconnect false) is
  released this way too.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal, Protocol

from hal.api import ContactorState

from agent.clock import Clock, wait_for
from agent.hardware import Hardware
from agent.ocpp.session import CallFailed, Payload, Reply, Router
from agent.station import Station

log = logging.getLogger(__name__)

Scope = Literal["station", "evse", "connector"]
# producer(), producer(evse_id or None) or producer(evse_id, connector_id) by scope; it may
# be a coroutine function (awaited) or a plain one (e.g. queueing in the outbox).
Producer = Callable[..., "Awaitable[None] | None"]
# check(evse_id or None): None when there is something to send, else the reasonCode of
# the Rejected answer, or (reasonCode, additionalInfo).
Check = Callable[[int | None], "str | tuple[str, str] | None"]

# A lock motor takes well under a second; this only bounds a driver that hangs.
UNLOCK_TIMEOUT_S = 10.0


class OngoingTransaction(Protocol):
    """What UnlockConnector needs to know of a transaction (transaction_state.Transaction)."""

    id: str
    connector_id: int
    authorized: bool


@dataclass(frozen=True)
class _Trigger:
    scope: Scope
    producer: Producer
    check: Check | None


class RemoteControl:
    def __init__(self, router: Router, station: Station, hardware: Hardware, *,
                 clock: Clock,
                 transaction_on: Callable[[int], OngoingTransaction | None] = lambda e: None,
                 unlock_timeout: float = UNLOCK_TIMEOUT_S) -> None:
        """`transaction_on(evse_id)` is the transaction ongoing on that EVSE, or None."""
        self._station = station
        self._hardware = hardware
        self._clock = clock
        self._transaction_on = transaction_on
        self._unlock_timeout = unlock_timeout
        self._triggers: dict[str, _Trigger] = {}
        router.register("TriggerMessage", self._on_trigger_message)
        router.register("UnlockConnector", self._on_unlock_connector)

    # -- the registry -------------------------------------------------------------------

    def register(self, requested_message: str, producer: Producer, *,
                 scope: Scope = "station", check: Check | None = None) -> None:
        """Serve TriggerMessage(requested_message) with `producer` (see the module doc
        for the scopes); a later registration replaces an earlier one (a firmware block
        taking over FirmwareStatusNotification from the Idle stand-in)."""
        if scope not in ("station", "evse", "connector"):
            raise ValueError(f"unknown scope {scope!r}")
        if scope == "connector" and check is not None:
            raise ValueError("a connector-scope message is always available: no check")
        self._triggers[requested_message] = _Trigger(scope, producer, check)

    @property
    def supported(self) -> list[str]:
        """The requestedMessage values served, in registration order."""
        return list(self._triggers)

    # -- TriggerMessage (F06) -----------------------------------------------------------

    async def _on_trigger_message(self, request: Payload) -> Payload | Reply:
        name = request["requestedMessage"]
        evse = request.get("evse")
        trigger = self._triggers.get(name)
        if trigger is None:
            log.info("TriggerMessage %s: NotImplemented", name)
            return {"status": "NotImplemented",
                    "statusInfo": {"reasonCode": "UnsupportedRequest",
                                   "additionalInfo": f"{name} cannot be triggered on this "
                                                     "station"}}
        if trigger.scope == "station":
            calls: list[tuple[int | None, ...]] = [()]
            refused = trigger.check(None) if trigger.check else None
        elif trigger.scope == "evse":
            evse_id = evse["id"] if evse is not None else None
            if evse_id is not None and evse_id not in self._station.evses:
                return _trigger_rejected(name, "UnknownEvse",
                                         f"this station has no EVSE {evse_id}")
            calls = [(evse_id,)]
            refused = trigger.check(evse_id) if trigger.check else None
        else:
            found = self._connectors(evse)
            if isinstance(found, dict):
                return found
            calls, refused = found, None
        if refused is not None:
            code, info = (refused, "") if isinstance(refused, str) else refused
            return _trigger_rejected(name, code, info)
        log.info("TriggerMessage %s%s: Accepted", name,
                 _where(evse) if trigger.scope != "station" else "")

        async def produce() -> None:
            for args in calls:
                try:
                    result = trigger.producer(*args)
                    if inspect.isawaitable(result):
                        await result
                except CallFailed as exc:
                    log.info("triggered %s not delivered: %s", name, exc)

        return Reply({"status": "Accepted"}, produce)

    def _connectors(self, evse: Payload | None) -> list[tuple[int | None, ...]] | Payload:
        """(evse id, connector id) of every connector the request names, or the answer
        refusing it."""
        if evse is None:
            return [(c.evse_id, c.id) for c in self._station.connectors()]
        evse_id, connector_id = evse["id"], evse.get("connectorId")
        if evse_id not in self._station.evses:
            return _trigger_rejected("StatusNotification", "UnknownEvse",
                                     f"this station has no EVSE {evse_id}")
        connectors = self._station.evses[evse_id].connectors
        if connector_id is not None and connector_id not in connectors:
            return _trigger_rejected("StatusNotification", "UnknownConnectorId",
                                     f"EVSE {evse_id} has no connector {connector_id}")
        return [(evse_id, c) for c in sorted(connectors)
                if connector_id is None or c == connector_id]

    # -- UnlockConnector (F05) ----------------------------------------------------------

    async def _on_unlock_connector(self, request: Payload) -> Payload:
        evse_id, connector_id = request["evseId"], request["connectorId"]
        answer = await self._unlock(evse_id, connector_id)
        log.info("UnlockConnector EVSE %d connector %d: %s%s", evse_id, connector_id,
                 answer["status"],
                 f" ({answer['statusInfo']['reasonCode']})" if "statusInfo" in answer else "")
        return answer

    async def _unlock(self, evse_id: int, connector_id: int) -> Payload:
        evse = self._station.evses.get(evse_id)
        if evse is None:
            return _unlock("UnknownConnector", "UnknownEvse",
                           f"this station has no EVSE {evse_id}")
        if connector_id not in evse.connectors:
            return _unlock("UnknownConnector", "UnknownConnectorId",
                           f"EVSE {evse_id} has no connector {connector_id}")
        tx = self._transaction_on(evse_id)
        if tx is not None and tx.authorized and tx.connector_id == connector_id:
            return _unlock("OngoingAuthorizedTransaction", "TxInProgress",
                           f"transaction {tx.id} is ongoing on this connector")
        hw = self._hardware.evses.get(evse_id)
        lock = hw.devices.lock if hw is not None else None
        if hw is None or lock is None:
            return _unlock("UnlockFailed", "FixedCable",
                           "this connector has a fixed cable: there is no lock to release")
        contactor = hw.devices.contactor
        if contactor is not None and contactor.state in (ContactorState.CLOSED,
                                                         ContactorState.WELDED):
            return _unlock("UnlockFailed", "Unspecified",
                           f"the power path is {contactor.state.value}: not unlocked under load")
        # Through the EVSE supervisor: it keeps the lock's problem (ConnectorPlugRetention-
        # Lock.Problem) and never lets the contactor close while the lock moves.
        move = asyncio.ensure_future(hw.unlock_connector())
        move.add_done_callback(_note_late_failure)
        try:
            # Shielded: on a timeout the answer goes out, the motor finishes its move.
            confirmed = await wait_for(self._clock, asyncio.shield(move), self._unlock_timeout)
        except TimeoutError:
            return _unlock("UnlockFailed", "Unspecified",
                           f"the lock did not finish within {self._unlock_timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - a driver error is a failed unlock
            return _unlock("UnlockFailed", "InternalError", f"lock driver error: {exc}"[:512])
        if confirmed:
            return {"status": "Unlocked"}
        return _unlock("UnlockFailed", "Unspecified",
                       lock.fault or hw.lock_problem
                       or "the lock's feedback did not confirm the unlock")


# -- producers for the daemon's wiring ----------------------------------------------------

class Sender(Protocol):
    async def call(self, action: str, payload: Payload, *, before_accepted: bool = False,
                   wait: bool = True, timeout: float | None = None) -> Payload: ...


def notification(link: Sender, action: str, payload: Payload) -> Producer:
    """A station-scope producer sending `action` with a fixed payload: the stand-in for a
    block not written yet, e.g. FirmwareStatusNotification {"status": "Idle"}, which F06
    allows while no firmware update runs (its requestId may then be left out)."""
    async def produce() -> None:
        await link.call(action, dict(payload), before_accepted=True, wait=False)
    return produce


def meter_values(link: Sender,
                 triggered: Callable[[int | None], list[Payload]]) -> Producer:
    """An evse-scope producer for MeterValues: sends every request `triggered(evse_id)`
    builds (AlignedMeterValues.triggered: context Trigger, AlignedDataCtrlr.Measurands)."""
    async def produce(evse_id: int | None) -> None:
        for payload in triggered(evse_id):
            await link.call("MeterValues", payload, before_accepted=True, wait=False)
    return produce


def _trigger_rejected(name: str, code: str, info: str) -> Payload:
    log.info("TriggerMessage %s: Rejected (%s%s)", name, code, f": {info}" if info else "")
    status_info: Payload = {"reasonCode": code}
    if info:
        status_info["additionalInfo"] = info[:512]
    return {"status": "Rejected", "statusInfo": status_info}


def _unlock(status: str, code: str, info: str) -> Payload:
    return {"status": status, "statusInfo": {"reasonCode": code, "additionalInfo": info[:512]}}


def _where(evse: Payload | None) -> str:
    if evse is None:
        return ""
    conn = evse.get("connectorId")
    return f" (EVSE {evse['id']}" + (f" connector {conn})" if conn is not None else ")")


def _note_late_failure(move: asyncio.Future[Any]) -> None:
    # The unlock may outlive its answer (timeout): its outcome is only logged then.
    if not move.cancelled() and move.exception() is not None:
        log.warning("connector lock: %s", move.exception())
