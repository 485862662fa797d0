"""The diagnostics block: GetLog and LogStatusNotification (N01), the archive it uploads,
retries on the manual clock, cancellation by a newer GetLog, recovery after a power cut.

A fake link plays the CSMS (every payload checked against the official OCPP 2.0.1 schemas
of the `ocpp` package), a fake upload keeps each archive it is given or fails with a
TransferError kind, and a ManualClock drives the retry intervals: no test sleeps. The
archive is built in a thread, so tests wait for what the block sends, bounded by a
timeout that only guards against a hang.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from ocpp.messages import MessageType, get_validator

from agent import __version__
from agent.blocks.diagnostics.get_log import META_KEY, Diagnostics
from agent.blocks.security_log import SecurityLog
from agent.clock import ManualClock, format_datetime
from agent.ocpp.outbox import Outbox
from agent.ocpp.session import CallTimeout, NotConnected, Reply, Router, Session
from agent.store import Store
from tests.pipes import PipeConnection

STATION = "CS-001"
T0 = datetime(2026, 12, 3, 7, 5, 34, 123000, tzinfo=timezone.utc)
FILENAME = "CS-001-DiagnosticsLog-20261203T070534Z.tar.gz"
URL = "https://logs.example.com/upload/station.tar.gz"
HANG = 5.0   # seconds before a test that waits for the block counts it as hung


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


async def settle() -> None:
    for _ in range(30):
        await asyncio.sleep(0)


class TransferError(Exception):
    """Stands in for agent.transfer.TransferError: the block only looks at `kind`."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message or kind)
        self.kind = kind


class Changes:
    """Wakes a test whenever the fakes saw something."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def note(self) -> None:
        self._event.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not condition():
                self._event.clear()
                await self._event.wait()
        await asyncio.wait_for(wait(), HANG)


class FakeLink:
    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.online = asyncio.Event()
        self.online.set()
        self.fail: Exception | None = None

    async def call(self, action: str, payload: dict[str, Any], *, before_accepted: bool = False,
                   wait: bool = True, timeout: float | None = None) -> dict[str, Any]:
        get_validator(MessageType.Call, action, "2.0.1").validate(payload)
        if not self.online.is_set():
            if not wait:
                raise NotConnected(f"{action}: not connected")
            await self.online.wait()
        self.calls.append((action, payload, {"wait": wait, "before_accepted": before_accepted}))
        self.changes.note()
        if self.fail is not None:
            raise self.fail
        get_validator(MessageType.CallResult, action, "2.0.1").validate({})
        return {}

    def statuses(self) -> list[tuple[str, int | None]]:
        assert all(action == "LogStatusNotification" for action, _, _ in self.calls)
        return [(p["status"], p.get("requestId")) for _, p, _ in self.calls]


class FakeUpload:
    """Keeps what each attempt was given; fails with the kinds in `failures`, in order;
    `hold` keeps an attempt open until it is set."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes
        self.attempts: list[dict[str, Any]] = []
        self.failures: list[str | Exception] = []
        self.hold: asyncio.Event | None = None
        self.cancelled = 0

    async def __call__(self, url: str, source: Path, *, ssl_context: Any = None,
                       timeout: float = 60.0, method: str = "PUT") -> None:
        self.attempts.append({"url": url, "name": source.name, "data": source.read_bytes(),
                              "ssl_context": ssl_context, "timeout": timeout,
                              "method": method, "source": source})
        self.changes.note()
        try:
            if self.hold is not None:
                await self.hold.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            self.changes.note()
            raise
        if self.failures:
            failure = self.failures.pop(0)
            raise failure if isinstance(failure, Exception) else TransferError(failure)

    def members(self, index: int = -1) -> dict[str, str]:
        with tarfile.open(fileobj=io.BytesIO(self.attempts[index]["data"]), mode="r:gz") as tar:
            return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}


def check_url(url: str, *, for_upload: bool = False) -> None:
    assert for_upload
    scheme, sep, rest = url.partition("://")
    if not sep or not rest or " " in url:
        raise TransferError("InvalidURL", f"not a URL: {url!r}")
    if scheme not in ("http", "https", "ftp", "ftps"):
        raise TransferError("NotSupported", f"cannot upload with {scheme}")


