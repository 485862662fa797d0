"""Start-up, memory and idle CPU of the real daemon (targets in docs/architecture.md).

Starts the CSMS peer on loopback and `python -m agent run` with mock hardware, then prints:
  - start-up to BootNotification: from process spawn to the BootNotification frame
    arriving at the CSMS (interpreter start-up included, as an operator sees it);
  - RSS of the daemon after --settle seconds (VmRSS from /proc, and its anonymous and
    file-backed parts: RssAnon, RssFile + RssShmem);
  - CPU seconds (user + system) the daemon used over the next --idle seconds.

With --watchdog S the daemon runs as under the shipped unit (WatchdogSec=S): NOTIFY_SOCKET
names a datagram socket this script reads and WATCHDOG_USEC is set, so the agent pings
every S/2 seconds; the script counts the pings in the idle window.

    .venv/bin/python bench/startup_idle.py [--settle 60] [--idle 60] [--runs 5] [--watchdog 30]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.demo.csms import Csms  # noqa: E402
from tests.harness import PASSWORD, AgentProcess, write_config  # noqa: E402

STATION = "CS-TEST"


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS, RssAnon, RssFile, RssShmem of the process, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            values[key] = int(rest.split()[0]) / 1024
    return values


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


def byte_compile() -> None:
    """Compile agent/ and hal/ as the package's install does (dh_python3 byte-compiles at
    install; the service cannot write __pycache__): a run from source files alone would
    count the compiler's memory too, and this machine sets PYTHONDONTWRITEBYTECODE."""
    root = Path(__file__).resolve().parent.parent
    for package in ("agent", "hal"):
        compileall.compile_dir(str(root / package), quiet=1)


async def main(args: argparse.Namespace) -> None:
    byte_compile()
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
            env, notify = {}, None
            if args.watchdog:
                notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                notify.bind(str(Path(tmp) / "notify.sock"))
                notify.setblocking(False)
                env = {"NOTIFY_SOCKET": str(Path(tmp) / "notify.sock"),
                       "WATCHDOG_USEC": str(int(args.watchdog * 1_000_000))}
            async with AgentProcess(write_config(Path(tmp), csms.url), env=env) as agent:
                await csms.wait_station(STATION, timeout=10)
                await asyncio.sleep(args.settle)
                pid = agent.proc.pid
                rss = rss_mb(pid)
                _drain(notify)
                cpu0 = cpu_seconds(pid)
                await asyncio.sleep(args.idle)
                cpu = cpu_seconds(pid) - cpu0
                pings = _drain(notify).count("WATCHDOG=1")
                await agent.stop()
        print(f"RSS after {args.settle:.0f} s: {rss['VmRSS']:.1f} MB (anonymous "
              f"{rss['RssAnon']:.1f}, file-backed {rss['RssFile'] + rss['RssShmem']:.1f})")
        print(f"CPU over an idle {args.idle:.0f} s: {cpu:.3f} s")
        if args.watchdog:
            print(f"watchdog pings (WatchdogSec={args.watchdog:g}) in those {args.idle:.0f} s: "
                  f"{pings}")


def _drain(notify: socket.socket | None) -> list[str]:
    """The notifications received since the last call."""
    messages = []
    while notify is not None:
        try:
            messages.extend(notify.recv(4096).decode().splitlines())
        except BlockingIOError:
            break
    return messages


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settle", type=float, default=60)
    parser.add_argument("--idle", type=float, default=60)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--watchdog", type=float, default=0,
                        help="WatchdogSec of the unit to imitate (the shipped unit: 30)")
    asyncio.run(main(parser.parse_args()))
