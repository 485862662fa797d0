"""Part 6's general tool rules for TransactionEvents (section 2.1), which the OCTT applies
to every case besides its steps' validations: checked at the end of each E case.
Also the helpers the E, C, F and J cases share: `station` (the rig's, with these rules
checked at the end), `Since` (one step's messages) and `points`.

- "The first TransactionEventRequest of a transaction MUST contain eventType Started."
- "the provided seqNo are sequentially numbered in chronological order": per transaction
  from 0 (the 2.0.1 edition 2 recommendation, TC_E_53_CSMS), no gap, no number used for
  two different messages (a retry, E13, is the same message again).
- One Ended, the last message of its transaction; Updated in between.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from tests.conformance.rig import Rig
from tests.conformance.rig import station as rig_station


@contextlib.asynccontextmanager
async def station(tmp_path: Path, **kwargs: Any) -> AsyncIterator[Rig]:
    """The rig's station, and Part 6's general tool rules checked once the case passed."""
    async with rig_station(tmp_path, **kwargs) as rig:
        yield rig
        check_transaction_events(rig)


class Since:
    """What the station sent from now on (the OCTT's view of one step)."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.marks = {a: len(rig.sent_on_all_links(a))
                      for a in ("Authorize", "TransactionEvent", "StatusNotification")}

    def __call__(self, action: str) -> list[dict]:
        return self.rig.sent_on_all_links(action)[self.marks[action]:]

    async def expect(self, action: str, where: Callable[[dict], bool] = lambda p: True) -> dict:
        """The first `action` sent from now on matching `where` (waiting for it)."""
        old = {id(p) for p in self.rig.sent_on_all_links(action)[:self.marks[action]]}
        return await self.rig.expect(action, where=lambda p: id(p) not in old and where(p))


async def points(rig: Rig, start: str | None = None, stop: str | None = None) -> None:
    """Configuration State: TxStartPoint / TxStopPoint (both ReadWrite here)."""
    settings = {}
    if start is not None:
        settings[("TxCtrlr", "TxStartPoint")] = start
    if stop is not None:
        settings[("TxCtrlr", "TxStopPoint")] = stop
    await rig.configure(settings)


def check_transaction_events(rig: Rig) -> None:
    """Fail the case if the TransactionEvents the station sent break the general rules."""
    by_tx: dict[str, dict[int, dict[str, Any]]] = {}
    for event in rig.sent_on_all_links("TransactionEvent"):
        seqs = by_tx.setdefault(event["transactionInfo"]["transactionId"], {})
        seen = seqs.setdefault(event["seqNo"], event)
        assert seen == event, f"seqNo {event['seqNo']} used for two messages: {seen} {event}"
    for tx_id, seqs in by_tx.items():
        order = sorted(seqs)
        assert order == list(range(len(order))), f"transaction {tx_id}: seqNo {order}"
        kinds = [seqs[n]["eventType"] for n in order]
        assert kinds[0] == "Started", f"transaction {tx_id}: {kinds}"
        assert "Started" not in kinds[1:], f"transaction {tx_id}: {kinds}"
        assert "Ended" not in kinds[:-1], f"transaction {tx_id}: events after Ended: {kinds}"
        started = seqs[0]
        assert started["evse"]["id"] >= 1 and started["evse"]["connectorId"] >= 1, started
