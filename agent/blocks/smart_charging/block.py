"""Smart charging (OCPP 2.0.1 block K), the block the daemon wires: profile management
(management.py, profiles.py), GetCompositeSchedule (schedule.py), the limits applied
to the hardware (limits.py) and external limits reported to the CSMS (external.py).

The limits reach the power electronics through the Transactions block, which drives
pilot and contactor (agent/blocks/charging.py) and asks `current_a(evse_id)` each time
it does; this block tells it to drive again whenever a limit changes. Profiles are in
the store, so they keep working offline and across restarts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Mapping, Protocol

from hal.api import ExternalLimit

from agent.blocks.smart_charging.external import ExternalConstraints, Sender
from agent.blocks.smart_charging.limits import AppliedLimits
from agent.blocks.smart_charging.management import ChargingProfiles
from agent.blocks.smart_charging.schedule import EvseLimits, TxContext, composite_schedule
from agent.clock import Clock
from agent.model.device_model import DeviceModel
from agent.ocpp.session import Payload, Router
from agent.store import Store

log = logging.getLogger(__name__)


class Transactions(Protocol):
    """What the block needs of the Transactions block."""

    def transaction_id(self, evse_id: int) -> str | None: ...
    def started_at(self, evse_id: int) -> Any: ...
    def reapply(self) -> None: ...


class SmartCharging:
    def __init__(self, *, router: Router, link: Any, model: DeviceModel, store: Store,
                 clock: Clock, evses: Mapping[int, EvseLimits],
                 transactions: Transactions, outbox: Sender | None = None,
                 external_limit: ExternalLimit | None = None) -> None:
        """`outbox` carries NotifyChargingLimit/ClearedChargingLimit for the limits of
        `external_limit` (none without an outbox)."""
        self._model = model
        self._clock = clock
        self._evses = dict(evses)
        self._transactions = transactions
        self.profiles = ChargingProfiles(router, model, store, clock, evse_ids=list(evses),
                                         transaction_on=transactions.transaction_id,
                                         link=link,
                                         dc_evse_ids=[e for e, l in evses.items() if l.dc])
        self.profiles.prune(self._running())
        self.limits = AppliedLimits(clock=clock, evses=self._evses,
                                    profiles=self.profiles.installed,
                                    transaction=self._tx_context,
                                    on_change=lambda evse_ids: transactions.reapply())
        self.profiles.on_change.append(self.limits.changed)
        self.external = None if outbox is None else ExternalConstraints(
            model=model, profiles=self.profiles, outbox=outbox, clock=clock, store=store,
            source=external_limit)
        router.register("GetCompositeSchedule", self._on_get_composite_schedule)

    # -- what the daemon wires ----------------------------------------------------------------

    async def run(self) -> None:
        await self.limits.run()

    def close(self) -> None:
        if self.external is not None:
            self.external.close()

    def current_a(self, evse_id: int) -> float | None:
        return self.limits.current_a(evse_id)

    def power_w(self, evse_id: int) -> float | None:
        return self.limits.power_w(evse_id)

    def check_remote_start_profile(self, evse_id: int, profile: Payload) -> str | None:
        return self.profiles.check_remote_start(evse_id, profile)

    def transaction_started(self, evse_id: int, transaction_id: str,
                            profile: dict[str, Any] | None) -> None:
        if profile is not None:
            reason = self.profiles.set_from_remote_start(evse_id, profile, transaction_id)
            if reason is not None:
                log.warning("EVSE %d: RequestStartTransaction's charging profile not "
                            "installed: %s", evse_id, reason)
        self.limits.changed()

    def transaction_ended(self, evse_id: int) -> None:
        # K01: a TxProfile lives as long as its transaction.
        self.profiles.prune(self._running())
        self.limits.changed()

    # -- GetCompositeSchedule (K08) -------------------------------------------------------------

    async def _on_get_composite_schedule(self, request: Payload) -> Payload:
        evse_id = request["evseId"]
        if evse_id != 0 and evse_id not in self._evses:
            return _rejected("UnknownEvse", f"this station has no EVSE {evse_id}")
        duration = request["duration"]
        if duration < 0:
            # The schema leaves the sign open; a window that ends before it starts has
            # no schedule to give.
            return _rejected("ValueTooLow", f"duration {duration} s is negative")
        unit = request.get("chargingRateUnit", "A")
        if unit not in self._model.get_list("SmartChargingCtrlr", "RateUnit"):
            return _rejected("UnsupportedRateUnit", f"{unit} is not in RateUnit")
        # A pure function on a snapshot, so off the event loop: a year-long window over
        # many recurring profiles takes seconds, which must not hold up the station.
        composite = await asyncio.to_thread(
            composite_schedule, self.profiles.installed(), evse_id, self._clock.now(),
            duration, unit, dict(self._evses), self._transactions_now())
        return {"status": "Accepted", "schedule": composite.to_ocpp(evse_id)}

    # -- helpers ---------------------------------------------------------------------------------

    def _running(self) -> set[str]:
        return {tx for e in self._evses if (tx := self._transactions.transaction_id(e))}

    def _tx_context(self, evse_id: int) -> TxContext | None:
        tx_id = self._transactions.transaction_id(evse_id)
        started = self._transactions.started_at(evse_id)
        if tx_id is None or started is None:
            return None
        return TxContext(tx_id, started)

    def _transactions_now(self) -> dict[int, TxContext]:
        return {e: tx for e in self._evses if (tx := self._tx_context(e)) is not None}


def _rejected(reason: str, info: str) -> Payload:
    return {"status": "Rejected", "statusInfo": {"reasonCode": reason, "additionalInfo": info}}
