"""Real servers on 127.0.0.1 for the transfer tests: HTTP (optionally over TLS) with the
misbehaviours a station meets in the field, and FTP (pyftpdlib) with a user and an
anonymous read-only directory. Each runs in its own thread and stops by itself."""

from __future__ import annotations

import base64
import logging
import re
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)   # pyftpdlib imports asynchat
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

# A handler of its own keeps pyftpdlib from configuring logging for the whole process
# (it does when it finds none); its INFO chatter per command is of no use here.
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())
logging.getLogger("pyftpdlib").setLevel(logging.WARNING)

STALL_LIMIT = 10.0   # a stalled handler gives up after this, so no test can hang on it


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Behaviour:
    """What the HTTP server does; tests change it between calls."""
    cut_after: int | None = None        # send this many body bytes, then drop the link
    extra_length: int = 0               # announce this many more bytes than are sent
    ignore_range: bool = False          # answer 200 with the whole file to a Range
    no_length: bool = False             # no Content-Length: the end is the close
    stall_after: int | None = None      # send this many body bytes, then wait for release
    stall_before_answer: bool = False   # read the request, then wait for release
    status: dict[str, int] = field(default_factory=dict)      # path -> error status
    redirects: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (code, Location)
    auth: tuple[str, str] | None = None  # Basic credentials required for everything
    upload_status: int = 201


class FileServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.tls = tls
        self.files: dict[str, bytes] = {}
        self.behaviour = Behaviour()
        self.requests: list[Request] = []
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.handled = threading.Event()    # a stalled handler has finished
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="test-http-server", daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str, userinfo: str = "") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}{path}"

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # Handshake in the handler thread, not in the accept loop.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass   # clients that give up (untrusted certificate, cancel) are expected here

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
        self._thread.join(5)


_RANGE = re.compile(r"bytes=(\d+)-$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FileServer

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> Request:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, dict(self.headers.items()), body)
        self.server.requests.append(request)
        return request

    def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _refused(self) -> bool:
        """Answer with the configured error, redirect or 401; True when it did."""
        b = self.server.behaviour
        if b.stall_before_answer:
            self.server.stalled.set()
            self.server.release.wait(STALL_LIMIT)
            self.server.handled.set()
            self.close_connection = True
            return True
        if b.auth is not None:
            token = base64.b64encode(f"{b.auth[0]}:{b.auth[1]}".encode()).decode()
            if self.headers.get("Authorization") != f"Basic {token}":
                self._answer(401, {"WWW-Authenticate": 'Basic realm="test"'})
                return True
        if self.path in b.redirects:
            code, location = b.redirects[self.path]
            self._answer(code, {"Location": location})
            return True
        if self.path in b.status:
            self._answer(b.status[self.path])
            return True
        return False

    def do_GET(self) -> None:
        self._record()
        if self._refused():
            return
        b = self.server.behaviour
        data = self.server.files.get(self.path)
        if data is None:
            self._answer(404)
            return
        status, start, headers = 200, 0, {}
        match = _RANGE.match(self.headers.get("Range", ""))
        if match and not b.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self._answer(416, {"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if not b.no_length:
            self.send_header("Content-Length", str(len(body) + b.extra_length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            if b.cut_after is not None:
                self.wfile.write(body[:b.cut_after])
                return   # the connection closes: the client sees a short body
            if b.stall_after is not None:
                self.wfile.write(body[:b.stall_after])
                self.server.stalled.set()
                self.server.release.wait(STALL_LIMIT)
                try:
                    self.wfile.write(body[b.stall_after:])
                finally:
                    self.server.handled.set()
                return
            self.wfile.write(body)
        except OSError:
            pass   # the client went away

    def _upload(self) -> None:
        request = self._record()
        if self._refused():
            return
        self.server.files[request.path] = request.body
        self._answer(self.server.behaviour.upload_status)

    do_PUT = _upload
    do_POST = _upload


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


class FtpServer:
    """pyftpdlib on 127.0.0.1: `user`/`password` may read and write `root/user`; the
    anonymous user may only read `root/anon`. `commands` lists what clients sent."""

    def __init__(self, root: Path, user: str, password: str) -> None:
        self.user_dir = root / "user"
        self.anon_dir = root / "anon"
        self.user_dir.mkdir(parents=True, exist_ok=True)
        self.anon_dir.mkdir(parents=True, exist_ok=True)
        authorizer = DummyAuthorizer()
        authorizer.add_user(user, password, str(self.user_dir), perm="elradfmw")
        authorizer.add_anonymous(str(self.anon_dir))
        commands: list[tuple[str, str]] = []
        self.commands = commands
        self.size_lie = 0        # SIZE answers this many bytes more than the file has
        owner = self

        class Handler(FTPHandler):
            def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
                commands.append((cmd, arg if cmd != "PASS" else "***"))
                super().pre_process_command(line, cmd, arg)

            def ftp_SIZE(self, path: str) -> None:
                if not owner.size_lie:
                    return super().ftp_SIZE(path)
                self.respond(f"213 {Path(path).stat().st_size + owner.size_lie}")
                return None

        Handler.authorizer = authorizer
        Handler.timeout = 30
        Handler.auth_failed_timeout = 0   # no 3 s penalty for the wrong-password test
        self._server = FTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self._server.address[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-ftp-server",
                                        daemon=True)

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                self._server.serve_forever(timeout=0.01, blocking=False, handle_exit=False)
        finally:
            self._server.close_all()

    def url(self, path: str, userinfo: str = "") -> str:
        return f"ftp://{userinfo}127.0.0.1:{self.port}{path}"

    def __enter__(self) -> "FtpServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
