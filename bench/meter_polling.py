"""CPU cost and rate of polling a Modbus RTU meter with the modbus_meter driver.

The simulated SDM630 (pymodbus 3.16 behind a pty proxy, tests/modbus_peer.py) runs in a
child process, so the figures for our side are this process only: user + system CPU
from os.times(), which covers all its threads (event loop + the driver's worker). The
peer's CPU is read from /proc and printed separately. One read = one SDM630 poll =
3 Modbus transactions (10 quantities).

A pty has no baud rate: bytes cross instantly, so this measures the driver's own cost
and the t3.5 silences it keeps, not the line. On a real 9600-baud line one SDM630 poll
moves 79 bytes (~82 ms) plus the meter's turn-around time.

    .venv/bin/python bench/meter_polling.py [--reads 1000] [--baudrate 9600]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import serial  # noqa: E402

from agent.clock import SystemClock  # noqa: E402
from hal.drivers.modbus.rtu import silent_interval  # noqa: E402
from hal.drivers.modbus_meter import ModbusMeter  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{model}, {os.cpu_count()} CPUs, {platform.platform()}, Python "
            f"{platform.python_version()}, pyserial {serial.__version__}")


async def bench(args: argparse.Namespace) -> None:
    peer = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "modbus_peer.py"), "--baudrate", str(args.baudrate)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert peer.stdout is not None
        port = peer.stdout.readline().strip()
        meter = ModbusMeter.from_config(
            {"port": port, "baudrate": args.baudrate, "map": "sdm630"}, clock=SystemClock())
        for _ in range(20):  # warm up: port open, pymodbus's first requests
            assert await meter.read() is not None, meter.fault
        latencies = []
        requests_before = meter.link.stats.requests
        ours, theirs, wall = os.times(), cpu_seconds(peer.pid), time.perf_counter()
        for _ in range(args.reads):
            started = time.perf_counter()
            reading = await meter.read()
            latencies.append(time.perf_counter() - started)
            if reading is None:
                raise SystemExit(f"read failed: {meter.fault}")
        wall = time.perf_counter() - wall
        after = os.times()
        user, system = after.user - ours.user, after.system - ours.system
        theirs = cpu_seconds(peer.pid) - theirs
        requests = meter.link.stats.requests - requests_before
        retries = meter.link.stats.retries
        await meter.stop()
    finally:
        if peer.stdin is not None:
            peer.stdin.close()
        peer.wait(timeout=10)

    per_k = 1000 / args.reads
    latencies.sort()
    silence = silent_interval(args.baudrate, "N", 1)
    print(f"machine: {machine()}")
    ours = user + system
    print(f"{args.reads} reads of a simulated SDM630 at {args.baudrate} baud (pty), "
          f"{requests} Modbus requests, {retries} retries")
    print(f"  our process (event loop + driver thread): {ours * per_k:.3f} CPU s per 1000 reads "
          f"(user {user * per_k:.3f} + sys {system * per_k:.3f}; {ours / args.reads * 1e6:.0f} us "
          "per read)")
    print(f"  peer process (pymodbus + pty proxy), for reference: {theirs * per_k:.3f} CPU s "
          f"per 1000 reads")
    print(f"  {args.reads / wall:.1f} reads/s; latency per read median "
          f"{statistics.median(latencies) * 1000:.2f} ms, p99 "
          f"{latencies[int(len(latencies) * 0.99) - 1] * 1000:.2f} ms "
          f"(of which t3.5 silences: 3 x {silence * 1000:.2f} ms)")
    print(f"  at the default 1 s poll interval: {ours / args.reads * 100:.3f} % of one CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--baudrate", type=int, default=9600)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
