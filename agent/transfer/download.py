"""download(): one attempt at fetching a URL into a file, for firmware updates (L01).

Retries, their intervals and the FirmwareStatusNotifications around them belong to the
caller; this only makes each attempt safe: `dest` appears whole or not at all, the next
attempt resumes what this one got, and a cancel stops everything before returning.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from agent.transfer import ftp_transfer, http_transfer
from agent.transfer.errors import RESUMABLE, Failure, TransferError
from agent.transfer.partfile import Downloaded, PartFile
from agent.transfer.urls import parse
from agent.transfer.worker import Cancel, run_in_thread

log = logging.getLogger(__name__)

__all__ = ["Downloaded", "download"]


async def download(url: str, dest: Path, *, ssl_context: ssl.SSLContext | None = None,
                   timeout: float = 60.0, max_bytes: int | None = None,
                   resume: bool = True) -> Downloaded:
    """Fetch `url` (http, https, ftp) to `dest` through `dest.part`.

    `timeout` bounds each connect and each read, not the whole transfer. With `resume`
    an existing .part is continued (HTTP Range, FTP REST): only pass True when that
    .part came from the same URL, since nothing else identifies it. Raises TransferError;
    on cancellation the worker is stopped before CancelledError propagates.
    """
    target = parse(url)
    dest = Path(dest)

    def job(cancel: Cancel) -> Downloaded:
        part = PartFile(dest, max_bytes, cancel)
        try:
            part.open(resume)
            if target.scheme == "ftp":
                ftp_transfer.fetch(target, part, cancel=cancel, timeout=timeout)
            else:
                http_transfer.fetch(target, part, cancel=cancel, timeout=timeout,
                                    ssl_context=ssl_context)
            cancel.check()
            return part.finish()
        except Failure as failure:
            part.abandon(keep=failure.kind in RESUMABLE)
            raise
        except BaseException:
            part.abandon(keep=True)
            raise

    log.info("downloading %s to %s", target.shown, dest)
    try:
        done = await run_in_thread(job, name=f"transfer download {target.shown}")
    except Failure as failure:
        error = TransferError(failure.kind, f"cannot download {target.shown}: "
                                            f"{failure.detail}")
        log.warning("%s", error)
        raise error from None
    log.info("downloaded %s: %d bytes, sha256 %s", target.shown, done.size, done.sha256)
    return done
