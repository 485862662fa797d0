"""10,000 queued offline TransactionEvents replayed to a CSMS in order (target < 30 s).

The messages are committed to the store first (as while offline), then the station
connects to a CSMS on loopback and the outbox delivers them, one CALL at a time, each
deleted from the store (synchronous=FULL) when answered. The CSMS here is a minimal
answering peer in a child process (the test CSMS validates every frame with jsonschema,
~5 ms a message, which would measure it rather than the station); it records the seqNo
order, which is checked at the end.

    .venv/bin/python bench/outbox_replay.py [--count 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.clock import SystemClock, format_datetime  # noqa: E402
from agent.ocpp.connection import ConnectionManager  # noqa: E402
from agent.ocpp.outbox import Outbox  # noqa: E402
from agent.ocpp.session import Router  # noqa: E402
from agent.ocpp.transport import Endpoint  # noqa: E402
from agent.store import Store  # noqa: E402

STATION = "CS-BENCH"
PASSWORD = None


class Settings:
    def message_timeout(self) -> float:
        return 30

    def ping_interval(self) -> float:
        return 0

    def backoff(self) -> tuple[float, float, int]:
        return 1, 0, 0


class Model:
    def get_int(self, component: str, name: str, instance: str | None = None) -> int:
        return {"MessageAttempts": 5, "MessageAttemptInterval": 1}[name]


def event(tx: str, seq: int, energy: float) -> dict:
    return {"eventType": "Updated", "timestamp": format_datetime(SystemClock().now()),
            "triggerReason": "MeterValuePeriodic", "seqNo": seq, "offline": True,
            "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
            "meterValue": [{"timestamp": format_datetime(SystemClock().now()), "sampledValue": [
                {"value": energy, "context": "Sample.Periodic",
                 "measurand": "Energy.Active.Import.Register"},
                {"value": 7360, "context": "Sample.Periodic", "measurand": "Power.Active.Import"}]}]}


PEER = r"""
import asyncio, json, sys
try:
    from websockets.asyncio.server import serve
except ImportError:
    from websockets import serve
seqs = []
async def handler(ws, *path):
    async for text in ws:
        msg = json.loads(text)
        if msg[0] == 2:
            if msg[2] == "TransactionEvent":
                seqs.append(msg[3]["seqNo"])
            await ws.send(json.dumps([3, msg[1], {}]))
    print(json.dumps(seqs), flush=True)
async def main():
    async with serve(handler, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]) as server:
        port = list(server.sockets)[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Event().wait()
asyncio.run(main())
"""


async def main(count: int) -> None:
    logging.disable(logging.WARNING)
    peer = await asyncio.create_subprocess_exec(sys.executable, "-c", PEER,
                                                stdout=asyncio.subprocess.PIPE)
    assert peer.stdout is not None
    port = int(await peer.stdout.readline())
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.in_dir(tmp)
        clock = SystemClock()
        link = ConnectionManager(
            endpoint=lambda: Endpoint(f"ws://127.0.0.1:{port}/ocpp", STATION, PASSWORD),
            router=Router(), clock=clock, settings=Settings())
        link.accepted.set()  # registration is not what this measures
        outbox = Outbox(store, link, clock, Model(), capacity=count + 1)
        tx = str(uuid.uuid4())
        started = time.perf_counter()
        for seq in range(count):
            outbox.enqueue("TransactionEvent", event(tx, seq, 1000 + seq), transaction_id=tx)
        queued = time.perf_counter() - started
        runner = asyncio.ensure_future(link.run())
        sender = asyncio.ensure_future(outbox.run())
        started = time.perf_counter()
        while outbox.pending():
            await asyncio.sleep(0.05)
        replay = time.perf_counter() - started
        sender.cancel()
        runner.cancel()
        await asyncio.gather(sender, runner, return_exceptions=True)
        seqs = json.loads(await asyncio.wait_for(peer.stdout.readline(), 10))
        peer.kill()
        assert seqs == list(range(count)), "out of order or missing"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"queueing {count} TransactionEvents (one durable commit each): {queued:.1f} s")
    print(f"replaying them in order to the CSMS on loopback: {replay:.1f} s "
          f"({count / replay:.0f} messages/s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().count))
