"""The month of the data target, counted by a real kernel: the agent in the VM guest.

bench/data_month.py counts TLS bytes exactly but models TCP/IP: a header per chunk and
one bare ACK per exchange. Whether the CSMS's ACK rides on its answer depends on how
soon it answers (Linux delays an ACK by about 40 ms hoping to piggyback it), so a model
cannot say what a month costs against a slow CSMS. Here the kernel says it:

- the packaged agent (the image of tests/vm/build-image, Debian 12's Python, websockets
  and OpenSSL) runs the month of bench/data_month.py (`--guest`) in the guest, on the
  injectable clock: each minute with traffic runs in real time until the wire has been
  quiet for --quiet s (every delayed ACK and retransmission of it happens), the minutes
  without traffic are skipped;
- its TCP peer is a real kernel: the guest's NIC is a tap device in a private network
  namespace (tests/vm/netns.py) where the CSMS peer listens on 10.0.2.2, security
  profile 2 (wss://, HTTP Basic, TLS 1.3, permessage-deflate);
- the figure is the guest kernel's IpExt InOctets + OutOctets (every IP and TCP header
  and option, every ACK the kernels really sent; no link layer), read before and after;
- twice: a CSMS that answers at once and one that answers each CALL after 100 ms.

    sudo .venv/bin/python bench/data_month_vm.py [--days 3] [--image DIR] [--delays 0 0.1]

The month is every day alike, so a run of N days gives the month as total / N x 30
(the first day also carries the boot and first connection: a slight overestimate).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(REPO / "tests" / "vm")]

import netns  # noqa: E402
from data_month import PASSWORD, STATION, make_certs  # noqa: E402
from rig import Vm, VmError  # noqa: E402

GUEST_DIR = "/root/bench"


def image_dir() -> Path:
    out = subprocess.run([str(REPO / "tests/vm/build-image")], check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    if out.startswith("SKIP"):
        sys.exit(f"SKIP: {out}")
    return Path(out)


async def one_month(vm: Vm, ca_text: str, server_tls: ssl.SSLContext, delay: float,
                    days: int, quiet: float) -> dict:
    from agent.demo.csms import Csms
    async with Csms(host=netns.HOST_ADDRESS, ssl_context=server_tls,
                    passwords={STATION: PASSWORD}, heartbeat_interval=86400,
                    answer_delay=delay) as csms:
        url = f"wss://{netns.HOST_ADDRESS}:{csms.port}/ocpp"
        # The package keeps agent and hal in a private directory (debian/rules).
        result = await vm.run("env", "PYTHONPATH=/usr/lib/station-agent", "python3",
                              f"{GUEST_DIR}/data_month.py", "--guest", url,
                              "--ca", f"{GUEST_DIR}/ca.pem", "--days", str(days),
                              "--quiet", str(quiet), timeout=days * 4 * 3600)
        if result.rc != 0:
            raise VmError(f"the guest's month failed ({result.rc}):\n{result.out}{result.err}")
        out = json.loads(result.out.strip().splitlines()[-1])
        links = csms.links.get(STATION, [])
        out["csms"] = {action: sum(len(link.calls(action)) for link in links)
                       for action in ("TransactionEvent", "MeterValues", "StatusNotification",
                                      "Heartbeat", "BootNotification")}
        out["csms"]["connections"] = len(links)
        out["schema_errors"] = len(csms.schema_errors)
    return out


def report(delay: float, out: dict) -> float:
    c, days = out["counters"], out["days"]
    octets = c["IpExt.InOctets"] + c["IpExt.OutOctets"]
    month = octets / days * 30 / 1e6
    print(f"CSMS answers after {delay * 1000:.0f} ms: {days} days in {out['wall_s']:.0f} s real, "
          f"{out['sessions']} sessions; at the CSMS: " +
          ", ".join(f"{v} {k}" for k, v in out["csms"].items()) +
          f"; {out['schema_errors']} schema errors")
    print(f"  kernel: IP octets out {c['IpExt.OutOctets']:,} in {c['IpExt.InOctets']:,}; "
          f"IP packets out {c['Ip.OutRequests']:,} in {c['Ip.InReceives']:,}; TCP segments "
          f"out {c['Tcp.OutSegs']:,} in {c['Tcp.InSegs']:,}, retransmitted {c['Tcp.RetransSegs']}")
    print(f"  {octets:,} B = {octets / days / 1e3:.1f} kB a day; per 30 days: {month:.2f} MB "
          f"(target <= 5 MB); WebSocketPingInterval {out['ping_interval']} s")
    return month


async def main(args: argparse.Namespace) -> int:
    image = Path(args.image)
    work = Path(tempfile.mkdtemp(prefix="data-month-vm-"))
    vm = Vm(image, work / "vm", tap=netns.TAP)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; QEMU {vm.accel} "
          f"({vm.accel_why}); image {image.name}, station-agent {(image / 'version').read_text().strip()}",
          flush=True)
    ca, cert, key = make_certs(work, netns.HOST_ADDRESS)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    months: list[float] = []
    try:
        took = await vm.boot()
        print(f"guest up in {took:.0f} s", flush=True)
        await vm.run("mkdir", "-p", GUEST_DIR)
        await vm.write_file(f"{GUEST_DIR}/data_month.py", (HERE / "data_month.py").read_text())
        await vm.write_file(f"{GUEST_DIR}/ca.pem", ca.read_text())
        ts = (await vm.run("cat", "/proc/sys/net/ipv4/tcp_timestamps")).out.strip()
        print(f"guest: net.ipv4.tcp_timestamps = {ts} (the package's sysctl.d file)", flush=True)
        # Nothing else speaks on the guest's network during the count.
        await vm.run("systemctl", "stop", "systemd-timesyncd.service")
        for delay in args.delays:
            started = time.monotonic()
            out = await one_month(vm, ca.read_text(), server_tls, delay, args.days, args.quiet)
            months.append(report(delay, out))
            print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        await vm.poweroff()
        if not args.keep:
            vm.discard()
    return 0 if all(m <= 5.0 for m in months) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--image", default=None, help="tests/vm/build-image's directory")
    parser.add_argument("--delays", type=float, nargs="+", default=[0.0, 0.1],
                        help="the CSMS's answer times to measure, in seconds")
    parser.add_argument("--quiet", type=float, default=0.5)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if not netns.inside() and not args.image:
        # Built out here: the private namespace has no route to Debian's archive.
        sys.argv += ["--image", str(image_dir())]
    outside = netns.reexec_in_private_net()
    sys.exit(outside if outside is not None else asyncio.run(main(args)))
