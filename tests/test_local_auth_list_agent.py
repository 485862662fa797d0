"""The Local Authorization List on the real agent process (`python -m agent run`, mock
hardware driven by `station-agent sim`) against the CSMS peer: offline authorization from
the list, a Differential with a version mismatch, kill -9 during a Full update, and a list
of 100,000 cards sent in chunks of ItemsPerMessage that installs, survives a restart and
answers lookups."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from pathlib import Path

from agent.demo.csms import Csms
from agent.store import DB_NAME
from tests.harness import PASSWORD, AgentProcess, write_config
from tests.test_sim_agent import sim_async, wait_for_socket

STATION = "CS-TEST"
LIST_SIZE = 100_000
KILL_ROUNDS = 8
GROUP = {"idToken": "FLEET-7", "type": "Central"}


def card(i: int) -> dict:
    return {"idToken": f"C{i:07d}", "type": "ISO14443"}


def entry(token: dict, status: str = "Accepted", **info) -> dict:
    return {"idToken": token, "idTokenInfo": {"status": status, **info}}


async def start(csms: Csms, config: Path, after=None):
    agent = await AgentProcess(config).start()
    link = await csms.wait_station(STATION, timeout=15, after=after)
    await link.expect_call("StatusNotification", timeout=15)
    await wait_for_socket(config)
    return agent, link


async def get_variable(link, component: str, variable: str) -> str:
    answer = await link.call("GetVariables", {"getVariableData": [{
        "component": {"name": component}, "variable": {"name": variable}}]})
    return answer["getVariableResult"][0]["attributeValue"]


async def set_variables(link, settings: dict[tuple[str, str], str]) -> None:
    answer = await link.call("SetVariables", {"setVariableData": [
        {"component": {"name": c}, "variable": {"name": v}, "attributeValue": value}
        for (c, v), value in settings.items()]})
    assert {r["attributeStatus"] for r in answer["setVariableResult"]} == {"Accepted"}, answer


async def status(config: Path) -> dict:
    return json.loads((await sim_async(config, "status")).stdout)


async def until(predicate, timeout: float = 15) -> None:
    """Until `predicate()` (a coroutine function) is true: for the real process's own
    pace (a sim command crosses a socket and the agent's loop)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def stored_list(config: Path) -> tuple[int, set[str]]:
    """Version and idTokens in the agent's database, read while the agent is down; the
    counters stored with them (Entries, Storage) agree with the rows."""
    db = sqlite3.connect(config.parent / "state" / DB_NAME)
    try:
        version, entries, size = db.execute(
            "SELECT version, entries, bytes FROM local_auth_list_state").fetchone()
        tokens = {row[0] for row in db.execute("SELECT id_token FROM local_auth_list")}
        assert (entries, size) == db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM local_auth_list").fetchone()
    finally:
        db.close()
    return version, tokens


def test_offline_authorization_from_the_list(tmp_path):
    """C13: the link is down; a card in the list (Accepted, with a group) starts a session
    without any AuthorizeRequest, a card the list holds Blocked does not, and the CSMS
    later gets the offline Started with the card."""
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url, evses=2)
            agent, link = await start(csms, config)
            try:
                good, blocked = card(1), card(2)
                answer = await link.call("SendLocalList", {
                    "versionNumber": 1, "updateType": "Full", "localAuthorizationList": [
                        entry(good, groupIdToken=GROUP), entry(blocked, "Blocked")]})
                assert answer == {"status": "Accepted"}
                # Reconnect quickly once the CSMS is back (1 s, no random part).
                await set_variables(link, {
                    ("OCPPCommCtrlr", "RetryBackOffWaitMinimum"): "1",
                    ("OCPPCommCtrlr", "RetryBackOffRandomRange"): "0",
                    ("OCPPCommCtrlr", "RetryBackOffRepeatTimes"): "0"})
                # The CSMS goes away: the link drops and reconnections are refused.
                csms.passwords = {STATION: "not-the-station-password"}
                await link.close()
                await until(lambda: _offline(config))
                await sim_async(config, "swipe", blocked["idToken"], "--evse", "2")
                await sim_async(config, "plug", "2")
                await sim_async(config, "swipe", good["idToken"], "--evse", "1")
                await sim_async(config, "plug", "1")
                await until(lambda: _charging(config, "1"))
                now = (await status(config))["evses"]
                assert now["2"]["transaction_id"] is None and not now["2"]["contactor_closed"]
                csms.passwords = {STATION: PASSWORD}
                again = await csms.wait_station(STATION, timeout=20, after=link)
                started = await again.expect_call(
                    "TransactionEvent", timeout=15, where=lambda p: p["eventType"] == "Started")
                assert started["offline"] is True
                assert started["idToken"] == good
                assert started["evse"]["id"] == 1
                assert not [c for lk in csms.links[STATION] for c in lk.calls("Authorize")]
                assert all(p["evse"]["id"] == 1 for p in again.calls("TransactionEvent"))
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 90))


async def _offline(config: Path) -> bool:
    return (await status(config))["connected"] is False


async def _charging(config: Path, evse: str) -> bool:
    return (await status(config))["evses"][evse]["contactor_closed"] is True


