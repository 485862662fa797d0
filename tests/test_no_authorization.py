"""AuthCtrlr.Enabled false: a plugged-in EV charges without any token (appendix 3: "no
authorization is done before starting a transaction"); the events carry idToken ""
of type NoAuthorization (errata 6.1.1). One session per plug-in."""

from tests.conformance.rig import run, station

NO_TOKEN = {"idToken": "", "type": "NoAuthorization"}


def test_plug_in_charges_without_a_token_once_per_plug_in(tmp_path):
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("AuthCtrlr", "Enabled"): "false"})
            await rig.plug()
            await rig.advance(1)
            started = await rig.expect("TransactionEvent",
                                       where=lambda p: p["eventType"] == "Started")
            tx_id = started["transactionInfo"]["transactionId"]
            events = rig.transaction_events(tx_id)
            assert any(e.get("idToken") == NO_TOKEN for e in events)
            assert rig.snapshot()["contactor_closed"] is True
            assert rig.sent("Authorize") == []
            # Stopped by the CSMS while the EV stays plugged in: no new session starts.
            answer = await rig.call("RequestStopTransaction", {"transactionId": tx_id})
            assert answer["status"] == "Accepted"
            await rig.advance(5, step=1)
            assert [e["transactionInfo"]["transactionId"] for e in rig.transaction_events()
                    if e["eventType"] == "Started"] == [tx_id]
            assert rig.snapshot()["contactor_closed"] is False
            # Unplugged and plugged in again: the next session.
            await rig.unplug()
            await rig.plug()
            await rig.advance(1)
            starts = [e for e in rig.transaction_events() if e["eventType"] == "Started"]
            assert len(starts) == 2 and starts[1]["transactionInfo"]["transactionId"] != tx_id
            assert rig.snapshot()["contactor_closed"] is True
    run(case())


def test_with_authorization_enabled_a_plug_in_alone_gives_no_energy(tmp_path):
    async def case():
        async with station(tmp_path) as rig:
            await rig.plug()
            await rig.advance(5, step=1)
            assert rig.snapshot()["contactor_closed"] is False
            assert all(e.get("idToken") != NO_TOKEN for e in rig.transaction_events())
    run(case())
