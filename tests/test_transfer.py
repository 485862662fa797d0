"""agent.transfer against real servers on 127.0.0.1: HTTP, HTTPS (throw-away CA) and FTP
(pyftpdlib). Downloads land whole or not at all, resume with Range/REST, respect size
and space limits, map every failure to one kind and one line without the password, and
stop their worker thread when cancelled. No test waits for time to pass."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import random
import shutil
import ssl
import threading
import time
from email.parser import BytesHeaderParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import pytest

from agent.transfer import Downloaded, TransferError, check_url, download, upload
from agent.transfer.errors import shown
from agent.transfer.partfile import PartFile
from agent.transfer.urls import parse
from agent.transfer.worker import Cancel
from tests.file_servers import FileServer, FtpServer, closed_port, server_context
from tests.tls_certs import make_ca_and_server

USER = "station"
PASSWORD = "pa:ss@w/rd!"                    # every character that needs care in a URL
QUOTED = "pa%3Ass%40w%2Frd%21"
FIRMWARE = "/fw/firmware-2.0.bin"


def run(coro: Any, timeout: float = 10) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def failure(coro: Any) -> TransferError:
    with pytest.raises(TransferError) as caught:
        run(coro)
    return caught.value


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def transfer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("transfer ")]


@pytest.fixture(autouse=True)
def no_worker_left_behind():
    yield
    assert transfer_threads() == []


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca_and_server(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def client_tls(pki: tuple[Path, Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki[0]))


@pytest.fixture
def web():
    with FileServer() as server:
        yield server


@pytest.fixture
def tls_web(pki: tuple[Path, Path, Path]):
    with FileServer(tls=server_context(pki[1], pki[2])) as server:
        yield server


@pytest.fixture
def ftp(tmp_path: Path):
    with FtpServer(tmp_path / "ftp-root", USER, PASSWORD) as server:
        yield server


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "firmware"
    folder.mkdir()
    return folder / "firmware.bin"


# --- URLs -------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://example.com/fw.bin", "https://example.com:8443/a/b?x=1", "ftp://host/dir/fw.bin",
    f"ftp://{USER}:{QUOTED}@host/fw.bin", "HTTP://[::1]:8080/fw", "http://user@host/x",
])
def test_check_url_accepts_supported_urls(url: str) -> None:
    check_url(url)
    check_url(url, for_upload=True)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "sftp://host/fw", "ftps://host/fw",
                                 "wss://host/ocpp", "gopher://host/x"])
def test_unsupported_schemes(url: str) -> None:
    with pytest.raises(TransferError) as caught:
        check_url(url)
    assert caught.value.kind == "NotSupported"
    assert "not supported" in str(caught.value)


@pytest.mark.parametrize("url", ["", "   ", "fw.bin", "/tmp/fw.bin", "http://", "http:///fw",
                                 "http://host:99999/fw", "http://host:port/fw", "http://[::1/fw",
                                 "http://host/f w", "http://host/fw\r\nX-Evil: 1", "ftp:///fw",
                                 "http://host:0/fw"])
def test_malformed_urls(url: str) -> None:
    with pytest.raises(TransferError) as caught:
        check_url(url)
    assert caught.value.kind == "InvalidURL"
    assert "\n" not in str(caught.value)


def test_international_host_names_are_encoded() -> None:
    assert parse("https://bücher.example/fw.bin").host == "xn--bcher-kva.example"
    with pytest.raises(TransferError) as caught:
        check_url("http://a..bé/fw")
    assert caught.value.kind == "InvalidURL"


def test_ftp_download_needs_a_file_but_upload_takes_a_directory() -> None:
    for url in ("ftp://host/", "ftp://host/logs/", "ftp://host"):
        with pytest.raises(TransferError) as caught:
            check_url(url)
        assert caught.value.kind == "InvalidURL"
        check_url(url, for_upload=True)


@pytest.mark.parametrize("url", [
    f"ftp://{USER}:{QUOTED}@host/fw.bin", f"ftp://{USER}:{QUOTED}@host:99999/fw.bin",
    f"ftp://{USER}:{QUOTED}@/fw.bin", f"sftp://{USER}:{QUOTED}@host/fw.bin",
    "http://u:pa/ss@host/fw", "http://u:se#cret@host/fw",
])
def test_password_never_shown(url: str) -> None:
    assert QUOTED not in shown(url) and "pa/ss" not in shown(url) and "se#cret" not in shown(url)
    try:
        check_url(url)
    except TransferError as exc:
        assert QUOTED not in str(exc) and PASSWORD not in str(exc)
        assert "pa/ss" not in str(exc) and "se#cret" not in str(exc)


def test_shown_url_keeps_user_host_and_path_but_not_the_query() -> None:
    assert shown(f"ftp://{USER}:{QUOTED}@host:2121/logs/") == f"ftp://{USER}:***@host:2121/logs/"
    assert shown("https://s3.example/bucket/log.zip?X-Amz-Signature=abc") == \
        "https://s3.example/bucket/log.zip?..."


def test_bad_url_fails_before_any_io(dest: Path) -> None:
    error = failure(download("sftp://host/fw.bin", dest))
    assert error.kind == "NotSupported"
    assert not part_of(dest).exists() and not dest.exists()


# --- HTTP(S) downloads ----------------------------------------------------------------

def test_http_download(web: FileServer, dest: Path) -> None:
    web.files[FIRMWARE] = data = payload(300_000)
    done = run(download(web.url(FIRMWARE), dest))
    assert done == Downloaded(path=dest, size=len(data), sha256=sha(data))
    assert dest.read_bytes() == data
    assert not part_of(dest).exists()
    assert "Range" not in web.requests[0].headers


def test_https_download_with_the_callers_roots(tls_web: FileServer, dest: Path,
                                               client_tls: ssl.SSLContext) -> None:
    tls_web.files[FIRMWARE] = data = payload(200_000)
    done = run(download(tls_web.url(FIRMWARE), dest, ssl_context=client_tls))
    assert done.sha256 == sha(data) and dest.read_bytes() == data


@pytest.mark.parametrize("with_context", [True, False])
def test_untrusted_certificate_is_a_network_error(tls_web: FileServer, dest: Path,
                                                  with_context: bool) -> None:
    tls_web.files[FIRMWARE] = payload(1000)
    other = ssl.create_default_context()   # the system roots: our test CA is not there
    error = failure(download(tls_web.url(FIRMWARE), dest,
                             ssl_context=other if with_context else None))
    assert error.kind == "Network"
    assert "certificate" in str(error) and "not trusted" in str(error)
    assert tls_web.url(FIRMWARE) in str(error)
    assert not dest.exists() and not part_of(dest).exists()


def test_wrong_host_name_is_refused(tls_web: FileServer, dest: Path,
                                    client_tls: ssl.SSLContext) -> None:
    tls_web.files[FIRMWARE] = payload(1000)
    url = f"https://localhost:{tls_web.port}{FIRMWARE}"   # the certificate names 127.0.0.1
    error = failure(download(url, dest, ssl_context=client_tls))
    assert error.kind == "Network" and "certificate" in str(error)


def test_cut_connection_keeps_the_part_and_the_next_call_resumes(web: FileServer,
                                                                 dest: Path) -> None:
    web.files[FIRMWARE] = data = payload(500_000)
    web.behaviour.cut_after = 123_457
    error = failure(download(web.url(FIRMWARE), dest))
    assert error.kind == "Incomplete"
    assert "123457 of 500000 bytes" in str(error)
    assert not dest.exists()
    assert part_of(dest).read_bytes() == data[:123_457]

    web.behaviour.cut_after = None
    done = run(download(web.url(FIRMWARE), dest))
    assert web.requests[-1].headers["Range"] == "bytes=123457-"
    assert done.sha256 == sha(data) and done.size == len(data)
    assert dest.read_bytes() == data and not part_of(dest).exists()


def test_content_length_larger_than_the_body_is_incomplete(web: FileServer, dest: Path) -> None:
    web.files[FIRMWARE] = data = payload(10_000)
    web.behaviour.extra_length = 500
    error = failure(download(web.url(FIRMWARE), dest))
    assert error.kind == "Incomplete" and "10000 of 10500 bytes" in str(error)
    assert not dest.exists() and part_of(dest).read_bytes() == data


def test_server_ignoring_range_restarts_from_zero(web: FileServer, dest: Path) -> None:
    web.files[FIRMWARE] = data = payload(200_000)
    part_of(dest).write_bytes(b"\xff" * 70_000)   # stale bytes that must not survive
    web.behaviour.ignore_range = True
    done = run(download(web.url(FIRMWARE), dest))
    assert web.requests[-1].headers["Range"] == "bytes=70000-"
    assert done.sha256 == sha(data) and dest.read_bytes() == data


def test_resume_false_starts_over(web: FileServer, dest: Path) -> None:
    web.files[FIRMWARE] = data = payload(50_000)
    part_of(dest).write_bytes(b"\xff" * 1000)
    done = run(download(web.url(FIRMWARE), dest, resume=False))
    assert "Range" not in web.requests[-1].headers
    assert done.sha256 == sha(data)


def test_a_part_that_is_already_whole_is_finished(web: FileServer, dest: Path) -> None:
    web.files[FIRMWARE] = data = payload(70_000)
    part_of(dest).write_bytes(data)              # got it all, then the power went
    done = run(download(web.url(FIRMWARE), dest))
    assert web.requests[-1].headers["Range"] == "bytes=70000-"   # answered 416
    assert done.sha256 == sha(data) and dest.read_bytes() == data


def test_announced_size_over_max_bytes(web: FileServer, dest: Path) -> None:
    web.files[FIRMWARE] = payload(100_000)
    error = failure(download(web.url(FIRMWARE), dest, max_bytes=99_999))
    assert error.kind == "TooLarge" and "100000" in str(error)
    assert list(dest.parent.iterdir()) == []


def test_unannounced_size_over_max_bytes(web: FileServer, dest: Path) -> None:
    web.files[FIRMWARE] = payload(300_000)
    web.behaviour.no_length = True
    error = failure(download(web.url(FIRMWARE), dest, max_bytes=200_000))
    assert error.kind == "TooLarge"
    assert list(dest.parent.iterdir()) == []


def test_unannounced_size_within_limits(web: FileServer, dest: Path) -> None:
    web.files[FIRMWARE] = data = payload(150_000)
    web.behaviour.no_length = True
    done = run(download(web.url(FIRMWARE), dest, max_bytes=150_000))
    assert done.sha256 == sha(data)


def test_not_enough_space(web: FileServer, dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    web.files[FIRMWARE] = payload(600_000)
    real = shutil.disk_usage

    def nearly_full(path: Any) -> Any:
        usage = real(path)
        return usage._replace(free=1024 * 1024 + 500_000)   # 1 MiB margin + too little

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    error = failure(download(web.url(FIRMWARE), dest))
    assert error.kind == "NoSpace" and "600000" in str(error)
    assert list(dest.parent.iterdir()) == []


def test_disk_full_while_writing(dest: Path) -> None:
    class FullDisk:
        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self) -> None:
            pass

    part = PartFile(dest, None, Cancel())
    part.open(resume=False)
    part._file.close()
    part._file = FullDisk()  # type: ignore[assignment]
    with pytest.raises(Exception) as caught:
        part.write(b"x")
    assert getattr(caught.value, "kind") == "NoSpace"
    assert "no space" in str(caught.value)


@pytest.mark.parametrize("status,kind", [(404, "NotFound"), (410, "NotFound"),
                                         (401, "PermissionDenied"), (403, "PermissionDenied"),
                                         (500, "ServerError"), (503, "ServerError"),
                                         (418, "ServerError")])
def test_http_status_mapping(web: FileServer, dest: Path, status: int, kind: str) -> None:
    web.files[FIRMWARE] = payload(10)
    web.behaviour.status[FIRMWARE] = status
    error = failure(download(web.url(FIRMWARE), dest))
    assert error.kind == kind
    assert f"HTTP {status}" in str(error) and web.url(FIRMWARE) in str(error)
    assert not dest.exists()


def test_a_missing_file_leaves_no_part(web: FileServer, dest: Path) -> None:
    part_of(dest).write_bytes(b"old")
    error = failure(download(web.url("/nothing.bin"), dest))
    assert error.kind == "NotFound"
    assert list(dest.parent.iterdir()) == []


def test_basic_auth_from_the_url(web: FileServer, dest: Path) -> None:
    web.files[FIRMWARE] = data = payload(5000)
    web.behaviour.auth = (USER, PASSWORD)
    done = run(download(web.url(FIRMWARE, f"{USER}:{QUOTED}@"), dest))
    assert done.sha256 == sha(data)

    error = failure(download(web.url(FIRMWARE, f"{USER}:wrong%21@"), dest))
    assert error.kind == "PermissionDenied" and "HTTP 401" in str(error)
    assert "wrong" not in str(error) and f"{USER}:***@" in str(error)


def test_redirects_are_followed(web: FileServer, dest: Path) -> None:
    web.files[FIRMWARE] = data = payload(5000)
    web.behaviour.redirects["/latest"] = (302, "/middle")
    web.behaviour.redirects["/middle"] = (301, web.url(FIRMWARE))
    done = run(download(web.url("/latest"), dest))
    assert done.sha256 == sha(data)
    assert [r.path for r in web.requests] == ["/latest", "/middle", FIRMWARE]


def test_redirect_limits(web: FileServer, dest: Path) -> None:
    web.behaviour.redirects["/loop"] = (302, "/loop")
    error = failure(download(web.url("/loop"), dest))
    assert error.kind == "ServerError" and "redirects" in str(error)
    assert len(web.requests) == 6

    web.behaviour.redirects["/away"] = (302, "file:///etc/passwd")
    assert failure(download(web.url("/away"), dest)).kind == "NotSupported"


def test_credentials_do_not_follow_a_redirect_to_another_origin(web: FileServer,
                                                                dest: Path) -> None:
    web.files[FIRMWARE] = payload(100)
    with FileServer() as other:
        other.files[FIRMWARE] = data = payload(100, seed=2)
        web.behaviour.redirects["/fw"] = (302, other.url(FIRMWARE))
        done = run(download(web.url("/fw", f"{USER}:{QUOTED}@"), dest))
        assert done.sha256 == sha(data)
        assert "Authorization" in web.requests[0].headers
        assert "Authorization" not in other.requests[0].headers


def test_connection_refused(dest: Path) -> None:
    error = failure(download(f"http://127.0.0.1:{closed_port()}/fw.bin", dest))
    assert error.kind == "Network" and "refused" in str(error)


def test_timeout_is_per_operation(web: FileServer, dest: Path) -> None:
    web.files[FIRMWARE] = payload(10)
    web.behaviour.stall_before_answer = True
    error = failure(download(web.url(FIRMWARE), dest, timeout=0.2))
    assert error.kind == "Network" and "within 0.2 s" in str(error)


def test_cancel_stops_the_worker_mid_download(web: FileServer, dest: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    web.files[FIRMWARE] = payload(1_000_000)
    web.behaviour.stall_after = 100_000     # one 64 KiB chunk gets written, then silence
    wrote = threading.Event()
    real_write = PartFile.write

    def write(self: PartFile, chunk: bytes) -> None:
        real_write(self, chunk)
        wrote.set()

    monkeypatch.setattr(PartFile, "write", write)

    async def scenario() -> None:
        task = asyncio.create_task(download(web.url(FIRMWARE), dest, timeout=30))
        assert await asyncio.to_thread(web.stalled.wait, 5)
        assert await asyncio.to_thread(wrote.wait, 5)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 5   # the socket was shut, not timed out
        assert transfer_threads() == []
        written = part_of(dest).stat().st_size
        assert written == 65536                 # kept for a resume
        web.release.set()      # the server goes on sending into a closed socket
        assert await asyncio.to_thread(web.handled.wait, 5)
        assert part_of(dest).stat().st_size == written
        assert not dest.exists()

    run(scenario())
    web.behaviour.stall_after = None
    done = run(download(web.url(FIRMWARE), dest))
    assert web.requests[-1].headers["Range"] == "bytes=65536-"
    assert done.sha256 == sha(web.files[FIRMWARE])


def test_cancel_while_the_server_is_silent_is_prompt(web: FileServer, dest: Path) -> None:
    web.files[FIRMWARE] = payload(10)
    web.behaviour.stall_before_answer = True

    async def scenario() -> float:
        task = asyncio.create_task(download(web.url(FIRMWARE), dest, timeout=30))
        assert await asyncio.to_thread(web.stalled.wait, 5)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert run(scenario()) < 5    # not the 30 s socket timeout
    assert transfer_threads() == [] and not dest.exists() and not part_of(dest).exists()


# --- FTP downloads ----------------------------------------------------------------------

def test_ftp_download_with_user_and_password(ftp: FtpServer, dest: Path) -> None:
    (ftp.user_dir / "fw").mkdir()
    data = payload(250_000)
    (ftp.user_dir / "fw" / "image.bin").write_bytes(data)
    done = run(download(ftp.url("/fw/image.bin", f"{USER}:{QUOTED}@"), dest))
    assert done == Downloaded(path=dest, size=len(data), sha256=sha(data))
    assert ("USER", USER) in ftp.commands and ("PASS", "***") in ftp.commands
    assert ("SIZE", "fw/image.bin") in ftp.commands and not part_of(dest).exists()


def test_ftp_anonymous_download(ftp: FtpServer, dest: Path) -> None:
    data = payload(70_000)
    (ftp.anon_dir / "public.bin").write_bytes(data)
    done = run(download(ftp.url("/public.bin"), dest))
    assert done.sha256 == sha(data)
    assert ("USER", "anonymous") in ftp.commands


def test_ftp_resume_with_rest(ftp: FtpServer, dest: Path) -> None:
    data = payload(300_000)
    (ftp.user_dir / "image.bin").write_bytes(data)
    part_of(dest).write_bytes(data[:111_111])
    done = run(download(ftp.url("/image.bin", f"{USER}:{QUOTED}@"), dest))
    assert ("REST", "111111") in ftp.commands
    assert done.sha256 == sha(data) and dest.read_bytes() == data


def test_ftp_fewer_bytes_than_size_is_incomplete(ftp: FtpServer, dest: Path) -> None:
    data = payload(100_000)
    (ftp.anon_dir / "image.bin").write_bytes(data)
    ftp.size_lie = 10
    error = failure(download(ftp.url("/image.bin"), dest))
    assert error.kind == "Incomplete" and "100000 of 100010 bytes" in str(error)
    assert not dest.exists() and part_of(dest).read_bytes() == data


def test_ftp_wrong_password(ftp: FtpServer, dest: Path) -> None:
    (ftp.user_dir / "image.bin").write_bytes(b"x")
    error = failure(download(ftp.url("/image.bin", f"{USER}:n0t-{QUOTED}@"), dest))
    assert error.kind == "PermissionDenied" and "login refused" in str(error)
    assert "n0t" not in str(error) and QUOTED not in str(error)


def test_ftp_missing_file(ftp: FtpServer, dest: Path) -> None:
    error = failure(download(ftp.url("/missing.bin", f"{USER}:{QUOTED}@"), dest))
    assert error.kind == "NotFound" and "550" in str(error)
    assert list(dest.parent.iterdir()) == []


def test_ftp_size_over_max_bytes(ftp: FtpServer, dest: Path) -> None:
    (ftp.anon_dir / "big.bin").write_bytes(payload(100_000))
    error = failure(download(ftp.url("/big.bin"), dest, max_bytes=50_000))
    assert error.kind == "TooLarge"
    assert not any(cmd == "RETR" for cmd, _ in ftp.commands)
    assert list(dest.parent.iterdir()) == []


# --- uploads ----------------------------------------------------------------------------

@pytest.fixture
def log_file(tmp_path: Path) -> tuple[Path, bytes]:
    data = payload(180_000, seed=7) + b"\r\n--not-a-boundary--\r\n"
    path = tmp_path / "diagnostics-2026.tar.gz"
    path.write_bytes(data)
    return path, data


def test_http_put(web: FileServer, log_file: tuple[Path, bytes]) -> None:
    path, data = log_file
    run(upload(web.url("/logs/cs-001.tar.gz"), path))
    request = web.requests[-1]
    assert request.method == "PUT" and request.path == "/logs/cs-001.tar.gz"
    assert request.headers["Content-Type"] == "application/octet-stream"
    assert request.headers["Content-Length"] == str(len(data)) and request.body == data


def test_https_post_multipart(tls_web: FileServer, log_file: tuple[Path, bytes],
                              client_tls: ssl.SSLContext) -> None:
    path, data = log_file
    run(upload(tls_web.url("/upload"), path, method="POST", ssl_context=client_tls))
    request = tls_web.requests[-1]
    content_type = request.headers["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    body = request.body
    assert int(request.headers["Content-Length"]) == len(body)
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n")
    inner = body[len(boundary) + 4: -(len(boundary) + 8)]
    head, _, content = inner.partition(b"\r\n\r\n")
    assert content == data
    headers = BytesHeaderParser(policy=HTTP).parsebytes(head + b"\r\n\r\n")
    disposition = headers["Content-Disposition"]
    assert disposition.content_disposition == "form-data"
    assert disposition.params == {"name": "file", "filename": path.name}
    assert headers["Content-Type"] == "application/octet-stream"


def test_upload_with_basic_auth(web: FileServer, log_file: tuple[Path, bytes]) -> None:
    path, data = log_file
    web.behaviour.auth = (USER, PASSWORD)
    run(upload(web.url("/logs/x", f"{USER}:{QUOTED}@"), path))
    assert web.files["/logs/x"] == data


def test_upload_refused(web: FileServer, log_file: tuple[Path, bytes]) -> None:
    path, _ = log_file
    web.behaviour.status["/logs/x"] = 403
    error = failure(upload(web.url("/logs/x", f"{USER}:{QUOTED}@"), path))
    assert error.kind == "PermissionDenied" and "HTTP 403" in str(error)
    assert path.name in str(error) and QUOTED not in str(error)

    web.behaviour.status["/logs/x"] = 500
    assert failure(upload(web.url("/logs/x"), path, method="POST")).kind == "ServerError"


def test_upload_follows_307(web: FileServer, log_file: tuple[Path, bytes]) -> None:
    path, data = log_file
    web.behaviour.redirects["/logs/x"] = (307, "/store/x")
    run(upload(web.url("/logs/x"), path))
    assert web.files["/store/x"] == data


def test_upload_of_a_missing_file(web: FileServer, tmp_path: Path) -> None:
    error = failure(upload(web.url("/logs/x"), tmp_path / "nope.log"))
    assert error.kind == "NotFound" and "nope.log" in str(error)
    assert web.requests == []


def test_upload_method_must_be_put_or_post(web: FileServer, log_file: tuple[Path, bytes]) -> None:
    with pytest.raises(ValueError):
        run(upload(web.url("/x"), log_file[0], method="PATCH"))


def test_ftp_stor_into_a_directory(ftp: FtpServer, log_file: tuple[Path, bytes]) -> None:
    path, data = log_file
    (ftp.user_dir / "logs").mkdir()
    run(upload(ftp.url("/logs/", f"{USER}:{QUOTED}@"), path))
    assert (ftp.user_dir / "logs" / path.name).read_bytes() == data


def test_ftp_stor_to_a_file_path(ftp: FtpServer, log_file: tuple[Path, bytes]) -> None:
    path, data = log_file
    run(upload(ftp.url("/cs-001-log.tgz", f"{USER}:{QUOTED}@"), path))
    assert (ftp.user_dir / "cs-001-log.tgz").read_bytes() == data


def test_ftp_stor_refused_for_anonymous(ftp: FtpServer, log_file: tuple[Path, bytes]) -> None:
    error = failure(upload(ftp.url("/"), log_file[0]))
    assert error.kind == "PermissionDenied" and "550" in str(error)
    assert list(ftp.anon_dir.iterdir()) == []
