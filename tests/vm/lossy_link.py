"""A lossy cellular link, on a real kernel: netem between the packaged agent and the CSMS.

The guest (tests/vm/build-image) runs station-agent.service with the mock hardware and a
meter value every second in transactions; its NIC is a tap device of a private network
namespace (netns.py), so both ends of the TCP connection are real Linux kernels. In the
guest, netem delays every packet in both directions (egress on the NIC, ingress through
an ifb device) by 300 ms with 100 ms of jitter (normal distribution: packets reorder, as
on a radio link), and drops 5 % of them, each way: a round trip of about 600 ms. Three
times during the run the link goes completely dark for 20 s (100 % loss both ways), and
once for 75 s, each 90 s after the last.

Charging sessions run back to back throughout (`station-agent sim`: card, plug, 1-6 s of
charge, unplug). Then the dark periods end, the sessions stop, and the CSMS's record is
checked once everything queued is delivered:

- every transaction complete (Started as seqNo 0, Ended), no seqNo gaps;
- events first accepted in seqNo order within each transaction, none accepted twice with
  different content, nothing after Ended;
- nothing lost: every transaction the station energised is at the CSMS, and every
  unplugged one ended EVDisconnected;
- after each dark period the station is heard again within RESUME_BOUND_S: as soon as
  TCP retransmits on the same connection, or at the latest once the station has given
  the link up (no answer within MessageTimeout, then no pong within MessageTimeout) and
  reconnected after Part 4's back-off; in the 75 s one a CALL the station sent early
  enough to be given up within it (two MessageTimeouts before its end) must end the
  connection: a new connection within the bound (the station noticed the dead link). With nothing sent in that window it cannot notice,
  and keeping the connection is right.

    .venv/bin/python tests/vm/lossy_link.py --image DIR [--seed N]

Root (network namespace, tap). One summary line per check; exit 1 if any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import traceback
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE), str(REPO / "debian/tests")]

import netns  # noqa: E402
from agent.demo.csms import Csms  # noqa: E402
from ledger import ledger_from_links  # noqa: E402
from power_cut import PASSWORD, Record, Run, step  # noqa: E402
from rig import Vm, VmError  # noqa: E402

STATION = "CS-VM-LOSSY"
NETEM = "delay 300ms 100ms distribution normal loss 5%"
DARK = "loss 100%"
# (seconds after the sessions start, how long): three of the 20 s, which TCP
# rides out on the same connection, and one of 75 s, which the station must notice (an
# unanswered call, then an unanswered ping: agent/ocpp/outbox.py) and reconnect after.
# Apart by more than the longest the station may take to come back after one (below),
# so that each is judged alone.
BLACKOUTS = ((20.0, 20.0), (130.0, 20.0), (240.0, 20.0), (350.0, 75.0))
DRIVE_S = 520.0
# Part 4's back-off with this station's defaults (OCPPCommCtrlr): the first attempt after
# a loss waits RetryBackOffWaitMinimum plus up to RetryBackOffRandomRange.
BACKOFF_FIRST_S = 10 + 10
MESSAGE_TIMEOUT_S = 30
# After a dark period the station is heard again as soon as TCP retransmits (its back-off
# grows during the dark, and netem's 5 % loss may cost a further doubling), or else once
# the station has given up on the link: no answer within MessageTimeout, then no pong
# within MessageTimeout (agent/ocpp/outbox.py), then the reconnection's back-off.
RESUME_BOUND_S = 2 * MESSAGE_TIMEOUT_S + BACKOFF_FIRST_S + 5

SETUP = f"""
set -e
dev=$(ls /sys/class/net | grep -v -e '^lo$' -e '^ifb' | head -n 1)
modprobe sch_netem; modprobe ifb numifbs=1; modprobe act_mirred; modprobe cls_matchall
ip link set ifb0 up
tc qdisc add dev "$dev" root netem {NETEM}
tc qdisc add dev "$dev" handle ffff: ingress
tc filter add dev "$dev" parent ffff: matchall action mirred egress redirect dev ifb0
tc qdisc add dev ifb0 root netem {NETEM}
echo "$dev"
"""


async def netem(vm: Vm, dev: str, spec: str) -> None:
    for device in (dev, "ifb0"):
        (await vm.run("sh", "-c", f'tc qdisc change dev "$1" root netem {spec}', "sh", device)
         ).check(f"tc {device} {spec}")


async def drive(run: Run, dev: str, marks: list[tuple[float, float]]) -> None:
    """Sessions back to back for DRIVE_S, with the dark periods of BLACKOUTS; records
    each dark period's (start, end) in time.monotonic()."""
    state: dict = {"tx": None, "unplugging": False}
    sessions = asyncio.create_task(run.sessions(1, state))
    began = time.monotonic()
    try:
        for at, dark_s in BLACKOUTS:
            await asyncio.sleep(max(0.0, began + at - time.monotonic()))
            if sessions.done():
                raise VmError(f"the session driver stopped: {sessions.exception()!r}")
            await netem(run.vm, dev, DARK)
            start = time.monotonic()
            step(f"dark for {dark_s:.0f} s (100 % loss both ways)")
            await asyncio.sleep(dark_s)
            await netem(run.vm, dev, NETEM)
            marks.append((start, time.monotonic()))
            step("the link is back (netem: " + NETEM + ")")
        await asyncio.sleep(max(0.0, began + DRIVE_S - time.monotonic()))
        if sessions.done():
            raise VmError(f"the session driver stopped: {sessions.exception()!r}")
    finally:
        sessions.cancel()
        await asyncio.gather(sessions, return_exceptions=True)
    # Whatever the driver was doing (even between plug and the transaction showing in
    # `sim status`), the cable comes out: no session is left charging.
    await run.vm.run("station-agent", "sim", "unplug", "1", timeout=20)
    if state["tx"]:
        run.record.unplugged.add(state["tx"])


