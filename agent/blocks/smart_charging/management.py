"""Charging profile management (block K): SetChargingProfile (K01), ClearChargingProfile
(K10), GetChargingProfiles with its ReportChargingProfiles (K09), and the TxProfile that
RequestStartTransaction may carry (F01/K05).

This block only keeps profiles: which limit applies when (the composite schedule) and
driving the hardware belong to others, who read `installed()` and listen on `on_change`.
The rules a profile must pass live in profiles.py; here is what the station does with the
answer.

- SmartChargingCtrlr.Available false: the three requests get the CALLERROR NotSupported
  (K01.FR.29 for SetChargingProfile; the same for the other two, which have nothing to
  work on). SmartChargingCtrlr.Enabled false: SetChargingProfile (and a remote start's
  profile) is Rejected with reasonCode NotEnabled (Appendix 5: "Feature is not enabled");
  ClearChargingProfile and GetChargingProfiles still work, so the CSMS can see and tidy
  what is stored while the feature is off.
- A profile is checked and stored in one store transaction, before the answer; a profile
  whose validTo has passed is removed then (it can never apply again, and it must not
  hold a place among SmartChargingCtrlr.Entries).
- ClearChargingProfile: with a chargingProfileId, that profile is cleared and the criteria
  are ignored (K10.FR.02 lets the CSMS send one or the other; the id is the precise one).
  Otherwise every profile matching all criteria given is cleared; no criteria at all
  matches every profile (the evseId description: "absence of this parameter means the
  clearing applies to all charging profiles that match the other criteria"). Profiles of
  purpose ChargingStationExternalConstraints are never cleared by the CSMS (they were set
  by someone else). Accepted when something was cleared, else Unknown.
- GetChargingProfiles: the criteria combine with AND; chargingProfileId and
  chargingLimitSource match any listed value. The answer is Accepted or NoProfiles; the
  profiles follow once the answer is on the wire, one ReportChargingProfilesRequest per
  EVSE and chargingLimitSource (both are single values in it), EVSE 0 first, at most
  REPORT_PAGE_PROFILES profiles each, tbc true on all but the last, requestId as asked
  (K09.FR.01).
- RequestStartTransaction's chargingProfile must be a TxProfile (else InvalidProfile); it
  passes the rules of a TxProfile for the EVSE and the transaction to come, checked once
  before the start (`check_remote_start`) and again when it is installed for the started
  transaction (`set_from_remote_start`). A transactionId in it is replaced by the real
  one: the CSMS cannot know it yet.
- SmartChargingCtrlr.Entries (instance ChargingProfiles) shows how many are installed.
- `on_change` listeners are called after every change that stuck (set, clear,
  transaction end, prune, expiry), synchronously: the store is already committed, so a
  lost connection cannot lose the notice. They must not block.
"""

from __future__ import annotations

import logging
from datetime import datetime
from itertools import groupby
from typing import Any, Callable, Collection, Iterable, Protocol

from agent.blocks.smart_charging.model import EXTERNAL, TX, ChargingProfile, Installed
from agent.blocks.smart_charging.profiles import (CSO, CTRLR, ENTRIES, Limits, ProfileStore,
                                                  Rejection, Stored, check_conflicts,
                                                  check_profile)
from agent.clock import Clock
from agent.model.types import Component
from agent.ocpp.session import CallFailed, OcppError, Payload, Reply, Router
from agent.store import Store

log = logging.getLogger(__name__)

# Profiles per ReportChargingProfilesRequest: an EVSE with more is reported in several
# (tbc). Ten profiles of 48 periods stay around 20 kB of JSON.
REPORT_PAGE_PROFILES = 10


class Link(Protocol):
    async def call(self, action: str, payload: Payload, *, before_accepted: bool = False,
                   wait: bool = True, timeout: float | None = None) -> Payload: ...


