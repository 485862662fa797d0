"""HTTP and HTTPS on http.client: GET with Range for resuming, PUT or multipart POST.

http.client rather than urllib.request because the socket must be ours: created and
registered with the Cancel before connect(), wrapped in the caller's TLS context, one
request per connection. Redirects are followed here, at most five, only to http(s), and
credentials from the URL go only to the origin they were given for.
"""

from __future__ import annotations

import base64
import http.client
import re
import ssl
from pathlib import Path
from typing import Callable
from urllib.parse import urljoin

from agent import __version__
from agent.transfer import multipart
from agent.transfer.source import chunks, open_source
from agent.transfer.errors import (INCOMPLETE, NOT_FOUND, NOT_SUPPORTED, PERMISSION_DENIED,
                                   SERVER_ERROR, TOO_LARGE, Failure, TransferError,
                                   one_line)
from agent.transfer.netfail import network_failure
from agent.transfer.partfile import CHUNK, PartFile
from agent.transfer.urls import Target, parse
from agent.transfer.worker import Cancel, open_socket, wrap_tls

MAX_REDIRECTS = 5
_REDIRECT = {301, 302, 303, 307, 308}
_USER_AGENT = f"station-agent/{__version__}"


class _Connection(http.client.HTTPConnection):
    """HTTPConnection whose socket comes from open_socket (so cancel can shut it) and is
    wrapped in the given TLS context for https."""

    def __init__(self, target: Target, timeout: float, cancel: Cancel,
                 tls: ssl.SSLContext | None) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._cancel = cancel
        self._tls = tls

    def connect(self) -> None:
        sock = open_socket(self.host, self.port, self.timeout, self._cancel)
        if self._tls is not None:
            sock = wrap_tls(sock, self._tls, self.host, self._cancel)
        # Left registered with the Cancel even after close(): with "Connection: close"
        # http.client closes the connection as soon as the head is read and the
        # response goes on reading from the same socket. Shutting down a socket that
        # really is closed is a harmless EBADF (its fd is -1 by then).
        self.sock = sock