def resumption(marks: list[tuple[float, float]], heard: list[float],
               connected: list[float]) -> list[tuple[float | None, bool]]:
    """Per dark period: seconds from its end until the CSMS heard the station again (None:
    never), and whether that was on a new connection."""
    out = []
    for start, end in marks:
        first = next((t for t in heard if t > end), None)
        reconnected = any(start < t <= (first if first is not None else float("inf"))
                          for t in connected)
        out.append((None if first is None else first - end, reconnected))
    return out


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    work = Path(tempfile.mkdtemp(prefix="station-agent-lossy."))
    record = Record()
    heard: list[float] = []        # when the CSMS received a frame from the station
    calls: list[tuple[float, float]] = []   # (when received, the CALL's own timestamp)
    connected: list[float] = []    # when a new connection of the station appeared
    marks: list[tuple[float, float]] = []
    frames = (work / "csms-frames.log").open("w")

    def on_frame(station: str, direction: str, text: str) -> None:
        now = time.monotonic()
        if direction == "in":
            heard.append(now)
            stamp = call_time(text)
            if stamp is not None:
                calls.append((now, stamp))
        frames.write(f"{now:10.3f} {station} {'->' if direction == 'in' else '<-'} {text}\n")

    vm = Vm(args.image, work / "vm", tap=netns.TAP)
    ok = False
    try:
        async with Csms(netns.HOST_ADDRESS, 0, passwords={STATION: PASSWORD},
                        on_frame=on_frame) as csms:
            step(f"lossy link: seed {seed}; QEMU {vm.accel.upper()} ({vm.accel_why}); "
                 f"CSMS {csms.url} in a private network namespace")
            run = Run(vm, csms, random.Random(seed), record, STATION)
            await run.first_boot()
            dev = (await vm.run("sh", "-c", SETUP)).check("netem setup").out.strip()
            ts = (await vm.run("cat", "/proc/sys/net/ipv4/tcp_timestamps")).out.strip()
            step(f"netem on {dev} and ifb0 (ingress): {NETEM}; tcp_timestamps {ts}")

            async def watch_links() -> None:
                known = len(csms.links.get(STATION, []))
                while True:
                    now = len(csms.links.get(STATION, []))
                    connected.extend([time.monotonic()] * (now - known))
                    known = now
                    await asyncio.sleep(0.1)

            watcher = asyncio.create_task(watch_links())
            try:
                await drive(run, dev, marks)
                step(f"sessions stopped ({record.sessions}); waiting for the queue to drain "
                     "over the lossy link")
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    ledger = ledger_from_links(csms.links[STATION])
                    if not ledger.incomplete() and record.energised <= set(ledger.transactions):
                        break
                    await asyncio.sleep(2)
            finally:
                watcher.cancel()
            ok = summary(record, csms, marks, heard, connected, calls)
    except (VmError, asyncio.TimeoutError) as exc:
        print(f"FAILED: {exc!r}", flush=True)
        traceback.print_exc()
        print(f"--- console (last lines)\n{vm.console_tail()}", flush=True)
    finally:
        await vm.cut()
        frames.close()
        if ok and not args.keep:
            vm.discard()
    if not ok:
        print(f"lossy-link check FAILED; logs in {work}", flush=True)
    return 0 if ok else 1


# The guest's clock (the CALLs' timestamps) against the host's: set from the host at boot,
# it may drift under TCG; what is compared allows this much.
CLOCK_SKEW_S = 10.0


