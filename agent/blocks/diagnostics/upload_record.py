"""The pieces of a GetLog upload (N01) that need no OCPP: where the file goes, which
LogStatusNotification a failed transfer earns, the record that outlives a power cut, and
blocking work kept off the event loop. The block itself is diagnostics.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable
from urllib.parse import quote, urlsplit, urlunsplit

from agent.store import Store

log = logging.getLogger(__name__)

META_KEY = "diagnostics.upload"
UPLOADING = "Uploading"
# UploadLogStatusEnumType per TransferError.kind (agent.transfer); anything else,
# a network error above all, is UploadFailure.
FAILURE_STATUS = {"PermissionDenied": "PermissionDenied", "InvalidURL": "BadMessage",
                  "NotFound": "BadMessage", "NotSupported": "NotSupportedOperation"}


def failure_status(exc: BaseException) -> str:
    """The most precise LogStatusNotification status for an upload that raised `exc`
    (matched on its `kind`, so the transfer module need not be imported)."""
    return FAILURE_STATUS.get(getattr(exc, "kind", None), "UploadFailure")


def target_url(url: str, filename: str) -> str:
    """A directory URL (path empty or ending in '/') gets the file name appended; any
    other is used as it is. ValueError for a URL urllib cannot split."""
    parts = urlsplit(url)
    if parts.path and not parts.path.endswith("/"):
        return url
    return urlunsplit(parts._replace(path=(parts.path or "/") + quote(filename)))


def shown_url(url: str) -> str:
    """A URL for the log: no user, password or query (they may hold secrets)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(malformed URL)"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


class UploadRecord:
    """The upload under way, in the store's meta: {"requestId", "status"}. Uploading while
    it runs; its final status from the moment that is known until the CSMS was told."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def save(self, request_id: int, status: str) -> None:
        try:
            self._store.set_meta(META_KEY, json.dumps({"requestId": request_id,
                                                      "status": status}))
        except Exception as exc:  # noqa: BLE001 - the upload matters more than its record
            log.error("log upload %s could not be recorded: %s", request_id, exc)

    def clear(self, request_id: int) -> None:
        """Forget `request_id`, and only it: a newer upload may have replaced it."""
        try:
            saved = self.load()
            if saved is not None and saved[0] == request_id:
                self._store.set_meta(META_KEY, None)
        except Exception as exc:  # noqa: BLE001
            log.error("log upload record %s could not be cleared: %s", request_id, exc)

    def load(self) -> tuple[int, str] | None:
        """(requestId, status) as saved; an unreadable record is dropped."""
        text = self._store.get_meta(META_KEY)
        if text is None:
            return None
        try:
            saved = json.loads(text)
            return int(saved["requestId"]), str(saved["status"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable %s in the store: %r; dropped", META_KEY, text)
            self._store.set_meta(META_KEY, None)
            return None

    def interrupted(self) -> tuple[int, str] | None:
        """At start: what to report for the upload a stop cut short, if any. Uploading
        means it died mid-way: UploadFailure; a final status is reported as it was."""
        saved = self.load()
        if saved is None:
            return None
        request_id, status = saved
        return request_id, "UploadFailure" if status == UPLOADING else status


async def in_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Blocking file work off the event loop; a cancel waits for the thread to finish, so
    nothing writes into a directory that is being removed."""
    work = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait({work})
        raise
