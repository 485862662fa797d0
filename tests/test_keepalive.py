"""The keep-alive interval: configured, and shortened only when the network proves it
forgets idle connections (agent/ocpp/keepalive.py)."""

import asyncio

from agent.ocpp.keepalive import InMemory, KeepAlivePolicy, MetaMemory
from agent.store import Store
from tests.pipes import PipeConnection
from tests.test_connection import Opener, Settings, run, settle, setup


class NatPipe(PipeConnection):
    """A link through a NAT that forgets a mapping idle for longer than `timeout`:
    a ping after that is lost, as is its pong."""

    def __init__(self, clock, timeout):
        super().__init__()
        self.clock, self.timeout = clock, timeout
        self.last = clock.monotonic()

    async def send(self, text):
        self.last = self.clock.monotonic()
        await super().send(text)

    async def ping(self):
        self.answer_pings = self.clock.monotonic() - self.last <= self.timeout
        self.last = self.clock.monotonic()
        return await super().ping()


class NatOpener(Opener):
    def __init__(self, clock, timeout):
        super().__init__(clock)
        self.timeout = timeout

    async def __call__(self, endpoint):
        self.attempts.append(self.clock.monotonic())
        if not self.up:
            from agent.ocpp.transport import TransportError
            raise TransportError("refused")
        conn = NatPipe(self.clock, self.timeout)
        self.conns.append(conn)
        return conn


async def advance(clock, seconds, step=10):
    for _ in range(int(seconds // step)):
        await clock.advance(step)
        await settle()


def test_a_network_that_forgets_idle_links_teaches_a_shorter_interval():
    async def main():
        clock, _, manager = setup(Settings(ping=600, timeout=30))
        opener = NatOpener(clock, timeout=300)
        manager._opener = opener
        task = asyncio.ensure_future(manager.run())
        await settle()
        await advance(clock, 660)
        assert len(opener.conns) == 2, "the ping after 600 idle seconds found the link dead"
        assert manager.keepalive.interval(600) == 600, "one drop proves nothing"
        await advance(clock, 660)
        assert len(opener.conns) == 3
        assert manager.keepalive.interval(600) == 270
        await advance(clock, 6 * 3600)
        assert len(opener.conns) == 3, "with pings every 270 s the link stays up"
        assert opener.conns[-1].pings >= 6 * 3600 // 270 - 1
        task.cancel()
    run(main())


def test_a_network_that_keeps_idle_links_costs_one_ping_per_interval():
    async def main():
        clock, _, manager = setup(Settings(ping=600, timeout=30))
        opener = NatOpener(clock, timeout=7440)   # RFC 5382: at least 2 h 4 min
        manager._opener = opener
        task = asyncio.ensure_future(manager.run())
        await settle()
        await advance(clock, 6 * 3600)
        assert len(opener.conns) == 1
        assert opener.conns[0].pings == 6 * 3600 // 600
        assert manager.keepalive.interval(600) == 600
        task.cancel()
    run(main())


def test_outages_where_reconnecting_takes_retries_teach_nothing():
    async def main():
        clock, opener, manager = setup(Settings(ping=600, timeout=30))
        task = asyncio.ensure_future(manager.run())
        await settle()
        for round_ in range(3):
            opener.conns[-1].answer_pings = False
            opener.up = False
            await advance(clock, 640)
            assert not manager.connected
            await advance(clock, 40)   # the first attempt failed
            opener.up = True
            await advance(clock, 60)
            assert manager.connected, round_
        assert manager.keepalive.interval(600) == 600
        task.cancel()
    run(main())


def test_one_answered_ping_clears_a_strike():
    policy = KeepAlivePolicy(InMemory())
    for _ in range(5):
        policy.dropped_while_pinging(600)
        assert policy.reconnected(600, first_attempt=True) is None
        policy.pong()
    assert policy.interval(600) == 600
    policy.dropped_while_pinging(600)
    policy.reconnected(600, first_attempt=True)
    policy.dropped_while_pinging(600)
    assert policy.reconnected(600, first_attempt=True) == 270


def test_the_learned_interval_survives_a_restart_until_the_setting_changes(tmp_path):
    store = Store.in_dir(tmp_path)
    policy = KeepAlivePolicy(MetaMemory(store))
    for _ in range(2):
        policy.dropped_while_pinging(600)
        policy.reconnected(600, first_attempt=True)
    store.close()
    again = KeepAlivePolicy(MetaMemory(Store.in_dir(tmp_path)))
    assert again.interval(600) == 270
    assert again.interval(900) == 900, "a new WebSocketPingInterval starts over"
    assert again.interval(120) == 120
    assert again.interval(0) == 0, "0 still disables the station's pings"


def test_a_damaged_memory_falls_back_to_the_setting(tmp_path):
    store = Store.in_dir(tmp_path)
    store.set_meta(MetaMemory.KEY, "not numbers")
    assert KeepAlivePolicy(MetaMemory(store)).interval(600) == 600
    policy = KeepAlivePolicy(InMemory())
    for _ in range(2):
        policy.dropped_while_pinging(40)
        policy.reconnected(40, first_attempt=True)
    assert policy.interval(40) == 30, "never below the floor"
