"""Start-up, memory and idle CPU of the real daemon (targets in docs/architecture.md).

Starts the CSMS peer on loopback and `python -m agent run` with mock hardware, then prints:
  - start-up to BootNotification: from process spawn to the BootNotification frame
    arriving at the CSMS (interpreter start-up included, as an operator sees it);
  - RSS of the daemon after --settle seconds (VmRSS from /proc);
  - CPU seconds (user + system) the daemon used over the next --idle seconds.

    .venv/bin/python bench/startup_idle.py [--settle 60] [--idle 60] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.demo.csms import Csms  # noqa: E402
from tests.harness import PASSWORD, AgentProcess, write_config  # noqa: E402

STATION = "CS-TEST"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


async def startup_once(csms: Csms, directory: Path) -> float:
    config = write_config(directory, csms.url)
    before = len(csms.links.get(STATION, []))
    spawned = time.time()
    async with AgentProcess(config) as agent:
        while len(csms.links.get(STATION, [])) == before:
            await asyncio.sleep(0.005)
        link = csms.links[STATION][-1]
        await link.expect_call("BootNotification", timeout=10)
        boot = next(f for f in link.frames if f.direction == "in" and "BootNotification" in f.text)
        await agent.stop()
    return boot.at - spawned


async def main(args: argparse.Namespace) -> None:
    async with Csms(passwords={STATION: PASSWORD}, heartbeat_interval=3600) as csms:
        times = []
        for run in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                times.append(await startup_once(csms, Path(tmp)))
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"{platform.platform()}")
        print(f"start-up to BootNotification: median {statistics.median(times) * 1000:.0f} ms, "
              f"max {max(times) * 1000:.0f} ms over {len(times)} runs (first start, empty store)")
        with tempfile.TemporaryDirectory() as tmp:
            async with AgentProcess(write_config(Path(tmp), csms.url)) as agent:
                await csms.wait_station(STATION, timeout=10)
                await asyncio.sleep(args.settle)
                pid = agent.proc.pid
                rss = rss_mb(pid)
                cpu0 = cpu_seconds(pid)
                await asyncio.sleep(args.idle)
                cpu = cpu_seconds(pid) - cpu0
                await agent.stop()
        print(f"RSS after {args.settle:.0f} s: {rss:.1f} MB")
        print(f"CPU over an idle {args.idle:.0f} s: {cpu:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle", type=float, default=60)
    parser.add_argument("--idle", type=float, default=60)
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
