"""What systemd hears from the agent (Type=notify, WatchdogSec=): the real process, a
real AF_UNIX datagram socket in NOTIFY_SOCKET, as systemd itself would hold it."""

import asyncio
import os
import signal
import socket
import time

import pytest

from agent.demo.csms import Csms
from agent.service import StationState, watchdog_period
from tests.file_servers import closed_port
from tests.harness import PASSWORD, AgentProcess, write_config
from tests.test_sim_agent import sim_async

STATION = "CS-TEST"
WATCHDOG_USEC = 600_000   # pings expected every 0.3 s


class NotifySocket:
    """The systemd end: collects the datagrams, one notification per datagram."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    async def next(self, timeout: float) -> dict[str, str] | None:
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout)
        except asyncio.TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.messages.append(fields)
        return fields

    async def until(self, predicate, timeout: float = 10) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            message = await self.next(left)
            if message is not None and predicate(message):
                return message
        raise AssertionError(f"not notified in {timeout} s; got {self.messages}")

    async def quiet_for(self, seconds: float) -> list[dict[str, str]]:
        """Everything notified in the next `seconds` (real I/O wait, not a sleep)."""
        got = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            message = await self.next(left)
            if message is not None:
                got.append(message)
        return got

    def close(self):
        self.sock.close()


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_ready_status_watchdog_and_stopping_reach_systemd(tmp_path):
    async def main():
        notify = NotifySocket(tmp_path / "notify")
        env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        # First offline: ready means running, not connected.
        config = write_config(tmp_path, f"ws://127.0.0.1:{closed_port()}/ocpp")
        async with AgentProcess(config, env=env) as agent:
            ready = await notify.until(lambda m: "READY" in m)
            assert ready == {"READY": "1", "STATUS": "offline, 0 active transactions"}
            assert "Traceback" not in agent.log
            pings = [m for m in await notify.quiet_for(1.5) if m.get("WATCHDOG") == "1"]
            assert 3 <= len(pings) <= 8, f"{len(pings)} pings in 1.5 s at WatchdogSec=0.6 s"

            # A stopped process (a hung loop looks the same to systemd) pings no more,
            # so systemd's watchdog can kill and restart it.
            agent.proc.send_signal(signal.SIGSTOP)
            try:
                await notify.quiet_for(0.2)   # what was already on its way
                assert await notify.quiet_for(1.0) == []
            finally:
                agent.proc.send_signal(signal.SIGCONT)
            await notify.until(lambda m: m.get("WATCHDOG") == "1", timeout=2)

            assert await agent.stop() == 0
            await notify.quiet_for(0.3)   # the process is gone; drain what it sent
            assert {"STOPPING": "1", "STATUS": "stopping"} in notify.messages
        notify.close()
    run(main())


def test_status_line_follows_the_link_and_transactions(tmp_path):
    async def main():
        notify = NotifySocket(tmp_path / "notify")
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            env = {"NOTIFY_SOCKET": notify.path}   # no watchdog asked: status only
            async with AgentProcess(config, env=env) as agent:
                await notify.until(lambda m: "READY" in m)
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("BootNotification", timeout=10)
                await notify.until(
                    lambda m: m.get("STATUS") == "connected to the CSMS, 0 active transactions")
                assert (await sim_async(config, "plug", "1")).returncode == 0
                assert (await sim_async(config, "swipe", "AABBCCDD")).returncode == 0
                await notify.until(
                    lambda m: m.get("STATUS") == "connected to the CSMS, 1 active transaction")
                assert not any("WATCHDOG" in m for m in notify.messages)
                assert await agent.stop() == 0
        notify.close()
    run(main())


@pytest.mark.parametrize("environ, period", [
    ({}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),   # another process's
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
])
def test_watchdog_period_is_half_of_what_systemd_asks(environ, period):
    assert watchdog_period(environ, os.getpid()) == period


def test_status_line_wording():
    assert StationState(True, 2).line() == "connected to the CSMS, 2 active transactions"
    assert StationState(False, 1).line() == "offline, 1 active transaction"


def test_the_status_is_pushed_on_change_not_polled(tmp_path, monkeypatch):
    """An idle agent under systemd does not wake to look at its own state: the status
    line goes out when the daemon says something changed (connect, disconnect, a
    transaction's start or end), and without a watchdog nothing else wakes the loop."""
    from agent.service import ServiceNotifier

    async def main():
        notify = NotifySocket(tmp_path / "notify")
        monkeypatch.setenv("NOTIFY_SOCKET", notify.path)   # sdnotify reads it itself
        notifier = ServiceNotifier({"NOTIFY_SOCKET": notify.path})
        states = iter([StationState(False, 0), StationState(True, 0), StationState(True, 1)])
        looks = []

        def state():
            looks.append(1)
            return next(states)
        task = asyncio.ensure_future(notifier.run(state))
        try:
            assert (await notify.next(5)) == {"STATUS": "offline, 0 active transactions"}
            assert await notify.quiet_for(1.2) == [] and len(looks) == 1
            notifier.changed()
            assert (await notify.next(5))["STATUS"] == "connected to the CSMS, 0 active transactions"
            notifier.changed()
            assert (await notify.next(5))["STATUS"] == "connected to the CSMS, 1 active transaction"
            assert len(looks) == 3
        finally:
            task.cancel()
            notify.close()
    run(main())
