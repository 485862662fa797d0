"""upload(): one attempt at sending a file to a URL, for GetLog (N01).

Same contract as download(): one attempt, the caller retries; a cancel stops the worker
before CancelledError propagates; errors are TransferError with the URL shown safely.
"""

from __future__ import annotations

import logging
import ssl
import stat
from pathlib import Path

from agent.transfer import ftp_transfer, http_transfer
from agent.transfer.errors import NOT_FOUND, Failure, TransferError
from agent.transfer.urls import parse
from agent.transfer.worker import Cancel, run_in_thread

log = logging.getLogger(__name__)

METHODS = ("PUT", "POST")


async def upload(url: str, source: Path, *, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 60.0, method: str = "PUT") -> None:
    """Send `source` to `url`.

    http(s): PUT of the raw bytes, or with method="POST" a multipart/form-data body
    whose part "file" carries the file under source.name; any 2xx is success.
    ftp: STOR at the URL's path, or into that directory under source.name when the
    path ends with "/" (`method` does not apply). The file is sent as big as it is when
    the upload starts. A local file that cannot be read is kind NotFound.
    """
    verb = method.upper()
    if verb not in METHODS:
        raise ValueError(f"upload method must be PUT or POST, not {method!r}")
    target = parse(url, for_upload=True)
    source = Path(source)
    try:
        info = source.stat()
    except OSError as exc:
        raise TransferError(NOT_FOUND, f"cannot upload {source} to {target.shown}: "
                                       f"{exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise TransferError(NOT_FOUND, f"cannot upload {source} to {target.shown}: "
                                       "not a regular file")
    size = info.st_size

    def job(cancel: Cancel) -> None:
        if target.scheme == "ftp":
            ftp_transfer.send(target, source, size, cancel=cancel, timeout=timeout)
        else:
            http_transfer.send(target, source, size, verb, cancel=cancel, timeout=timeout,
                               ssl_context=ssl_context)
        cancel.check()

    log.info("uploading %s (%d bytes) to %s", source, size, target.shown)
    try:
        await run_in_thread(job, name=f"transfer upload {target.shown}")
    except Failure as failure:
        error = TransferError(failure.kind, f"cannot upload {source.name} to "
                                            f"{target.shown}: {failure.detail}")
        log.warning("%s", error)
        raise error from None
    log.info("uploaded %s to %s", source, target.shown)
