"""The durable outbox: committed before sending, deleted when answered, in order."""

import asyncio
import json

import pytest

from agent.clock import ManualClock
from agent.ocpp import rpc
from agent.ocpp.outbox import Outbox
from agent.ocpp.session import CallErrorReceived, CallTimeout, NotConnected
from agent.store import Store


class Model:
    def __init__(self, attempts=3, interval=60):
        self.values = {"MessageAttempts": attempts, "MessageAttemptInterval": interval}

    def get_int(self, component, name, instance=None):
        return self.values[name]


class Link:
    """Answers calls from a script: a dict (answer) or an exception, in turn."""

    def __init__(self):
        self.sent = []
        self.script = []
        self.called = asyncio.Event()

    async def probe(self):
        return True     # a live link: an unanswered call counts as an attempt

    async def call(self, action, payload, **kwargs):
        self.sent.append((action, payload))
        self.called.set()
        outcome = self.script.pop(0) if self.script else {}
        if isinstance(outcome, asyncio.Future):
            outcome = await outcome
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def status(n):
    return {"timestamp": "2026-01-01T00:00:00.000Z", "connectorStatus": "Available",
            "evseId": n, "connectorId": 1}


async def settle():
    for _ in range(50):
        await asyncio.sleep(0)


def test_delivered_in_order_and_removed_when_answered(tmp_path):
    async def main():
        store = Store(tmp_path / "db")
        link = Link()
        outbox = Outbox(store, link, ManualClock(), Model())
        answers = []
        outbox.on_answer("StatusNotification", lambda req, resp: answers.append(req["evseId"]))
        for n in (1, 2, 3):
            outbox.enqueue("StatusNotification", status(n), transaction_id="tx" if n == 2 else None)
        assert outbox.pending() == 3 and outbox.pending("tx") == 1
        task = asyncio.ensure_future(outbox.run())
        await settle()
        assert [p["evseId"] for _, p in link.sent] == [1, 2, 3]
        assert answers == [1, 2, 3] and outbox.pending() == 0
        task.cancel()
    asyncio.run(main())


def test_survives_a_restart_before_the_answer(tmp_path):
    async def main():
        store = Store(tmp_path / "db")
        link = Link()
        never = asyncio.get_running_loop().create_future()
        link.script = [never]
        outbox = Outbox(store, link, ManualClock(), Model())
        outbox.enqueue("StatusNotification", status(1))
        task = asyncio.ensure_future(outbox.run())
        await link.called.wait()
        task.cancel()  # the process dies while the CALL is in flight
        store.close()
        store = Store(tmp_path / "db")
        link2 = Link()
        outbox2 = Outbox(store, link2, ManualClock(), Model())
        assert outbox2.pending() == 1
        task = asyncio.ensure_future(outbox2.run())
        await settle()
        assert link2.sent == [("StatusNotification", status(1))]  # sent again: a retry
        assert outbox2.pending() == 0
        task.cancel()
    asyncio.run(main())


def test_failed_attempts_are_spaced_then_given_up_and_the_queue_moves_on(tmp_path):
    async def main():
        clock = ManualClock()
        link = Link()
        error = CallErrorReceived(rpc.CallError("x", "InternalError", "no"))
        link.script = [error, CallTimeout("late"), error]
        outbox = Outbox(Store(tmp_path / "db"), link, clock, Model(attempts=3, interval=60))
        outbox.enqueue("StatusNotification", status(1))
        outbox.enqueue("StatusNotification", status(2))
        task = asyncio.ensure_future(outbox.run())
        await settle()
        assert len(link.sent) == 1
        await clock.advance(59)
        assert len(link.sent) == 1
        await clock.advance(1)       # 60 s after the first failure
        assert len(link.sent) == 2
        await clock.advance(119)
        assert len(link.sent) == 2
        await clock.advance(1)       # 120 s after the second
        await settle()
        # third attempt failed: given up; the next message goes at once
        assert [p["evseId"] for _, p in link.sent] == [1, 1, 1, 2]
        assert outbox.pending() == 0 and outbox.dropped == 1
        task.cancel()
    asyncio.run(main())


def test_a_lost_connection_is_not_an_attempt(tmp_path):
    async def main():
        link = Link()
        link.script = [NotConnected("gone")] * 5
        outbox = Outbox(Store(tmp_path / "db"), link, ManualClock(), Model(attempts=2))
        outbox.enqueue("StatusNotification", status(1))
        task = asyncio.ensure_future(outbox.run())
        await settle()
        assert len(link.sent) == 6 and outbox.pending() == 0
        assert outbox.dropped == 0
        task.cancel()
    asyncio.run(main())


def test_full_queue_drops_the_oldest_droppable_never_the_rest(tmp_path):
    outbox = Outbox(Store(tmp_path / "db"), Link(), ManualClock(), Model(), capacity=3)
    outbox.enqueue("StatusNotification", status(1))                  # e.g. Started
    outbox.enqueue("StatusNotification", status(2), droppable=True)  # periodic update
    outbox.enqueue("StatusNotification", status(3), droppable=True)
    outbox.enqueue("StatusNotification", status(4))                  # drops 2
    outbox.enqueue("StatusNotification", status(5))                  # drops 3
    outbox.enqueue("StatusNotification", status(6))                  # nothing droppable: kept
    rows = outbox._store.query("SELECT payload FROM outbox ORDER BY id")
    assert [json.loads(row[0])["evseId"] for row in rows] == [1, 4, 5, 6]
    assert outbox.dropped == 2


def test_an_invalid_message_is_refused_at_the_door(tmp_path):
    outbox = Outbox(Store(tmp_path / "db"), Link(), ManualClock(), Model())
    with pytest.raises(ValueError, match="invalid StatusNotification"):
        outbox.enqueue("StatusNotification", {"evseId": 1})
    assert outbox.pending() == 0


def test_pending_events_counts_transaction_events_only(tmp_path):
    # GetTransactionStatus (E14) asks about TransactionEvents; a queued StatusNotification
    # or security event is not one.
    outbox = Outbox(Store(tmp_path / "db"), Link(), ManualClock(), Model())
    outbox.enqueue("StatusNotification", status(1))
    assert outbox.pending() == 1 and outbox.pending_events() == 0
    event = {"eventType": "Updated", "timestamp": "2026-01-01T00:00:00.000Z",
             "triggerReason": "MeterValuePeriodic", "seqNo": 1,
             "transactionInfo": {"transactionId": "tx-1"}}
    outbox.enqueue("TransactionEvent", event, transaction_id="tx-1")
    assert outbox.pending_events() == 1 and outbox.pending_events("tx-1") == 1
    assert outbox.pending_events("tx-2") == 0
