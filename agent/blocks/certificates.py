"""Certificate management: the station's own certificate (A02, A03) and the roots the CSMS
installs (M03, M04, M05), over a CertificateStore (agent/pki).

Rules, with the requirement ids of OCPP 2.0.1 edition 2 and the 2023-12 errata:
- InstallCertificate (M05): one PEM certificate, a self-signed CA valid now, of one of
  the four InstallCertificateUseEnumType types. Garbage, a leaf, a sub-CA or an expired
  root: Rejected, reasonCode InvalidCertificate (Appendix 5), the why in additionalInfo;
  nothing stored. The same root again: Accepted, nothing changes. The store full or the
  disk failing: Failed (OutOfStorage / InternalError).
- GetInstalledCertificateIds (M03): the roots of the requested types, hash data in
  SHA256; none: NotFound. The CSMSRootCertificates are every root the station trusts
  for its CSMS connection: those installed over OCPP and those of the config's
  csms.ca_file (TC_M_07 on a fresh station wants Accepted, and a CSMS must be able to see
  what the station trusts). The station's own certificate is not listed: the enum has no
  value for a CSMS-client certificate (V2GCertificateChain is ISO 15118's, which this
  station does not do); hence SecurityCtrlr.CertificateEntries counts the roots.
- DeleteCertificate (M04): matched on the hash data in the algorithm the CSMS used
  (M04.FR.07 errata: the one we report), identifierStrings compared case-insensitively;
  no match: NotFound (M04.FR.04). A root of the config's ca_file is withdrawn (recorded
  in the store, the config file untouched: agent/pki/withdrawn.py) and trusted no more.
  The station's certificate: Failed (M04.FR.06; test case TC_M_23 accepts Failed or
  NotFound). The last CSMSRootCertificate trusted, installed or configured, while on
  security profile 2 or 3: Failed, since the station could not verify the CSMS after
  its next reconnect; the CSMS installs the successor first (so Part 5's AQ-1, "can the
  last CSMSRootCertificate be removed?", is answered: on profile 1 only).
- SignCertificate / CertificateSigned (A02 by TriggerMessage SignChargingStationCertificate,
  A03 on the station's initiative: renewal before expiry). A signing round makes a new
  key pair, sends its CSR, and waits CertSigningWaitMinimum seconds for a
  CertificateSigned; without one it sends the CSR again and doubles the wait, at most
  CertSigningRepeatTimes times (A02.FR.17/18, A03 likewise). The repeats reuse the
  round's key with a freshly signed CSR ("another CSR"), so a certificate the CA issues
  late for an earlier attempt still fits. A SignCertificateResponse Rejected ends the
  round (nothing to wait for; TC_A_15), as does a CertificateSigned for it, accepted or
  refused (a V2GCertificate or a re-delivery of the certificate in use does not).
- CertificateSigned: the chain must fit the pending key, name the station id as CN, be
  valid now and lead to a trusted CSMS root; else Rejected and the security event
  InvalidChargingStationCertificate (critical). Accepted switches the station's pair
  atomically; the new certificate is used from the next connection on, of which
  `on_new_station_certificate` tells the daemon once the answer is on the wire.
  V2GCertificate: Rejected (no ISO 15118 here). A missing certificateType means "both
  connections", of which this station has one: taken as ChargingStationCertificate.
- Any change of the installed roots or of the station's key pair is the security event
  ReconfigurationOfSecurityParameters.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from agent.clock import Clock, wait_for
from agent.model.device_model import DeviceModel
from agent.model.types import Component, Variable
from agent.ocpp.session import CallFailed, Payload, Reply, Router

if TYPE_CHECKING:   # the store itself may come lazily (agent/pki/lazy.py)
    from agent.pki.certstore import CertificateStore

log = logging.getLogger(__name__)

CTRLR = "SecurityCtrlr"
STATION_CERTIFICATE = "ChargingStationCertificate"
RENEW_DAYS = 30.0
CHECK_INTERVAL_S = 86400.0   # the renewal check: once a day is plenty for a 30-day margin
TECH_INFO_MAX = 255          # SecurityEventNotificationRequest.techInfo


class Link(Protocol):
    """What the block needs of the connection (ConnectionManager)."""

    async def call(self, action: str, payload: Payload, *, before_accepted: bool = False,
                   wait: bool = True, timeout: float | None = None) -> Payload: ...


class Certificates:
    def __init__(self, router: Router, link: Link, model: DeviceModel, clock: Clock,
                 certstore: CertificateStore, station_id: str, *,
                 security_event: Callable[[str, str | None], None],
                 on_new_station_certificate: Callable[[], None],
                 security_profile: Callable[[], int],
                 trusted_roots: Callable[[], str] = lambda: "",
                 configured_roots: Callable[[], Sequence[str]] = tuple,
                 station_certificate_expiry: Callable[[], datetime | None] | None = None,
                 key_type: str = "ec", renew_days: float = RENEW_DAYS) -> None:
        """`trusted_roots()`: PEM of CSMS roots trusted besides the installed ones (the
        config's csms.ca_file), for checking a CertificateSigned chain.
        `configured_roots()`: the CSMS roots trusted outside the store (the config's
        csms.ca_file, PEM blocks, withdrawn ones left out: StationTrust.configured_roots),
        listed, counted and deletable like the installed ones.
        `station_certificate_expiry()`: when the certificate in use expires, for renewal;
        by default the store's (the daemon may include the config's cert_file)."""
        self._link = link
        self._model = model
        self._clock = clock
        self._store = certstore
        self._station_id = station_id
        self._security_event = security_event
        self._on_new_certificate = on_new_station_certificate
        self._security_profile = security_profile
        self._trusted_roots = trusted_roots
        self._configured_roots = configured_roots
        self._expiry = station_certificate_expiry or certstore.station_certificate_expiry
        self._key_type = key_type
        self._renew = timedelta(days=renew_days)
        self._round: asyncio.Task[bool] | None = None
        self._answered: asyncio.Event | None = None   # set by CertificateSigned in a round
        self._signed_ok = False                        # ... and whether it was accepted
        router.register("InstallCertificate", self._on_install_certificate)
        router.register("GetInstalledCertificateIds", self._on_get_installed_certificate_ids)
        router.register("DeleteCertificate", self._on_delete_certificate)
        router.register("CertificateSigned", self._on_certificate_signed)
        try:
            model.provide(Component(CTRLR), Variable("CertificateEntries"),
                          lambda: str(certstore.count(configured_roots())))
        except KeyError:
            log.debug("no SecurityCtrlr.CertificateEntries in the device model")

    # -- M05, M03, M04 ------------------------------------------------------------------

    async def _on_install_certificate(self, request: Payload) -> Payload:
        use = request["certificateType"]
        outcome = self._store.install(use, request["certificate"], self._clock.now())
        log.info("InstallCertificate %s: %s%s", use, outcome.status,
                 f" ({outcome.info})" if outcome.info else "")
        if outcome.changed:
            self._event("ReconfigurationOfSecurityParameters", f"{use} installed: {outcome.info}")
        return outcome.payload()

    async def _on_get_installed_certificate_ids(self, request: Payload) -> Payload:
        chains = self._store.installed(request.get("certificateType"),
                                       configured=self._configured_roots())
        if not chains:
            return {"status": "NotFound"}
        return {"status": "Accepted", "certificateHashDataChain": chains}

    async def _on_delete_certificate(self, request: Payload) -> Payload:
        # The store counts the installed and the configured roots together: the last one
        # trusted is kept while the profile needs one, whichever its source.
        outcome = self._store.delete(request["certificateHashData"],
                                     keep_last_csms_root=self._security_profile() >= 2,
                                     configured=self._configured_roots())
        log.info("DeleteCertificate: %s%s", outcome.status,
                 f" ({outcome.info})" if outcome.info else "")
        if outcome.changed:
            self._event("ReconfigurationOfSecurityParameters", f"deleted: {outcome.info}")
        return outcome.payload()

    # -- A02/A03: CertificateSigned ------------------------------------------------------

    async def _on_certificate_signed(self, request: Payload) -> Payload | Reply:
        use = request.get("certificateType", STATION_CERTIFICATE)
        if use != STATION_CERTIFICATE:
            log.info("CertificateSigned %s: Rejected (no ISO 15118 on this station)", use)
            return {"status": "Rejected",
                    "statusInfo": {"reasonCode": "UnsupportedRequest",
                                   "additionalInfo": f"{use}: this station does not "
                                                     "implement ISO 15118"}}
        outcome = self._store.accept_signed_chain(
            request["certificateChain"], self._clock.now(), station_id=self._station_id,
            trusted_pem=self._trusted_roots())
        if self._answered is not None and (outcome.changed or not outcome.ok):
            # The round is answered; a re-delivery of the certificate in use is not
            # the answer to the CSR under way.
            self._signed_ok = outcome.ok
            self._answered.set()
        log.info("CertificateSigned: %s%s", outcome.status,
                 f" ({outcome.info})" if outcome.info else "")
        if not outcome.ok:
            if outcome.reason_code == "InvalidCertificate":
                self._event("InvalidChargingStationCertificate", outcome.info)
            return outcome.payload()
        if not outcome.changed:
            return {"status": "Accepted"}
        self._event("ReconfigurationOfSecurityParameters",
                    f"new charging station certificate: {outcome.info}")

        async def then() -> None:
            self._on_new_certificate()

        return Reply({"status": "Accepted"}, then)

    # -- A02/A03: SignCertificate ----------------------------------------------------------

    async def request_signing(self, *, triggered: bool = False) -> bool:
        """One signing round: a new key, SignCertificateRequests with the waits and repeats
        of CertSigningWaitMinimum / CertSigningRepeatTimes. True once a CertificateSigned
        for it was accepted. `triggered`: asked for by the CSMS (TriggerMessage), so sent
        even before BootNotification is Accepted. Start it with start_round(), which keeps
        one round at a time (two would fight over the pending key)."""
        answered = self._answered = asyncio.Event()
        self._signed_ok = False
        wait = float(max(1, self._model.get_int(CTRLR, "CertSigningWaitMinimum")))
        repeats = max(0, self._model.get_int(CTRLR, "CertSigningRepeatTimes"))
        organization = self._model.get_str(CTRLR, "OrganizationName")
        try:
            for attempt in range(repeats + 1):
                try:
                    csr = (self._store.new_key_and_csr(self._station_id, organization,
                                                       key_type=self._key_type)
                           if attempt == 0 else
                           self._store.csr_for_pending(self._station_id, organization))
                except (OSError, ValueError) as exc:
                    log.error("cannot make a certificate signing request: %s", exc)
                    return False
                if csr is None:
                    log.error("the pending station key vanished: signing round abandoned")
                    return False
                try:
                    answer = await self._link.call(
                        "SignCertificate", {"csr": csr, "certificateType": STATION_CERTIFICATE},
                        before_accepted=triggered)
                except CallFailed as exc:
                    log.info("SignCertificate (attempt %d) not answered: %s", attempt + 1, exc)
                else:
                    if answer.get("status") != "Accepted":
                        info = answer.get("statusInfo", {})
                        log.warning("SignCertificate rejected by the CSMS%s",
                                    f": {info.get('reasonCode')} {info.get('additionalInfo', '')}"
                                    if info else "")
                        return False
                try:
                    await wait_for(self._clock, answered.wait(), wait)
                except TimeoutError:
                    log.info("no CertificateSigned within %g s (attempt %d of %d)",
                             wait, attempt + 1, repeats + 1)
                    wait *= 2
                    continue
                return self._signed_ok
            log.warning("no CertificateSigned after %d SignCertificate requests: giving up "
                        "until the next trigger or renewal check", repeats + 1)
            return False
        finally:
            if self._answered is answered:
                self._answered = None

    def trigger_sign_certificate(self) -> None:
        """TriggerMessage SignChargingStationCertificate (a station-scope producer for
        RemoteControl.register): starts a new signing round, replacing one under way."""
        self.start_round(triggered=True)

    def start_round(self, *, triggered: bool = False) -> asyncio.Task[bool]:
        if self._round is not None and not self._round.done():
            log.info("a new signing round replaces the one under way")
            self._round.cancel()
        self._round = asyncio.ensure_future(self.request_signing(triggered=triggered))
        self._round.add_done_callback(_log_round)
        return self._round

    @property
    def signing(self) -> bool:
        """A signing round is under way."""
        return self._round is not None and not self._round.done()

    # -- A03: renewal ----------------------------------------------------------------------

    def renewal_due(self) -> bool:
        expiry = self._expiry()
        return expiry is not None and expiry - self._clock.now() <= self._renew

    async def run(self) -> None:
        """Renew the station certificate when it is within `renew_days` of expiry; checked
        at start and then once a day. Runs until cancelled."""
        try:
            while True:
                # Checks a day apart, however long a signing round takes.
                next_check = self._clock.monotonic() + CHECK_INTERVAL_S
                if self.renewal_due() and not self.signing:
                    log.info("station certificate expires %s: requesting a new one",
                             self._expiry())
                    # asyncio.wait, not await: a trigger replacing this round cancels it,
                    # which must not end the renewal loop.
                    await asyncio.wait({self.start_round()})
                await self._clock.sleep(next_check - self._clock.monotonic())
        finally:
            if self._round is not None:
                self._round.cancel()

    def _event(self, event_type: str, tech_info: str | None) -> None:
        self._security_event(event_type, tech_info[:TECH_INFO_MAX] if tech_info else None)


def _log_round(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("certificate signing round failed", exc_info=task.exception())
