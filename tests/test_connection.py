"""Staying connected: reconnect back-off, sparse keep-alive pings, held-back calls."""

import asyncio
from dataclasses import dataclass

import pytest

from agent.clock import ManualClock
from agent.ocpp.connection import ConnectionManager
from agent.ocpp.session import NotConnected, Router
from agent.ocpp.transport import Endpoint, TransportError
from tests.pipes import PipeConnection


@dataclass
class Settings:
    timeout: float = 30
    ping: float = 100
    wait_minimum: float = 10
    random_range: float = 4
    repeat_times: int = 2

    def message_timeout(self):
        return self.timeout

    def ping_interval(self):
        return self.ping

    def backoff(self):
        return self.wait_minimum, self.random_range, self.repeat_times


class Opener:
    """Hands out connections, or refuses while `up` is False; logs attempt times."""

    def __init__(self, clock):
        self.clock = clock
        self.up = True
        self.attempts: list[float] = []
        self.conns: list[PipeConnection] = []

    async def __call__(self, endpoint):
        self.attempts.append(self.clock.monotonic())
        if not self.up:
            raise TransportError("refused")
        conn = PipeConnection()
        self.conns.append(conn)
        return conn


def setup(settings=None):
    clock = ManualClock()
    opener = Opener(clock)
    manager = ConnectionManager(endpoint=lambda: Endpoint("ws://127.0.0.1:1/ocpp", "CS1"),
                                router=Router(), clock=clock, settings=settings or Settings(),
                                opener=opener, rand=lambda: 0.5)
    return clock, opener, manager


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


async def settle():
    for _ in range(20):
        await asyncio.sleep(0)


def test_reconnect_back_off_doubles_then_stays():
    async def main():
        clock, opener, manager = setup()
        task = asyncio.ensure_future(manager.run())
        await settle()
        start = clock.monotonic()
        assert opener.attempts == [start], "first connection is tried at once"
        opener.up = False
        await opener.conns[0].close()
        await settle()
        # delays: 10+2, 20+2, 40+2, 40+2 (repeat_times 2)
        for expected in (12, 22, 42, 42):
            before = len(opener.attempts)
            await clock.advance(expected - 0.5)
            assert len(opener.attempts) == before, "reconnected too early"
            await clock.advance(0.5)
            assert len(opener.attempts) == before + 1
        opener.up = True
        await clock.advance(42)
        assert manager.connected
        task.cancel()
    run(main())


def test_ping_only_after_a_quiet_interval_and_dropped_without_pong():
    async def main():
        clock, opener, manager = setup(Settings(ping=100, timeout=30))
        task = asyncio.ensure_future(manager.run())
        await settle()
        conn = opener.conns[0]
        await clock.advance(60)
        conn.feed([2, "x", "NoSuchAction", {}])  # traffic at t=60
        await conn.next_sent()
        await clock.advance(60)  # t=120: only 60 s quiet
        assert conn.pings == 0
        await clock.advance(40)  # t=160: 100 s quiet
        assert conn.pings == 1
        conn.answer_pings = False
        await clock.advance(100)
        assert conn.pings == 2 and not conn.closed
        await clock.advance(30)
        assert conn.closed, "a link without pong must be dropped"
        task.cancel()
    run(main())


def test_calls_wait_for_registration_unless_allowed_before():
    async def main():
        clock, opener, manager = setup()
        task = asyncio.ensure_future(manager.run())
        await settle()
        conn = opener.conns[0]
        held = asyncio.ensure_future(manager.call("Heartbeat", {}))
        boot = asyncio.ensure_future(manager.call(
            "BootNotification", {"reason": "PowerUp",
                                 "chargingStation": {"model": "m", "vendorName": "v"}},
            before_accepted=True))
        frame = await conn.next_sent()
        assert frame[2] == "BootNotification"
        conn.feed([3, frame[1], {"currentTime": "2026-01-01T00:00:00Z", "interval": 10,
                                 "status": "Accepted"}])
        await boot
        await settle()
        assert conn.nothing_sent() and not held.done()
        manager.accepted.set()
        frame = await conn.next_sent()
        assert frame[2] == "Heartbeat"
        conn.feed([3, frame[1], {"currentTime": "2026-01-01T00:00:00Z"}])
        await held
        await conn.close()
        await settle()
        with pytest.raises(NotConnected):
            await manager.call("Heartbeat", {}, wait=False)
        task.cancel()
    run(main())
