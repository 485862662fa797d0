"""Reset (B11, B12): of the whole station or of one EVSE, OnIdle or Immediate.

- Nothing running where the reset applies: Accepted, and the reset happens once the
  answer is on the wire (B11.FR.01/08). The station's next BootNotification says
  RemoteReset.
- OnIdle while a transaction runs there: Scheduled (B12.FR.01/07); the reset happens when
  the last of those transactions has ended, however it ends, and the next boot says
  ScheduledReset.
- Immediate while a transaction runs there: Accepted; the transactions end first with
  triggerReason ResetCommand and stoppedReason ImmediateReset (B12.FR.02/08), the energy
  is switched off through the EVSE's own safe sequence (hal/evse.py), and the Ended events
  get a chance to reach the CSMS before the reset (they stay in the durable outbox if not).

A station reset rebuilds the agent's runtime in-process (`restart`); an EVSE reset takes
the EVSE out of service and back (`reset_evse`), it does not reboot the station (errata
6.1.7, TC_B_26).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from agent.clock import Clock, wait_for
from agent.ocpp.session import Payload, Reply, Router
from agent.store import Store

log = logging.getLogger(__name__)

# Store key of the reason the next BootNotification gives (shared with provisioning).
PENDING_BOOT_REASON = "provisioning.pending_boot_reason"
STATION = None   # the key of a station-wide reset in the schedule


@dataclass
class ResetWork:
    """What a reset needs of the rest of the station, attached once it is built.

    end_all(evse_id or None, trigger, reason) -> ids of the transactions it ended;
    running(evse_id or None) -> ids of the transactions running there;
    switch_off(evse_id): the EVSE's energy off in the safe order; pending(transaction
    id): how many of its events the CSMS has not answered yet; connected(): link up."""
    end_all: Callable[[int | None, str, str], list[str]]
    running: Callable[[int | None], list[str]]
    switch_off: Callable[[int], Awaitable[None]]
    pending: Callable[[str], int]
    connected: Callable[[], bool]


class Resets:
    def __init__(self, *, router: Router, store: Store, clock: Clock,
                 evse_ids: Callable[[], list[int]], restart: Callable[[], None],
                 reset_evse: Callable[[int], Awaitable[None]],
                 is_idle: Callable[[int | None], bool],
                 message_timeout: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._evse_ids = evse_ids
        self._restart = restart
        self._reset_evse = reset_evse
        self._is_idle = is_idle
        self._message_timeout = message_timeout
        self._work: ResetWork | None = None
        # OnIdle resets waiting for transactions: EVSE ids, STATION for the station.
        self.scheduled: set[int | None] = set()
        # The transactions each waits for: their Ended events go out before the reset.
        self._awaited: dict[int | None, set[str]] = {}
        self._answered = asyncio.Event()
        self._jobs: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        router.register("Reset", self._on_reset)

    def attach(self, work: ResetWork) -> None:
        self._work = work

    def message_answered(self, _request: Payload, _response: Payload) -> None:
        """The outbox delivered a TransactionEvent (Outbox.on_answer)."""
        self._answered.set()

    async def run(self) -> None:
        """Carry out the resets that became due (a scheduled one, when its transaction
        ended), one at a time, for the life of the runtime."""
        while True:
            job = await self._jobs.get()
            try:
                await job()
            except Exception:  # noqa: BLE001 - a failed reset must not stop the station
                log.exception("scheduled Reset failed")

    # -- the request ----------------------------------------------------------------------

    async def _on_reset(self, request: Payload) -> Payload | Reply:
        kind, evse_id = request["type"], request.get("evseId")
        if evse_id == 0:
            evse_id = STATION   # EVSE 0 is the station itself (Part 1 §4.8)
        if evse_id is not None and evse_id not in self._evse_ids():
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
        if kind == "OnIdle" and not self._is_idle(evse_id):
            log.info("Reset OnIdle of %s scheduled: a transaction runs",
                     "the station" if evse_id is None else f"EVSE {evse_id}")
            self.scheduled.add(evse_id)
            if self._work is not None:
                self._awaited.setdefault(evse_id, set()).update(self._work.running(evse_id))
            return {"status": "Scheduled"}
        # This reset does at once what an OnIdle one still waits for: that one is done
        # with it (else the transactions this one ends would set it off as well, a
        # second reset, and the boot would say ScheduledReset, not RemoteReset).
        if evse_id is None:
            self.scheduled.clear()
        else:
            self.scheduled.discard(evse_id)
        if evse_id is None:
            # Persist first: a power cut between here and the restart still boots RemoteReset.
            self._store.set_meta(PENDING_BOOT_REASON, "RemoteReset")
            return Reply({"status": "Accepted"}, self._reset_station)
        return Reply({"status": "Accepted"}, lambda: self._reset_one(evse_id))

    # -- scheduled resets -----------------------------------------------------------------

    def transaction_ended(self, evse_id: int) -> None:
        """A transaction ended (Transactions.on_ended): a reset scheduled for it is due
        once nothing runs where it applies."""
        if STATION in self.scheduled and self._is_idle(None):
            self.scheduled.clear()
            self._store.set_meta(PENDING_BOOT_REASON, "ScheduledReset")
            self._jobs.put_nowait(self._reset_station)
        elif evse_id in self.scheduled and self._is_idle(evse_id):
            self.scheduled.discard(evse_id)
            self._jobs.put_nowait(lambda: self._reset_one(evse_id))

    # -- doing it -------------------------------------------------------------------------

    async def _reset_station(self) -> None:
        await self._end_transactions(None)
        log.warning("Reset of the station requested by the CSMS: restarting")
        self._restart()

    async def _reset_one(self, evse_id: int) -> None:
        await self._end_transactions(evse_id)
        log.warning("Reset of EVSE %d requested by the CSMS", evse_id)
        await self._reset_evse(evse_id)

    async def _end_transactions(self, evse_id: int | None) -> None:
        """End what still runs there (Immediate), energy off, Ended events delivered."""
        work = self._work
        if work is None:
            return
        evses = [e for e in self._evse_ids() if evse_id is None or e == evse_id]
        ended = work.end_all(evse_id, "ResetCommand", "ImmediateReset")
        awaited = set(ended).union(*(self._awaited.pop(key) for key in list(self._awaited)
                                     if evse_id is None or key == evse_id))
        # Through the EVSE's own safe sequence, also after a normal end: the restart
        # must not find a contactor still closing behind it.
        for evse in evses:
            await work.switch_off(evse)
        if ended:
            log.info("Reset: ended transaction(s) %s", ", ".join(ended))
        await self._delivered(work, awaited)

    async def _delivered(self, work: ResetWork, transactions: set[str]) -> None:
        """Until the CSMS has answered the events of these transactions (their Ended
        events above all), the link drops, or MessageTimeout passes without one answer:
        what is left is sent after the reset from the durable outbox."""
        while work.connected() and any(work.pending(t) > 0 for t in transactions):
            self._answered.clear()
            try:
                await wait_for(self._clock, self._answered.wait(), self._message_timeout())
            except TimeoutError:
                log.warning("Reset: messages still unanswered; they go after the reset")
                return
