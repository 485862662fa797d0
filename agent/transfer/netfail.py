"""What a socket-level exception means for the operator, the same for HTTP and FTP."""

from __future__ import annotations

import socket
import ssl

from agent.transfer.errors import CANCELLED, INCOMPLETE, NETWORK, Failure, one_line
from agent.transfer.worker import Cancel


def network_failure(exc: BaseException, host: str, timeout: float, cancel: Cancel,
                    *, midway: str | None = None) -> Failure:
    """The Failure for an exception from connecting or talking to `host`. `midway`
    describes progress when the body was flowing: the transfer then broke off
    (Incomplete, resumable) rather than never started (Network)."""
    if isinstance(exc, Failure):
        return exc
    if cancel.is_set():
        return Failure(CANCELLED, "cancelled")
    reason = _reason(exc, host, timeout)
    if midway is not None:
        return Failure(INCOMPLETE, f"the transfer broke off after {midway}: {reason}")
    return Failure(NETWORK, reason)


def _reason(exc: BaseException, host: str, timeout: float) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or str(exc)
        return (f"the server's TLS certificate is not trusted ({why}); install the "
                "root that signed it or fix the server's certificate")
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name {host!r} ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running on that port?)"
    if isinstance(exc, TimeoutError):
        return f"no answer from the server within {timeout:g} s"
    if isinstance(exc, EOFError):
        return "the server closed the connection"
    if isinstance(exc, OSError):
        return one_line(f"network error: {exc.strerror or exc}")
    return one_line(f"{type(exc).__name__}: {exc}")
