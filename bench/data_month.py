"""Bytes at IP level for a month of typical use, security profile 2 (target <= 5 MB).

The month of the data target (docs/architecture.md): 1 EVSE, 4 sessions a day of 2 h,
sampled meter values every 60 s while charging, clock-aligned values every 15 min, the
default keep-alive policy, one reconnect a day. The daemon (the same `run_daemon` as `station-agent run`, mock hardware) runs in this
process on the injectable clock, so a month passes in minutes; it talks wss:// with HTTP
Basic auth to the CSMS peer through a counting TCP proxy on loopback:

- TLS bytes are counted exactly as they cross the proxy (WebSocket framing, permessage-
  deflate and TLS records included);
- TCP/IP headers are added per segment: every chunk the proxy reads counts as one segment
  with 52 bytes of IPv4+TCP header (timestamps option on); pure ACKs are modelled as one
  per request/answer exchange (the answer carries the ACK of the request, the ACK of the
  answer goes alone), i.e. as many as the chunks of the busier direction; each connection
  adds its handshake and close (7 segments).

    .venv/bin/python bench/data_month.py [--days 30] [--heartbeat-interval 86400]
                                         [--ping-interval S] [--nat-timeout S]

--heartbeat-interval is what the CSMS answers in BootNotification (OCPP makes it the
station's HeartbeatInterval); the station sends a Heartbeat only after that long without
any other CALL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ssl  # noqa: E402

import agent.daemon as daemon_module  # noqa: E402
from agent.clock import ManualClock  # noqa: E402
from agent.config import load_config  # noqa: E402

STATION = "CS-MONTH"
PASSWORD = "month-password-000001"
HEADER = 52          # IPv4 20 + TCP 20 + timestamps option 12
CONNECTION_SEGMENTS = 7  # SYN, SYN-ACK, ACK, FIN, ACK, FIN, ACK
SESSION_HOURS = (6, 11, 16, 20)
RECONNECT_HOUR = 3
START = datetime(2026, 3, 1, tzinfo=timezone.utc)


def make_certs(directory: Path, address: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for `address` (openssl CLI)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=bench-ca", "-days", "2",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={address}")
    (directory / "san.ext").write_text(f"subjectAltName=IP:{address}\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


@dataclass
class Counts:
    up: int = 0
    down: int = 0
    up_segments: int = 0
    down_segments: int = 0
    connections: int = 0

    @property
    def segments(self) -> int:
        return self.up_segments + self.down_segments

    @property
    def ip_bytes(self) -> int:
        acks = max(self.up_segments, self.down_segments)
        return (self.up + self.down + (self.segments + acks) * HEADER
                + self.connections * CONNECTION_SEGMENTS * HEADER)


class CountingProxy:
    """Counts bytes; with `nat_timeout`, also plays a NAT that forgets a connection idle
    for longer than that (clock seconds): its later packets vanish, as on such networks."""

    def __init__(self, target_port: int, clock: ManualClock | None = None,
                 nat_timeout: float | None = None) -> None:
        self.target_port = target_port
        self.clock = clock
        self.nat_timeout = nat_timeout
        self.counts = Counts()
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        last = [self.clock.monotonic() if self.clock else 0.0]

        def forgotten() -> bool:
            if self.clock is None or self.nat_timeout is None:
                return False
            now = self.clock.monotonic()
            if now - last[0] > self.nat_timeout:
                return True
            last[0] = now
            return False

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while chunk := await src.read(65536):
                    if forgotten():
                        # The mapping is gone: the packet crossed the air (counted) and
                        # was dropped at the NAT; the station's TCP retransmits it.
                        self.counts.up += len(chunk) if up else 0
                        self.counts.up_segments += 1 if up else 0
                        continue
                    if up:
                        self.counts.up += len(chunk)
                        self.counts.up_segments += 1
                    else:
                        self.counts.down += len(chunk)
                        self.counts.down_segments += 1
                    dst.write(chunk)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


def config_text(url: str, ca: Path, storage: Path) -> str:
    return (f'[station]\nid = "{STATION}"\nvendor = "Example"\nmodel = "AC-22"\n\n'
            f'[csms]\nurl = "{url}"\nsecurity_profile = 2\npassword = "{PASSWORD}"\n'
            f'ca_file = "{ca}"\n\n[storage]\ndir = "{storage}"\n\n[hal]\ndriver = "mock"\n\n'
            "[[evse]]\nid = 1\nmax_current_a = 16\nphases = 3\n")


@asynccontextmanager
async def month_daemon(config: Path, clock: ManualClock) -> AsyncIterator[tuple[Any, Any]]:
    """The daemon of `station-agent run` on `clock`: yields its runtime and mock station."""
    captured: dict[str, Any] = {}
    build_hardware, runtime_init = daemon_module.build_hardware, daemon_module.Runtime.__init__

    def capture_hardware(config, clock):  # type: ignore[no-untyped-def]
        captured["hw"] = build_hardware(config, clock)
        return captured["hw"]

    def capture_runtime(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        runtime_init(self, *args, **kwargs)
        captured["rt"] = self

    daemon_module.build_hardware = capture_hardware
    daemon_module.Runtime.__init__ = capture_runtime  # type: ignore[method-assign]
    stop = asyncio.Event()
    daemon = asyncio.ensure_future(daemon_module.run_daemon(load_config(config), stop, clock=clock))
    try:
        while "rt" not in captured:
            if daemon.done():
                daemon.result()
                raise RuntimeError("the daemon ended before it started")
            await asyncio.sleep(0.01)
        yield captured["rt"], captured["hw"].mock
    finally:
        stop.set()
        await daemon
        daemon_module.build_hardware = build_hardware
        daemon_module.Runtime.__init__ = runtime_init  # type: ignore[method-assign]


def set_ping_interval(rt: Any, ping_interval: int | None) -> int:
    if ping_interval is not None:
        from agent.model.types import Component, Variable
        rt.model.set(Component("OCPPCommCtrlr"), Variable("WebSocketPingInterval"),
                     str(ping_interval))
    return rt.model.get_int("OCPPCommCtrlr", "WebSocketPingInterval")


async def idle(rt: Any, timeout: float = 10) -> None:
    """Real I/O after each step: wait until the station is connected and has nothing
    unanswered or queued."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session = rt.link.session
        if (rt.link.connected and session is not None and session._pending is None
                and rt.outbox.pending() == 0):
            for _ in range(5):
                await asyncio.sleep(0)
            if session._pending is None and rt.outbox.pending() == 0:
                return
        await asyncio.sleep(0.001)


