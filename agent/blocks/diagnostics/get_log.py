"""Diagnostics (block N), use case N01 "Retrieve Log Information": GetLog and
LogStatusNotification, by the 2023-12 errata.

- GetLog is checked before it is answered: a window whose oldestTimestamp is after its
  latestTimestamp is Rejected (InvalidValue); a remoteLocation that is malformed or of a
  scheme we cannot upload to is Rejected (InvalidURL) and nothing is attempted. Otherwise
  Accepted with the name of the file the upload will use; a GetLog while an upload is
  under way cancels that upload and is answered AcceptedCanceled, and the cancelled one
  reports LogStatusNotification AcceptedCanceled with its own requestId.
- After the answer is on the wire (Reply.then): the archive is built (log_archive.py) in a
  temporary directory under `work_dir`, then 1 + retries attempts, retryInterval seconds
  apart, each announced by Uploading. Uploaded, or once every attempt failed one failure
  status, the most precise the last error allows (errata: only after all retries).
  The temporary directory goes whatever the outcome.
- A remoteLocation whose path ends in '/' (or has none) is a directory: the file name is
  appended. Otherwise the file goes exactly where the URL says.
- The upload under way is kept in the store's meta (META_KEY): after a power cut or kill
  the next start reports UploadFailure for it (a final status that could not be sent
  before the stop is sent then instead). Status notifications are not queued: one lost
  with the link is lost (the CSMS can ask with TriggerMessage LogStatusNotification).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Awaitable, Callable, Iterator, Protocol

from agent import __version__
from agent.blocks.diagnostics.archive import (LogRequest, Text, archive_name,
                                              build_archive)
from agent.blocks.diagnostics.upload_record import (META_KEY, UPLOADING, UploadRecord,
                                                    failure_status, in_thread, shown_url,
                                                    target_url)
from agent.clock import Clock, parse_datetime
from agent.logfile import read_lines
from agent.ocpp.session import CallFailed, NotConnected, Payload, Reply, Router
from agent.store import Store

log = logging.getLogger(__name__)

__all__ = ["Diagnostics", "META_KEY"]

TEMP_PREFIX = "getlog-"
DEFAULT_RETRIES = 2            # when GetLog leaves it to the station
DEFAULT_RETRY_INTERVAL_S = 60
MAX_RETRIES = 100              # a CSMS asking for more gets this many
DELIVERY_TRIES = 5             # a final status, across lost connections

Upload = Callable[..., Awaitable[None]]   # agent.transfer.upload's signature (module doc)
CheckUrl = Callable[..., None]            # check_url(url, for_upload=True), raises on bad


class Link(Protocol):
    async def call(self, action: str, payload: Payload, *, before_accepted: bool = False,
                   wait: bool = True, timeout: float | None = None) -> Payload: ...


@dataclass
class _Job:
    request: LogRequest
    url: str
    filename: str
    attempts: int
    interval: float
    task: asyncio.Task[None] | None = None
    finished: bool = False    # the outcome is decided: nothing left to cancel


class Diagnostics:
    def __init__(self, router: Router, link: Link, clock: Clock, store: Store,
                 station_id: str, *, work_dir: Path, log_dir: Path, upload: Upload,
                 check_url: CheckUrl, security_log_text: Text,
                 ssl_context: Callable[[], ssl.SSLContext | None] = lambda: None,
                 upload_timeout: float = 60.0, version: str = __version__) -> None:
        """`upload(url, source, *, ssl_context=None, timeout=60.0, method="PUT")` and
        `check_url(url, for_upload=True)` raise exceptions with a `kind` (TransferError);
        `security_log_text(oldest, latest)` is SecurityLog.export_text; `ssl_context()` is
        asked for each https attempt; `log_dir` is where attach_log_file writes."""
        self._link = link
        self._clock = clock
        self._record = UploadRecord(store)
        self._station_id = station_id
        self._work_dir = Path(work_dir)
        self._log_dir = Path(log_dir)
        self._upload = upload
        self._check_url = check_url
        self._security_log_text = security_log_text
        self._ssl_context = ssl_context
        self._upload_timeout = upload_timeout
        self._version = version
        self._job: _Job | None = None
        self._recovered: tuple[int, str] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        router.register("GetLog", self._on_get_log)

    # -- GetLog --------------------------------------------------------------------------

    async def _on_get_log(self, request: Payload) -> Payload | Reply:
        params = request["log"]
        try:
            oldest = _when(params.get("oldestTimestamp"))
            latest = _when(params.get("latestTimestamp"))
        except ValueError as exc:
            return _rejected("InvalidValue", str(exc))
        if oldest is not None and latest is not None and oldest > latest:
            return _rejected("InvalidValue", "oldestTimestamp is after latestTimestamp")
        url = params["remoteLocation"]
        try:
            self._check_url(url, for_upload=True)
        except Exception as exc:  # noqa: BLE001 - whatever it is, we cannot upload there
            log.info("GetLog %s to %s: Rejected (%s)", request["requestId"], shown_url(url),
                     getattr(exc, "kind", type(exc).__name__))
            return _rejected("InvalidURL", f"{getattr(exc, 'kind', 'InvalidURL')}: {exc}")
        log_request = LogRequest(request["requestId"], request["logType"], oldest, latest)
        filename = archive_name(self._station_id, log_request.log_type, self._clock.now())
        try:
            target = target_url(url, filename)
        except ValueError as exc:
            return _rejected("InvalidURL", str(exc))
        job = _Job(log_request, target, filename,
                   attempts=1 + min(MAX_RETRIES, max(0, request.get("retries", DEFAULT_RETRIES))),
                   interval=float(max(0, request.get("retryInterval", DEFAULT_RETRY_INTERVAL_S))))
        previous = self._job if self._job is not None and not self._job.finished else None
        self._job = job
        status = "AcceptedCanceled" if previous is not None else "Accepted"
        log.info("GetLog %s %s to %s: %s, %s", log_request.request_id, log_request.log_type,
                 shown_url(job.url), status, filename)

        async def then() -> None:
            if self._job is not job:
                return  # replaced before it began; the replacement reports it cancelled
            job.task = asyncio.ensure_future(self._run_job(job, previous))
            self._tasks.add(job.task)
            job.task.add_done_callback(self._tasks.discard)
            job.task.add_done_callback(_log_crash)

        return Reply({"status": status, "filename": filename}, then)

    async def _run_job(self, job: _Job, previous: _Job | None) -> None:
        request_id = job.request.request_id
        self._record.save(request_id, UPLOADING)
        if previous is not None and not previous.finished:
            if previous.task is not None:
                previous.task.cancel()
                await asyncio.wait({previous.task})
            log.info("log upload %s cancelled for %s", previous.request.request_id, request_id)
            await self._notify("AcceptedCanceled", previous.request.request_id)
        status = await self._build_and_upload(job)
        if self._job is not job:
            return  # an upload that ignored its cancel: the replacement reports it
        job.finished = True
        log.log(logging.INFO if status == "Uploaded" else logging.WARNING,
                "log upload %s: %s", request_id, status)
        self._record.save(request_id, status)
        await self._deliver(request_id, status)

    async def _build_and_upload(self, job: _Job) -> str:
        temp: Path | None = None
        try:
            try:
                self._work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self._work_dir))
                archive = temp / job.filename
                await in_thread(build_archive, archive, job.request,
                                station_id=self._station_id, version=self._version,
                                created=self._clock.now(),
                                diagnostics_lines=self._diagnostics_lines,
                                security_log_text=self._security_log_text)
            except Exception as exc:  # noqa: BLE001 - disk full, store error, ...
                log.error("log archive for request %s could not be made: %s",
                          job.request.request_id, exc)
                return "UploadFailure"
            return await self._attempts(job, archive)
        finally:
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)

    def _diagnostics_lines(self, oldest: datetime | None,
                           latest: datetime | None) -> Iterator[str]:
        return read_lines(self._log_dir, oldest, latest)

    async def _attempts(self, job: _Job, archive: Path) -> str:
        status = "UploadFailure"
        for attempt in range(1, job.attempts + 1):
            if attempt > 1:
                await self._clock.sleep(job.interval)
            await self._notify(UPLOADING, job.request.request_id)
            try:
                context = self._ssl_context() if job.url.lower().startswith("https:") else None
                await self._upload(job.url, archive, ssl_context=context,
                                   timeout=self._upload_timeout)
            except Exception as exc:  # noqa: BLE001 - every failure is an attempt lost
                status = failure_status(exc)
                log.warning("log upload %s, attempt %d of %d failed: %s (%s)",
                            job.request.request_id, attempt, job.attempts, exc,
                            getattr(exc, "kind", None) or type(exc).__name__)
                continue
            return "Uploaded"
        return status

    # -- status notifications -----------------------------------------------------------

    async def trigger_status(self) -> None:
        """TriggerMessage LogStatusNotification (F06): Uploading with the requestId while
        an upload is under way, else Idle without one."""
        job = self._job
        payload: Payload = ({"status": UPLOADING, "requestId": job.request.request_id}
                            if job is not None and not job.finished else {"status": "Idle"})
        try:
            await self._link.call("LogStatusNotification", payload, before_accepted=True)
        except CallFailed as exc:
            log.info("LogStatusNotification %s not sent: %s", payload["status"], exc)

    async def _notify(self, status: str, request_id: int) -> None:
        """An interim status: sent now if connected, else lost (the upload goes on)."""
        try:
            await self._link.call("LogStatusNotification",
                                  {"status": status, "requestId": request_id}, wait=False)
        except CallFailed as exc:
            log.info("LogStatusNotification %s (%s) not sent: %s", status, request_id, exc)

    async def _deliver(self, request_id: int, status: str) -> None:
        """A final status: waits for a connection; then the upload is no longer pending."""
        for _ in range(DELIVERY_TRIES):
            try:
                await self._link.call("LogStatusNotification",
                                      {"status": status, "requestId": request_id})
            except NotConnected:
                continue   # lost on the way: again on the next connection
            except CallFailed as exc:
                log.info("LogStatusNotification %s (%s) not sent: %s", status, request_id, exc)
            break
        self._record.clear(request_id)

    # -- persistence and power cuts -----------------------------------------------------

    def recover(self) -> None:
        """At start: remove the temporary archives a stop left behind and note the upload
        a power cut interrupted (run() reports it)."""
        try:
            for leftover in self._work_dir.glob(TEMP_PREFIX + "*"):
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError as exc:
            log.warning("temporary log archives in %s not removed: %s", self._work_dir, exc)
        self._recovered = self._record.interrupted()
        if self._recovered is not None:
            log.info("log upload %s was cut short by a stop: reporting %s", *self._recovered)

    async def run(self) -> None:
        """Reports an upload recover() found, then waits; on cancel stops the upload under
        way (its record stays: the next start reports it) and any status still waiting for
        a connection. Runs until cancelled."""
        try:
            if self._recovered is not None:
                request_id, status = self._recovered
                self._recovered = None
                await self._deliver(request_id, status)
            await asyncio.Event().wait()
        finally:
            for task in list(self._tasks):
                task.cancel()


def _when(text: str | None) -> datetime | None:
    return None if text is None else parse_datetime(text, clamp=True)


def _rejected(reason: str, info: str) -> Payload:
    return {"status": "Rejected", "statusInfo": {"reasonCode": reason,
                                                 "additionalInfo": info[:512]}}


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("log upload failed", exc_info=task.exception())
