"""The keep-alive interval: configured, and shortened only when the network proves it
forgets idle connections (agent/ocpp/keepalive.py)."""

import asyncio

from agent.ocpp.keepalive import InMemory, KeepAlivePolicy, MetaMemory
from agent.ocpp.session import CallTimeout
from agent.store import Store
from tests.pipes import PipeConnection
from tests.test_connection import Opener, Settings, run, settle, setup
from tests.test_outbox import status


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


async def connected_outbox(tmp_path):
    """A connected, registered link (ping 900 s, MessageTimeout 30 s) with the durable
    outbox delivering over it (2 attempts, 60 s apart)."""
    from agent.ocpp.outbox import Outbox
    from tests.test_outbox import Model
    clock, opener, manager = setup(Settings(ping=900, timeout=30))
    task = asyncio.ensure_future(manager.run())
    await settle()
    manager.accepted.set()
    outbox = Outbox(Store(tmp_path / "db"), manager, clock, Model(attempts=2, interval=60))
    return clock, opener, manager, task, outbox, asyncio.ensure_future(outbox.run())


def test_a_link_gone_dark_does_not_use_up_the_attempts_of_a_waiting_message(tmp_path):
    """A cellular link that goes dark without a reset: TCP would retransmit for many
    minutes and the busy link never looks idle to the keep-alive. Each unanswered
    TransactionEvent is followed by a probe ping; no pong, so the link is dropped, the
    attempt does not count, and after 20 minutes of darkness (more than the 5 attempts
    would last) the event is delivered on the next connection, not given up."""
    async def main():
        clock, opener, manager, task, outbox, delivering = await connected_outbox(tmp_path)
        dark = opener.conns[0]
        dark.answer_pings = False          # nothing comes back any more
        opener.up = False                  # and reconnecting fails while it lasts
        outbox.enqueue("StatusNotification", status(1))
        await settle()
        assert (await dark.next_sent())[2] == "StatusNotification"
        await advance(clock, 60)           # 30 s without an answer, then 30 s without a pong
        assert dark.pings == 1 and dark.closed, "the probe found the link dead and dropped it"
        await advance(clock, 20 * 60)
        assert outbox.dropped == 0 and outbox.pending() == 1
        opener.up = True                   # the link is back
        for _ in range(60):                # within the back-off (at most 44 s here)
            if opener.conns[-1] is not dark:
                break
            await advance(clock, 1, step=1)
        fresh = opener.conns[-1]
        assert fresh is not dark
        call = await fresh.next_sent()
        assert call[2] == "StatusNotification"
        fresh.feed([3, call[1], {}])
        await advance(clock, 10)
        assert fresh.nothing_sent(), "sent once on the new connection"
        assert outbox.pending() == 0 and outbox.dropped == 0
        delivering.cancel()
        task.cancel()
        await asyncio.gather(delivering, task, return_exceptions=True)

    run(main())


def test_any_unanswered_call_gets_a_dark_link_dropped(tmp_path):
    """Not only the outbox's messages: a best-effort StatusNotification that goes
    unanswered on a dark link starts the probe too, so a station with no transaction
    running notices the link is gone and reconnects instead of waiting for TCP."""
    async def main():
        clock, opener, manager, task, outbox, delivering = await connected_outbox(tmp_path)
        dark = opener.conns[0]
        dark.answer_pings = False
        opener.up = False
        call = asyncio.ensure_future(manager.call("StatusNotification", status(1)))
        await settle()
        assert (await dark.next_sent())[2] == "StatusNotification"
        await advance(clock, 30)
        assert isinstance(call.exception(), CallTimeout)
        await advance(clock, 30)           # 30 s more without a pong
        assert dark.pings == 1 and dark.closed, "the probe found the link dead and dropped it"
        opener.up = True
        for _ in range(60):
            if opener.conns[-1] is not dark:
                break
            await advance(clock, 1, step=1)
        assert opener.conns[-1] is not dark, "reconnected within the back-off"
        delivering.cancel()
        task.cancel()
        await asyncio.gather(delivering, task, return_exceptions=True)

    run(main())


def test_an_unanswered_call_on_a_live_link_keeps_the_link(tmp_path):
    """The CSMS answers pings but not the call: one probe ping, and the connection stays."""
    async def main():
        clock, opener, manager, task, outbox, delivering = await connected_outbox(tmp_path)
        conn = opener.conns[0]
        call = asyncio.ensure_future(manager.call("StatusNotification", status(1)))
        await settle()
        await advance(clock, 40)
        assert isinstance(call.exception(), CallTimeout)
        assert conn.pings == 1 and not conn.closed and len(opener.conns) == 1
        delivering.cancel()
        task.cancel()
        await asyncio.gather(delivering, task, return_exceptions=True)

    run(main())


def test_an_unanswered_call_on_a_live_link_is_an_attempt(tmp_path):
    """The CSMS answers pings but not the call: the link is fine, the CSMS is not, and
    the attempts count (E13): given up after MessageAttempts."""
    async def main():
        clock, opener, manager, task, outbox, delivering = await connected_outbox(tmp_path)
        outbox.enqueue("StatusNotification", status(1))
        await advance(clock, 30 + 60 + 30 + 10)
        conn = opener.conns[0]
        assert len(opener.conns) == 1 and not conn.closed and conn.pings >= 2
        assert outbox.dropped == 1 and outbox.pending() == 0
        delivering.cancel()
        task.cancel()
        await asyncio.gather(delivering, task, return_exceptions=True)

    run(main())