async def drive_month(days: int, clock: ManualClock, mock: Any,
                      settle: Callable[[], Awaitable[None]],
                      reconnect: Callable[[], Awaitable[None]]) -> int:
    """DESIGN.md's month, minute by minute: a session at each SESSION_HOURS (card, plug,
    unplug 2 h later), a reconnect at RECONNECT_HOUR. The number of sessions."""
    card = 0
    for minute in range(days * 24 * 60):
        hour, minute_of_hour = divmod(minute % (24 * 60), 60)
        if minute_of_hour == 0 and hour in SESSION_HOURS:
            card += 1
            mock.swipe(f"{card:08X}", evse_id=1)
            await settle()
            mock.plug(1)
        if minute_of_hour == 0 and (hour - 2) in SESSION_HOURS:
            mock.unplug(1)
        if minute_of_hour == 0 and hour == RECONNECT_HOUR:
            await reconnect()
        await settle()
        await clock.advance(60)
        await settle()
    return card


async def main(days: int, heartbeat_interval: int, ping_interval: int | None,
               nat_timeout: float | None) -> None:
    from agent.demo.csms import Csms  # the CSMS peer needs the PyPI `ocpp` (not in a guest)
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ca, cert, key = make_certs(directory)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        clock = ManualClock(START)
        async with Csms(passwords={STATION: PASSWORD}, ssl_context=server_tls,
                        heartbeat_interval=heartbeat_interval, now=clock.now) as csms:
            proxy = CountingProxy(csms.port, clock, nat_timeout)
            await proxy.start()
            path = directory / "month.toml"
            path.write_text(config_text(f"wss://127.0.0.1:{proxy.port}/ocpp", ca, directory / "state"))
            async with month_daemon(path, clock) as (rt, mock):
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("StatusNotification", timeout=10)
                ping = set_ping_interval(rt, ping_interval)

                async def reconnect() -> None:
                    await csms.links[STATION][-1].close()

                wall = time.perf_counter()
                card = await drive_month(days, clock, mock, lambda: idle(rt), reconnect)
                wall = time.perf_counter() - wall
                effective = rt.link.keepalive.interval(ping)
            counts = proxy.counts
            events = sum(len(l.calls("TransactionEvent")) for l in csms.links[STATION])
            heartbeats = sum(len(l.calls("Heartbeat")) for l in csms.links[STATION])
            meter_values = sum(len(l.calls("MeterValues")) for l in csms.links[STATION])
            await proxy.stop()
    total = counts.ip_bytes
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"HeartbeatInterval {heartbeat_interval} s (from the CSMS), WebSocketPingInterval {ping} s"
          + (f", a NAT that forgets idle links after {nat_timeout:.0f} s" if nat_timeout else ""))
    print(f"simulated {days} days in {wall:.0f} s: {card} sessions, {events} TransactionEvents, "
          f"{meter_values} MeterValues, {heartbeats} Heartbeats, {counts.connections} connections")
    print(f"keep-alive interval in use at the end: {effective:.0f} s")
    print(f"TLS bytes up {counts.up:,}, down {counts.down:,}; {counts.segments:,} segments")
    print(f"at IP level: {total:,} bytes = {total / 1e6:.2f} MB "
          f"({total / (days * 24 * 60):.0f} B a minute); per 30 days: {total / days * 30 / 1e6:.2f} MB")


