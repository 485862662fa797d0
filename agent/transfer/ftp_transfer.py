"""FTP on ftplib: RETR with SIZE and REST for resuming, STOR for uploads.

Passive mode only (active mode needs the server to connect back to the station, which
NAT on cellular links forbids). The control and data sockets come from open_socket so
that a cancel shuts them at once. FTP over TLS is not offered: "ftps://" is NotSupported.
"""

from __future__ import annotations

import ftplib
import socket
from pathlib import Path
from typing import Callable

from agent.transfer.errors import (INCOMPLETE, NETWORK, NOT_FOUND, PERMISSION_DENIED,
                                   SERVER_ERROR, Failure, one_line)
from agent.transfer.netfail import network_failure
from agent.transfer.partfile import CHUNK, PartFile
from agent.transfer.source import chunks, open_source
from agent.transfer.urls import Target
from agent.transfer.worker import Cancel, closing, open_socket

_PERMISSION_WORDS = ("permission", "denied", "privilege", "not allowed", "access")
_MISSING_WORDS = ("no such", "not found", "does not exist", "doesn't exist", "not exist")


class _Ftp(ftplib.FTP):
    """ftplib.FTP whose control socket comes from open_socket."""

    def __init__(self, cancel: Cancel, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._cancel = cancel

    def connect(self, host: str = "", port: int = 0, timeout: float = -999,
                source_address: tuple[str, int] | None = None) -> str:
        self.host, self.port = host, port
        self.sock = open_socket(host, port, self.timeout, self._cancel)
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def close(self) -> None:
        if self.sock is not None:
            self._cancel.forget(self.sock)
        super().close()


class _Progress:
    """Bytes moved on the data connection so far; None while none is open."""

    def __init__(self) -> None:
        self.text: str | None = None


def fetch(target: Target, part: PartFile, *, cancel: Cancel, timeout: float) -> None:
    """RETR the URL's file into `part`, resuming with REST from part.size."""
    path = target.ftp_path

    def retrieve(ftp: _Ftp, progress: _Progress) -> None:
        total = _size(ftp, path)
        if total is not None and part.size > total:
            part.restart()
        part.announce(total)
        if total is not None and part.size == total and total > 0:
            return   # a previous attempt got it all but did not finish
        data, resumed = _open_data(ftp, f"RETR {path}", part.size, cancel, timeout)
        with closing(data, cancel):
            if not resumed:
                part.restart()   # the server refused REST: it sends from byte 0
                part.announce(total)
            progress.text = _progress(part.size, total)
            while True:
                cancel.check()
                chunk = data.recv(CHUNK)
                cancel.check()
                if not chunk:
                    break
                part.write(chunk)
                progress.text = _progress(part.size, total)
        if total is not None and part.size < total:
            raise Failure(INCOMPLETE, f"the data connection closed after "
                                      f"{_progress(part.size, total)}")
        ftp.voidresp()   # 226: the server agrees the file is complete
        progress.text = None
        if total is not None and part.size != total:
            raise Failure(SERVER_ERROR, f"the server sent {part.size} bytes but its SIZE "
                                        f"answer was {total}")

    _run(target, cancel, timeout, NOT_FOUND, retrieve)


def send(target: Target, source: Path, size: int, *, cancel: Cancel,
         timeout: float) -> None:
    """STOR the file at the URL's path, or under source.name when the path names a
    directory (ends with "/")."""
    path = target.ftp_path
    if not path or path.endswith("/"):
        path += source.name
    stream = open_source(source)

    def store(ftp: _Ftp, progress: _Progress) -> None:
        data, _ = _open_data(ftp, f"STOR {path}", 0, cancel, timeout)
        with closing(data, cancel):
            sent = 0
            progress.text = _progress(sent, size)
            for chunk in chunks(stream, source, size, cancel):
                data.sendall(chunk)
                sent += len(chunk)
                progress.text = _progress(sent, size)
        ftp.voidresp()   # 226 once the server has the whole file
        progress.text = None

    with stream:
        _run(target, cancel, timeout, PERMISSION_DENIED, store)


def _run(target: Target, cancel: Cancel, timeout: float, default_550: str,
         operation: Callable[[_Ftp, _Progress], None]) -> None:
    """Log in, run the operation in binary mode, log out; every ftplib or socket error
    becomes a Failure. `default_550` is what an unexplained 550 means here."""
    ftp = _Ftp(cancel, timeout)
    progress = _Progress()
    try:
        ftp.connect(target.host, target.port)
        _login(ftp, target)
        ftp.voidcmd("TYPE I")
        operation(ftp, progress)
        try:
            ftp.quit()
        except (OSError, EOFError, ftplib.Error):
            pass   # the transfer is done; a sloppy goodbye changes nothing
    except Failure:
        raise
    except ftplib.error_perm as exc:
        cancel.check()
        raise _reply_failure(str(exc), default_550) from None
    except ftplib.error_temp as exc:
        cancel.check()
        reply = one_line(str(exc))
        if reply.startswith("426"):
            raise Failure(INCOMPLETE, f"the server aborted the transfer: {reply}") from None
        if reply.startswith("425"):
            raise Failure(NETWORK, f"no data connection: {reply}") from None
        raise Failure(SERVER_ERROR, f"FTP {reply}") from None
    except (ftplib.error_reply, ftplib.error_proto) as exc:
        cancel.check()
        raise Failure(SERVER_ERROR, f"unexpected FTP reply: {one_line(str(exc))}") from None
    except (OSError, EOFError) as exc:
        raise network_failure(exc, target.host, timeout, cancel,
                              midway=progress.text) from None
    finally:
        ftp.close()


def _login(ftp: _Ftp, target: Target) -> None:
    try:
        ftp.login(target.username or "", target.password or "")
    except ftplib.error_perm as exc:
        who = f"user {target.username!r}" if target.username else "anonymous login"
        raise Failure(PERMISSION_DENIED, f"login refused for {who}: "
                                         f"{one_line(str(exc))}") from None


def _size(ftp: _Ftp, path: str) -> int | None:
    """SIZE is an extension (RFC 3659): a server without it, or one refusing it for this
    path, just announces nothing; RETR gives the verdict."""
    try:
        return ftp.size(path)
    except (ftplib.error_perm, ftplib.error_temp, ValueError):
        return None


def _open_data(ftp: _Ftp, command: str, rest: int, cancel: Cancel,
               timeout: float) -> tuple[socket.socket, bool]:
    """A passive data connection with `command` started on it, and whether REST `rest`
    was accepted (RFC 3659: REST must come right before the transfer command)."""
    host, port = ftp.makepasv()
    data = open_socket(host, port, timeout, cancel)
    try:
        resumed = True
        if rest:
            try:
                ftp.sendcmd(f"REST {rest}")
            except ftplib.error_perm:
                resumed = False
        reply = ftp.sendcmd(command)
        if reply[:1] == "2":   # some servers say 2xx first, then 1xx
            reply = ftp.getresp()
        if reply[:1] != "1":
            raise ftplib.error_reply(reply)
    except BaseException:
        cancel.forget(data)
        data.close()
        raise
    return data, resumed


def _reply_failure(reply: str, default_550: str) -> Failure:
    text = one_line(reply)
    lower = text.lower()
    code = text[:3]
    if code in ("530", "532", "553"):
        return Failure(PERMISSION_DENIED, f"FTP {text}")
    if code in ("550", "551"):
        if any(word in lower for word in _PERMISSION_WORDS):
            return Failure(PERMISSION_DENIED, f"FTP {text}")
        if any(word in lower for word in _MISSING_WORDS):
            return Failure(NOT_FOUND, f"FTP {text}")
        return Failure(default_550, f"FTP {text}")
    return Failure(SERVER_ERROR, f"FTP {text}")


def _progress(size: int, total: int | None) -> str:
    return f"{size} of {total} bytes" if total is not None else f"{size} bytes"
