"""The real agent process against the real CSMS peer on 127.0.0.1.

What a CSMS operator sees: registration, status, variables that persist, errors that do
not kill the station, Reset, and a clean stop.
"""

import asyncio
import base64
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time

import pytest

from agent.demo.csms import CallErrorReceived, Csms
from tests.harness import PASSWORD, AgentProcess, write_config

STATION = "CS-TEST"


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def comm_var(name, value=None):
    item = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": name}}
    if value is not None:
        item["attributeValue"] = value
    return item


def heartbeat_var(value=None):
    item = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
    if value is not None:
        item["attributeValue"] = value
    return item


async def registered(csms, after=None):
    link = await csms.wait_station(STATION, timeout=10, after=after)
    await link.expect_call("BootNotification", timeout=10)
    await link.expect_call("StatusNotification", timeout=10)
    return link


def test_boots_reports_status_and_stops_cleanly(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url, evses=2)
            agent = await AgentProcess(config).start()
            try:
                link = await csms.wait_station(STATION, timeout=10)
                boot = await link.expect_call("BootNotification", timeout=10)
                assert boot["reason"] == "PowerUp"
                assert boot["chargingStation"] == {
                    "model": "AC-22", "vendorName": "Example", "serialNumber": "0001",
                    "firmwareVersion": boot["chargingStation"]["firmwareVersion"]}
                for evse in (1, 2):
                    status = await link.expect_call(
                        "StatusNotification", timeout=10, where=lambda p, e=evse: p["evseId"] == e)
                    assert status["connectorStatus"] == "Available"
                    assert status["connectorId"] == 1
                hs = link.handshake
                assert hs.path == f"/ocpp/{STATION}"
                assert hs.subprotocol == "ocpp2.0.1"
                assert hs.authorization == "Basic " + base64.b64encode(
                    f"{STATION}:{PASSWORD}".encode()).decode()
                assert hs.compression, "permessage-deflate must be offered"
                started = time.monotonic()
                assert await agent.stop() == 0
                assert time.monotonic() - started < 5
            finally:
                await agent.kill()
            assert csms.schema_errors == []
            assert PASSWORD not in agent.log, "the password must never be logged"
    run(main())


def test_set_variables_survive_a_restart_and_boot_reason_follows(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            async with AgentProcess(config) as agent:
                link = await registered(csms)
                answer = await link.call("SetVariables", {"setVariableData": [
                    comm_var("WebSocketPingInterval", "1234"),
                    comm_var("RetryBackOffWaitMinimum", "-5"),
                    {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "X"},
                     "attributeValue": "1"},
                ]})
                statuses = [r["attributeStatus"] for r in answer["setVariableResult"]]
                assert statuses == ["Accepted", "Rejected", "UnknownComponent"]
                assert await agent.stop() == 0
            async with AgentProcess(config) as agent:
                link = await registered(csms, after=link)
                assert link.calls("BootNotification")[0]["reason"] == "LocalReset"
                got = await link.call("GetVariables", {"getVariableData": [
                    comm_var("WebSocketPingInterval"), comm_var("RetryBackOffWaitMinimum")]})
                values = [r["attributeValue"] for r in got["getVariableResult"]]
                assert values[0] == "1234" and values[1] != "-5"
                agent.proc.kill()  # kill -9: nothing committed may be lost
                await agent.proc.wait()
            async with AgentProcess(config) as agent:
                link = await registered(csms, after=link)
                assert link.calls("BootNotification")[0]["reason"] == "ApplicationReset"
                got = await link.call("GetVariables", {"getVariableData": [
                    comm_var("WebSocketPingInterval"), comm_var("RetryBackOffWaitMinimum")]})
                values = [r["attributeValue"] for r in got["getVariableResult"]]
                assert values[0] == "1234" and values[1] != "-5"
            assert csms.schema_errors == []
    run(main(), 60)


BAD_FRAMES = [
    ("this is not json", "-1", "RpcFrameworkError"),
    ('[2, "m1", "GetVariables", {"getVariableData": "all"}]', "m1", "TypeConstraintViolation"),
    ('[2, "m2", "GetVariables", {}]', "m2", "OccurrenceConstraintViolation"),
    ('[2, "m3", "Reset", {"type": "Sometime"}]', "m3", "PropertyConstraintViolation"),
    ('[2, "m4", "Reset", {"type": "Immediate", "color": "red"}]', "m4", "FormatViolation"),
    ('[2, "m5", "Teleport", {}]', "m5", "NotImplemented"),
    # A valid request of a feature this station does not offer (a Local Controller's).
    ('[2, "m6", "PublishFirmware", {"location": "ftp://127.0.0.1/x", "requestId": 1, '
     '"checksum": "0123456789abcdef0123456789abcdef"}]', "m6", "NotSupported"),
    ('[7, "m7", "Reset", {}]', "m7", "MessageTypeNotSupported"),
    ('[2, "m8", "DataTransfer", {"vendorId": "' + "x" * (1 << 20) + '"}]', "m8", "FormatViolation"),
    # Valid JSON, no Unicode text: accepted, the TransactionEvent naming the token could
    # never be sent and the link would drop at every attempt.
    ('[2, "m9", "RequestStartTransaction", {"idToken": {"idToken": "A\\ud800", "type": '
     '"ISO14443"}, "remoteStartId": 1}]', "m9", "FormatViolation"),
]


