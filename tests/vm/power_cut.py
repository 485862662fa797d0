"""Real power cuts: the packaged agent in the VM guest, charging sessions driven with
`station-agent sim` (meter values every second), QEMU and its disk killed at random
moments, the guest booted again on the same disk; then the CSMS's record is checked.

    .venv/bin/python tests/vm/power_cut.py --image DIR [--cuts 50] [--seed N] [--work DIR]

DIR comes from tests/vm/build-image. Prints one summary line per check and exits 1 if
any check failed. The seed is printed; the same seed gives the same cut moments (the
guest's timing still varies).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE), str(REPO / "debian/tests")]

from agent.demo.csms import Csms  # noqa: E402
from clean_root_run import boot_status, free_port  # noqa: E402  (shared with clean-root)
from ledger import ledger_from_links  # noqa: E402
from rig import Vm, VmError  # noqa: E402

PACKAGED_ID = 'id = "CS-001"'       # the packaged config's station id, replaced per guest
PASSWORD = "vm-rig-password-0001"
CONFIG = "/etc/station-agent/station-agent.toml"
DB = "/var/lib/station-agent/station-agent.db"
# Read as the service's user (root would leave root-owned -wal/-shm files behind).
DB_CHECK = f"""
import json, sqlite3
db = sqlite3.connect("file:{DB}?mode=rw", uri=True, timeout=30)
out = {{"integrity": [r[0] for r in db.execute("PRAGMA integrity_check")]}}
out["device_model"] = sorted(db.execute(
    "SELECT component, component_instance, evse_id, connector_id, variable,"
    " variable_instance, attribute, value FROM device_model_value"))
out["security_log"] = list(db.execute(
    "SELECT id, timestamp, type, tech_info, critical FROM security_log ORDER BY id"))
print(json.dumps(out))
"""
SET_VARIABLES = [("SampledDataCtrlr", "TxUpdatedInterval", "1")]
T0 = time.monotonic()


def step(text: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {text}", flush=True)


@dataclass
class Record:
    """What the host saw happen, against which the CSMS's record is checked."""
    boot_s: list[float] = field(default_factory=list)
    cycle_s: list[float] = field(default_factory=list)
    cuts: int = 0
    cuts_in_boot: int = 0
    cuts_in_session: int = 0
    db_checks: int = 0
    corrupt: list[str] = field(default_factory=list)
    model_changed: list[str] = field(default_factory=list)
    security_log_lost: list[str] = field(default_factory=list)
    variables_lost: list[str] = field(default_factory=list)
    # transactions the station showed with the contactor closed (energy flowing)
    energised: set[str] = field(default_factory=set)
    # transactions open (no unplug sent) at a cut: must end with PowerLoss
    open_at_cut: set[str] = field(default_factory=set)
    # unplug confirmed before the cut: must end with EVDisconnected
    unplugged: set[str] = field(default_factory=set)
    sessions: int = 0
    # BootNotification reasons after a cut: each must be PowerUp (B01: the station knows
    # it lost power, not a reset or a crash of its own)
    boot_reasons: dict[str, int] = field(default_factory=dict)
    wrong_reasons: list[str] = field(default_factory=list)


