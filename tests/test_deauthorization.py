"""MaxEnergyOnInvalidId: the energy a transaction refused by the CSMS may still draw
(agent/blocks/deauthorization.py). The whole path through the daemon is in
tests/conformance/test_c_deauthorization.py (TC_C_15, TC_C_17)."""

from datetime import datetime, timezone

from hal.api import MeterReading

from agent.blocks.deauthorization import InvalidIdEnergy

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
TOKEN = {"idToken": "04A1B2C3", "type": "ISO14443"}


class Model:
    def __init__(self, stop: bool = False, max_wh: int = 100) -> None:
        self.stop, self.max_wh = stop, max_wh

    def get_bool(self, component, name, **kwargs):
        assert (component, name) == ("TxCtrlr", "StopTxOnInvalidId")
        return self.stop

    def get_int(self, component, name, **kwargs):
        assert (component, name) == ("TxCtrlr", "MaxEnergyOnInvalidId")
        return self.max_wh


class World:
    def __init__(self, model: Model, register: float | None = 1000.0) -> None:
        self.register = register
        self.open = {"tx-1": 1}
        self.reapplied = 0
        self.energy = InvalidIdEnergy(model, evse_of=self.open.get, reading=self.reading,
                                      reapply=self.reapply)

    def reading(self, evse_id):
        if self.register is None:
            return None
        return MeterReading(T0, energy_import_wh=self.register)

    def reapply(self):
        self.reapplied += 1

    def answer(self, status: str, *, token: bool = True, tx: str = "tx-1") -> None:
        request = {"transactionInfo": {"transactionId": tx}}
        if token:
            request["idToken"] = TOKEN
        self.energy.event_answered(request, {"idTokenInfo": {"status": status}})


def test_energy_flows_until_the_budget_is_spent_then_stays_off():
    world = World(Model(max_wh=100))
    assert world.energy.limit_a(1, 16.0) == 16.0
    world.answer("Invalid")
    assert world.reapplied == 1
    world.register = 1099.0
    assert world.energy.limit_a(1, 16.0) == 16.0 and world.energy.limit_w(1, None) is None
    world.register = 1100.0
    assert world.energy.limit_a(1, 16.0) == 0.0 and world.energy.limit_w(1, 11000.0) == 0.0
    world.register = 1000.0   # a meter replaced meanwhile: spent stays spent
    assert not world.energy.allows(1)
    world.answer("Invalid")   # a later refusal does not start a new budget
    assert not world.energy.allows(1)
    world.energy.transaction_ended(1)
    assert world.energy.allows(1)


def test_zero_wh_stops_at_once():
    world = World(Model(max_wh=0))
    world.answer("Blocked")
    assert world.energy.limit_a(1, None) == 0.0


def test_without_a_reading_no_energy_is_allowed():
    world = World(Model(max_wh=10_000), register=None)
    world.answer("Invalid")
    assert not world.energy.allows(1)


def test_what_does_not_start_a_budget():
    world = World(Model(stop=True))
    world.answer("Invalid")                     # StopTxOnInvalidId: the transaction ends
    assert world.energy.allows(1)
    world = World(Model())
    world.answer("Accepted")
    world.answer("Invalid", token=False)        # no idToken in the event: no verdict on it
    world.answer("Invalid", tx="tx-gone")       # no such open transaction
    assert world.energy.allows(1) and world.reapplied == 0