def test_malformed_frames_get_the_right_callerror_and_the_agent_keeps_answering(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            async with AgentProcess(write_config(tmp_path, csms.url)) as agent:
                link = await registered(csms)
                for text, message_id, code in BAD_FRAMES:
                    reply = json.loads(await link.send_raw(text, timeout=10))
                    assert reply[:3] == [4, message_id, code], text[:80]
                    got = await link.call("GetVariables", {"getVariableData": [heartbeat_var()]})
                    assert got["getVariableResult"][0]["attributeStatus"] == "Accepted"
                too_many = {"getVariableData": [heartbeat_var()] * 101}
                with pytest.raises(CallErrorReceived) as err:
                    await link.call("GetVariables", too_many)
                assert err.value.code == "OccurrenceConstraintViolation"
                assert agent.proc.returncode is None
                assert len(csms.links[STATION]) == 1, "bad input must not cost the connection"
            assert csms.schema_errors == []
    run(main(), 60)


def test_reset_restarts_the_work_and_boots_with_remote_reset(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            async with AgentProcess(write_config(tmp_path, csms.url, evses=2)) as agent:
                link = await registered(csms)
                pid = agent.proc.pid
                assert (await link.call("Reset", {"type": "OnIdle", "evseId": 2})) == {
                    "status": "Accepted"}
                await link.expect_call("StatusNotification", timeout=5, where=lambda p: (
                    p["evseId"] == 2 and p["connectorStatus"] == "Unavailable"))
                await link.expect_call("StatusNotification", timeout=5, where=lambda p: (
                    p["evseId"] == 2 and p["connectorStatus"] == "Available"))
                answer = await link.call("Reset", {"type": "Immediate", "evseId": 9})
                assert answer["status"] == "Rejected"
                assert (await link.call("Reset", {"type": "Immediate"})) == {"status": "Accepted"}
                await asyncio.wait_for(link.closed.wait(), 10)
                again = await registered(csms, after=link)
                assert again.calls("BootNotification")[0]["reason"] == "RemoteReset"
                await again.expect_call("StatusNotification", timeout=5,
                                        where=lambda p: p["evseId"] == 2)
                assert {p["evseId"] for p in again.calls("StatusNotification")} == {1, 2}
                assert agent.proc.pid == pid and agent.proc.returncode is None
                assert await agent.stop() == 0
            assert csms.schema_errors == []
    run(main(), 60)


def test_reports_arrive_in_pages_after_the_answer(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            async with AgentProcess(write_config(tmp_path, csms.url)) as agent:
                link = await registered(csms)
                answer = await link.call("GetBaseReport", {"requestId": 7, "reportBase": "FullInventory"})
                assert answer == {"status": "Accepted"}
                pages = []
                while not pages or pages[-1].get("tbc"):
                    pages.append(await link.expect_call(
                        "NotifyReport", timeout=10,
                        where=lambda p, n=len(pages): p["requestId"] == 7 and p["seqNo"] == n))
                assert len(pages) > 1
                items = [d for p in pages for d in p["reportData"]]
                names = {(d["component"]["name"], d["variable"]["name"]) for d in items}
                for needed in [("OCPPCommCtrlr", "HeartbeatInterval"), ("SecurityCtrlr", "SecurityProfile"),
                               ("EVSE", "AvailabilityState"), ("Connector", "AvailabilityState"),
                               ("DeviceDataCtrlr", "ItemsPerMessage"), ("AuthCtrlr", "AuthorizeRemoteStart")]:
                    assert needed in names
                secret = [d for d in items if d["variable"]["name"] == "BasicAuthPassword"]
                assert all("value" not in a for d in secret for a in d["variableAttribute"])
                # GetReport with a filter, and one that matches nothing.
                answer = await link.call("GetReport", {"requestId": 8, "componentVariable": [
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]})
                assert answer == {"status": "Accepted"}
                page = await link.expect_call("NotifyReport", timeout=10, where=lambda p: p["requestId"] == 8)
                assert [d["variable"]["name"] for d in page["reportData"]] == ["HeartbeatInterval"]
                assert "tbc" not in page or page["tbc"] is False
                answer = await link.call("GetReport", {"requestId": 9, "componentVariable": [
                    {"component": {"name": "NoSuchCtrlr"}}]})
                assert answer == {"status": "EmptyResultSet"}
            assert csms.schema_errors == []
    run(main(), 60)


def test_wrong_password_is_refused_and_retried(tmp_path):
    async def main():
        async with Csms(passwords={STATION: "another-password-000"}) as csms:
            async with AgentProcess(write_config(tmp_path, csms.url)) as agent:
                for _ in range(100):
                    if "HTTP 401" in agent.log:
                        break
                    await asyncio.sleep(0.1)
                assert "HTTP 401" in agent.log
                assert agent.proc.returncode is None
                assert await agent.stop() == 0
    run(main())


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_bad_config_exits_2_with_one_line(tmp_path, command):
    config = write_config(tmp_path, "ws://127.0.0.1:9/ocpp")
    config.write_text(config.read_text().replace("max_current_a = 32", "max_current_a = \"32\""))
    result = subprocess.run([sys.executable, "-m", "agent", command, "--config", str(config)],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "max_current_a" in lines[0]


def test_good_config_checks_ok_and_version_prints(tmp_path):
    config = write_config(tmp_path, "ws://127.0.0.1:9/ocpp")
    ok = subprocess.run([sys.executable, "-m", "agent", "check-config", "--config", str(config)],
                        capture_output=True, text=True, timeout=20)
    assert ok.returncode == 0
    version = subprocess.run([sys.executable, "-m", "agent", "--version"],
                             capture_output=True, text=True, timeout=20)
    assert version.returncode == 0 and version.stdout.startswith("station-agent ")


STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR|CRITICAL|DEBUG) ")


async def logged(agent, text, timeout=10):
    """Until the agent's stderr has `text` (real I/O: the process writes when it writes)."""
    deadline = time.monotonic() + timeout
    while text not in agent.log:
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged within {timeout} s:\n{agent.log}")
        await asyncio.sleep(0.05)


def test_foreground_records_are_stamped_and_sigterm_is_logged(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            # As under a terminal or a pipe: JOURNAL_STREAM, if inherited, names another stream.
            async with AgentProcess(write_config(tmp_path, csms.url),
                                    env={"JOURNAL_STREAM": "1:1"}) as agent:
                await registered(csms)
                assert await agent.stop(signal.SIGTERM) == 0
        lines = agent.log.splitlines()
        records = [line for line in lines if not line.startswith((" ", "Traceback"))]
        assert records and all(STAMP.match(line) for line in records), agent.log
        assert any(line.endswith("SIGTERM received: stopping the agent") for line in records)
        assert records[-1].endswith("INFO agent.cli: station-agent stopped")
        # Newest last: the stop is logged after the start.
        starting = next(i for i, line in enumerate(records) if "starting as CS-TEST" in line)
        stopping = next(i for i, line in enumerate(records) if "SIGTERM received" in line)
        assert starting < stopping
    run(main())


def test_sigint_is_logged_by_name(tmp_path):
    async def main():
        async with AgentProcess(write_config(tmp_path, "ws://127.0.0.1:9/ocpp")) as agent:
            await logged(agent, "starting as CS-TEST")
            assert await agent.stop(signal.SIGINT) == 0
        assert "SIGINT received: stopping the agent" in agent.log
    run(main())


def test_under_journald_records_have_priorities_and_no_stamps(tmp_path):
    async def main():
        config = write_config(tmp_path, "ws://127.0.0.1:9/ocpp")
        log_path = config.parent / "agent.log"   # where AgentProcess sends stderr
        log_path.touch()
        info = os.stat(log_path)
        agent = AgentProcess(config, env={"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
        async with agent:
            await logged(agent, "starting as CS-TEST")
            assert await agent.stop() == 0
        records = agent.log.splitlines()
        assert "<6>INFO agent.daemon: station-agent" in agent.log
        assert "<6>INFO agent.cli: SIGTERM received: stopping the agent" in records
        assert not any(STAMP.match(line) for line in records)
    run(main())


def test_state_is_private_when_run_by_hand_with_umask_0(tmp_path):
    """The database holds the Basic auth password; a person's umask must not publish it."""
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            old = os.umask(0)
            try:
                agent = await AgentProcess(config).start()   # the child inherits umask 0
            finally:
                os.umask(old)
            try:
                await registered(csms)
                state = tmp_path / "state"
                modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(os.lstat(p).st_mode)
                         for p in [state, *state.rglob("*")]}
                assert await agent.stop() == 0
            finally:
                await agent.kill()
        assert modes["state"] == 0o700
        for name in ("station-agent.db", "station-agent.db-wal", "station-agent.db-shm",
                     "log/agent.log"):
            assert modes[f"state/{name}"] == 0o600, (name, oct(modes[f"state/{name}"]))
        assert modes["state/log"] == 0o700
        # Whatever else the agent made: nothing readable or writable by others, nor
        # by the group but the control socket (0660 on purpose, for `sim` users).
        loose = {name: oct(m) for name, m in modes.items()
                 if m & 0o007 or (m & 0o070 and not name.endswith("control.sock"))}
        assert loose == {}, loose
    run(main())