class Run:
    """One guest and its station (one id), cut again and again."""

    def __init__(self, vm: Vm, csms: Csms, rng: random.Random, record: Record,
                 station: str) -> None:
        self.vm, self.csms, self.rng, self.record = vm, csms, rng, record
        self.station = station
        self.link = None
        self.last_db: dict | None = None

    async def registered(self, timeout: float = 90):
        link = await self.csms.wait_station(self.station, timeout=timeout, after=self.link)
        await link.expect_call("BootNotification", timeout=timeout)
        await link.expect_call("StatusNotification", timeout=timeout)
        if boot_status(link) != "Accepted":
            raise VmError(f"BootNotification answered {boot_status(link)!r}")
        self.link = link
        return link

    async def first_boot(self) -> None:
        took = await self.vm.boot()
        self.record.boot_s.append(took)
        step(f"{self.station}: boot 1 up in {took:.1f} s; config written, station-agent.service enabled")
        config = (await self.vm.run("cat", CONFIG)).check("cat config").out
        config = config.replace('url = "ws://127.0.0.1:9000/ocpp"',
                                f'url = "ws://10.0.2.2:{self.csms.port}/ocpp"')
        config = config.replace(PACKAGED_ID, f'id = "{self.station}"')
        config = config.replace('password = "change-me-to-a-random-secret"',
                                f'password = "{PASSWORD}"')
        await self.vm.write_file(CONFIG, config, mode="640", owner="root:station-agent")
        (await self.vm.run("station-agent", "check-config")).check("check-config")
        (await self.vm.run("systemctl", "enable", "--now", "station-agent.service")).check("enable")
        link = await self.registered()
        answer = await link.call("SetVariables", {"setVariableData": [
            {"component": {"name": c}, "variable": {"name": v}, "attributeValue": value}
            for c, v, value in SET_VARIABLES]})
        statuses = [r["attributeStatus"] for r in answer["setVariableResult"]]
        if statuses != ["Accepted"] * len(SET_VARIABLES):
            raise VmError(f"SetVariables: {answer}")
        # Flush it to the disk before the first cut: the check compares against this.
        (await self.vm.run("sync")).check("sync")
        await self.check_db()

    def note_boot_reason(self, allowed: tuple[str, ...]) -> None:
        """Tally the reason the newest BootNotification gave; one not `allowed` is wrong."""
        reason = self.link.calls("BootNotification")[0]["reason"]
        self.record.boot_reasons[reason] = self.record.boot_reasons.get(reason, 0) + 1
        if reason not in allowed:
            self.record.wrong_reasons.append(f"{self.station} boot {self.vm.boots}: {reason}")

    async def check_db(self) -> None:
        result = await self.vm.run("runuser", "-u", "station-agent", "--", "python3", "-c",
                                   DB_CHECK, timeout=60)
        self.record.db_checks += 1
        boot = self.vm.boots
        if result.rc != 0:
            self.record.corrupt.append(f"{self.station} boot {boot}: {result.err.strip()[-300:]}")
            return
        db = json.loads(result.out)
        if db["integrity"] != ["ok"]:
            self.record.corrupt.append(f"{self.station} boot {boot}: {db['integrity'][:5]}")
        if self.last_db is not None:
            before = {tuple(row[:7]): row[7] for row in self.last_db["device_model"]}
            after = {tuple(row[:7]): row[7] for row in db["device_model"]}
            for key, value in before.items():
                if after.get(key) != value:
                    self.record.model_changed.append(f"{self.station} boot {boot}: {key}: {value!r} -> {after.get(key)!r}")
            old_log = self.last_db["security_log"]
            if db["security_log"][:len(old_log)] != old_log:
                self.record.security_log_lost.append(
                    f"{self.station} boot {boot}: {len(old_log)} rows before, {len(db['security_log'])} now")
        self.last_db = db

    async def check_variables(self) -> None:
        answer = await self.link.call("GetVariables", {"getVariableData": [
            {"component": {"name": c}, "variable": {"name": v}} for c, v, _ in SET_VARIABLES]})
        got = [r.get("attributeValue") for r in answer["getVariableResult"]]
        if got != [value for _, _, value in SET_VARIABLES]:
            self.record.variables_lost.append(f"{self.station} boot {self.vm.boots}: {got}")

    async def sim(self, *args: str) -> dict | None:
        result = await self.vm.run("station-agent", "sim", *args, timeout=20)
        if result.rc != 0:
            raise VmError(f"sim {' '.join(args)}: exit {result.rc}: {result.err.strip()}")
        return json.loads(result.out) if args[0] == "status" else None

    async def sessions(self, cycle: int, state: dict) -> None:
        """Charging sessions one after another until cancelled (by the cut)."""
        for number in itertools_count():
            self.record.sessions += 1
            await self.sim("swipe", f"{cycle:03d}{number:03d}AA")
            await self.sim("plug", "1")
            state["tx"] = None
            for _ in range(50):
                evse = (await self.sim("status"))["evses"]["1"]
                if evse["transaction_id"] and evse["contactor_closed"]:
                    state["tx"] = evse["transaction_id"]
                    self.record.energised.add(state["tx"])
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(self.rng.uniform(1, 6))
            state["unplugging"] = True
            await self.sim("unplug", "1")
            if state["tx"]:
                self.record.unplugged.add(state["tx"])
            state["tx"], state["unplugging"] = None, False
            await asyncio.sleep(self.rng.uniform(0.2, 1.5))

    async def cycle(self, cycle: int) -> None:
        """The guest is up with its station registered: sessions, a cut at a random
        moment, sometimes a second cut while it boots again, then up and checked."""
        started = time.monotonic()
        state: dict = {"tx": None, "unplugging": False}
        # Up to 16 s: under TCG a session (swipe, plug, 1-6 s of charge, unplug) takes
        # several seconds of sim calls, and some must reach their unplug before a cut.
        moment = self.rng.uniform(0.2, 16)
        driver = asyncio.create_task(self.sessions(cycle, state))
        done, _ = await asyncio.wait({driver}, timeout=moment)
        if done:  # it never ends by itself: it failed before the cut
            raise VmError(f"session driver stopped before the cut: {driver.exception()!r}")
        await self.vm.cut()
        driver.cancel()
        await asyncio.gather(driver, return_exceptions=True)
        self.record.cuts += 1
        where = "idle"
        if state["tx"] and not state["unplugging"]:
            self.record.open_at_cut.add(state["tx"])
            self.record.cuts_in_session += 1
            where = f"charging ({state['tx'][:8]})"
        elif state["unplugging"]:
            where = "unplugging"
        extra = ""
        if self.rng.random() < 0.15:
            # A cut while the guest boots: journal replay, the agent opening its database.
            boot_s = sum(self.record.boot_s) / len(self.record.boot_s)
            into = self.rng.uniform(0.3, boot_s)
            await self.vm.start()
            await asyncio.sleep(into)
            await self.vm.cut()
            self.record.cuts += 1
            self.record.cuts_in_boot += 1
            extra = f", then {into:.1f} s into the next boot"
        took = await self.vm.boot()
        self.record.boot_s.append(took)
        await self.registered()
        self.note_boot_reason(("PowerUp",))
        await self.check_db()
        await self.check_variables()
        self.record.cycle_s.append(time.monotonic() - started)
        step(f"{self.station} cut {cycle}: {moment:.2f} s after registration, {where}{extra}; "
             f"up again in {took:.1f} s")

    async def final(self) -> None:
        # Everything queued before the last cut delivered: every transaction Ended.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ledger = ledger_from_links(self.csms.links[self.station])
            if not ledger.incomplete():
                break
            await asyncio.sleep(1)
        await self.vm.poweroff()