def log_line(when: datetime, text: str) -> str:
    return f"{format_datetime(when)} INFO agent.test: {text}"


class Env:
    def __init__(self, tmp_path: Path, **kwargs: Any) -> None:
        self.tmp_path = tmp_path
        self.clock = ManualClock(T0)
        self.changes = Changes()
        self.link = FakeLink(self.changes)
        self.upload = FakeUpload(self.changes)
        self.work_dir = tmp_path / "diagnostics"
        self.log_dir = tmp_path / "log"
        self.contexts: list[object] = []
        self.stores: list[Store] = []
        self.open(**kwargs)

    def open(self, **kwargs: Any) -> None:
        """(Re)start the block on the same files, as after a power cut."""
        self.store = Store(self.tmp_path / "station-agent.db")
        self.stores.append(self.store)
        self.security_log = SecurityLog(self.store, self.clock,
                                        Outbox(self.store, None, self.clock, None))
        self.router = Router()
        self.block = Diagnostics(
            self.router, self.link, self.clock, self.store, STATION, work_dir=self.work_dir,
            log_dir=self.log_dir, upload=self.upload, check_url=check_url,
            security_log_text=kwargs.pop("security_log_text", self.security_log.export_text),
            ssl_context=self._context, **kwargs)

    def _context(self) -> object:
        context = object()
        self.contexts.append(context)
        return context

    async def handle(self, request: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        get_validator(MessageType.Call, "GetLog", "2.0.1").validate(request)
        answer = await self.router.routes["GetLog"].handler(request)
        payload, then = (answer.payload, answer.then) if isinstance(answer, Reply) else (
            answer, None)
        get_validator(MessageType.CallResult, "GetLog", "2.0.1").validate(payload)
        return payload, then

    async def get_log(self, request_id: int = 1, **kwargs: Any) -> dict[str, Any]:
        """GetLog answered, and its follow-up started as the session would."""
        payload, then = await self.handle(request(request_id, **kwargs))
        if then is not None:
            await then()
        return payload

    def write_log(self, lines: list[str], name: str = "agent.log") -> None:
        self.log_dir.mkdir(exist_ok=True)
        (self.log_dir / name).write_text("".join(line + "\n" for line in lines))

    def temp_dirs(self) -> list[Path]:
        return list(self.work_dir.glob("getlog-*")) if self.work_dir.exists() else []

    def meta(self) -> Any:
        text = self.store.get_meta(META_KEY)
        return None if text is None else json.loads(text)

    def close(self) -> None:
        for store in self.stores:
            store.close()


def request(request_id: int = 1, *, log_type: str = "DiagnosticsLog", url: str = URL,
            oldest: datetime | None = None, latest: datetime | None = None,
            retries: int | None = None, interval: int | None = None) -> dict[str, Any]:
    log: dict[str, Any] = {"remoteLocation": url}
    if oldest is not None:
        log["oldestTimestamp"] = format_datetime(oldest)
    if latest is not None:
        log["latestTimestamp"] = format_datetime(latest)
    payload: dict[str, Any] = {"log": log, "logType": log_type, "requestId": request_id}
    if retries is not None:
        payload["retries"] = retries
    if interval is not None:
        payload["retryInterval"] = interval
    return payload


@pytest.fixture
def env(tmp_path: Path):
    e = Env(tmp_path)
    yield e
    e.close()


def minutes(n: float) -> datetime:
    return T0 - timedelta(hours=1) + timedelta(minutes=n)


# -- Accepted, the archive, Uploading then Uploaded -------------------------------------------

def test_diagnostics_log_accepted_and_uploaded_with_the_window(env: Env) -> None:
    env.write_log([log_line(minutes(0), "one")], "agent.log.1")
    env.write_log([
        log_line(minutes(10), "two"),
        log_line(minutes(20), "three failed"),
        "Traceback (most recent call last):",
        "RuntimeError: three",
        log_line(minutes(30), "four"),
        log_line(minutes(40), "five"),
    ])

    async def main() -> None:
        payload, then = await env.handle(request(7, oldest=minutes(10), latest=minutes(30)))
        assert payload == {"status": "Accepted", "filename": FILENAME}
        # Nothing happens before the answer is on the wire.
        await settle()
        assert env.link.calls == [] and env.upload.attempts == []
        assert env.meta() is None and env.temp_dirs() == []
        await then()
        await env.changes.until(lambda: len(env.link.calls) == 2)
        assert env.link.statuses() == [("Uploading", 7), ("Uploaded", 7)]
        assert [c[2]["wait"] for c in env.link.calls] == [False, True]
        [attempt] = env.upload.attempts
        assert attempt["url"] == URL and attempt["name"] == FILENAME
        assert attempt["method"] == "PUT" and attempt["ssl_context"] is env.contexts[0]
        members = env.upload.members()
        assert sorted(members) == ["agent.log", "info.txt"]
        assert members["agent.log"].splitlines() == [
            log_line(minutes(10), "two"), log_line(minutes(20), "three failed"),
            "Traceback (most recent call last):", "RuntimeError: three",
            log_line(minutes(30), "four")]
        info = members["info.txt"]
        assert f"station: {STATION}\n" in info and __version__ in info
        assert "request id: 7\n" in info and "log type: DiagnosticsLog\n" in info
        assert f"oldest: {format_datetime(minutes(10))}\n" in info
        assert f"latest: {format_datetime(minutes(30))}\n" in info
        await settle()
        assert env.temp_dirs() == [] and not attempt["source"].exists()
        assert env.meta() is None
    run(main())


def test_without_a_window_the_whole_log_goes(env: Env) -> None:
    lines = [log_line(minutes(i), f"line {i}") for i in range(5)]
    env.write_log(lines)

    async def main() -> None:
        await env.get_log(1)
        await env.changes.until(lambda: len(env.link.calls) == 2)
        assert env.upload.members()["agent.log"].splitlines() == lines
        assert "oldest: -\n" in env.upload.members()["info.txt"]
    run(main())


def test_security_log_archive_holds_exactly_the_events_in_the_window(env: Env) -> None:
    for offset, kind in ((0, "StartupOfTheDevice"), (10, "SettingSystemTime"),
                         (20, "ResetOrReboot"), (30, "InvalidMessages")):
        env.clock.set_time(minutes(offset))
        env.security_log.record(kind, f"at {offset}")
    env.clock.set_time(T0)

    async def main() -> None:
        payload = await env.get_log(3, log_type="SecurityLog", oldest=minutes(10),
                                    latest=minutes(20))
        assert payload == {"status": "Accepted",
                           "filename": "CS-001-SecurityLog-20261203T070534Z.tar.gz"}
        await env.changes.until(lambda: len(env.link.calls) == 2)
        assert env.link.statuses() == [("Uploading", 3), ("Uploaded", 3)]
        members = env.upload.members()
        assert sorted(members) == ["info.txt", "security.log"]
        text = members["security.log"]
        assert text == env.security_log.export_text(minutes(10), minutes(20))
        assert [line.split()[1] for line in text.splitlines()] == [
            "SettingSystemTime", "ResetOrReboot"]
        assert "log type: SecurityLog\n" in members["info.txt"]
    run(main())


@pytest.mark.parametrize("url,expected", [
    ("ftp://user:secret@logs.example.com/incoming/",
     f"ftp://user:secret@logs.example.com/incoming/{FILENAME}"),
    ("http://logs.example.com", f"http://logs.example.com/{FILENAME}"),
    ("http://logs.example.com/put?token=1", "http://logs.example.com/put?token=1"),
])
def test_a_directory_url_gets_the_file_name(env: Env, url: str, expected: str) -> None:
    async def main() -> None:
        await env.get_log(1, url=url)
        await env.changes.until(lambda: len(env.link.calls) == 2)
        assert env.upload.attempts[0]["url"] == expected
        assert env.upload.attempts[0]["ssl_context"] is None and env.contexts == []
    run(main())


def test_the_answer_goes_out_before_any_status(tmp_path: Path) -> None:
    """Through a real session: the GetLog CALLRESULT is on the wire before Uploading."""
    async def main() -> None:
        env = Env(tmp_path)
        conn = PipeConnection()
        session = Session(conn, env.router, env.clock, lambda: 30)

        class SessionLink:
            async def call(self, action: str, payload: dict[str, Any], **kwargs: Any) -> Any:
                return await session.call(action, payload)

        env.block._link = SessionLink()  # the block's only way out, as the daemon wires it
        runner = asyncio.ensure_future(session.run())
        try:
            conn.feed([2, "m1", "GetLog", request(5, retries=0)])
            answer = await conn.next_sent()
            assert answer == [3, "m1", {"status": "Accepted", "filename": FILENAME}]
            for status in ("Uploading", "Uploaded"):
                frame = await conn.next_sent()
                assert frame[2:] == ["LogStatusNotification",
                                     {"status": status, "requestId": 5}]
                conn.feed([3, frame[1], {}])
            await session.close()
            await runner
        finally:
            env.close()
    run(main())


# -- retries and failures ---------------------------------------------------------------------

def test_retries_wait_the_interval_on_the_clock(env: Env) -> None:
    env.upload.failures = ["Network", "ServerError"]

    async def main() -> None:
        await env.get_log(2, retries=3, interval=30)
        await env.changes.until(lambda: len(env.upload.attempts) == 1)
        await settle()
        for attempt in (2, 3):
            await env.clock.advance(29)
            assert len(env.upload.attempts) == attempt - 1, "retried before the interval"
            await env.clock.advance(1)
            await env.changes.until(lambda: len(env.upload.attempts) == attempt)
            await settle()
        await env.changes.until(lambda: len(env.link.calls) == 4)
        assert env.link.statuses() == [("Uploading", 2)] * 3 + [("Uploaded", 2)]
        # The same archive each time, removed once done.
        assert len({a["data"] for a in env.upload.attempts}) == 1
        assert env.temp_dirs() == [] and env.meta() is None
    run(main())


@pytest.mark.parametrize("failure,status", [
    ("PermissionDenied", "PermissionDenied"),
    ("NotFound", "BadMessage"),
    ("InvalidURL", "BadMessage"),
    ("NotSupported", "NotSupportedOperation"),
    ("Network", "UploadFailure"),
    ("Incomplete", "UploadFailure"),
    ("ServerError", "UploadFailure"),
    ("NoSpace", "UploadFailure"),
    (OSError("no kind at all"), "UploadFailure"),
])
def test_failure_status_only_after_all_attempts(env: Env, failure: Any, status: str) -> None:
    env.upload.failures = [failure, failure]

    async def main() -> None:
        await env.get_log(4, retries=1, interval=10)
        await env.changes.until(lambda: len(env.upload.attempts) == 1)
        await settle()
        assert env.link.statuses() == [("Uploading", 4)]
        assert env.meta() == {"requestId": 4, "status": "Uploading"}
        await env.clock.advance(10)
        await env.changes.until(lambda: len(env.link.calls) == 3)
        assert env.link.statuses() == [("Uploading", 4), ("Uploading", 4), (status, 4)]
        await settle()
        assert len(env.upload.attempts) == 2
        assert env.temp_dirs() == [] and env.meta() is None
    run(main())


def test_the_last_failure_names_the_status(env: Env) -> None:
    env.upload.failures = ["PermissionDenied", "Network"]

    async def main() -> None:
        await env.get_log(4, retries=1, interval=0)
        await env.changes.until(lambda: len(env.link.calls) == 3)
        assert env.link.statuses()[-1] == ("UploadFailure", 4)
    run(main())


def test_no_retries_means_one_attempt(env: Env) -> None:
    env.upload.failures = ["Network"]

    async def main() -> None:
        await env.get_log(6, retries=0, interval=10)
        await env.changes.until(lambda: len(env.link.calls) == 2)
        assert env.link.statuses() == [("Uploading", 6), ("UploadFailure", 6)]
        assert len(env.upload.attempts) == 1 and env.clock.sleepers == 0
    run(main())


def test_an_archive_that_cannot_be_made_is_an_upload_failure(tmp_path: Path) -> None:
    def broken(oldest: Any, latest: Any) -> str:
        raise OSError("disk full")

    async def main() -> None:
        env = Env(tmp_path, security_log_text=broken)
        try:
            await env.get_log(8, log_type="SecurityLog")
            await env.changes.until(lambda: len(env.link.calls) == 1)
            assert env.link.statuses() == [("UploadFailure", 8)]
            assert env.upload.attempts == [] and env.temp_dirs() == []
        finally:
            env.close()
    run(main())


def test_interim_statuses_are_lost_offline_the_final_one_waits(env: Env) -> None:
    env.link.online.clear()

    async def main() -> None:
        await env.get_log(9, retries=0)
        await env.changes.until(lambda: len(env.upload.attempts) == 1)
        await settle()
        assert env.link.calls == [] and env.meta() == {"requestId": 9, "status": "Uploaded"}
        env.link.online.set()
        await env.changes.until(lambda: len(env.link.calls) == 1)
        assert env.link.statuses() == [("Uploaded", 9)]
        await settle()
        assert env.meta() is None
    run(main())


def test_a_final_status_the_csms_refuses_is_not_retried(env: Env) -> None:
    env.link.fail = CallTimeout("no answer")

    async def main() -> None:
        await env.get_log(10, retries=0)
        await env.changes.until(lambda: len(env.link.calls) == 2)
        await settle()
        assert env.link.statuses() == [("Uploading", 10), ("Uploaded", 10)]
        assert env.meta() is None
    run(main())


# -- a new GetLog while one is under way -------------------------------------------------------

@pytest.mark.parametrize("stage", ["uploading", "waiting to retry"])
def test_a_second_get_log_cancels_the_first(env: Env, stage: str) -> None:
    async def main() -> None:
        if stage == "uploading":
            env.upload.hold = asyncio.Event()
        else:
            env.upload.failures = ["Network"]
        await env.get_log(1, retries=2, interval=60)
        await env.changes.until(lambda: len(env.upload.attempts) == 1)
        await settle()
        payload, then = await env.handle(request(2, retries=0))
        assert payload == {"status": "AcceptedCanceled", "filename": FILENAME}
        await settle()
        assert env.link.statuses() == [("Uploading", 1)]   # nothing before the answer
        env.upload.hold = None
        await then()
        await env.changes.until(lambda: len(env.link.calls) == 4)
        assert env.link.statuses() == [("Uploading", 1), ("AcceptedCanceled", 1),
                                       ("Uploading", 2), ("Uploaded", 2)]
        assert env.upload.cancelled == (1 if stage == "uploading" else 0)
        # The first one stops for good: no retry, no status of its own later.
        await env.clock.advance(3600)
        assert len(env.upload.attempts) == 2 and len(env.link.calls) == 4
        assert env.temp_dirs() == [] and env.meta() is None
    run(main())


def test_a_get_log_after_the_last_one_finished_is_plain_accepted(env: Env) -> None:
    async def main() -> None:
        await env.get_log(1, retries=0)
        await env.changes.until(lambda: len(env.link.calls) == 2)
        assert (await env.get_log(2, retries=0))["status"] == "Accepted"
        await env.changes.until(lambda: len(env.link.calls) == 4)
        assert env.link.statuses() == [("Uploading", 1), ("Uploaded", 1),
                                       ("Uploading", 2), ("Uploaded", 2)]
    run(main())


# -- rejected up front -----------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["not a url", "sftp://logs.example.com/in/", "https://"])
def test_a_url_we_cannot_upload_to_is_rejected(env: Env, url: str) -> None:
    async def main() -> None:
        payload, then = await env.handle(request(1, url=url))
        assert then is None
        assert payload["status"] == "Rejected"
        assert payload["statusInfo"]["reasonCode"] == "InvalidURL"
        assert "filename" not in payload
        await settle()
        assert env.upload.attempts == [] and env.link.calls == [] and env.meta() is None
        assert env.temp_dirs() == []
    run(main())


def test_an_inverted_window_is_rejected(env: Env) -> None:
    async def main() -> None:
        payload, then = await env.handle(request(1, oldest=minutes(30), latest=minutes(10)))
        assert then is None
        assert payload["status"] == "Rejected"
        assert payload["statusInfo"]["reasonCode"] == "InvalidValue"
        await settle()
        assert env.upload.attempts == [] and env.link.calls == []
        # Equal bounds are a window of one instant, not an error.
        assert (await env.get_log(2, oldest=minutes(10), latest=minutes(10)))["status"] \
            == "Accepted"
    run(main())


def test_a_rejected_get_log_leaves_the_upload_under_way_alone(env: Env) -> None:
    async def main() -> None:
        env.upload.hold = asyncio.Event()
        await env.get_log(1, retries=0)
        await env.changes.until(lambda: len(env.upload.attempts) == 1)
        assert (await env.get_log(2, url="gopher://x/"))["status"] == "Rejected"
        env.upload.hold.set()
        await env.changes.until(lambda: len(env.link.calls) == 2)
        assert env.link.statuses() == [("Uploading", 1), ("Uploaded", 1)]
        assert env.upload.cancelled == 0
    run(main())


# -- power cut ---------------------------------------------------------------------------------

def test_an_upload_cut_by_a_power_loss_is_reported_failed_at_the_next_start(env: Env) -> None:
    async def main() -> None:
        env.upload.hold = asyncio.Event()
        await env.get_log(11, retries=0)
        await env.changes.until(lambda: len(env.upload.attempts) == 1)
        assert env.meta() == {"requestId": 11, "status": "Uploading"}
        assert len(env.temp_dirs()) == 1
        old_task = env.block._job.task
        # The power goes: nothing more of that run happens. A new run on the same files,
        # offline at first.
        env.link.online.clear()
        env.open()
        env.block.recover()
        assert env.temp_dirs() == []          # the leftover archive is gone at start
        runner = asyncio.ensure_future(env.block.run())
        await settle()
        assert env.link.statuses() == [("Uploading", 11)]
        env.link.online.set()
        await env.changes.until(lambda: len(env.link.calls) == 2)
        assert env.link.statuses()[-1] == ("UploadFailure", 11)
        await settle()
        assert env.meta() is None and not runner.done()
        runner.cancel()
        old_task.cancel()
        await asyncio.gather(runner, old_task, return_exceptions=True)
        # Reported once: the next start has nothing to say.
        env.open()
        env.block.recover()
        runner = asyncio.ensure_future(env.block.run())
        await settle()
        assert len(env.link.calls) == 2
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    run(main())


def test_a_final_status_not_yet_told_is_told_at_the_next_start(env: Env) -> None:
    env.store.set_meta(META_KEY, json.dumps({"requestId": 12, "status": "Uploaded"}))

    async def main() -> None:
        env.block.recover()
        runner = asyncio.ensure_future(env.block.run())
        await env.changes.until(lambda: len(env.link.calls) == 1)
        assert env.link.statuses() == [("Uploaded", 12)]
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    run(main())


def test_an_unreadable_record_is_dropped(env: Env) -> None:
    env.store.set_meta(META_KEY, "{not json")

    async def main() -> None:
        env.block.recover()
        runner = asyncio.ensure_future(env.block.run())
        await settle()
        assert env.link.calls == [] and env.meta() is None
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    run(main())


def test_stopping_the_block_stops_the_upload_and_keeps_its_record(env: Env) -> None:
    async def main() -> None:
        env.upload.hold = asyncio.Event()
        runner = asyncio.ensure_future(env.block.run())
        await env.get_log(13, retries=0)
        await env.changes.until(lambda: len(env.upload.attempts) == 1)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await env.changes.until(lambda: env.upload.cancelled == 1)
        await settle()
        assert env.temp_dirs() == []
        assert env.meta() == {"requestId": 13, "status": "Uploading"}
        assert env.link.statuses() == [("Uploading", 13)]
    run(main())


# -- TriggerMessage LogStatusNotification -------------------------------------------------------

def test_trigger_status_idle_or_uploading(env: Env) -> None:
    async def main() -> None:
        await env.block.trigger_status()
        assert env.link.calls[-1][1] == {"status": "Idle"}
        assert env.link.calls[-1][2]["before_accepted"] is True
        env.upload.hold = asyncio.Event()
        await env.get_log(14, retries=0)
        await env.changes.until(lambda: len(env.upload.attempts) == 1)
        await env.block.trigger_status()
        assert env.link.calls[-1][1] == {"status": "Uploading", "requestId": 14}
        env.upload.hold.set()
        await env.changes.until(lambda: ("Uploaded", 14) in env.link.statuses())
        await env.block.trigger_status()
        assert env.link.calls[-1][1] == {"status": "Idle"}
        # Offline: the trigger's answer is simply not sent.
        env.link.fail = NotConnected("gone")
        await env.block.trigger_status()
    run(main())
