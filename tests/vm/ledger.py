"""What the CSMS's record says about the station's transactions: the checks of the power-cut
run, as pure functions over the frames `agent.demo.csms` records per link.

An event counts as *accepted* when the CSMS answered it (a CALLRESULT on the same link);
a frame the CSMS received but could not answer before the cut is only *received*, and the
station must send it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterable

ENERGY = "Energy.Active.Import.Register"


@dataclass
class Event:
    link: int                  # index of the link (connection) it came on
    payload: dict
    accepted: bool

    @property
    def tx_id(self) -> str:
        return self.payload["transactionInfo"]["transactionId"]

    @property
    def seq_no(self) -> int:
        return self.payload["seqNo"]


@dataclass
class Ledger:
    transactions: dict[str, list[Event]] = field(default_factory=dict)  # in arrival order
    frames: int = 0

    # ---- the checks; each returns the offending transaction ids (or values)

    def events(self) -> list[Event]:
        return [e for events in self.transactions.values() for e in events]

    def distinct(self, tx_id: str) -> dict[int, list[dict]]:
        """seqNo -> the different payloads that arrived with it."""
        by_seq: dict[int, list[dict]] = {}
        for event in self.transactions[tx_id]:
            variants = by_seq.setdefault(event.seq_no, [])
            if event.payload not in variants:
                variants.append(event.payload)
        return by_seq

    def incomplete(self) -> list[str]:
        """Transactions without an accepted Started as seqNo 0 or without an accepted Ended."""
        bad = []
        for tx_id, events in self.transactions.items():
            accepted = [e for e in events if e.accepted]
            started = any(e.seq_no == 0 and e.payload["eventType"] == "Started" for e in accepted)
            ended = any(e.payload["eventType"] == "Ended" for e in accepted)
            if not (started and ended):
                bad.append(tx_id)
        return bad

    def gaps(self) -> dict[str, list[int]]:
        """Missing seqNos per transaction (0 .. the Ended's seqNo)."""
        out = {}
        for tx_id in self.transactions:
            seqs = {e.seq_no for e in self.transactions[tx_id] if e.accepted}
            top = max(seqs, default=-1)
            missing = sorted(set(range(top + 1)) - seqs)
            if missing:
                out[tx_id] = missing
        return out

    def conflicting(self) -> list[tuple[str, int]]:
        """(transaction, seqNo) accepted more than once with different content."""
        return [(tx_id, seq) for tx_id in self.transactions
                for seq, variants in self.distinct(tx_id).items() if len(variants) > 1]

    def retries(self) -> int:
        """Identical events the CSMS got more than once (allowed: a retry)."""
        return sum(1 for tx_id in self.transactions
                   for seq, _ in self.distinct(tx_id).items()
                   if sum(e.seq_no == seq for e in self.transactions[tx_id]) > 1)

    def out_of_order(self) -> list[str]:
        """Transactions whose events the CSMS first accepted out of seqNo order."""
        bad = []
        for tx_id, events in self.transactions.items():
            order: list[int] = []
            for event in events:
                if event.accepted and event.seq_no not in order:
                    order.append(event.seq_no)
            if order != sorted(order):
                bad.append(tx_id)
        return bad

    def after_ended(self) -> list[str]:
        """Transactions with events after their Ended (by seqNo)."""
        bad = []
        for tx_id, events in self.transactions.items():
            ended = [e.seq_no for e in events if e.payload["eventType"] == "Ended"]
            if ended and any(e.seq_no > min(ended) for e in events):
                bad.append(tx_id)
        return bad

    def energy_backwards(self) -> list[tuple[str, float, float]]:
        """Within a transaction, in seqNo order: a register reading below an earlier one.
        (The Ended event repeats the Transaction.Begin reading: not a new reading.)"""
        bad = []
        for tx_id in self.transactions:
            last = None
            for seq, variants in sorted(self.distinct(tx_id).items()):
                for value in energy_values(variants[0], begin=seq == 0):
                    if last is not None and value < last:
                        bad.append((tx_id, last, value))
                    last = value if last is None else max(last, value)
        return bad

    def register_restarts(self) -> list[tuple[str, float, float]]:
        """Between transactions on the same EVSE, in order of their start: a transaction
        that begins below the reading the previous one ended with. One station's ledger:
        EVSE ids are per station."""
        starts = []
        for tx_id in self.transactions:
            by_seq = self.distinct(tx_id)
            if 0 not in by_seq or not energy_values(by_seq[0][0], begin=True):
                continue
            ends = [v for seq, variants in by_seq.items() for v in energy_values(variants[0])]
            started = by_seq[0][0]
            starts.append((started.get("evse", {}).get("id"), started["timestamp"], tx_id,
                           energy_values(started, begin=True)[0], max(ends, default=None)))
        bad = []
        previous: dict = {}
        for evse, _, tx_id, begin, end in sorted(starts, key=lambda s: (str(s[0]), s[1])):
            if evse in previous and previous[evse] is not None and begin < previous[evse]:
                bad.append((tx_id, previous[evse], begin))
            previous[evse] = end
        return bad

    def ended_reason(self, tx_id: str) -> str | None:
        for event in self.transactions.get(tx_id, []):
            if event.payload["eventType"] == "Ended":
                return event.payload["transactionInfo"].get("stoppedReason")
        return None


def energy_values(payload: dict, begin: bool = False) -> list[float]:
    """The energy register readings of an event; Transaction.Begin ones only if `begin`."""
    values = []
    for meter_value in payload.get("meterValue", []):
        for sampled in meter_value.get("sampledValue", []):
            if sampled.get("context") == "Transaction.Begin" and not begin:
                continue
            if sampled.get("measurand", ENERGY) == ENERGY and sampled.get("phase") is None:
                values.append(float(sampled["value"]))
    return values


def ledger_from_links(links: Iterable) -> Ledger:
    """From `Csms.links[station]`: every TransactionEvent CALL and whether it was answered."""
    ledger = Ledger()
    for index, link in enumerate(links):
        calls: dict[str, dict] = {}
        answered: set[str] = set()
        order: list[str] = []
        for frame in link.frames:
            ledger.frames += 1
            try:
                message = json.loads(frame.text)
            except ValueError:
                continue
            if frame.direction == "in" and message[0] == 2 and message[2] == "TransactionEvent":
                calls[message[1]] = message[3]
                order.append(message[1])
            elif frame.direction == "out" and message[0] == 3:
                answered.add(message[1])
        for message_id in order:
            event = Event(index, calls[message_id], message_id in answered)
            ledger.transactions.setdefault(event.tx_id, []).append(event)
    return ledger
