"""External charging limits (K11-K13): a limit from outside OCPP, as the CSMS sees it.

An energy manager or the grid operator caps the station through a hardware input
(hal.api.ExternalLimit). Here that input becomes a ChargingStationExternalConstraints
profile on the station (evse 0), so it caps every composite schedule and the applied
limits like any profile, shows in GetChargingProfiles, survives a restart, and cannot be
replaced or cleared by the CSMS. The CSMS is told:

- NotifyChargingLimit when a limit appears, or moves by more than
  SmartChargingCtrlr.LimitChangeSignificance percent of the limit last notified (K12),
  or its source or grid-criticality changes; the schedule goes with it when
  NotifyChargingLimitWithSchedules is true. Smaller moves still apply at once: the
  significance only spares messages, never the limit.
- ClearedChargingLimit when the input releases the limit (K13).
Both go through the outbox, so an offline station tells the CSMS once it is back.

SmartChargingCtrlr.ExternalControlSignalsEnabled false: the input is ignored (a limit in
force is released, as if the input had cleared it).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from hal.api import ExternalLimit, ExternalLimitSignal

from agent.blocks.smart_charging.management import ChargingProfiles
from agent.blocks.smart_charging.model import ABSOLUTE, EXTERNAL
from agent.clock import Clock, format_datetime
from agent.model.types import Component, Variable
from agent.ocpp.session import Payload
from agent.store import Store

log = logging.getLogger(__name__)

CTRLR = "SmartChargingCtrlr"
# The id of the profile standing for the input. CSMS-assigned ids are positive in
# practice; a negative one says "not yours" and cannot collide with them.
PROFILE_ID = -1
NOTIFIED = "smart_charging.external_notified"   # meta: the limit the CSMS last heard of


class Sender(Protocol):
    def enqueue(self, action: str, payload: Payload, **kwargs: Any) -> Any: ...


def significant(last: dict[str, Any] | None, signal: ExternalLimitSignal,
                percent: float) -> bool:
    """Whether the CSMS must hear of `signal`, having last heard of `last`."""
    if last is None or last["source"] != signal.source \
            or last["grid_critical"] != signal.grid_critical:
        return True
    before = float(last["limit_w"])
    assert signal.limit_w is not None
    if before == 0:
        return signal.limit_w != 0
    return abs(signal.limit_w - before) > before * percent / 100


class ExternalConstraints:
    def __init__(self, *, model: Any, profiles: ChargingProfiles, outbox: Sender,
                 clock: Clock, store: Store, source: ExternalLimit | None) -> None:
        self._model = model
        self._profiles = profiles
        self._outbox = outbox
        self._clock = clock
        self._store = store
        self._source = source
        if source is not None:
            source.subscribe(self.update)
        model.subscribe(self._on_write)
        self.update()

    def close(self) -> None:
        """The runtime ends (a Reset): the input lives on, this listener does not."""
        if self._source is not None:
            self._source.unsubscribe(self.update)
        self._model.unsubscribe(self._on_write)

    def update(self) -> None:
        """Bring the profile and the CSMS in line with the input as it is now."""
        signal = self._source.signal if self._source is not None else ExternalLimitSignal()
        if signal.limit_w is not None and not self._enabled():
            log.info("external limit of %.0f W ignored: ExternalControlSignalsEnabled is "
                     "false", signal.limit_w)
            signal = ExternalLimitSignal()
        installed = self._profiles.external(PROFILE_ID)
        if signal.limit_w is None:
            if installed is not None and self._profiles.remove_external(PROFILE_ID):
                log.info("external limit (%s) released", installed.source)
                self._store.set_meta(NOTIFIED, None)
                self._outbox.enqueue("ClearedChargingLimit",
                                     {"chargingLimitSource": installed.source})
            return
        limit = signal.limit_w
        if installed is None or installed.source != signal.source \
                or _limit_of(installed.data) != limit:
            log.info("external limit from %s: %.0f W%s", signal.source, limit,
                     " (grid critical)" if signal.grid_critical else "")
            self._profiles.set_external(self._profile(limit), signal.source)
        last = self._store.get_meta(NOTIFIED)
        if significant(json.loads(last) if last else None, signal, self._significance()):
            self._notify(signal)

    # -- helpers ------------------------------------------------------------------------------

    def _profile(self, limit_w: float) -> Payload:
        return {"id": PROFILE_ID, "stackLevel": 0, "chargingProfilePurpose": EXTERNAL,
                "chargingProfileKind": ABSOLUTE, "chargingSchedule": [{
                    "id": PROFILE_ID, "startSchedule": format_datetime(self._clock.now()),
                    "chargingRateUnit": "W",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit_w}]}]}

    def _notify(self, signal: ExternalLimitSignal) -> None:
        payload: Payload = {"chargingLimit": {"chargingLimitSource": signal.source,
                                              "isGridCritical": signal.grid_critical}}
        if self._flag("NotifyChargingLimitWithSchedules"):
            stored = self._profiles.external(PROFILE_ID)
            if stored is not None:
                payload["chargingSchedule"] = stored.data["chargingSchedule"]
        self._outbox.enqueue("NotifyChargingLimit", payload)
        self._store.set_meta(NOTIFIED, json.dumps({
            "limit_w": signal.limit_w, "source": signal.source,
            "grid_critical": signal.grid_critical}))

    def _on_write(self, component: Component, variable: Variable, attribute: str,
                  value: str) -> None:
        if component.name == CTRLR and variable.name == "ExternalControlSignalsEnabled":
            self.update()

    def _enabled(self) -> bool:
        return self._flag("ExternalControlSignalsEnabled")

    def _flag(self, name: str) -> bool:
        try:
            return bool(self._model.get_bool(CTRLR, name))
        except KeyError:
            return False

    def _significance(self) -> float:
        try:
            return self._model.get_float(CTRLR, "LimitChangeSignificance")
        except (KeyError, ValueError):
            return 0.0


def _limit_of(data: Payload) -> float:
    return float(data["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"])
