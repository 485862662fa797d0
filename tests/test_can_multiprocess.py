"""The driver and a simulated module in another process, over python-can's `udp_multicast`.

This kernel has no vcan, so the CAN bus between processes is UDP multicast on loopback.
To keep that traffic off every real network, the test moves its own thread into a fresh
network namespace (unshare(CLONE_NEWNET): only a loopback device, which we bring up with
multicast and a 239.0.0.0/8 route), starts the simulated module there as a child process
(children inherit the namespace), opens the driver's socket there, and returns the thread
to its original namespace afterwards. Nothing is left behind: the namespace disappears
with its last socket and process. Creating one needs CAP_SYS_ADMIN (root); without it the
test is skipped and says so.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import select
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from agent.clock import SystemClock
from hal.drivers.can_power import CanPowerModule

CLONE_NEWNET = 0x40000000
GROUP = "239.74.163.2"          # IPv4: the namespace has no IPv6 multicast route
ROOT = Path(__file__).resolve().parent.parent


def _fail(what: str) -> str:
    err = ctypes.get_errno()
    return f"{what} failed: {os.strerror(err)}"


@contextmanager
def private_network() -> Iterator[None]:
    """Run the calling thread (and the processes it starts) in a new, loopback-only
    network namespace; skip the test when this machine does not allow one."""
    ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip")
                                     if os.path.exists(p)), None)
    if ip is None:
        pytest.skip("needs the `ip` command (iproute2) to set up loopback in a namespace")
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            pytest.skip(_fail("creating a network namespace (unshare CLONE_NEWNET, needs "
                              "CAP_SYS_ADMIN: run as root)"))
        try:
            for args in (["link", "set", "lo", "up", "multicast", "on"],
                         ["route", "add", "239.0.0.0/8", "dev", "lo"]):
                done = subprocess.run([ip, *args], capture_output=True, text=True)
                if done.returncode != 0:
                    pytest.skip(f"`ip {' '.join(args)}` in the namespace failed: "
                                f"{done.stderr.strip()}")
            yield
        finally:
            if libc.setns(original, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), _fail("returning to the original namespace"))
    finally:
        os.close(original)


def _ready(proc: subprocess.Popen[str], seconds: float = 10) -> str:
    """Its first line (the only read before communicate(), so no buffered line is missed)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], seconds)
    if not ready:
        raise AssertionError(f"the simulated module did not start within {seconds} s")
    return proc.stdout.readline().strip()


def _namespace() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_set_point_and_read_back_across_processes():
    pytest.importorskip("msgpack", reason="python-can's udp_multicast interface needs msgpack")
    host = _namespace()
    with private_network():
        assert _namespace() != host
        sim = subprocess.Popen(
            [sys.executable, "-m", "tests.infy_module_sim", "--interface", "udp_multicast",
             "--channel", GROUP, "--address", "3"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        try:
            assert _ready(sim) == "ready"
            events = asyncio.run(asyncio.wait_for(_drive(), 15))
        finally:
            sim.terminate()
            out, _ = sim.communicate(timeout=10)
        # The module's own account of what it was told, in order.
        assert [json.loads(line) for line in out.splitlines()] == events
    assert _namespace() == host


async def _drive() -> list[dict[str, object]]:
    driver = CanPowerModule.from_config(
        {"interface": "udp_multicast", "channel": GROUP, "modules": [3]}, clock=SystemClock())
    await driver.start()
    try:
        assert driver.fault is None, driver.fault
        caps = await driver.capabilities()
        assert (caps.max_voltage_v, caps.max_current_a) == (1000, 100)
        await driver.set_output(450, 25.5)
        await driver.enable(True)
        readback = await driver.read()
        assert readback is not None, driver.fault
        assert (readback.voltage_v, readback.current_a, readback.on) == (450, 25.5, True)
    finally:
        await driver.stop()
    assert driver.fault is None, driver.fault
    return [
        {"event": "switch", "on": False},                      # start: a known state
        {"event": "set_output", "voltage_mv": 450_000, "current_ma": 25_500},
        {"event": "switch", "on": False},
        {"event": "set_output", "voltage_mv": 450_000, "current_ma": 25_500},
        {"event": "switch", "on": True},
        {"event": "set_output", "voltage_mv": 450_000, "current_ma": 25_500},
        {"event": "switch", "on": False},                      # stop()
    ]
