"""A Local Authorization List of 100,000 cards: install time, database size, lookup
latency, and the daemon's memory with the list installed against without.

The real daemon (`python -m agent run`, mock hardware) connects to the CSMS peer on
loopback. The CSMS sends the list as the issue describes it: a Full update of
ItemsPerMessage cards, then Differential updates with the next versionNumbers, each
waiting for its answer (one store transaction, synchronous=FULL, each). Then:
- RSS (VmRSS of /proc) of the daemon that installed the list, and of a fresh daemon
  started on that store, against a fresh daemon on an empty store: the list must not
  live in memory;
- the database's size on disk (main file plus WAL);
- lookup latency: LocalAuthList.lookup (the SQL the authorization asks) on the installed
  store, in this process, for random cards of the list and cards not in it.

    .venv/bin/python bench/local_list.py [--count 100000] [--settle 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.blocks.local_auth_list import LocalAuthList  # noqa: E402
from agent.demo.csms import Csms  # noqa: E402
from agent.model.definitions import standard_definitions  # noqa: E402
from agent.model.device_model import DeviceModel  # noqa: E402
from agent.model.types import (FEATURE_AUTH_CACHE, FEATURE_LOCAL_AUTH_LIST,  # noqa: E402
                               EvseSpec, StationSpec)
from agent.store import DB_NAME, Store  # noqa: E402
from tests.harness import PASSWORD, AgentProcess, write_config  # noqa: E402

STATION = "CS-TEST"
GROUP = {"idToken": "FLEET-7", "type": "Central"}


def card(i: int) -> dict:
    return {"idToken": f"04{i:012X}", "type": "ISO14443"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def booted(csms: Csms, config: Path, after=None):
    agent = await AgentProcess(config).start()
    link = await csms.wait_station(STATION, timeout=20, after=after)
    await link.expect_call("StatusNotification", timeout=20)
    return agent, link


async def settled_rss(agent: AgentProcess, seconds: float) -> float:
    await asyncio.sleep(seconds)
    assert agent.proc is not None
    return rss_mb(agent.proc.pid)


async def install(link, count: int, items: int) -> tuple[float, int]:
    version = 0
    began = time.perf_counter()
    for first in range(0, count, items):
        version += 1
        answer = await link.call("SendLocalList", {
            "versionNumber": version, "updateType": "Full" if first == 0 else "Differential",
            "localAuthorizationList": [
                {"idToken": card(i), "idTokenInfo": {"status": "Accepted", "groupIdToken": GROUP}}
                for i in range(first, min(first + items, count))]}, timeout=60)
        assert answer == {"status": "Accepted"}, answer
    return time.perf_counter() - began, version


async def measure_daemon(work: Path, count: int, settle: float) -> dict:
    figures: dict = {}
    async with Csms(passwords={STATION: PASSWORD}) as csms:
        config = write_config(work, csms.url)
        agent, link = await booted(csms, config)
        figures["rss_empty"] = await settled_rss(agent, settle)
        items = int((await link.call("GetVariables", {"getVariableData": [{
            "component": {"name": "LocalAuthListCtrlr"},
            "variable": {"name": "ItemsPerMessage"}}]}))["getVariableResult"][0]["attributeValue"])
        figures["items"] = items
        figures["install_s"], figures["messages"] = await install(link, count, items)
        figures["rss_installer"] = await settled_rss(agent, settle)
        await agent.stop()
        db = work / "state" / DB_NAME
        figures["db_bytes"] = db.stat().st_size + _size(Path(f"{db}-wal"))
        agent, link = await booted(csms, config, after=link)
        figures["rss_restarted"] = await settled_rss(agent, settle)
        entries = (await link.call("GetVariables", {"getVariableData": [{
            "component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "Entries"}}]}))
        figures["entries"] = entries["getVariableResult"][0]["attributeValue"]
        await agent.stop()
    return figures


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def measure_lookups(work: Path, count: int, runs: int) -> dict:
    store = Store(work / "state" / DB_NAME)
    spec = StationSpec(vendor="Example", model="AC-22", serial_number="0001",
                       firmware_version="1.0", evses=(EvseSpec(1, 32, 3, 230),),
                       security_profile=1,
                       features=frozenset({FEATURE_AUTH_CACHE, FEATURE_LOCAL_AUTH_LIST}))
    model = DeviceModel(store, standard_definitions(spec))
    local = LocalAuthList(None, model, store)
    rng = random.Random(18)
    times = []
    for n in range(runs):
        i = rng.randrange(count) if n % 4 else count + rng.randrange(count)   # 1 in 4 misses
        began = time.perf_counter()
        found = local.lookup(card(i))
        times.append(time.perf_counter() - began)
        assert (found is not None) == (i < count)
    store.close()
    times.sort()
    return {"p50_us": statistics.median(times) * 1e6,
            "p99_us": times[int(len(times) * 0.99)] * 1e6, "max_us": times[-1] * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds the daemon runs before its RSS is read")
    parser.add_argument("--lookups", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        d = asyncio.run(measure_daemon(work, args.count, args.settle))
        lookups = measure_lookups(work, args.count, args.lookups)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {platform.system()} {platform.release()}")
    print(f"list: {args.count} cards in {d['messages']} SendLocalList of <= {d['items']} "
          f"(Entries reported after restart: {d['entries']})")
    print(f"install: {d['install_s']:.1f} s ({args.count / d['install_s']:.0f} cards/s)")
    print(f"database on disk: {d['db_bytes'] / 1e6:.1f} MB "
          f"({d['db_bytes'] / args.count:.0f} B a card)")
    print(f"lookup ({args.lookups} runs, 1 in 4 absent): p50 {lookups['p50_us']:.0f} us, "
          f"p99 {lookups['p99_us']:.0f} us, max {lookups['max_us']:.0f} us")
    print(f"RSS after {args.settle:.0f} s: empty store {d['rss_empty']:.1f} MB; "
          f"the daemon that installed the list {d['rss_installer']:.1f} MB; "
          f"a fresh daemon with the list {d['rss_restarted']:.1f} MB")


if __name__ == "__main__":
    main()
