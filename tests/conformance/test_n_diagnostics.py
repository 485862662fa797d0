"""Part 6, N Diagnostics: the Charging Station cases of Core (Part 5), with the 2023-12
errata (TC_N_26: four attempts; TC_N_35/36: no Monitoring prerequisite; TC_N_36: only for
stations that can cancel an upload, which this one can).

GetLog uploads go to a real HTTP server on 127.0.0.1 (tests/file_servers.py).
"""

from __future__ import annotations

import asyncio
import io
import logging
import tarfile

import pytest

from tests.conformance.local_list import LIST_ENABLED, id_token_local_auth_list
from tests.conformance.offline import cache_token
from tests.conformance.rig import VALID_TOKEN, Rig, run, station
from tests.file_servers import FileServer
from tests.harness import until_logged


async def log_statuses(rig: Rig, request_id: int, last: str) -> list[str]:
    """LogStatusNotification statuses for `request_id`, up to `last`."""
    seen: list[str] = []
    while not seen or seen[-1] != last:
        payload = await rig.expect("LogStatusNotification", timeout=15)
        assert payload.get("requestId") == request_id, payload
        seen.append(payload["status"])
    return seen


def archive(data: bytes) -> dict[str, str]:
    """The uploaded file's members (a tar.gz) by name, as text."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read().decode()   # type: ignore[union-attr]
                for m in tar.getmembers() if m.isfile()}


def get_log(log_type: str, request_id: int, url: str, **extra) -> dict:
    return {"logType": log_type, "requestId": request_id, "log": {"remoteLocation": url},
            **extra}


# -- N01 Retrieve Log Information -----------------------------------------------------------

def test_TC_N_25(tmp_path):
    """Retrieve Log Information - Diagnostics Log - Success."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                answer = await rig.call("GetLog", get_log("DiagnosticsLog", 25,
                                                          server.url("/logs/")))
                assert answer["status"] == "Accepted"
                assert answer.get("filename")
                assert await log_statuses(rig, 25, "Uploaded") == ["Uploading", "Uploaded"]
                # The file named in the answer is at the location, and is the diagnostics
                # log the station has (its start is in it), not the security log.
                members = archive(server.files[f"/logs/{answer['filename']}"])
                assert "agent.log" in members and "security.log" not in members
                assert "station-agent" in members["agent.log"]
    run(case())


def test_TC_N_26(tmp_path, caplog):
    """Retrieve Log Information - Diagnostics Log - Upload failed: retries 3, so four
    attempts retryInterval apart, then one failure status (errata 2023-12)."""
    caplog.set_level(logging.INFO)
    interval = 45

    async def case():
        with FileServer() as server:
            server.behaviour.status["/denied/log.tar.gz"] = 500
            async with station(tmp_path) as rig:
                answer = await rig.call("GetLog", get_log(
                    "DiagnosticsLog", 26, server.url("/denied/log.tar.gz"), retries=3,
                    retryInterval=interval))
                assert answer["status"] == "Accepted"
                first = await rig.expect("LogStatusNotification")
                assert first == {"status": "Uploading", "requestId": 26}
                started = rig.clock.monotonic()
                for attempt in range(1, 4):
                    await until_logged(caplog, f"attempt {attempt} of 4 failed")
                    await rig.settle()
                    assert [p["status"] for p in rig.sent("LogStatusNotification")
                            if p["status"] != "Uploading"] == [], "failed before the last try"
                    await rig.advance(interval)
                final = await log_statuses(rig, 26, "UploadFailure")
                assert set(final[:-1]) <= {"Uploading"}
                assert final[-1] in ("UploadFailure", "BadMessage", "PermissionDenied",
                                     "NotSupportedOperation")
                assert rig.clock.monotonic() - started == 3 * interval
                assert len([r for r in server.requests if r.path == "/denied/log.tar.gz"]) == 4
    run(case())


