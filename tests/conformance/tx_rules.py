"""Part 6's general tool rules for TransactionEvents (section 2.1), which the OCTT applies
to every case besides its steps' validations: checked at the end of each E case.

- "The first TransactionEventRequest of a transaction MUST contain eventType Started."
- "the provided seqNo are sequentially numbered in chronological order": per transaction
  from 0 (the 2.0.1 edition 2 recommendation, TC_E_53_CSMS), no gap, no number used for
  two different messages (a retry, E13, is the same message again).
- One Ended, the last message of its transaction; Updated in between.
"""

from __future__ import annotations

from typing import Any

from tests.conformance.rig import Rig


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