class _Session:
    """The settings shared by every request of one transfer, redirects included."""

    def __init__(self, first: Target, cancel: Cancel, timeout: float,
                 ssl_context: ssl.SSLContext | None) -> None:
        self.first = first
        self.cancel = cancel
        self.timeout = timeout
        self._ssl_context = ssl_context

    def tls_for(self, target: Target) -> ssl.SSLContext | None:
        if target.scheme != "https":
            return None
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def authorization(self, target: Target) -> str | None:
        """Basic credentials from the URL, never sent to another origin on a redirect
        (unless that URL carries its own)."""
        source = target if target.username is not None else self.first
        if source.username is None or source.origin != target.origin:
            return None
        pair = f"{source.username}:{source.password or ''}".encode("utf-8")
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def exchange(self, target: Target, method: str, headers: dict[str, str],
                 body: Callable[[_Connection], None] | None = None,
                 ) -> tuple[_Connection, http.client.HTTPResponse]:
        """Send one request and read the response head; the caller closes the
        connection."""
        conn = _Connection(target, self.timeout, self.cancel, self.tls_for(target))
        try:
            conn.putrequest(method, target.request_target, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            conn.putheader("User-Agent", _USER_AGENT)
            conn.putheader("Connection", "close")
            auth = self.authorization(target)
            if auth is not None:
                conn.putheader("Authorization", auth)
            conn.endheaders()
            if body is not None:
                try:
                    body(conn)
                except (OSError, http.client.HTTPException) as exc:
                    # A server may answer (401, 403, 413) and close before reading the
                    # whole body: its answer says more than our broken pipe.
                    if self.cancel.is_set():
                        raise
                    try:
                        return conn, conn.getresponse()
                    except (OSError, http.client.HTTPException):
                        raise exc from None
            return conn, conn.getresponse()
        except Failure:
            conn.close()
            raise
        except (OSError, EOFError) as exc:   # RemoteDisconnected is an OSError too
            conn.close()
            raise network_failure(exc, target.host, self.timeout, self.cancel) from None
        except http.client.HTTPException as exc:
            conn.close()
            self.cancel.check()
            raise Failure(SERVER_ERROR, f"not a valid HTTP answer "
                                        f"({type(exc).__name__})") from None

    def follow(self, current: Target, response: http.client.HTTPResponse) -> Target:
        location = response.getheader("Location")
        if not location:
            raise _status_failure(response, current, self.first)
        url = urljoin(current.url, location.strip())
        try:
            target = parse(url)
        except TransferError as exc:
            raise Failure(exc.kind, f"redirected to an unusable URL: {exc}") from None
        if target.scheme not in ("http", "https"):
            raise Failure(NOT_SUPPORTED, f"redirected to {target.shown}: only http and "
                                         "https redirects are followed")
        return target


def fetch(first: Target, part: PartFile, *, cancel: Cancel, timeout: float,
          ssl_context: ssl.SSLContext | None) -> None:
    """GET `first` into `part`, resuming from part.size with a Range request. Returns
    when part holds the whole file."""
    session = _Session(first, cancel, timeout, ssl_context)
    target = first
    redirects = 0
    restarts = 0
    while True:
        cancel.check()
        offset = part.size
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        conn, response = session.exchange(target, "GET", headers)
        try:
            status = response.status
            if status in _REDIRECT:
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise Failure(SERVER_ERROR, f"more than {MAX_REDIRECTS} redirects")
                target = session.follow(target, response)
                continue
            if offset and status == 416:
                # Nothing left after our offset: the .part may already be the file.
                if _unsatisfied_total(response) == offset:
                    part.announce(offset)
                    return
                restarts += 1
            elif status == 206:
                start, total = _content_range(response)
                if start == offset:
                    if total is None and (length := _content_length(response)) is not None:
                        total = offset + length
                    part.announce(total)
                    _receive(response, part, cancel, total, target, timeout)
                    return
                restarts += 1
            elif status == 200:
                if offset:
                    part.restart()   # the server ignored Range: take the file from byte 0
                total = _content_length(response)
                part.announce(total)
                _receive(response, part, cancel, total, target, timeout)
                return
            else:
                raise _status_failure(response, target, first)
            if restarts > 1:
                raise Failure(SERVER_ERROR, f"HTTP {status}: the server's ranges do not "
                                            "match the request")
            part.restart()  # and ask again for the whole file
        finally:
            response.close()
            conn.close()


def _receive(response: http.client.HTTPResponse, part: PartFile, cancel: Cancel,
             total: int | None, target: Target, timeout: float) -> None:
    while True:
        cancel.check()
        try:
            chunk = response.read(CHUNK)
        except (OSError, http.client.HTTPException, EOFError) as exc:
            raise network_failure(exc, target.host, timeout, cancel,
                                  midway=_progress(part.size, total)) from None
        cancel.check()
        if not chunk:
            break
        part.write(chunk)
    if total is not None and part.size != total:
        raise Failure(INCOMPLETE, f"the connection closed after {_progress(part.size, total)}")


def _progress(size: int, total: int | None) -> str:
    return f"{size} of {total} bytes" if total is not None else f"{size} bytes"


def send(first: Target, source: Path, size: int, method: str, *, cancel: Cancel,
         timeout: float, ssl_context: ssl.SSLContext | None) -> None:
    """PUT the file as the body, or POST it as multipart/form-data part "file"; any 2xx
    is success. 307/308 are followed (they keep method and body); other redirects are
    not, since re-sending an upload as a GET makes no sense."""
    session = _Session(first, cancel, timeout, ssl_context)
    if method == "PUT":
        head, tail = b"", b""
        headers = {"Content-Type": "application/octet-stream"}
    else:
        form = multipart.Form.for_file(source.name)
        head, tail = form.head, form.tail
        headers = {"Content-Type": form.content_type}
    headers["Content-Length"] = str(len(head) + size + len(tail))

    def body(conn: _Connection) -> None:
        conn.send(head)
        _send_file(conn, source, size, cancel)
        conn.send(tail)

    target = first
    for _ in range(MAX_REDIRECTS + 1):
        conn, response = session.exchange(target, method, headers, body)
        try:
            if 200 <= response.status < 300:
                return
            if response.status in (307, 308):
                target = session.follow(target, response)
                continue
            raise _status_failure(response, target, first)
        finally:
            response.close()
            conn.close()
    raise Failure(SERVER_ERROR, f"more than {MAX_REDIRECTS} redirects")


def _send_file(conn: _Connection, source: Path, size: int, cancel: Cancel) -> None:
    with open_source(source) as stream:
        for chunk in chunks(stream, source, size, cancel):
            conn.send(chunk)


def _status_failure(response: http.client.HTTPResponse, at: Target, first: Target) -> Failure:
    status = response.status
    line = one_line(f"HTTP {status} {response.reason or ''}".strip())
    if at.url != first.url:
        line += f" (redirected to {at.shown})"
    if status in (404, 410):
        return Failure(NOT_FOUND, line)
    if status in (401, 403):
        return Failure(PERMISSION_DENIED, line)
    if status == 413:
        return Failure(TOO_LARGE, line)
    return Failure(SERVER_ERROR, line)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    if "chunked" in (response.getheader("Transfer-Encoding") or "").lower():
        return None
    value = (response.getheader("Content-Length") or "").strip()
    return int(value) if value.isdigit() else None


_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED = re.compile(r"bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


def _content_range(response: http.client.HTTPResponse) -> tuple[int | None, int | None]:
    """(first byte, total size) of a 206; (None, None) when the header is unusable."""
    match = _RANGE.match((response.getheader("Content-Range") or "").strip())
    if match is None:
        return None, None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), total


def _unsatisfied_total(response: http.client.HTTPResponse) -> int | None:
    match = _UNSATISFIED.match((response.getheader("Content-Range") or "").strip())
    return int(match.group(1)) if match else None
