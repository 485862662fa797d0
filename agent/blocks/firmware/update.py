"""Secure firmware update (OCPP 2.0.1 block L, use case L01), station side.

UpdateFirmware is answered at once; the work runs in the background and every step is a
FirmwareStatusNotification with the request's id:

    [DownloadScheduled] Downloading Downloaded SignatureVerified [InstallScheduled]
    Installing InstallRebooting -- restart -- Installed

or ends in DownloadFailed, InvalidSignature, InstallationFailed or
InstallVerificationFailed. Rules, with the requirement ids of L01:
- The signing certificate must chain to an installed ManufacturerRootCertificate before
  anything is downloaded (L01.FR.02): else InvalidCertificate and the critical security
  event InvalidFirmwareSigningCertificate. Unsigned requests are refused: this station
  installs nothing it cannot verify (Rejected, MissingParam).
- Download at retrieveDateTime (DownloadScheduled until then), 1 + `retries` attempts
  `retryInterval` apart on the injectable clock; DownloadFailed only after the last.
- The signature (SHA-256 over the file, the signing certificate's RSA or EC key) is
  checked after the download (L01.FR.03: InvalidSignature and the critical event
  InvalidFirmwareSignature) and again just before installing, so a file that changed on
  disk while it waited, or across a power cut, is never installed.
- Install at installDateTime (InstallScheduled until then) and only when no transaction
  runs (L01.FR.06): while waiting, EVSEs that are free go Unavailable (L01.FR.07) unless
  ChargingStation.AllowNewSessionsPendingFirmwareUpdate is true; all are Unavailable while
  the installer runs. A StatusNotification Unavailable is sent directly, statuses go
  through the queue: the EVSEs are taken out only once the CSMS has the status that
  explains it (SignatureVerified or InstallScheduled), the order Part 6 checks.
- A second UpdateFirmware while one is in progress cancels it cleanly (the download
  stops, its files go) and is answered AcceptedCanceled (L01.FR.24); once the image is
  with the installer the update cannot be cancelled: Rejected, FwUpdateInProgress.
- Installing is the installer's (hal.api.FirmwareInstaller): a package manager or an A/B
  updater. On success the agent restarts itself (InstallRebooting first) and, running
  again, reports Installed and the event FirmwareUpdated when the version changed, else
  InstallVerificationFailed. The boot after it has reason FirmwareUpdate. A failed
  install (InstallationFailed, InstallVerificationFailed) is logged as the security
  event FirmwareUpdated too, its techInfo saying so (Part 6 errata 2023-12, TC_L_08).

Power cuts: the job is persisted at each stage together with the notification reporting
it (the outbox shares the database). A restart resumes downloads (the transfer keeps a
partial file and continues it), re-verifies a downloaded image, and settles an
interrupted install by the version that runs: Installed if it changed, else
InstallationFailed. Statuses go through the outbox, so one made offline is delivered.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Protocol

from hal.api import FirmwareInstaller

from agent.blocks.firmware import job as stages
from agent.blocks.firmware.job import META_KEY, FirmwareJob, load
from agent.blocks.provisioning import PENDING_BOOT_REASON
from agent.clock import Clock, wait_for
from agent.ocpp.session import Payload, Reply, Router
from agent.store import Store

log = logging.getLogger(__name__)

STATUS = "FirmwareStatusNotification"
TRANSFER_TIMEOUT_S = 60.0
# Errors no retry can fix: the URL itself, or a file the station cannot take.
FINAL_TRANSFER_ERRORS = {"InvalidURL", "NotSupported", "TooLarge"}
TECH_INFO_MAX = 255
WAKE_S = 300.0


class Download(Protocol):
    def __call__(self, url: str, dest: Path, *, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 60.0) -> Awaitable[Any]: ...


class Outbox(Protocol):
    def enqueue(self, action: str, payload: Payload) -> int: ...
    def on_answer(self, action: str, listener: Callable[[Payload, Payload], None]) -> None: ...


class Link(Protocol):
    async def call(self, action: str, payload: Payload) -> Payload: ...


class Evses(Protocol):
    """What the block needs of the EVSEs: which run a transaction, and taking free ones
    out of service for the install and giving them back (Availability's settings win)."""

    def busy(self, evse_id: int) -> bool: ...
    def hold(self, evse_id: int) -> None: ...
    def release_all(self) -> None: ...


class FirmwareUpdate:
    def __init__(self, *, router: Router, link: Link, outbox: Outbox, store: Store,
                 clock: Clock, installer: FirmwareInstaller | None, work_dir: Path,
                 running_version: str, evse_ids: Iterable[int], evses: Evses,
                 manufacturer_roots: Callable[[], list[str]],
                 download: Download, check_url: Callable[[str], None],
                 ssl_context: Callable[[], ssl.SSLContext | None],
                 security_event: Callable[[str, str | None], None],
                 allow_new_sessions: Callable[[], bool], restart: Callable[[], None],
                 message_timeout: Callable[[], float] = lambda: 30.0) -> None:
        self._link = link
        self._outbox = outbox
        self._store = store
        self._clock = clock
        self._installer = installer
        self._work_dir = work_dir
        self._running_version = running_version
        self._evse_ids = tuple(evse_ids)
        self._evses = evses
        self._manufacturer_roots = manufacturer_roots
        self._download = download
        self._check_url = check_url
        self._ssl_context = ssl_context
        self._security_event = security_event
        self._allow_new_sessions = allow_new_sessions
        self._restart = restart
        self._message_timeout = message_timeout
        self._task: asyncio.Task[None] | None = None
        self._tx_ended = asyncio.Event()
        self._rebooting_delivered = asyncio.Event()
        # Statuses reported in this run, set once the CSMS has answered them.
        self._delivered: dict[str, asyncio.Event] = {}
        self.job = load(store.get_meta(META_KEY))
        router.register("UpdateFirmware", self._on_update_firmware)
        outbox.on_answer(STATUS, self._answered)
        if self.job is not None and self.job.stage in stages.INSTALL_STAGES:
            self._settle_install(self.job)
        self._remove_stale_files()

    # -- what the daemon calls --------------------------------------------------------------

    async def run(self) -> None:
        """Resume a persisted update, then serve for the life of the runtime."""
        if self.job is not None:
            log.info("resuming firmware update %d at %s", self.job.request_id, self.job.stage)
            self._start(self.job)
        try:
            await asyncio.Event().wait()
        finally:
            await self._cancel()

    def transaction_ended(self, evse_id: int) -> None:
        self._tx_ended.set()

    async def trigger_status(self) -> None:
        """TriggerMessage FirmwareStatusNotification (F06): the last status of the update
        in progress with its requestId, or Idle."""
        payload: Payload = {"status": "Idle"}
        if self.job is not None and self.job.stage != stages.ACCEPTED:
            # Stages are named by the status that reported them.
            payload = {"status": self.job.stage, "requestId": self.job.request_id}
        await self._link.call(STATUS, payload)

    # -- UpdateFirmware ---------------------------------------------------------------------

    async def _on_update_firmware(self, request: Payload) -> Payload | Reply:
        firmware = request["firmware"]
        if self._installer is None:
            return _refused("Rejected", "UnsupportedRequest", "this station has no firmware "
                            "installer: set firmware.install_command in its config")
        if not firmware.get("signingCertificate") or not firmware.get("signature"):
            return _refused("Rejected", "MissingParam", "unsigned firmware is refused: "
                            "signingCertificate and signature are required")
        try:
            self._check_url(firmware["location"])
        except Exception as exc:
            return _refused("Rejected", "InvalidURL", str(exc))
        try:
            job = FirmwareJob.from_request(request, self._running_version)
        except ValueError as exc:
            return _refused("Rejected", "InvalidValue", f"bad date-time: {exc}")
        # verify.py needs cryptography (~8 MB resident): loaded by the first UpdateFirmware.
        from agent.blocks.firmware.verify import VerificationError, check_signing_certificate
        try:
            check_signing_certificate(job.signing_certificate, self._manufacturer_roots(),
                                      self._clock.now())
        except VerificationError as exc:
            self._security_event("InvalidFirmwareSigningCertificate", _short(str(exc)))
            return _refused("InvalidCertificate", "InvalidCertificate", str(exc))
        current = self.job
        if current is not None and current.stage in stages.INSTALL_STAGES:
            return _refused("Rejected", "FwUpdateInProgress",
                            f"update {current.request_id} is being installed; it cannot be "
                            "cancelled")
        if current is not None:
            log.info("firmware update %d cancelled by request %d", current.request_id,
                     job.request_id)
            await self._cancel()
            shutil.rmtree(self._job_dir(current), ignore_errors=True)
            self._evses.release_all()
        self._save(job)
        log.info("firmware update %d accepted: %s", job.request_id, job.location)

        async def start() -> None:
            self._start(job)

        return Reply({"status": "AcceptedCanceled" if current else "Accepted"}, start)

    # -- the update, step by step -------------------------------------------------------------

    def _start(self, job: FirmwareJob) -> None:
        self._task = asyncio.ensure_future(self._drive(job))

    async def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _drive(self, job: FirmwareJob) -> None:
        try:
            if job.stage in (stages.ACCEPTED, stages.DOWNLOAD_SCHEDULED, stages.DOWNLOADING):
                downloaded = await self._fetch(job)
                if downloaded is None:
                    return
                job = downloaded
            if not self._verified(job):
                return
            if job.stage == stages.DOWNLOADED:
                job = self._report(job, stages.SIGNATURE_VERIFIED)
            job = await self._wait_to_install(job)
            if not self._verified(job):   # the file may have changed while it waited
                return
            await self._install(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must end the update, not the daemon
            log.exception("firmware update %d failed", job.request_id)
            self._end(job, "InstallationFailed", f"internal error: {exc}")

    async def _fetch(self, job: FirmwareJob) -> FirmwareJob | None:
        if job.retrieve_at > self._clock.now():
            if job.stage != stages.DOWNLOAD_SCHEDULED:
                job = self._report(job, stages.DOWNLOAD_SCHEDULED)
            await self._sleep_until(job.retrieve_at)
        image = self._image(job)
        image.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        attempts = 1 + max(0, job.retries)
        for attempt in range(1, attempts + 1):
            if job.stage != stages.DOWNLOADING:
                job = self._report(job, stages.DOWNLOADING)
            try:
                await self._download(job.location, image, ssl_context=self._ssl_context(),
                                     timeout=TRANSFER_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                kind = getattr(exc, "kind", None)
                log.warning("firmware download %d/%d failed: %s", attempt, attempts, exc)
                if kind in FINAL_TRANSFER_ERRORS or attempt == attempts:
                    self._end(job, "DownloadFailed", str(exc))
                    return None
                await self._clock.sleep(job.retry_interval_s)
            else:
                return self._report(job, stages.DOWNLOADED)
        return None

    def _verified(self, job: FirmwareJob) -> bool:
        """Whether certificate and signature hold; if not, the update ends here with
        InvalidSignature (and InvalidFirmwareSigningCertificate's event, should the root
        have been deleted meanwhile)."""
        from agent.blocks.firmware.verify import (VerificationError, check_signing_certificate,
                                                  verify_signature)
        try:
            certificate = check_signing_certificate(
                job.signing_certificate, self._manufacturer_roots(), self._clock.now())
        except VerificationError as exc:
            self._security_event("InvalidFirmwareSigningCertificate", _short(str(exc)))
            self._end(job, "InvalidSignature", str(exc))
            return False
        try:
            digest = verify_signature(self._image(job), job.signature, certificate)
        except (VerificationError, OSError) as exc:
            self._security_event("InvalidFirmwareSignature", _short(str(exc)))
            self._end(job, "InvalidSignature", str(exc))
            return False
        log.info("firmware image %s: signature verified (sha256 %s)", job.file_name, digest)
        return True

    async def _wait_to_install(self, job: FirmwareJob) -> FirmwareJob:
        if job.install_at is not None and job.install_at > self._clock.now():
            if job.stage != stages.INSTALL_SCHEDULED:
                job = self._report(job, stages.INSTALL_SCHEDULED)
            await self._sleep_until(job.install_at)
        while True:
            self._tx_ended.clear()
            busy = [e for e in self._evse_ids if self._evses.busy(e)]
            if not busy:
                break
            if job.stage != stages.INSTALL_SCHEDULED:
                job = self._report(job, stages.INSTALL_SCHEDULED)
            if not self._allow_new_sessions():
                await self._reported(job.stage)
                for evse_id in self._evse_ids:
                    if evse_id not in busy:
                        self._evses.hold(evse_id)
            log.info("firmware update %d waits for transactions on EVSE %s", job.request_id,
                     ", ".join(map(str, busy)))
            await self._tx_ended.wait()
        await self._reported(job.stage)
        for evse_id in self._evse_ids:
            self._evses.hold(evse_id)
        return job

    async def _reported(self, stage: str) -> None:
        """Until the CSMS has answered the status of `stage`, if this run reported it
        (at most MessageTimeout): the connectors that go Unavailable next are told
        directly, not through the queue, and must not overtake the status that explains
        them (Part 6 as the 2023-12 errata orders TC_L_01..15: SignatureVerified or
        InstallScheduled, then Unavailable)."""
        event = self._delivered.get(stage)
        if event is None:
            return
        try:
            await wait_for(self._clock, event.wait(), self._message_timeout())
        except TimeoutError:
            pass

    async def _install(self, job: FirmwareJob) -> None:
        assert self._installer is not None
        with self._store.transaction():
            # Whatever happens from here, the next boot is because of this update.
            self._store.set_meta(PENDING_BOOT_REASON, "FirmwareUpdate")
            job = self._report(job, stages.INSTALLING)
        outcome = await self._installer.install(self._image(job))
        if not outcome.ok:
            log.error("firmware update %d: installation failed: %s", job.request_id,
                      outcome.detail)
            with self._store.transaction():
                self._store.set_meta(PENDING_BOOT_REASON, None)
                self._end(job, "InstallationFailed", outcome.detail)
            self._attempt_logged(job, "InstallationFailed")
            return
        log.info("firmware update %d installed (%s); restarting", job.request_id,
                 outcome.detail)
        shutil.rmtree(self._job_dir(job), ignore_errors=True)
        self._rebooting_delivered.clear()
        self._report(job, stages.INSTALL_REBOOTING)
        # Let the CSMS hear InstallRebooting before the link drops; the outbox would
        # deliver it after the restart anyway.
        try:
            await wait_for(self._clock, self._rebooting_delivered.wait(),
                           self._message_timeout())
        except TimeoutError:
            pass
        self._restart()

    def _settle_install(self, job: FirmwareJob) -> None:
        """After a restart in the middle of installing or after it: the version that
        runs tells how it went."""
        if self._running_version != job.old_version:
            self._end(job, "Installed", None)
            self._security_event("FirmwareUpdated", _short(
                f"firmware {job.old_version} -> {self._running_version} "
                f"(request {job.request_id})"))
        elif job.stage == stages.INSTALLING:
            self._end(job, "InstallationFailed", "the installation was interrupted "
                      f"(still running {self._running_version})")
            self._attempt_logged(job, "InstallationFailed")
        else:
            self._end(job, "InstallVerificationFailed", "the installer reported success "
                      f"but {self._running_version} still runs")
            self._attempt_logged(job, "InstallVerificationFailed")

    def _attempt_logged(self, job: FirmwareJob, status: str) -> None:
        """The security event of an install that failed. Part 6 (2023-12 errata 6.1.24,
        TC_L_08 step 20) wants FirmwareUpdated after InstallationFailed or
        InstallVerificationFailed too: the security log records every attempt to change
        the firmware; techInfo says it failed and which version still runs."""
        self._security_event("FirmwareUpdated", _short(
            f"firmware update {job.request_id} failed ({status}): {job.old_version} "
            f"still runs"))

    async def _sleep_until(self, when: datetime) -> None:
        """Until the station's clock reads `when`. The clock may be set meanwhile (the
        CSMS's time at boot or heartbeat), so it is read again at least every
        WAKE_S: a jump back is slept off, a jump forward costs at most WAKE_S."""
        while (left := (when - self._clock.now()).total_seconds()) > 0:
            await self._clock.sleep(min(left, WAKE_S))

    # -- bookkeeping --------------------------------------------------------------------------

    def _report(self, job: FirmwareJob, stage: str) -> FirmwareJob:
        job = job.at(stage)
        self._delivered[stage] = asyncio.Event()
        with self._store.transaction():
            self._save(job)
            self._outbox.enqueue(STATUS, {"status": stage, "requestId": job.request_id})
        log.info("firmware update %d: %s", job.request_id, stage)
        return job

    def _end(self, job: FirmwareJob, status: str, detail: str | None) -> None:
        with self._store.transaction():
            self._store.set_meta(META_KEY, None)
            self._outbox.enqueue(STATUS, {"status": status, "requestId": job.request_id})
        (log.info if status == "Installed" else log.warning)(
            "firmware update %d: %s%s", job.request_id, status, f": {detail}" if detail else "")
        self.job = None
        shutil.rmtree(self._job_dir(job), ignore_errors=True)
        self._evses.release_all()

    def _save(self, job: FirmwareJob) -> None:
        self._store.set_meta(META_KEY, job.to_json())
        self.job = job

    def _answered(self, request: Payload, response: Payload) -> None:
        if request.get("status") == stages.INSTALL_REBOOTING:
            self._rebooting_delivered.set()
        if self.job is not None and request.get("requestId") == self.job.request_id:
            event = self._delivered.get(str(request.get("status")))
            if event is not None:
                event.set()

    def _job_dir(self, job: FirmwareJob) -> Path:
        return self._work_dir / str(job.request_id)

    def _image(self, job: FirmwareJob) -> Path:
        return self._job_dir(job) / job.file_name

    def _remove_stale_files(self) -> None:
        """Images of updates that ended or were cancelled while the agent was down."""
        if not self._work_dir.is_dir():
            return
        keep = self._job_dir(self.job).name if self.job is not None else None
        for entry in self._work_dir.iterdir():
            if entry.name != keep:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def _refused(status: str, reason: str, info: str) -> Payload:
    return {"status": status, "statusInfo": {"reasonCode": reason,
                                             "additionalInfo": _short(info, 512)}}


def _short(text: str, limit: int = TECH_INFO_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
