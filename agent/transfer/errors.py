"""One exception for every way a file transfer can fail, and a URL safe to show.

Firmware update (L01) and GetLog (N01) only need to know *what kind* of failure it was
(to pick a status and decide whether a retry can help); the operator needs one line
naming the URL and the cause. The URL's password, and its query string (pre-signed
upload URLs carry their signature there), never reach that line.
"""

from __future__ import annotations

from urllib.parse import urlsplit

INVALID_URL = "InvalidURL"
NOT_SUPPORTED = "NotSupported"
NOT_FOUND = "NotFound"
PERMISSION_DENIED = "PermissionDenied"
NETWORK = "Network"
TOO_LARGE = "TooLarge"
NO_SPACE = "NoSpace"
INCOMPLETE = "Incomplete"
CANCELLED = "Cancelled"
SERVER_ERROR = "ServerError"

KINDS = frozenset({INVALID_URL, NOT_SUPPORTED, NOT_FOUND, PERMISSION_DENIED, NETWORK,
                   TOO_LARGE, NO_SPACE, INCOMPLETE, CANCELLED, SERVER_ERROR})

# After these the .part file is worth keeping: the next attempt resumes from it.
RESUMABLE = frozenset({NETWORK, INCOMPLETE, CANCELLED, SERVER_ERROR})


class TransferError(Exception):
    """A transfer failed; `kind` is one of KINDS, str() is one line for the operator."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown transfer error kind {kind!r}")
        super().__init__(one_line(message))
        self.kind = kind


class Failure(Exception):
    """Raised inside a transfer, where the URL being shown is not known; download() and
    upload() turn it into a TransferError that names the URL."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def one_line(text: str, limit: int = 400) -> str:
    """Servers choose reason phrases and FTP replies: keep them from breaking a log line."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def shown(url: str) -> str:
    """The URL as it may appear in an error or a log: no password, no query string."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except (ValueError, TypeError, AttributeError):
        return _shown_unparsed(str(url))
    if not parts.scheme or host is None:
        return _shown_unparsed(url)
    user = parts.username
    if user is not None:
        user = user + (":***" if parts.password is not None else "") + "@"
    host_text = f"[{host}]" if ":" in host else host
    port_text = f":{port}" if port is not None else ""
    query = "?..." if parts.query else ""
    return one_line(f"{parts.scheme}://{user or ''}{host_text}{port_text}{parts.path}{query}")


def _shown_unparsed(url: str) -> str:
    """A URL that does not parse may still carry a password: hide every user-info part."""
    text = url
    start = text.find("://")
    start = start + 3 if start >= 0 else 0
    at = text.rfind("@")
    if at >= start:
        text = text[:start] + "***" + text[at:]
    query = text.find("?")
    if query >= 0:
        text = text[:query] + "?..."
    return one_line(text, limit=200)
