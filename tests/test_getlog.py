"""GetLog (N01) end to end: the agent in this process against the real CSMS peer, each log
type uploaded to a real HTTP server on 127.0.0.1, the archive opened and read."""

import asyncio
import io
import logging
import tarfile
from datetime import datetime, timedelta, timezone

from agent.clock import ManualClock, format_datetime
from agent.demo.csms import Csms
from tests.file_servers import FileServer
from tests.harness import PASSWORD, InProcessAgent, until_logged, write_config

STATION = "CS-LOG"


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def station(tmp_path, csms, clock):
    return InProcessAgent(write_config(tmp_path, csms.url, station_id=STATION), clock)


async def connected(csms):
    link = await csms.wait_station(STATION, timeout=10)
    await link.expect_call("StatusNotification", timeout=10)
    return link


async def log_statuses(link, request_id, last):
    seen = []
    while not seen or seen[-1] != last:
        payload = await link.expect_call("LogStatusNotification", timeout=15)
        assert payload.get("requestId") == request_id, payload
        seen.append(payload["status"])
    return seen


def members(data):
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {m.name: archive.extractfile(m).read().decode() for m in archive.getmembers()
                if m.isfile()}


def test_each_log_type_is_uploaded_with_what_the_window_holds(tmp_path, caplog):
    async def main():
        logging.getLogger().setLevel(logging.INFO)   # as `station-agent run` sets it
        clock = ManualClock(datetime.now(timezone.utc))
        async with Csms(passwords={STATION: PASSWORD}, now=clock.now) as csms:
            with FileServer() as server:
                async with station(tmp_path, csms, clock):
                    link = await connected(csms)
                    # Bad frames from the CSMS: answered, and one InvalidMessages event
                    # in the security log for the lot.
                    for text in ('[2, "b1", "Reset", {"type": "Sometime"}]', "not json"):
                        await link.send_raw(text, timeout=5)
                    since = format_datetime(clock.now() - timedelta(minutes=5))
                    answer = await link.call("GetLog", {
                        "logType": "SecurityLog", "requestId": 5,
                        "log": {"remoteLocation": server.url("/logs/"), "oldestTimestamp": since}})
                    assert answer["status"] == "Accepted"
                    name = answer["filename"]
                    assert name.startswith(f"{STATION}-SecurityLog-") and name.endswith(".tar.gz")
                    assert await log_statuses(link, 5, "Uploaded") == ["Uploading", "Uploaded"]
                    uploaded = server.files[f"/logs/{name}"]
                    security = next(v for k, v in members(uploaded).items() if "security" in k)
                    assert "StartupOfTheDevice" in security
                    invalid = [line for line in security.splitlines() if "InvalidMessages" in line]
                    assert len(invalid) == 1 and "Reset" in invalid[0], security

                    answer = await link.call("GetLog", {
                        "logType": "DiagnosticsLog", "requestId": 6,
                        "log": {"remoteLocation": server.url("/upload/diag.tar.gz")}})
                    assert answer["status"] == "Accepted"
                    assert await log_statuses(link, 6, "Uploaded") == ["Uploading", "Uploaded"]
                    text = members(server.files["/upload/diag.tar.gz"])["agent.log"]
                    # The agent's own log: its start and its connection are in it.
                    assert "starting as CS-LOG" in text
                    assert server.requests[-1].method == "PUT"

                    # An upload that cannot succeed: 403 on every attempt, then one status.
                    server.behaviour.status["/denied/x.tar.gz"] = 403
                    answer = await link.call("GetLog", {
                        "logType": "DiagnosticsLog", "requestId": 7, "retries": 1,
                        "retryInterval": 30,
                        "log": {"remoteLocation": server.url("/denied/x.tar.gz")}})
                    assert answer["status"] == "Accepted"
                    assert await log_statuses(link, 7, "Uploading") == ["Uploading"]
                    await until_logged(caplog, "attempt 1 of 2 failed")
                    await clock.advance(30)
                    assert await log_statuses(link, 7, "PermissionDenied") == [
                        "Uploading", "PermissionDenied"]

                    answer = await link.call("GetLog", {
                        "logType": "DiagnosticsLog", "requestId": 8,
                        "log": {"remoteLocation": "nfs://127.0.0.1/x"}})
                    assert answer["status"] == "Rejected"
                    assert answer["statusInfo"]["reasonCode"] == "InvalidURL"
                    answer = await link.call("TriggerMessage", {"requestedMessage": "LogStatusNotification"})
                    assert answer["status"] == "Accepted"
                    assert await link.expect_call("LogStatusNotification") == {"status": "Idle"}
            assert csms.schema_errors == []
    root = logging.getLogger()
    level = root.level
    try:
        run(main())
    finally:
        root.setLevel(level)