class ChargingProfiles:
    def __init__(self, router: Router | None, model: Any, store: Store, clock: Clock, *,
                 evse_ids: Collection[int], transaction_on: Callable[[int], str | None],
                 link: Link | None = None, dc_evse_ids: Collection[int] = ()) -> None:
        """`evse_ids`: the station's EVSEs (1..n). `transaction_on(evse_id)`: the id of the
        transaction running on that EVSE, or None. `link.call` sends ReportChargingProfiles;
        without a link (set `.link` later) GetChargingProfiles is answered but its reports
        cannot be sent, which is logged as an error."""
        self._model = model
        self._clock = clock
        self.link = link
        self._evse_ids = frozenset(evse_ids)
        self._dc_evse_ids = frozenset(dc_evse_ids)
        self._transaction_on = transaction_on
        self.store = ProfileStore(store)
        self.on_change: list[Callable[[], None]] = []
        if router is not None:
            router.register("SetChargingProfile", self._on_set)
            router.register("ClearChargingProfile", self._on_clear)
            router.register("GetChargingProfiles", self._on_get)
        self._report_entries()

    # -- what the rest of the agent calls -------------------------------------------------

    def installed(self, evse_id: int | None = None) -> list[Installed]:
        """The installed profiles, in order of installation: all, or those set on exactly
        this EVSE (0: the station-wide ones)."""
        return [s.installed for s in self.store.all(evse_id)]

    def external(self, profile_id: int) -> Stored | None:
        """The ChargingStationExternalConstraints profile of that id, if installed."""
        found = self.store.get(profile_id)
        return found if found is not None and found.profile.purpose == EXTERNAL else None

    def set_external(self, data: Payload, source: str) -> None:
        """Install (or replace) a ChargingStationExternalConstraints profile on the
        station (evse 0): a limit from outside OCPP, which the CSMS sees but cannot set."""
        assert data["chargingProfilePurpose"] == EXTERNAL
        self.store.put(0, data, source)
        self._changed()

    def remove_external(self, profile_id: int) -> bool:
        removed = bool(self.store.remove_external(profile_id))
        if removed:
            self._changed()
        return removed

    def transaction_ended(self, transaction_id: str) -> None:
        """A transaction ended: its TxProfiles go with it (K02.FR.05)."""
        if self.store.transaction_ended(transaction_id):
            log.info("TxProfiles of transaction %s removed: it ended", transaction_id)
            self._changed()

    def prune(self, running: Iterable[str]) -> None:
        """At start: remove TxProfiles whose transaction no longer runs (it ended while the
        agent was down) and profiles past their validTo."""
        gone = self.store.prune(running) + self.store.drop_expired(self._clock.now())
        if gone:
            log.info("%d charging profile(s) of ended transactions or past validTo removed",
                     gone)
            self._changed()

    def check_remote_start(self, evse_id: int, profile: Payload,
                           transaction_id: str | None = None) -> str | None:
        """Whether RequestStartTransaction's chargingProfile could be installed for the
        transaction it will start on this EVSE: None, or the reasonCode to reject with.
        Nothing is stored (the transaction does not exist yet)."""
        rejection = self._remote_start(evse_id, profile, transaction_id, store=False)
        return rejection.reason if rejection else None

    def set_from_remote_start(self, evse_id: int, profile: Payload,
                              transaction_id: str) -> str | None:
        """Install RequestStartTransaction's chargingProfile for the transaction it
        started: None, or the reasonCode it was refused with. Synchronous (no I/O but the
        store), so a transaction-start hook can call it."""
        rejection = self._remote_start(evse_id, profile, transaction_id, store=True)
        return rejection.reason if rejection else None

    # -- SetChargingProfile ---------------------------------------------------------------

    async def _on_set(self, request: Payload) -> Payload:
        self._require_available()
        evse_id, data = request["evseId"], request["chargingProfile"]
        rejection = self._install(evse_id, data, self._transaction_on)
        if rejection is not None:
            log.info("SetChargingProfile %s on EVSE %d rejected: %s (%s)", data.get("id"),
                     evse_id, rejection.reason, rejection.info)
            return {"status": "Rejected", "statusInfo": rejection.status_info()}
        log.info("SetChargingProfile %d (%s) installed on EVSE %d", data["id"],
                 data["chargingProfilePurpose"], evse_id)
        return {"status": "Accepted"}

    def _remote_start(self, evse_id: int, data: Payload, transaction_id: str | None, *,
                      store: bool) -> Rejection | None:
        # The CSMS cannot know the id of a transaction that does not exist yet, so the
        # station fills it in (one it sent is overwritten); before the start, any
        # placeholder stands for the coming transaction.
        if data.get("chargingProfilePurpose") != TX:
            return Rejection("InvalidProfile", "RequestStartTransaction takes a TxProfile only")
        tx_id = transaction_id or "(the transaction to start)"
        data = {**data, "transactionId": tx_id}
        rejection = self._install(evse_id, data, lambda e: tx_id if e == evse_id else None,
                                  store=store)
        if rejection is not None:
            log.info("RequestStartTransaction's chargingProfile %s refused: %s (%s)",
                     data.get("id"), rejection.reason, rejection.info)
        return rejection

    def _install(self, evse_id: int, data: Payload,
                 transaction_on: Callable[[int], str | None], *, store: bool = True
                 ) -> Rejection | None:
        if not self._enabled():
            return Rejection("NotEnabled", "SmartChargingCtrlr.Enabled is false")
        try:
            profile = ChargingProfile.from_ocpp(data)
        except (ValueError, KeyError, TypeError) as exc:
            return Rejection("InvalidProfile", f"unreadable chargingProfile: {exc}")
        now = self._clock.now()
        limits = Limits.from_model(self._model)
        rejection = check_profile(profile, evse_id, limits=limits, now=now,
                                  evse_ids=self._evse_ids, transaction_on=transaction_on,
                                  dc_evse_ids=self._dc_evse_ids)
        if rejection is not None or not store:
            return rejection or self._conflicts(profile, evse_id, now, limits)
        with self.store.transaction():   # check and write as one unit
            dropped = self.store.drop_expired(now)
            rejection = self._conflicts(profile, evse_id, now, limits)
            if rejection is None:
                self.store.put(evse_id, data, CSO)
        if rejection is None or dropped:
            self._changed()
        return rejection

    def _conflicts(self, profile: ChargingProfile, evse_id: int, now: datetime,
                   limits: Limits) -> Rejection | None:
        return check_conflicts(profile, evse_id, self.store.all(), now=now, limits=limits)

    # -- ClearChargingProfile -------------------------------------------------------------

    async def _on_clear(self, request: Payload) -> Payload:
        self._require_available()
        profile_id = request.get("chargingProfileId")
        if profile_id is not None:
            cleared = self.store.clear(profile_id=profile_id)
            what = f"profile {profile_id}"
        else:
            criteria = request.get("chargingProfileCriteria") or {}
            cleared = self.store.clear(evse_id=criteria.get("evseId"),
                                       purpose=criteria.get("chargingProfilePurpose"),
                                       stack_level=criteria.get("stackLevel"))
            what = "profiles matching " + (
                ", ".join(f"{k}={v}" for k, v in criteria.items() if k != "customData")
                or "anything")
        if not cleared:
            log.info("ClearChargingProfile: no %s to clear", what)
            return {"status": "Unknown",
                    "statusInfo": {"reasonCode": "NotFound",
                                   "additionalInfo": f"no {what} that the CSMS may clear"}}
        log.info("ClearChargingProfile: %d cleared (%s)", cleared, what)
        self._changed()
        return {"status": "Accepted"}

    # -- GetChargingProfiles --------------------------------------------------------------

    async def _on_get(self, request: Payload) -> Payload | Reply:
        self._require_available()
        found = [s for s in self.store.all(request.get("evseId"))
                 if matches(s, request["chargingProfile"])]
        if not found:
            return {"status": "NoProfiles"}
        pages = report_pages(request["requestId"], found)

        async def report() -> None:
            await self._send_reports(pages)
        return Reply({"status": "Accepted"}, report)

    async def _send_reports(self, pages: list[Payload]) -> None:
        if self.link is None:
            log.error("ReportChargingProfiles %d not sent: no link to the CSMS was given",
                      pages[0]["requestId"])
            return
        for number, page in enumerate(pages, 1):
            try:
                # Asked for by the CSMS, so sent whatever the registration state.
                await self.link.call("ReportChargingProfiles", page, before_accepted=True)
            except CallFailed as exc:
                log.warning("ReportChargingProfiles %d (%d of %d) not delivered: %s",
                            page["requestId"], number, len(pages), exc)
                return

    # -- helpers ----------------------------------------------------------------------------

    def _enabled(self) -> bool:
        try:
            return self._model.get_bool(CTRLR, "Enabled")
        except KeyError:
            return False

    def _require_available(self) -> None:
        try:
            available = self._model.get_bool(CTRLR, "Available")
        except KeyError:
            available = False
        if not available:
            raise OcppError("NotSupported", "smart charging is not available on this station")

    def _changed(self) -> None:
        self._report_entries()
        for listener in list(self.on_change):
            try:
                listener()
            except Exception:  # noqa: BLE001 - a listener's bug must not undo a change
                log.exception("charging profile listener failed")

    def _report_entries(self) -> None:
        """SmartChargingCtrlr.Entries: how many profiles are installed."""
        try:
            self._model.set_actual(Component(CTRLR), ENTRIES, str(self.store.count()))
        except (KeyError, ValueError):
            pass    # the variable is not in this device model


