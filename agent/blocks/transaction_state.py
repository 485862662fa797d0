"""A transaction's state and how it survives a power cut.

The row of a transaction and the TransactionEvent that changed it are committed in one
store transaction (see Transactions._emit): after `kill -9` either both are there or
neither, so seqNo never has a gap and no event is lost or invented.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.store import Store

LAST_REGISTERS = "transactions.last_registers.evse"

SCHEMA = """
CREATE TABLE IF NOT EXISTS transactions (
    evse_id INTEGER PRIMARY KEY,
    state TEXT NOT NULL
);
"""


@dataclass
class Transaction:
    id: str
    evse_id: int
    connector_id: int = 1
    seq_no: int = 0                       # the next event's seqNo
    charging_state: str = "EVConnected"   # ChargingStateEnumType last reported
    id_token: dict[str, Any] | None = None
    remote_start_id: int | None = None
    # Set when the driver (StopAuthorized) or the CSMS (RemoteStop) ended the session
    # but no TxStopPoint was lost yet: the Ended event that follows, when one is (the EV
    # unplugged, the power path opened), carries this stoppedReason (E07 / TC_E_14).
    stopped_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the meter sampler's state

    @property
    def authorized(self) -> bool:
        """A token was accepted for it (it may have started on plug-in without one)."""
        return self.id_token is not None

    def next_seq(self) -> int:
        seq = self.seq_no
        self.seq_no += 1
        return seq


class TransactionStore:
    """The open transactions, one per EVSE at most, in the agent's database."""

    def __init__(self, store: Store) -> None:
        self._store = store
        store.ensure_schema(SCHEMA)

    def load(self) -> dict[int, Transaction]:
        out = {}
        for evse_id, state in self._store.query("SELECT evse_id, state FROM transactions"):
            out[evse_id] = Transaction(**json.loads(state))
        return out

    def save(self, tx: Transaction) -> None:
        self._store.execute(
            "INSERT INTO transactions (evse_id, state) VALUES (?, ?) "
            "ON CONFLICT(evse_id) DO UPDATE SET state = excluded.state",
            (tx.evse_id, json.dumps(asdict(tx), separators=(",", ":"))))

    def delete(self, evse_id: int) -> None:
        self._store.execute("DELETE FROM transactions WHERE evse_id = ?", (evse_id,))

    # The registers the last transaction of an EVSE ended with, for the next one's start
    # (docs/energy-register.md); saved with its Ended event.

    def last_registers(self, evse_id: int) -> dict[str, float]:
        text = self._store.get_meta(f"{LAST_REGISTERS}{evse_id}")
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): v for k, v in data.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def save_last_registers(self, evse_id: int, registers: dict[str, float]) -> None:
        if registers:
            self._store.set_meta(f"{LAST_REGISTERS}{evse_id}", json.dumps(registers))
