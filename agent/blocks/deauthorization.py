"""What a station does with a transaction whose idToken the CSMS deauthorizes (E05, C12, C15).

The CSMS may answer a TransactionEvent that carried an idToken with an idTokenInfo that is
not Accepted: a card accepted offline (or from the cache) that the CSMS now refuses.
TxCtrlr.StopTxOnInvalidId says what follows:

- true: the transaction is deauthorized at once: the energy stops and, when TxStopPoint
  contains a point the deauthorization takes away (Authorized, PowerPathClosed,
  EnergyTransfer), it ends with triggerReason Deauthorized, stoppedReason DeAuthorized
  (E05, E06.FR.04, TC_E_16, TC_C_16, TC_C_18). Transactions does this.
- false: the transaction goes on, but energy flows only until TxCtrlr.MaxEnergyOnInvalidId
  Wh have been delivered since the deauthorization (E05.FR.03; 0: no more energy at all,
  TC_C_17). Then the EVSE stops offering (chargingState SuspendedEVSE) and the
  transaction stays open until the EV leaves or the CSMS stops it (TC_C_15). This module
  does that: it caps the current (and DC power) the EVSE may use to 0 once the budget is
  spent.

The budget is counted on the EVSE meter's import register. Without a reading the energy
delivered cannot be known, and none is allowed: a cap that cannot be checked is spent.
It is held in memory only: a transaction open at a restart ends with the power
(PowerLoss), and its budget with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from hal.api import MeterReading

from agent.ocpp.session import Payload

log = logging.getLogger(__name__)

CTRLR = "TxCtrlr"


@dataclass
class Budget:
    """The energy a deauthorized transaction may still draw."""
    transaction_id: str
    start_wh: float | None   # the import register when the CSMS deauthorized it
    max_wh: int              # MaxEnergyOnInvalidId at that moment
    spent: bool = False      # latched: once spent, it stays spent

    def check(self, register_wh: float | None) -> bool:
        """Whether energy may still flow, given the register now; latches when spent."""
        if not self.spent and (register_wh is None or self.start_wh is None
                               or register_wh - self.start_wh >= self.max_wh):
            self.spent = True
        return not self.spent


class InvalidIdEnergy:
    """MaxEnergyOnInvalidId for transactions that go on after the CSMS refused their token.

    `evse_of(transaction_id)`: the EVSE of that open transaction (None: none open);
    `reading(evse_id)`: the EVSE meter's latest reading; `reapply()`: make the EVSEs
    follow their limits again now."""

    def __init__(self, model: Any, *, evse_of: Callable[[str], int | None],
                 reading: Callable[[int], MeterReading | None],
                 reapply: Callable[[], None] = lambda: None) -> None:
        self._model = model
        self._evse_of = evse_of
        self._reading = reading
        self.reapply = reapply
        self._budgets: dict[int, Budget] = {}

    # -- events ---------------------------------------------------------------------------

    def event_answered(self, request: Payload, response: Payload) -> None:
        """A TransactionEvent answer (an Outbox answer listener): a refused idToken with
        StopTxOnInvalidId false starts the transaction's budget."""
        info = response.get("idTokenInfo")
        if request.get("idToken") is None or not isinstance(info, dict) \
                or info.get("status") == "Accepted":
            return
        if self._model.get_bool(CTRLR, "StopTxOnInvalidId"):
            return   # Transactions deauthorizes it outright
        tx_id = request["transactionInfo"]["transactionId"]
        evse_id = self._evse_of(tx_id)
        if evse_id is None:
            return   # ended meanwhile: nothing left to cap
        budget = self._budgets.get(evse_id)
        if budget is not None and budget.transaction_id == tx_id:
            return   # already counting since the first refusal
        max_wh = self._model.get_int(CTRLR, "MaxEnergyOnInvalidId")
        self._budgets[evse_id] = Budget(tx_id, self._register(evse_id), max_wh)
        log.warning("EVSE %d: the CSMS says token %s is %s; StopTxOnInvalidId is false: "
                    "%d Wh more at most (MaxEnergyOnInvalidId)", evse_id,
                    request["idToken"].get("idToken"), info.get("status"), max_wh)
        self.reapply()

    def transaction_ended(self, evse_id: int) -> None:
        """Transactions.on_ended: the budget goes with its transaction."""
        self._budgets.pop(evse_id, None)

    # -- the cap --------------------------------------------------------------------------

    def allows(self, evse_id: int) -> bool:
        """Whether this EVSE may deliver energy as far as deauthorization goes."""
        budget = self._budgets.get(evse_id)
        if budget is None:
            return True
        if budget.spent:
            return False
        if not budget.check(self._register(evse_id)):
            log.warning("EVSE %d: MaxEnergyOnInvalidId (%d Wh) delivered since the token was "
                        "refused: no more energy for transaction %s", evse_id, budget.max_wh,
                        budget.transaction_id)
        return not budget.spent

    def limit_a(self, evse_id: int, limit_a: float | None) -> float | None:
        """The current limit per phase with the cap applied (0: none may flow)."""
        return limit_a if self.allows(evse_id) else 0.0

    def limit_w(self, evse_id: int, limit_w: float | None) -> float | None:
        """The power limit (DC) with the cap applied."""
        return limit_w if self.allows(evse_id) else 0.0

    def _register(self, evse_id: int) -> float | None:
        reading = self._reading(evse_id)
        return reading.energy_import_wh if reading is not None else None