def matches(stored: Stored, criteria: Payload) -> bool:
    """Whether an installed profile meets GetChargingProfiles' chargingProfile criteria."""
    profile = stored.profile
    purpose = criteria.get("chargingProfilePurpose")
    if purpose is not None and profile.purpose != purpose:
        return False
    level = criteria.get("stackLevel")
    if level is not None and profile.stack_level != level:
        return False
    ids = criteria.get("chargingProfileId")
    if ids is not None and profile.id not in ids:
        return False
    sources = criteria.get("chargingLimitSource")
    return sources is None or stored.source in sources


def report_pages(request_id: int, found: list[Stored]) -> list[Payload]:
    """ReportChargingProfilesRequests for these profiles: per EVSE and source, in pages."""
    pages: list[Payload] = []
    ordered = sorted(found, key=lambda s: (s.evse_id, s.source, s.seq))
    for (evse_id, source), group in groupby(ordered, key=lambda s: (s.evse_id, s.source)):
        profiles = [s.data for s in group]
        for start in range(0, len(profiles), REPORT_PAGE_PROFILES):
            pages.append({"requestId": request_id, "chargingLimitSource": source,
                          "evseId": evse_id,
                          "chargingProfile": profiles[start:start + REPORT_PAGE_PROFILES]})
    for page in pages[:-1]:
        page["tbc"] = True
    return pages