# ---- in the VM guest (bench/data_month_vm.py runs this file there with --guest)

def kernel_counters() -> dict[str, int]:
    """The guest kernel's own counts: IP octets (IpExt, every IP and TCP header
    included; no link layer) and IP packets, TCP segments."""
    counts: dict[str, int] = {}
    for name in ("/proc/net/netstat", "/proc/net/snmp"):
        lines = Path(name).read_text().splitlines()
        for head, values in zip(lines[::2], lines[1::2]):
            prefix, keys = head.split(":", 1)
            for key, value in zip(keys.split(), values.split(":", 1)[1].split()):
                if f"{prefix}.{key}" in ("IpExt.InOctets", "IpExt.OutOctets", "Ip.InReceives",
                                         "Ip.OutRequests", "Tcp.InSegs", "Tcp.OutSegs",
                                         "Tcp.RetransSegs"):
                    counts[f"{prefix}.{key}"] = int(value)
    return counts


async def guest(url: str, ca: Path, days: int, ping_interval: int | None,
                quiet: float) -> None:
    """The month in the guest, on the injectable clock; prints one JSON line with the
    kernel's counters over it. After a minute in which the station sent anything, the
    clock waits until the wire has been quiet for `quiet` real seconds, so that every
    delayed ACK and late answer of that exchange happens as it would with the whole
    minute to come."""
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "month.toml"
        path.write_text(config_text(url, ca, Path(tmp) / "state"))
        clock = ManualClock(START)
        async with month_daemon(path, clock) as (rt, mock):
            await idle(rt, timeout=300)
            ping = set_ping_interval(rt, ping_interval)
            await idle(rt, timeout=300)

            last = kernel_counters()

            async def settle() -> None:
                # Compared with the previous settle, not with the start of this one: a
                # keep-alive ping goes out inside clock.advance(), and its pong must be
                # in before the clock jumps again (or the ping times out on the jump).
                nonlocal last
                await idle(rt, timeout=300)
                now = kernel_counters()
                while now != last:
                    last = now
                    await asyncio.sleep(quiet)
                    await idle(rt, timeout=300)
                    now = kernel_counters()

            await settle()
            start, wall = kernel_counters(), time.perf_counter()
            card = await drive_month(days, clock, mock, settle, rt.link.disconnect)
            await settle()
            end, wall = kernel_counters(), time.perf_counter() - wall
            effective = rt.link.keepalive.interval(ping)
    print(json.dumps({"days": days, "sessions": card, "ping_interval": ping,
                      "effective_ping_interval": effective, "wall_s": round(wall, 1),
                      "counters": {k: end[k] - start[k] for k in end}}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--heartbeat-interval", type=int, default=86400)
    parser.add_argument("--ping-interval", type=int, default=None,
                        help="WebSocketPingInterval to set first (default: the agent's default)")
    parser.add_argument("--nat-timeout", type=float, default=None,
                        help="play a NAT that drops connections idle this long (seconds)")
    parser.add_argument("--guest", metavar="URL", default=None,
                        help="(bench/data_month_vm.py) run in the VM guest against URL")
    parser.add_argument("--ca", type=Path, default=None, help="with --guest: the CSMS's CA")
    parser.add_argument("--quiet", type=float, default=0.5,
                        help="with --guest: real seconds of silence that end an exchange")
    args = parser.parse_args()
    if args.guest:
        asyncio.run(guest(args.guest, args.ca, args.days, args.ping_interval, args.quiet))
    else:
        asyncio.run(main(args.days, args.heartbeat_interval, args.ping_interval, args.nat_timeout))