def itertools_count():
    number = 0
    while True:
        yield number
        number += 1


def summary(record: Record, csms: Csms, seed: int, stations: list[str]) -> bool:
    ledger = ledger_from_links([link for station in stations
                                for link in csms.links.get(station, [])])
    events = ledger.events()
    accepted = [e for e in events if e.accepted]
    gaps = ledger.gaps()
    incomplete = ledger.incomplete()
    conflicting = ledger.conflicting()
    backwards = ledger.energy_backwards()
    # Per station: each guest has its own meter, and both call their EVSE 1.
    restarts = [r for station in stations
                for r in ledger_from_links(csms.links.get(station, [])).register_restarts()]
    after = ledger.after_ended()
    lost_tx = sorted(record.energised - set(ledger.transactions))
    wrong_reason = sorted(tx for tx in record.open_at_cut if ledger.ended_reason(tx) != "PowerLoss")
    unplug_reason = sorted(tx for tx in record.unplugged
                           if ledger.ended_reason(tx) not in ("EVDisconnected",))
    power_loss = sum(1 for tx in ledger.transactions if ledger.ended_reason(tx) == "PowerLoss")
    lines = [
        (True, f"cuts: {record.cuts} done (seed {seed}), {record.cuts_in_session} while charging, "
               f"{record.cuts_in_boot} while booting, {len(record.boot_s)} boots"),
        (not incomplete, f"transactions: {len(ledger.transactions)} at the CSMS, "
                         f"{len(incomplete)} incomplete (no Started seqNo 0 or no Ended), "
                         f"{power_loss} ended PowerLoss, {record.sessions} sessions started"),
        (not lost_tx, f"lost: {len(lost_tx)} transactions the station energised that the CSMS "
                      f"never heard of (of {len(record.energised)} energised)"),
        (not gaps, f"events: {len(accepted)} accepted ({len(events)} received, "
                   f"{ledger.retries()} identical retries), gaps: {sum(map(len, gaps.values()))} "
                   f"missing seqNo in {len(gaps)} transactions"),
        (not conflicting and not after,
         f"duplicates: {len(conflicting)} seqNo accepted twice with different content, "
         f"{len(after)} transactions with events after Ended"),
        (not wrong_reason and not unplug_reason,
         f"stop reasons: {len(record.open_at_cut) - len(wrong_reason)}/{len(record.open_at_cut)} "
         f"cut while charging ended PowerLoss, {len(record.unplugged) - len(unplug_reason)}/"
         f"{len(record.unplugged)} unplugged ended EVDisconnected"),
        # The mock meter fsyncs its register (hal/drivers/mock/register.py), as a real meter
        # keeps its own through a power cut: a transaction beginning below the previous
        # one's end is a register gone backwards across the cut.
        (not backwards and not restarts,
         f"energy: {len(backwards)} readings going backwards within a transaction, "
         f"{len(restarts)} transactions beginning below the previous one's end"),
        (not record.wrong_reasons,
         f"boot reasons after cuts: {', '.join(f'{n} {r}' for r, n in sorted(record.boot_reasons.items()))}"
         f" ({len(record.wrong_reasons)} not PowerUp)"),
        (not record.corrupt, f"databases: {record.db_checks} integrity checks after boots, "
                             f"{len(record.corrupt)} corrupt or not opening"),
        (not record.model_changed and not record.variables_lost and not record.security_log_lost,
         f"device model and security log: {len(record.model_changed)} stored values changed, "
         f"{len(record.variables_lost)} GetVariables mismatches, "
         f"{len(record.security_log_lost)} security logs not kept"),
        (not csms.schema_errors, f"schema: {len(csms.schema_errors)} invalid frames"),
    ]
    for detail in (incomplete, lost_tx, gaps, conflicting, after, wrong_reason, unplug_reason,
                   backwards, restarts, record.wrong_reasons, record.corrupt, record.model_changed, record.variables_lost,
                   record.security_log_lost, csms.schema_errors):
        if detail:
            print(f"  detail: {str(detail)[:1500]}")
    ok = all(good for good, _ in lines)
    for good, text in lines:
        print(f"{'PASS' if good else 'FAIL'} {text}", flush=True)
    if record.cycle_s:
        print(f"timing: boot {sum(record.boot_s) / len(record.boot_s):.1f} s mean "
              f"(max {max(record.boot_s):.1f}), cut cycle {sum(record.cycle_s) / len(record.cycle_s):.1f} s mean, "
              f"whole run {time.monotonic() - T0:.0f} s", flush=True)
    return ok


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--cuts", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--vms", type=int, default=2,
                        help="guests cut in parallel, each its own station (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="station-agent-vm."))
    step(f"power cuts: {args.cuts}, seed {seed} (again: --seed {seed}), work {work}")
    record = Record()
    work.mkdir(parents=True, exist_ok=True)
    frames = (work / "csms-frames.log").open("w")

    def log_frame(station: str, direction: str, text: str) -> None:
        if frames is not None:
            frames.write(f"{time.strftime('%H:%M:%S')} {station} "
                         f"{'->' if direction == 'in' else '<-'} {text}\n")

    ok = False
    vms: list[Vm] = []
    stations = [f"CS-VM-{index + 1:02d}" for index in range(args.vms)]
    try:
        async with Csms("127.0.0.1", free_port(),
                        passwords={station: PASSWORD for station in stations},
                        on_frame=log_frame) as csms:
            runs = []
            for index, station in enumerate(stations):
                vm = Vm(args.image, work / f"vm{index + 1}", cpus=max(1, 2 // args.vms))
                vms.append(vm)
                runs.append(Run(vm, csms, random.Random(f"{seed}/{index}"), record, station))
            step(f"{args.vms} guest(s) under QEMU with {vms[0].accel.upper()} "
                 f"({vms[0].accel_why}); CSMS {csms.url}")
            vm = vms[0]
            await vm.boot()
            lost, kept = await vm.disk_model_check()
            print(f"{'PASS' if lost and kept else 'FAIL'} disk model: a cut lost the unflushed "
                  f"write: {lost}; kept the flushed one: {kept}", flush=True)
            if not (lost and kept):
                return 1
            share = [args.cuts // args.vms + (i < args.cuts % args.vms) for i in range(args.vms)]

            async def one(run: Run, cuts: int) -> None:
                await run.first_boot()
                for cycle in range(1, cuts + 1):
                    await run.cycle(cycle)
                await run.final()

            await asyncio.gather(*(one(run, n) for run, n in zip(runs, share)))
            ok = summary(record, csms, seed, stations)
    except (VmError, asyncio.TimeoutError) as exc:
        print(f"FAILED: {exc!r}", flush=True)
        traceback.print_exc()
        for vm in vms:
            print(f"--- console of {vm.work.name} (last lines)\n{vm.console_tail()}", flush=True)
    finally:
        for vm in vms:
            await vm.cut()
        if frames is not None:
            frames.close()
        if ok and not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    if not ok:
        print(f"power-cut run FAILED; logs in {work}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
