"""Blocking transfers in a thread of their own, stoppable from the event loop.

http.client and ftplib block; asyncio must not. Each transfer gets one thread, started
and joined here, so that when the coroutine returns, cancelled or not, nothing of the
transfer is still running (the default executor's threads would outlive it, and a
long firmware download would hold one of them that other to_thread users share).

Cancelling is cooperative plus one hard edge: the worker checks the Cancel event between
chunks, and every socket it opens is registered so that set() can shut it down, which
wakes a worker blocked in connect(), recv() or send() at once instead of after the
socket timeout. A DNS lookup (getaddrinfo) cannot be interrupted: a cancel arriving
during one waits for the resolver's own timeout.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from agent.transfer.errors import CANCELLED, Failure

T = TypeVar("T")


class Cancel:
    """Set by the coroutine when it is cancelled; read by the worker."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Stop the worker here if the transfer was cancelled."""
        if self._event.is_set():
            raise Failure(CANCELLED, "cancelled")

    def set(self) -> None:
        with self._lock:
            self._event.set()
            for sock in self._sockets:
                _shut(sock)

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when the transfer is cancelled (now, if it already is)."""
        with self._lock:
            if self._event.is_set():
                _shut(sock)
            else:
                self._sockets.add(sock)

    def forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


def _shut(sock: socket.socket) -> None:
    """shutdown(), not close(): safe while another thread is inside recv()/send() on the
    socket, and it wakes that thread. The plain socket's method also for an SSLSocket,
    whose own shutdown() drops its SSL object under the worker's feet."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # not connected yet, already closed or detached: nothing to wake


def open_socket(host: str, port: int, timeout: float, cancel: Cancel) -> socket.socket:
    """A connected TCP socket with `timeout`, registered with `cancel` before connect()
    so that a cancel does not wait for a black-holed SYN to time out."""
    last: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port,
                                                              type=socket.SOCK_STREAM):
        cancel.check()
        sock = socket.socket(family, kind, proto)
        cancel.watch(sock)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            cancel.forget(sock)
            sock.close()
            last = exc
    cancel.check()
    raise last or OSError(f"no address for {host}")


@contextmanager
def closing(sock: socket.socket, cancel: Cancel) -> Iterator[socket.socket]:
    """Close `sock` at the end of the block and stop watching it."""
    try:
        yield sock
    finally:
        cancel.forget(sock)
        sock.close()


def wrap_tls(sock: socket.socket, context: ssl.SSLContext, host: str,
             cancel: Cancel) -> ssl.SSLSocket:
    """TLS over `sock` (which is consumed), the handshake cancellable like any read."""
    cancel.forget(sock)
    try:
        tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    cancel.watch(tls)
    try:
        tls.do_handshake()
    except BaseException:
        cancel.forget(tls)
        tls.close()
        raise
    return tls


async def run_in_thread(job: Callable[[Cancel], T], name: str) -> T:
    """Run job(cancel) in a new thread and return its result. On cancellation: set the
    Cancel, wait for the thread to end, then re-raise CancelledError."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    cancel = Cancel()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(result)  # type: ignore[arg-type]
        else:
            done.set_exception(error)

    def main() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = job(cancel)
        except BaseException as exc:  # handed to the coroutine, which raises it
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more

    thread = threading.Thread(target=main, name=name, daemon=True)
    thread.start()
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        cancel.set()
        while not done.done():
            try:
                await asyncio.wait({done})
            except asyncio.CancelledError:
                pass  # cancelled again: keep waiting, the worker is stopping
        if not done.cancelled():
            done.exception()  # mark it retrieved: the cancellation wins over it
        raise
    finally:
        # `done` is settled, so the thread has nothing left but to return.
        thread.join()
    return done.result()
