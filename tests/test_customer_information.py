"""Customer information (N09/N10): the block without a network, and the records it reads
and clears (the conformance cases TC_N_27..32 run it in the daemon)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from agent.blocks.customer_information import (CLEARED, NO_DATA, Customer,
                                               CustomerInformation, Findings, LogFileRecords,
                                               TransactionRecords, paginate, same_token)
from agent.blocks.transaction_state import Transaction
from agent.clock import ManualClock
from agent.ocpp.session import Reply, Router

TOKEN = {"idToken": "04A1B2C3", "type": "ISO14443"}


class FakeLink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    async def call(self, action, payload, **kwargs):
        self.sent.append((action, payload))
        return {}


class Records:
    """One kind of record holding `lines` about TOKEN; clear removes them."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def find(self, customer: Customer) -> list[str]:
        return list(self.lines) if same_token(customer.id_token, TOKEN) else []

    def clear(self, customer: Customer) -> Findings:
        found = self.find(customer)
        if found:
            self.lines = []
        return Findings(found=found, cleared=found)


async def request(records, payload) -> tuple[dict, list[dict]]:
    router, link = Router(), FakeLink()
    CustomerInformation(router, link, ManualClock(), records)
    answer = await router.routes["CustomerInformation"].handler(payload)
    if isinstance(answer, Reply):
        await answer.then()
        await asyncio.sleep(0.01)
        answer = answer.payload
    return answer, [p for action, p in link.sent if action == "NotifyCustomerInformation"]


def test_requests_without_one_customer_or_anything_to_do_are_refused():
    async def main():
        answer, sent = await request([], {"requestId": 1, "report": True, "clear": False})
        assert answer["status"] == "Invalid" and sent == []
        answer, sent = await request([], {"requestId": 1, "report": True, "clear": False,
                                          "idToken": TOKEN, "customerIdentifier": "c"})
        assert answer["status"] == "Invalid" and sent == []
        # N09.FR.07 / N10.FR.07
        answer, sent = await request([], {"requestId": 1, "report": False, "clear": False,
                                          "idToken": TOKEN})
        assert answer["status"] == "Rejected" and sent == []
    asyncio.run(main())


def test_a_long_report_comes_in_numbered_parts_and_the_clear_empties_it(caplog):
    caplog.set_level(logging.DEBUG)
    records = Records([f"record {i}: " + "x" * 100 for i in range(20)])

    async def main():
        answer, sent = await request([records], {"requestId": 9, "report": True,
                                                 "clear": False, "idToken": TOKEN})
        assert answer == {"status": "Accepted"}
        assert [p["seqNo"] for p in sent] == list(range(len(sent))) and len(sent) > 1
        assert all(p["tbc"] for p in sent[:-1]) and "tbc" not in sent[-1]
        assert all(len(p["data"]) <= 512 and p["requestId"] == 9 for p in sent)
        assert "\n".join(p["data"] for p in sent).count("record ") == 20
        # A case-insensitive idToken names the same customer (a CiString).
        _, sent = await request([records], {"requestId": 10, "report": True, "clear": True,
                                            "idToken": {**TOKEN, "idToken": "04a1b2c3"}})
        assert "Cleared: record 0" in sent[0]["data"]
        _, sent = await request([records], {"requestId": 11, "report": True,
                                            "clear": False, "idToken": TOKEN})
        assert [p["data"] for p in sent] == [NO_DATA]
        _, sent = await request([records], {"requestId": 12, "report": False,
                                            "clear": True, "idToken": TOKEN})
        assert [p["data"] for p in sent] == [CLEARED]
    asyncio.run(main())
    # The agent's log says what was done, never whom it was done for.
    assert caplog.records and not any("04A1B2C3" in r.getMessage().upper()
                                      for r in caplog.records)


def test_paginate_keeps_every_character_within_the_limit():
    lines = ["a" * 1300, "b", "c" * 511, "d" * 512]
    pages = paginate(lines)
    assert all(0 < len(p) <= 512 for p in pages)
    assert "".join(pages).replace("\n", "") == "".join(lines)
    assert paginate([]) == [""]


def test_the_log_file_loses_the_token_in_place(tmp_path: Path):
    log = tmp_path / "agent.log"
    text = ("2026-12-03T07:05:34.123Z INFO x: card 04a1b2c3 refused\n"
            "2026-12-03T07:05:35.123Z INFO x: card 04A1B2C3FF is another card\n"
            "2026-12-03T07:05:36.123Z INFO x: EVSE 1: card 04A1B2C3 releases its cable\n")
    log.write_text(text)
    records = LogFileRecords(lambda: [log])
    customer = Customer(id_token=TOKEN)
    assert records.find(customer) == ["Station log: 2 line(s) in 1 file(s) name 04A1B2C3"]
    with open(log, "a") as appender:      # the logging handler keeps appending meanwhile
        findings = records.clear(customer)
        appender.write("2026-12-03T07:05:37.123Z INFO x: later\n")
    assert findings.cleared == findings.found
    after = log.read_text()
    assert "04a1b2c3 " not in after.lower().replace("04a1b2c3ff", "")
    assert "card ******** refused" in after and "04A1B2C3FF" in after
    assert after.endswith("later\n") and len(after) == len(text) + len(
        "2026-12-03T07:05:37.123Z INFO x: later\n")
    assert records.find(customer) == []


