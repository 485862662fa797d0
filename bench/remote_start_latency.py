"""RequestStartTransaction to contactor closed on the mock, p50/p99 (target p99 < 10 ms).

The agent (the same `run_daemon` that `station-agent run` uses, mock hardware) and the
CSMS peer run in this process on loopback, so the contactor's state change can be time-
stamped where it happens. Each run: the CSMS sends RequestStartTransaction for the
plugged-in EV, the clock stops when the mock contactor reports closed; then
RequestStopTransaction and the contactor opens again before the next run.

    .venv/bin/python bench/remote_start_latency.py [--runs 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import agent.daemon as daemon_module  # noqa: E402
from agent.config import load_config  # noqa: E402
from agent.demo.csms import Csms  # noqa: E402
from hal.api import ContactorState  # noqa: E402
from tests.harness import PASSWORD, write_config  # noqa: E402

STATION = "CS-TEST"


async def main(runs: int) -> None:
    logging.disable(logging.WARNING)
    captured = {}
    original = daemon_module.build_hardware

    def capture(config, clock):
        captured["hw"] = original(config, clock)
        return captured["hw"]

    daemon_module.build_hardware = capture
    with tempfile.TemporaryDirectory() as tmp:
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = load_config(write_config(Path(tmp), csms.url))
            stop = asyncio.Event()
            task = asyncio.ensure_future(daemon_module.run_daemon(config, stop))
            link = await csms.wait_station(STATION, timeout=10)
            await link.expect_call("StatusNotification", timeout=10)
            hardware = captured["hw"]
            contactor = hardware.evses[1].devices.contactor
            changed = asyncio.Event()
            closed_at: list[float] = []

            def watch() -> None:
                if contactor.state is ContactorState.CLOSED:
                    closed_at.append(time.perf_counter())
                changed.set()

            contactor.subscribe(watch)
            hardware.mock.plug(1)
            latencies = []
            for n in range(runs):
                closed_at.clear()
                sent = time.perf_counter()
                answer = await link.call("RequestStartTransaction", {
                    "idToken": {"idToken": f"B{n}", "type": "Central"}, "remoteStartId": n,
                    "evseId": 1})
                assert answer["status"] == "Accepted", answer
                while not closed_at:
                    changed.clear()
                    await asyncio.wait_for(changed.wait(), 5)
                latencies.append(closed_at[0] - sent)
                started = await link.expect_call(
                    "TransactionEvent", timeout=5, where=lambda p: p["eventType"] == "Started")
                await link.call("RequestStopTransaction",
                                {"transactionId": started["transactionInfo"]["transactionId"]})
                while contactor.state is not ContactorState.OPEN:
                    changed.clear()
                    await asyncio.wait_for(changed.wait(), 5)
                await link.expect_call("TransactionEvent", timeout=5,
                                       where=lambda p: p["eventType"] == "Ended")
            stop.set()
            await task
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"RequestStartTransaction sent -> contactor closed, {runs} runs: "
          f"p50 {p(0.50):.2f} ms, p99 {p(0.99):.2f} ms, max {latencies[-1] * 1000:.2f} ms, "
          f"mean {statistics.mean(latencies) * 1000:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    asyncio.run(main(parser.parse_args().runs))