def call_time(text: str) -> float | None:
    """A station CALL's own `timestamp`, as time.monotonic() on this host; None for
    anything else."""
    try:
        message = json.loads(text)
        stamp = message[3]["timestamp"] if message[0] == 2 else None
        if not isinstance(stamp, str):
            return None
        wall = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (ValueError, LookupError, TypeError):
        return None
    return wall - (time.time() - time.monotonic())


def long_dark_noticed(start: float, end: float, connected: list[float],
                      calls: list[tuple[float, float]]) -> tuple[bool, str]:
    """Whether the station noticed the long dark period when it could. A CALL it sent
    early in it (2 MessageTimeouts before its end: time to go unanswered, then to probe
    with an unanswered ping) must end the connection: a new connection must follow within
    the bound. (The old connection's send queue may still reach the CSMS first: its
    kernel retransmits what was queued before the station closed it.) A station with
    nothing to say in that window cannot notice, and keeping its connection is right."""
    early = [(got, sent) for got, sent in calls
             if start - CLOCK_SKEW_S <= sent <= end - 2 * MESSAGE_TIMEOUT_S - CLOCK_SKEW_S]
    if not early:
        return True, "no CALL early in it: nothing to notice it by"
    fresh = next((t for t in connected if t > start), None)
    if fresh is None or fresh - end > RESUME_BOUND_S:
        return False, f"{len(early)} CALLs sent early in it, no new connection within the bound"
    return True, f"{len(early)} CALLs sent early in it; new connection {fresh - end:+.1f} s from its end"


def summary(record: Record, csms: Csms, marks, heard, connected, calls) -> bool:
    ledger = ledger_from_links(csms.links[STATION])
    accepted = [e for e in ledger.events() if e.accepted]
    incomplete, gaps = ledger.incomplete(), ledger.gaps()
    disorder, conflicting, after = ledger.out_of_order(), ledger.conflicting(), ledger.after_ended()
    lost = sorted(record.energised - set(ledger.transactions))
    unplug_reason = sorted(tx for tx in record.unplugged
                           if ledger.ended_reason(tx) != "EVDisconnected")
    # A call the station gave up on (MessageTimeout) stays in the dead connection's send
    # queue; when the link comes back TCP delivers it and the next ones together, which
    # the CSMS peer reports as a CALL sent before the last was answered.
    after_timeout = [e for e in csms.schema_errors if "was unanswered (OCPP-J" in e]
    invalid = [e for e in csms.schema_errors if e not in after_timeout]
    resumed = resumption(marks, heard, connected)
    late = [r for r in resumed if r[0] is None or r[0] > RESUME_BOUND_S]
    # The long dark period must have been noticed where the station could notice it.
    noticed, how = (False, "not reached")
    if marks:
        noticed, how = long_dark_noticed(*marks[-1], connected, calls)
    shown = ", ".join("never" if s is None else f"{s:.1f} s{' (new connection)' if new else ''}"
                      for s, new in resumed)
    lines = [
        (not incomplete, f"lossy transactions: {len(ledger.transactions)} at the CSMS, "
                         f"{len(incomplete)} incomplete, {record.sessions} sessions started"),
        (not lost and not unplug_reason,
         f"lossy lost: {len(lost)} energised transactions the CSMS never heard of "
         f"(of {len(record.energised)}), {len(unplug_reason)} unplugged not ended EVDisconnected"),
        (not gaps and not disorder,
         f"lossy order: {len(accepted)} events accepted, {sum(map(len, gaps.values()))} missing "
         f"seqNo, {len(disorder)} transactions out of order, {ledger.retries()} identical retries"),
        (not conflicting and not after,
         f"lossy duplicates: {len(conflicting)} seqNo accepted with different content, "
         f"{len(after)} transactions with events after Ended"),
        (len(marks) == len(BLACKOUTS) and not late and noticed,
         f"lossy reconnection: dark periods of "
         f"{', '.join(f'{d:.0f}' for _, d in BLACKOUTS)} s; heard again after {shown} "
         f"(bound {RESUME_BOUND_S:.0f} s); {len(connected)} new connections; the "
         f"{BLACKOUTS[-1][1]:.0f} s one: {how}"),
        (not invalid, f"lossy schema: {len(invalid)} invalid frames ({len(after_timeout)} CALLs "
                      "arrived behind one the station had already timed out: OCPP-J 4.1.1 "
                      "allows them, the peer cannot tell)"),
    ]
    for detail in (incomplete, lost, unplug_reason, gaps, disorder, conflicting, after,
                   invalid):
        if detail:
            print(f"  detail: {str(detail)[:1500]}")
    for good, text in lines:
        print(f"{'PASS' if good else 'FAIL'} {text}", flush=True)
    return all(good for good, _ in lines)


if __name__ == "__main__":
    outside = netns.reexec_in_private_net()
    sys.exit(outside if outside is not None else asyncio.run(main()))