def test_differential_with_a_version_mismatch(tmp_path):
    """D01.FR.19 on the real process: a Differential not above the installed version
    is VersionMismatch and changes nothing; the next version applies."""
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            agent, link = await start(csms, config)
            try:
                assert (await link.call("GetLocalListVersion", {})) == {"versionNumber": 0}
                await link.call("SendLocalList", {
                    "versionNumber": 5, "updateType": "Full",
                    "localAuthorizationList": [entry(card(1)), entry(card(2))]})
                for version in (5, 3):
                    answer = await link.call("SendLocalList", {
                        "versionNumber": version, "updateType": "Differential",
                        "localAuthorizationList": [{"idToken": card(1)}, entry(card(3))]})
                    assert answer["status"] == "VersionMismatch"
                assert await link.call("GetLocalListVersion", {}) == {"versionNumber": 5}
                assert await get_variable(link, "LocalAuthListCtrlr", "Entries") == "2"
                answer = await link.call("SendLocalList", {
                    "versionNumber": 6, "updateType": "Differential",
                    "localAuthorizationList": [{"idToken": card(1)}, entry(card(3))]})
                assert answer == {"status": "Accepted"}
                assert await link.call("GetLocalListVersion", {}) == {"versionNumber": 6}
                assert await get_variable(link, "LocalAuthListCtrlr", "Entries") == "2"
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))


def test_kill_9_during_a_full_update_leaves_old_or_new(tmp_path):
    """kill -9 while a Full update of ItemsPerMessage entries is on its way or being
    stored: after the restart the station holds the old list with the old version or the
    new list with the new version, never a mix, and says so to the CSMS."""
    async def main():
        rng = random.Random(18)
        outcomes = []
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            agent, link = await start(csms, config)
            try:
                items = int(await get_variable(link, "LocalAuthListCtrlr", "ItemsPerMessage"))
                version = 1
                old = {card(i)["idToken"] for i in range(items)}
                await link.call("SendLocalList", {
                    "versionNumber": version, "updateType": "Full",
                    "localAuthorizationList": [entry(card(i)) for i in range(items)]})
                for round_ in range(KILL_ROUNDS):
                    first = (round_ + 1) * items
                    new = {card(i)["idToken"] for i in range(first, first + items)}
                    frame = json.dumps([2, f"kill-{round_}", "SendLocalList", {
                        "versionNumber": version + 1, "updateType": "Full",
                        "localAuthorizationList": [entry(card(i))
                                                   for i in range(first, first + items)]}])
                    await link.send_raw(frame, expect_reply=False)
                    # Storing ItemsPerMessage entries takes a few ms here: kills within
                    # 12 ms land before, during and after it (both outcomes occur).
                    await asyncio.sleep(rng.uniform(0, 0.012))
                    agent.proc.kill()
                    await agent.proc.wait()
                    stored_version, stored = stored_list(config)
                    assert (stored_version, stored) in ((version, old), (version + 1, new)), \
                        (round_, stored_version, len(stored & old), len(stored & new))
                    outcomes.append(stored_version == version + 1)
                    if stored_version == version + 1:
                        version, old = version + 1, new
                    agent, link = await start(csms, config, after=link)
                    assert await link.call("GetLocalListVersion", {}) == {"versionNumber": version}
                    assert await get_variable(link, "LocalAuthListCtrlr", "Entries") == str(items)
            finally:
                await agent.kill()
            assert csms.schema_errors == []
        return outcomes
    outcomes = asyncio.run(asyncio.wait_for(main(), 120))
    assert len(outcomes) == KILL_ROUNDS


def test_a_list_of_100000_cards_in_chunks(tmp_path):
    """A Full update of ItemsPerMessage cards, then Differentials with the next versions,
    up to 100,000 cards: installed, still there after a restart, and a card from the
    middle is accepted at once (LocalPreAuthorize) without an AuthorizeRequest."""
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url)
            agent, link = await start(csms, config)
            try:
                items = int(await get_variable(link, "LocalAuthListCtrlr", "ItemsPerMessage"))
                version = 0
                for first in range(0, LIST_SIZE, items):
                    version += 1
                    answer = await link.call("SendLocalList", {
                        "versionNumber": version,
                        "updateType": "Full" if first == 0 else "Differential",
                        "localAuthorizationList": [
                            entry(card(i), groupIdToken=GROUP)
                            for i in range(first, min(first + items, LIST_SIZE))]}, timeout=30)
                    assert answer == {"status": "Accepted"}, (version, answer)
                assert await get_variable(link, "LocalAuthListCtrlr", "Entries") == str(LIST_SIZE)
                await agent.stop()
                agent, link = await start(csms, config, after=link)
                assert await link.call("GetLocalListVersion", {}) == {"versionNumber": version}
                assert await get_variable(link, "LocalAuthListCtrlr", "Entries") == str(LIST_SIZE)
                storage = int(await get_variable(link, "LocalAuthListCtrlr", "Storage"))
                assert storage > LIST_SIZE * 100
                await set_variables(link, {("AuthCtrlr", "LocalPreAuthorize"): "true"})
                await sim_async(config, "swipe", card(73_456)["idToken"])
                await sim_async(config, "plug", "1")
                started = await link.expect_call(
                    "TransactionEvent", timeout=15, where=lambda p: p["eventType"] == "Started")
                assert started["idToken"] == card(73_456)
                assert link.calls("Authorize") == []
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 240))