def test_TC_N_35(tmp_path):
    """Retrieve Log Information - Security Log - Success."""
    async def case():
        with FileServer() as server:
            async with station(tmp_path) as rig:
                answer = await rig.call("GetLog", get_log("SecurityLog", 35,
                                                          server.url("/logs/")))
                assert answer["status"] == "Accepted"
                assert answer.get("filename")
                assert await log_statuses(rig, 35, "Uploaded") == ["Uploading", "Uploaded"]
                # The security log: the events of this boot are in it.
                members = archive(server.files[f"/logs/{answer['filename']}"])
                assert "security.log" in members and "agent.log" not in members
                assert "StartupOfTheDevice" in members["security.log"]
    run(case())


def test_TC_N_36(tmp_path):
    """Retrieve Log Information - Second Request: a GetLog during an upload cancels it."""
    async def case():
        with FileServer() as server:
            server.behaviour.stall_before_answer = True   # the first upload hangs
            async with station(tmp_path) as rig:
                answer = await rig.call("GetLog", get_log("DiagnosticsLog", 1,
                                                          server.url("/first/")))
                assert answer["status"] == "Accepted"
                assert await rig.expect("LogStatusNotification") == {
                    "status": "Uploading", "requestId": 1}
                assert await asyncio.to_thread(server.stalled.wait, 5)
                server.behaviour.stall_before_answer = False
                answer = await rig.call("GetLog", get_log("DiagnosticsLog", 2,
                                                          server.url("/second/")))
                assert answer["status"] == "AcceptedCanceled"
                cancelled = await rig.expect("LogStatusNotification")
                assert cancelled == {"status": "AcceptedCanceled", "requestId": 1}
                assert await log_statuses(rig, 2, "Uploaded") == ["Uploading", "Uploaded"]
                assert f"/second/{answer['filename']}" in server.files
                assert not any(path.startswith("/first/") for path in server.files)
                server.release.set()
    run(case())


# -- N09 / N10 Customer information ---------------------------------------------------------

async def customer_reports(rig: Rig, request_id: int) -> list[dict]:
    """Every NotifyCustomerInformation part of `request_id`, until one without tbc."""
    parts: list[dict] = []
    while not parts or parts[-1].get("tbc", False):
        payload = await rig.expect("NotifyCustomerInformation")
        if payload["requestId"] == request_id:
            parts.append(payload)
    assert [p["seqNo"] for p in parts] == list(range(len(parts)))
    return parts


def text_of(parts: list[dict]) -> str:
    return "".join(p["data"] for p in parts)


async def customer_information(rig: Rig, request_id: int, *, report: bool, clear: bool,
                               **reference) -> list[dict]:
    answer = await rig.call("CustomerInformation", {
        "requestId": request_id, "report": report, "clear": clear, **reference})
    assert answer["status"] == "Accepted"
    return await customer_reports(rig, request_id)


async def authorization_lapsed(rig: Rig, *, from_list: bool) -> None:
    """Charging State Authorized (local), then ParkingBayUnoccupied: no EV came, the
    authorization lapses after EVConnectionTimeOut. `from_list`: the token is in the Local
    Authorization List, which decides at once (no AuthorizeRequest); else the CSMS is
    asked, and its answer cached."""
    asked = len(rig.sent("Authorize"))
    await rig.authorized_local()
    requests = [p["idToken"] for p in rig.sent("Authorize")[asked:]]
    assert requests == ([] if from_list else [VALID_TOKEN]), requests
    timeout = int(await rig.get_variable("TxCtrlr", "EVConnectionTimeOut"))
    await rig.advance(timeout + 1)


async def customer_known(rig: Rig) -> None:
    """TC_N_27/30's preparations. Configuration State: LocalAuthListCtrlr.Enabled,
    AuthCtrlr.LocalPreAuthorize and AuthCacheCtrlr.Enabled true. Memory State:
    IdTokenCached, then IdTokenLocalAuthList (the cache first: a token the list holds is
    not cached). Charging State: Authorized (local), ParkingBayUnoccupied."""
    await rig.configure({**LIST_ENABLED, ("AuthCtrlr", "LocalPreAuthorize"): "true",
                         ("AuthCacheCtrlr", "Enabled"): "true"})
    await cache_token(rig, VALID_TOKEN)
    assert int(await rig.get_variable("AuthCacheCtrlr", "Storage")) > 0
    await id_token_local_auth_list(rig, VALID_TOKEN)
    await authorization_lapsed(rig, from_list=True)


