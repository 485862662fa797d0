"""The durable outbox: messages that must reach the CSMS, whatever happens to the link.

A message is committed to the store before anything is sent and deleted only when the
CSMS has answered it, so a power cut or `kill -9` at any moment loses nothing; the worst
case is sending again a message whose answer had arrived but was not yet recorded, which
the CSMS sees as a retry with the same seqNo. Messages go out strictly in the order they
were queued (TransactionEvents of a transaction must, and a simple FIFO keeps every
producer honest).

Retries (E13 / OCPPCommCtrlr): a CALLERROR or no answer counts as a failed attempt; after
MessageAttempts[TransactionEvent] attempts, spaced MessageAttemptInterval x attempt
number apart, the message is given up (logged), so one message the CSMS refuses cannot
block the queue for ever. A lost connection is not an attempt: the message waits for the
next one. Nor is no answer on a dead link: an unanswered call is an attempt only if the
link then answers a ping (ConnectionManager.probe); else the link is dropped and the
message goes again on the next connection.

Bounded: above `capacity` queued messages the oldest *droppable* one is discarded first
(periodic meter-value updates of a transaction); Started and Ended events, and anything
not marked droppable, are never dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from agent.clock import Clock
from agent.ocpp.session import CallFailed, CallTimeout, NotConnected, Payload
from agent.ocpp.validation import PayloadError, validate
from agent.store import Store

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    payload TEXT NOT NULL,
    transaction_id TEXT,
    droppable INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_droppable ON outbox (droppable, id);
CREATE INDEX IF NOT EXISTS outbox_transaction ON outbox (transaction_id);
"""

# A month offline at one periodic update a minute is ~43,000 rows of ~1 kB: the cap keeps
# the database (and the replay) bounded on a small controller's flash.
DEFAULT_CAPACITY = 20_000

AnswerListener = Callable[[Payload, Payload], None]


@dataclass(frozen=True)
class Queued:
    id: int
    action: str
    payload: Payload
    transaction_id: str | None
    attempts: int


class OutboxLink(Protocol):
    """What the outbox needs of the ConnectionManager."""

    async def call(self, action: str, payload: Payload) -> Payload: ...

    async def probe(self) -> bool:
        """After an unanswered call: True if the link answers a ping (the call counts as
        an attempt), False if it is dead (it was dropped; the call waits for the next)."""
        ...


class Outbox:
    def __init__(self, store: Store, link: OutboxLink, clock: Clock, model: Any,
                 capacity: int = DEFAULT_CAPACITY) -> None:
        self._store = store
        self._link = link
        self._clock = clock
        self._model = model
        self.capacity = capacity
        self._wake = asyncio.Event()
        self.listeners: dict[str, list[AnswerListener]] = {}
        self.dropped = 0
        store.ensure_schema(SCHEMA)

    def on_answer(self, action: str, listener: AnswerListener) -> None:
        """Call `listener(request, response)` when a queued `action` is answered."""
        self.listeners.setdefault(action, []).append(listener)

    def enqueue(self, action: str, payload: Payload, *, transaction_id: str | None = None,
                droppable: bool = False) -> int:
        """Commit a message for delivery; returns its queue id. Raises ValueError for a
        message that is not valid OCPP (it would block the queue head for nothing)."""
        try:
            validate(action, "request", payload)
        except PayloadError as exc:
            raise ValueError(f"invalid {action} not queued: {exc}") from None
        with self._store.transaction() as db:
            count = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            if count >= self.capacity:
                self._drop_oldest_droppable(db)
            cursor = db.execute(
                "INSERT INTO outbox (action, payload, transaction_id, droppable) VALUES (?, ?, ?, ?)",
                (action, json.dumps(payload, separators=(",", ":")), transaction_id, int(droppable)))
            row_id = int(cursor.lastrowid or 0)
        self._wake.set()
        return row_id

    def _drop_oldest_droppable(self, db: Any) -> None:
        row = db.execute("SELECT id, action, transaction_id FROM outbox WHERE droppable = 1 "
                         "ORDER BY id LIMIT 1").fetchone()
        if row is None:
            log.warning("outbox over capacity (%d) with nothing droppable: keeping all",
                        self.capacity)
            return
        db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
        self.dropped += 1
        log.warning("outbox full: dropped queued %s of transaction %s", row[1], row[2])

    def pending(self, transaction_id: str | None = None) -> int:
        """Messages not yet answered (GetTransactionStatus messagesInQueue)."""
        if transaction_id is None:
            return self._store.query("SELECT COUNT(*) FROM outbox")[0][0]
        return self._store.query("SELECT COUNT(*) FROM outbox WHERE transaction_id = ?",
                                 (transaction_id,))[0][0]

    def pending_events(self, transaction_id: str | None = None) -> int:
        """TransactionEvents not yet answered, of one transaction or of all
        (GetTransactionStatus messagesInQueue, E14)."""
        if transaction_id is None:
            return self._store.query("SELECT COUNT(*) FROM outbox WHERE action = ?",
                                     ("TransactionEvent",))[0][0]
        return self._store.query("SELECT COUNT(*) FROM outbox WHERE action = ? AND "
                                 "transaction_id = ?", ("TransactionEvent", transaction_id))[0][0]

    def head(self) -> Queued | None:
        rows = self._store.query("SELECT id, action, payload, transaction_id, attempts "
                                 "FROM outbox ORDER BY id LIMIT 1")
        if not rows:
            return None
        row_id, action, payload, transaction_id, attempts = rows[0]
        return Queued(row_id, action, json.loads(payload), transaction_id, attempts)

    async def run(self) -> None:
        """Deliver the queue, head first, for the life of the station."""
        while True:
            message = self.head()
            if message is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._deliver(message)

    async def _deliver(self, message: Queued) -> None:
        try:
            answer = await self._link.call(message.action, message.payload)
        except NotConnected:
            return  # not an attempt: the link went; the call waits for the next one
        except CallTimeout as exc:
            # No answer counts as an attempt only if the link is alive (it answers a
            # ping): a dead link must not use up the attempts and drop the message.
            if not await self._link.probe():
                log.warning("%s (queue id %d) unanswered on a dead link: sent again on the "
                            "next connection", message.action, message.id)
                return
            await self._failed(message, exc)
            return
        except CallFailed as exc:
            await self._failed(message, exc)
            return
        self._store.execute("DELETE FROM outbox WHERE id = ?", (message.id,))
        for listener in self.listeners.get(message.action, []):
            try:
                listener(message.payload, answer)
            except Exception:  # noqa: BLE001 - a listener bug must not stall delivery
                log.exception("listener for %s answers failed", message.action)

    async def _failed(self, message: Queued, exc: Exception) -> None:
        attempts = message.attempts + 1
        limit = self._model.get_int("OCPPCommCtrlr", "MessageAttempts", instance="TransactionEvent")
        if attempts >= limit:
            log.error("giving up %s (queue id %d) after %d attempts: %s",
                      message.action, message.id, attempts, exc)
            self._store.execute("DELETE FROM outbox WHERE id = ?", (message.id,))
            self.dropped += 1
            return
        self._store.execute("UPDATE outbox SET attempts = ? WHERE id = ?", (attempts, message.id))
        interval = self._model.get_int("OCPPCommCtrlr", "MessageAttemptInterval",
                                       instance="TransactionEvent")
        log.warning("%s (queue id %d) failed (%s); attempt %d of %d in %d s",
                    message.action, message.id, exc, attempts + 1, limit, interval * attempts)
        await self._clock.sleep(interval * attempts)