def test_billing_records_are_reported_and_kept():
    tx = Transaction("tx-1", 1, id_token=dict(TOKEN))
    other = Transaction("tx-2", 2, id_token={"idToken": "OTHER", "type": "ISO14443"})
    queued = [{"idToken": TOKEN, "transactionInfo": {"transactionId": "tx-0"}},
              {"idToken": {**TOKEN, "type": "Central"}, "transactionInfo": {"transactionId": "x"}}]
    records = TransactionRecords(lambda: [tx, other], lambda text: queued)
    customer = Customer(id_token=TOKEN)
    found = records.find(customer)
    assert found == ["Transaction tx-1 on EVSE 1, ongoing, authorized by 04A1B2C3 (ISO14443)",
                     "Transaction tx-0: 1 TransactionEvent(s) with this idToken not yet "
                     "delivered to the CSMS"]
    findings = records.clear(customer)
    assert findings.cleared == [] and len(findings.kept) == 2
    assert records.find(Customer(identifier="someone")) == []


def test_queued_events_and_cache_entries_are_found_in_the_store(tmp_path: Path):
    from agent.blocks.customer_information import forget_cached, queued_transaction_events
    from agent.ocpp.outbox import Outbox
    from agent.store import Store

    store = Store.in_dir(tmp_path)
    try:
        Outbox(store, link=None, clock=ManualClock(), model=None)   # its table

        def queue(action: str, payload: dict) -> None:   # stored as Outbox.enqueue does
            store.execute("INSERT INTO outbox (action, payload) VALUES (?, ?)",
                          (action, json.dumps(payload, separators=(",", ":"))))
        queue("TransactionEvent", {"idToken": {"idToken": "Zoë_1%", "type": "Local"},
                                   "transactionInfo": {"transactionId": "t"}})
        queue("TransactionEvent", {"idToken": {"idToken": "Zo", "type": "Local"}})
        queue("StatusNotification", {"note": "Zoë_1%"})
        query = queued_transaction_events(store)
        assert [p["idToken"]["idToken"] for p in query("Zoë_1%")] == ["Zoë_1%"]
        assert query("Zoex1%") == []        # LIKE's wildcards are escaped
        store.ensure_schema("CREATE TABLE IF NOT EXISTS auth_cache (id_token TEXT NOT NULL "
                            "COLLATE NOCASE, type TEXT NOT NULL, PRIMARY KEY (id_token, type))")
        store.execute("INSERT INTO auth_cache VALUES ('04A1B2C3', 'ISO14443')")

        class Cache:
            def used_bytes(self) -> int:
                return 64 * store.query("SELECT COUNT(*) FROM auth_cache")[0][0]

        class Model:
            def definition(self, component, variable):
                raise KeyError(variable)   # a model without AuthCacheCtrlr.Storage

        forget_cached(store, Cache(), Model())({"idToken": "04a1b2c3", "type": "ISO14443"})
        assert store.query("SELECT COUNT(*) FROM auth_cache") == [(0,)]
    finally:
        store.close()


def test_the_local_list_entry_is_reported_and_kept(tmp_path: Path):
    """Part 6's N10 cases (TC_N_30/31/32): a clear removes all customer data "except from
    LocalList". The list's entry is reported (found with the token in another case, also
    while the list is disabled: it is still stored) and survives the clear, as does the
    list's version; the cache entry beside it goes."""
    from agent.blocks.customer_information import (AuthCacheRecords, LocalListRecords,
                                                   forget_cached, local_list_entry)
    from tests.test_local_auth_list import ListEnv

    env = ListEnv(tmp_path / "station-agent.db")
    try:
        group = {"idToken": "FLEET-7", "type": "Central"}
        env.cache.update(TOKEN, {"status": "Accepted"})
        assert env.send(7, "Full", [{"idToken": TOKEN, "idTokenInfo": {
            "status": "Accepted", "groupIdToken": group,
            "cacheExpiryDateTime": "2030-01-01T00:00:00.000Z"}}]) == {"status": "Accepted"}
        records = LocalListRecords(local_list_entry(env.store))
        customer = Customer(id_token={"idToken": "04a1b2c3", "type": "ISO14443"})
        line = ("Local Authorization List: 04a1b2c3 (ISO14443) status Accepted, valid until "
                "2030-01-01T00:00:00.000Z, group FLEET-7")
        assert records.find(customer) == [line]
        assert records.find(Customer(id_token={**TOKEN, "type": "Central"})) == []
        assert records.find(Customer(identifier="someone")) == []
        env.set("LocalAuthListCtrlr", "Enabled", "false")
        assert records.find(customer) == [line]
        env.set("LocalAuthListCtrlr", "Enabled", "true")

        async def main():
            router, link = Router(), FakeLink()
            CustomerInformation(router, link, ManualClock(), [
                AuthCacheRecords(env.cache, forget_cached(env.store, env.cache, env.model)),
                records])
            reply = await router.routes["CustomerInformation"].handler({
                "requestId": 3, "report": True, "clear": True, "idToken": TOKEN})
            assert reply.payload == {"status": "Accepted"}
            await reply.then()
            await asyncio.sleep(0.01)
            return [p for action, p in link.sent if action == "NotifyCustomerInformation"]
        sent = asyncio.run(main())
        lines = "".join(p["data"] for p in sent).splitlines()
        assert [x.split(":")[0] for x in lines] == ["Cleared", "Kept"], lines
        assert lines[0].startswith("Cleared: Authorization cache: 04A1B2C3")
        assert lines[1].startswith("Kept: Local Authorization List: 04A1B2C3")
        assert env.cache.lookup(TOKEN) is None
        assert env.list.lookup(TOKEN) is not None
        assert env.version() == 7 and env.list.state().entries == 1
    finally:
        env.close()