def test_TC_N_27(tmp_path):
    """Get Customer Information - Accepted + data."""
    async def case():
        async with station(tmp_path) as rig:
            await customer_known(rig)
            parts = await customer_information(rig, 27, report=True, clear=False,
                                               idToken=VALID_TOKEN)
            assert all(p["data"] for p in parts)
            text = text_of(parts)
            assert "Authorization cache" in text and "Local Authorization List" in text
            assert VALID_TOKEN["idToken"] in text
    run(case())


def test_TC_N_28(tmp_path):
    """Get Customer Information - Accepted + no data: after the CSMS cleared what the
    station held of the token, a report says that nothing is found."""
    async def case():
        async with station(tmp_path) as rig:
            # Something to clear (a cached token), so the clear is seen to work. No list
            # entry: the prerequisite is a station with no data of the token, and a clear
            # keeps the CSMS's list (TC_N_30).
            await rig.configure({("AuthCtrlr", "LocalPreAuthorize"): "true",
                                 ("AuthCacheCtrlr", "Enabled"): "true"})
            await authorization_lapsed(rig, from_list=False)
            await customer_information(rig, 1, report=False, clear=True, idToken=VALID_TOKEN)
            parts = await customer_information(rig, 28, report=True, clear=False,
                                               idToken=VALID_TOKEN)
            assert parts[-1].get("tbc", False) is not True
            assert len(parts) == 1 and "No data found" in parts[0]["data"]
    run(case())


def test_TC_N_30(tmp_path):
    """Clear Customer Information - Clear and report + data: all customer data removed
    except the Local Authorization List's (Part 6's purpose of the N10 cases)."""
    async def case():
        async with station(tmp_path) as rig:
            await customer_known(rig)
            parts = await customer_information(rig, 30, report=True, clear=True,
                                               idToken=VALID_TOKEN)
            assert all(p["data"] for p in parts)
            text = text_of(parts)
            assert "Cleared: Authorization cache" in text
            assert "Kept: Local Authorization List" in text
            # Step 5: the report that follows (step 8: tbc not true) finds only the list's
            # entry, which the CSMS manages.
            parts = await customer_information(rig, 31, report=True, clear=False,
                                               idToken=VALID_TOKEN)
            assert parts[-1].get("tbc", False) is not True
            lines = text_of(parts).splitlines()
            assert len(lines) == 1 and lines[0].startswith("Local Authorization List: "), lines
            # The cache is empty, and says so; the list is untouched.
            assert await rig.get_variable("AuthCacheCtrlr", "Storage") == "0"
            assert await rig.get_variable("LocalAuthListCtrlr", "Entries") == "1"
            assert await rig.call("GetLocalListVersion", {}) == {"versionNumber": 1}
    run(case())


def test_TC_N_31(tmp_path):
    """Clear Customer Information - Clear and report + no data."""
    async def case():
        async with station(tmp_path) as rig:
            parts = await customer_information(rig, 31, report=True, clear=True,
                                               idToken=VALID_TOKEN)
            assert len(parts) == 1 and "No data found" in parts[0]["data"]
    run(case())


def test_TC_N_32(tmp_path):
    """Clear Customer Information - Clear and no report: one message says the data is
    cleared."""
    async def case():
        async with station(tmp_path) as rig:
            parts = await customer_information(rig, 32, report=False, clear=True,
                                               idToken=VALID_TOKEN)
            assert len(parts) == 1 and "cleared" in parts[0]["data"]
    run(case())


def test_TC_N_62(tmp_path):
    """Clear Customer Information - Clear and report - customerIdentifier."""
    pytest.skip("not applicable: C-14 (retrieving / deleting CustomerInformation by "
                "customerIdentifier) is not supported: the station stores no data keyed "
                "by a customerIdentifier and has no means to enter one")
