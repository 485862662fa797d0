"""systemd as PID 1 and SocketCAN on a real kernel: the packaged service in the VM guest
(tests/vm/rig.py) against the project's CSMS on the host.

    .venv/bin/python tests/vm/service_checks.py --image DIR [--work DIR] [--keep]

DIR comes from tests/vm/build-image. One guest, one boot, two parts; one summary line per
check ("PASS name: ..." or "FAIL name: why"), exit 1 if any failed.

1. The service (systemd/station-agent.service from the .deb, the packaged config with the
   mock hardware): it reaches active (running) only through READY=1 with its STATUS= line,
   the watchdog restarts it after SIGSTOP, and `systemctl stop` in the middle of a charging
   session opens the contactor within TimeoutStopSec and ends with Result=success. The
   first two are debian/tests/clean_root_run.py's checks (written for systemd-nspawn),
   run here through `GuestUnits`, an adapter with the three calls they make. A drop-in
   gives the check a short watchdog and sets STATION_AGENT_TRANSITION_LOG, so the mock
   hardware writes every output transition to a file (hal/drivers/mock/recorder.py), which
   is read back and checked with the test suite's safety monitor (tests/safety_monitor.py).

2. SocketCAN: vcan0 in the guest's kernel; two InfyPower-style modules simulated by
   tests/infy_module_sim.py (its own program, on python-can's `socketcan` interface); the
   service on a mock station whose DC EVSE has the real `can_power` driver on vcan0 as its
   power module (README: "A real power module in a mock station"). A charging session
   driven with `station-agent sim`; the CSMS sets limits (a TxDefaultProfile before the
   transaction, then TxProfiles on it, one of 0 W: a pause); the modules' set-points (what
   the simulator prints for each command it obeys) follow each limit, the EV takes what the
   modules deliver (the mock's status, the CSMS's meter values), the keep-alive keeps them
   on; at the pause and at the end both modules are off before the contactor opens, from
   the modules' own record against the transition log (both on the guest's
   CLOCK_MONOTONIC: the simulator's lines are stamped when printed, before it answers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE), str(REPO / "debian/tests")]

import clean_root_run  # noqa: E402  (its service checks, reused)
from agent.demo.csms import Csms  # noqa: E402
from clean_root_run import STATION, Container, Failed, free_port, until  # noqa: E402
from hal.api import Transition  # noqa: E402
from hal.drivers.mock.recorder import decode  # noqa: E402
from rig import Vm, VmError  # noqa: E402
from tests.safety_monitor import check as safety_check  # noqa: E402

PASSWORD = "vm-service-checks-0001"
CONFIG = "/etc/station-agent/station-agent.toml"
STATE = "/var/lib/station-agent"
UNIT = "station-agent.service"
DROP_IN = "/etc/systemd/system/station-agent.service.d/vm-checks.conf"
SERVICE_LOG = f"{STATE}/transitions-service.jsonl"
CAN_LOG = f"{STATE}/transitions-can.jsonl"
SIM_DIR = "/root/infy"
WATCHDOG_S = 3          # clean_root_run.watchdog_restart expects WatchdogSec=3s
# The DC EVSE of part 2 and its modules (the simulator's defaults: 100 A, 30 kW, up to
# 1000 V each). The agent's voltage ceiling is the modules' 1000 V, so W / 1000 = A.
DC_RATING_A = 60
MODULES = (1, 2)
CEILING_V = 1000.0
# (what, TxProfile limit in W or None for the TxDefaultProfile's): the session's steps.
DEFAULT_LIMIT_W = 25_000
TX_LIMITS_W = (40_000, 10_000, 0, 15_000)
T0 = time.monotonic()

# The simulator as its own program, each line it prints stamped with the guest's
# CLOCK_MONOTONIC at the moment it prints it: it prints a command it obeys before it
# answers, so a stamp is never later than the controller's next step.
STAMPED_SIM = '''\
import builtins, time
import infy_module_sim
_print = builtins.print
builtins.print = lambda *a, **k: _print(f"{time.monotonic():.6f}", *a, **k)
infy_module_sim.main()
'''


def step(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


@dataclass
class Summary:
    lines: list[tuple[bool, str]] = field(default_factory=list)

    def add(self, ok: bool, name: str, text: str) -> None:
        self.lines.append((ok, f"{name}: {text}"))
        step(f"{'PASS' if ok else 'FAIL'} {name}")

    @property
    def ok(self) -> bool:
        return bool(self.lines) and all(ok for ok, _ in self.lines)


class GuestUnits(Container):
    """clean_root_run's service checks over the VM guest instead of an nspawn container:
    they use `run`, `show` and `journal`, and show/journal are Container's own over `run`."""

    def __init__(self, vm: Vm) -> None:   # no container to boot: the guest is up
        self.vm = vm

    async def run(self, *argv: str, timeout: float = 60, check_rc: bool = True):
        result = await self.vm.run(*argv, timeout=timeout)
        if check_rc and result.rc != 0:
            raise Failed(f"{' '.join(argv)}: exit {result.rc}\n{result.out}{result.err}")
        return result.rc, result.out, result.err


class Guest:
    """The guest's station: config, drop-in, `station-agent sim`, logs."""

    def __init__(self, vm: Vm, csms: Csms) -> None:
        self.vm, self.csms = vm, csms
        self.units = GuestUnits(vm)

    async def sh(self, script: str, timeout: float = 60) -> str:
        result = await self.vm.run("sh", "-c", script, timeout=timeout)
        if result.rc != 0:
            raise Failed(f"{script}: exit {result.rc}\n{result.out}{result.err}")
        return result.out

    async def sim(self, *args: str) -> dict | None:
        result = await self.vm.run("station-agent", "sim", *args, timeout=30)
        if result.rc != 0:
            raise Failed(f"sim {' '.join(args)}: exit {result.rc}: {result.err.strip()}")
        return json.loads(result.out) if args[0] == "status" else None

    async def evse(self) -> dict:
        status = await self.sim("status")
        assert status is not None
        return status["evses"]["1"]

    async def props(self, *names: str) -> dict[str, str]:
        out = await self.sh(f"systemctl show {UNIT} --property {','.join(names)}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    async def drop_in(self, *lines: str) -> None:
        await self.sh(f"mkdir -p {Path(DROP_IN).parent}")
        await self.vm.write_file(DROP_IN, "[Service]\n" + "".join(f"{line}\n" for line in lines))
        await self.sh("systemctl daemon-reload")

    async def transitions(self, path: str) -> list[Transition]:
        text = await self.sh(f"cat {path}")
        return [decode(json.loads(line)) for line in text.splitlines() if line.strip()]

    async def journal_tail(self, unit: str = UNIT, lines: int = 60) -> str:
        result = await self.vm.run("journalctl", "-u", unit, "--no-pager", "-n", str(lines),
                                   "-o", "short-monotonic", timeout=30)
        return result.out


def safety_text(transitions: list[Transition]) -> tuple[list[str], str]:
    violations = [str(v) for v in safety_check(transitions)]
    return violations, f"{len(transitions)} transitions, {len(violations)} safety violations"


def openings(transitions: list[Transition]) -> list[Transition]:
    return [t for t in transitions if t.cause == "contactor" and t.before.contactor_closed
            and not t.after.contactor_closed]


# -- part 1: the service under systemd ---------------------------------------------------------

async def service_part(guest: Guest, summary: Summary) -> None:
    vm, csms = guest.vm, guest.csms
    config = (await vm.run("cat", CONFIG)).check("cat config").out
    config = config.replace('url = "ws://127.0.0.1:9000/ocpp"',
                            f'url = "ws://10.0.2.2:{csms.port}/ocpp"')
    config = config.replace('password = "change-me-to-a-random-secret"',
                            f'password = "{PASSWORD}"')
    if f'id = "{STATION}"' not in config or "10.0.2.2" not in config:
        raise Failed(f"the packaged config is not as expected:\n{config}")
    await vm.write_file(CONFIG, config, mode="640", owner="root:station-agent")
    # A short watchdog for the check (the shipped unit has 30 s), and the transition log.
    await guest.drop_in(f"WatchdogSec={WATCHDOG_S}s", "RestartSec=1s",
                        f"Environment=STATION_AGENT_TRANSITION_LOG={SERVICE_LOG}")
    await guest.sh("station-agent check-config")
    await guest.sh(f"systemctl enable {UNIT} && systemctl start --no-block {UNIT}")
    step("part 1: station-agent.service enabled and starting (packaged config, mock hardware)")

    try:
        await clean_root_run.service_ready(guest.units, csms)
        props = await guest.props("ExecMainStartTimestampMonotonic",
                                  "ActiveEnterTimestampMonotonic", "StatusText", "Type")
        ready_s = (int(props["ActiveEnterTimestampMonotonic"])
                   - int(props["ExecMainStartTimestampMonotonic"])) / 1e6
        lead = started_after_agent(await guest.units.journal(UNIT))
        summary.add(True, "service ready",
                    f"Type={props['Type']}, active (running) {ready_s:.1f} s after the exec "
                    f"(systemd's 'Started' {lead:.2f} s after the agent's first log line: "
                    f"through READY=1), StatusText={props['StatusText']!r}, BootNotification "
                    "Accepted")
    except (Failed, VmError, asyncio.TimeoutError) as exc:
        summary.add(False, "service ready", _why(exc))
        print(await guest.journal_tail(), flush=True)
        return

    try:
        before = await guest.props("NRestarts", "MainPID")
        started = time.monotonic()
        link = await clean_root_run.watchdog_restart(guest.units, csms)
        after = await guest.props("NRestarts", "MainPID")
        summary.add(True, "watchdog restart",
                    f"SIGSTOP to MainPID {before['MainPID']}: 'Watchdog timeout' in the journal "
                    f"(WatchdogSec={WATCHDOG_S}s), NRestarts {before['NRestarts']} -> "
                    f"{after['NRestarts']}, MainPID {after['MainPID']}, a new BootNotification "
                    f"Accepted {time.monotonic() - started:.1f} s after the SIGSTOP")
    except (Failed, VmError, asyncio.TimeoutError) as exc:
        summary.add(False, "watchdog restart", _why(exc))
        print(await guest.journal_tail(), flush=True)
        return

    try:
        summary.add(True, "stop while charging", await stop_while_charging(guest, link))
    except (Failed, VmError, asyncio.TimeoutError) as exc:
        summary.add(False, "stop while charging", _why(exc))
        print(await guest.journal_tail(), flush=True)


async def stop_while_charging(guest: Guest, link: Any) -> str:
    restarts = (await guest.props("NRestarts"))["NRestarts"]
    await guest.sim("swipe", "04C0FFEE")
    await guest.sim("plug", "1")

    async def charging():
        evse = await guest.evse()
        return evse if evse["transaction_id"] and evse["contactor_closed"] \
            and evse["power_w"] > 0 else None

    evse = await until("a charging session", charging, 60)
    await link.expect_call("TransactionEvent", timeout=30,
                           where=lambda p: p["eventType"] == "Started")
    step(f"charging: transaction {evse['transaction_id'][:8]}, {evse['power_w']:.0f} W; "
         "systemctl stop")
    started = time.monotonic()
    result = await guest.vm.run("systemctl", "stop", UNIT, timeout=60)
    took = time.monotonic() - started
    if result.rc != 0:
        raise Failed(f"systemctl stop: exit {result.rc}: {result.err.strip()}")
    props = await guest.props("ActiveState", "Result", "ExecMainCode", "ExecMainStatus",
                              "ActiveExitTimestampMonotonic", "InactiveEnterTimestampMonotonic",
                              "TimeoutStopUSec", "NRestarts")
    stop_began = int(props["ActiveExitTimestampMonotonic"]) / 1e6
    stop_s = (int(props["InactiveEnterTimestampMonotonic"]) - int(props["ActiveExitTimestampMonotonic"])) / 1e6
    timeout_s = _seconds(props["TimeoutStopUSec"])
    transitions = await guest.transitions(SERVICE_LOG)
    violations, counted = safety_text(transitions)
    opened = [t for t in openings(transitions) if t.at >= stop_began]
    problems = []
    if props["ActiveState"] != "inactive" or props["Result"] != "success":
        problems.append(f"ActiveState={props['ActiveState']} Result={props['Result']}")
    if props["NRestarts"] != restarts:
        problems.append(f"NRestarts {restarts} -> {props['NRestarts']} during the session")
    if props["ExecMainStatus"] != "0":
        problems.append(f"exit status {props['ExecMainStatus']} (code {props['ExecMainCode']})")
    if not stop_s < timeout_s:
        problems.append(f"stopped in {stop_s:.2f} s, TimeoutStopSec {timeout_s:g} s")
    closed_before = [t for t in transitions if t.at < stop_began]
    if not closed_before or not closed_before[-1].after.contactor_closed:
        problems.append("the log shows no closed contactor when the stop began")
    if not opened:
        problems.append("the log shows no contactor opening after the stop began")
    elif not opened[0].at - stop_began < timeout_s:
        problems.append(f"contactor opened {opened[0].at - stop_began:.2f} s after the stop began")
    if not any(t.cause == "stop" and t.at >= stop_began for t in transitions):
        problems.append("the devices were never stopped (no 'stop' transition)")
    if violations:
        problems.append("safety: " + "; ".join(violations[:3]))
    journal = await guest.units.journal(UNIT)
    if "Stopped station-agent.service" not in journal:
        problems.append("no 'Stopped station-agent.service' in the journal")
    if problems:
        raise Failed("; ".join(problems))
    drawn = closed_before[-1].after.current_a
    return (f"contactor (closed, EV drawing {drawn:g} A) opened at "
            f"{opened[0].before.current_a:g} A {opened[0].at - stop_began:.2f} s after the "
            f"stop began; inactive after {stop_s:.2f} s (TimeoutStopSec {timeout_s:g} s; "
            f"systemctl stop returned in {took:.1f} s), Result=success, exit 0, no restart "
            f"meanwhile; {counted}")


def started_after_agent(journal: str) -> float:
    """Seconds from the agent's first log line to systemd's 'Started' line of the first
    start in a short-monotonic journal; Failed unless 'Started' came after the agent spoke
    (under Type=simple it would come at the fork, before any line of the agent's)."""
    first_line = started = None
    for line in journal.splitlines():
        if not line.startswith("["):
            continue
        at = float(line[1:line.index("]")])
        if "station-agent[" in line and first_line is None:
            first_line = at
        elif "Started station-agent.service" in line:
            started = at
            break
    if first_line is None or started is None or started <= first_line:
        raise Failed(f"'Started' at {started}, the agent's first line at {first_line}")
    return started - first_line


def _seconds(systemd_time: str) -> float:
    """'10s', '1min 30s', '10000000' (µs) -> seconds."""
    if systemd_time.isdigit():
        return int(systemd_time) / 1e6
    total = 0.0
    for part in systemd_time.split():
        number = part.rstrip("abcdefghijklmnopqrstuvwxyzµ")
        unit = part[len(number):]
        total += float(number) * {"ms": 1e-3, "s": 1, "min": 60, "h": 3600}[unit]
    return total


# -- part 2: SocketCAN --------------------------------------------------------------------------

def dc_config(port: int) -> str:
    return f'''\
# tests/vm/service_checks.py: a mock station whose DC EVSE has the real CAN driver.
[station]
id = "{STATION}"
vendor = "Example"
model = "DC-60"

[csms]
url = "ws://10.0.2.2:{port}/ocpp"
security_profile = 1
password = "{PASSWORD}"

[storage]
dir = "{STATE}"

[hal]
driver = "mock"

[[evse]]
id = 1
max_current_a = {DC_RATING_A}

[evse.power]
driver = "can_power"
interface = "socketcan"
channel = "vcan0"
modules = [{", ".join(map(str, MODULES))}]
'''


def expected_share_ma(limit_w: float) -> int:
    """Each module's current for a limit: the agent's set-point (the limit at the 1000 V
    ceiling, floored to 0.1 A, at most the EVSE's rating and the modules' 60 kW), split
    equally between the two modules."""
    total = min(DC_RATING_A, math.floor(limit_w / CEILING_V * 10 + 1e-9) / 10,
                2 * 30_000 / CEILING_V)
    return round(total / len(MODULES) * 1000)


@dataclass
class SimEvent:
    at: float
    module: int
    event: dict


async def sim_events(guest: Guest) -> list[SimEvent]:
    events = []
    for module in MODULES:
        text = await guest.sh(f"cat {SIM_DIR}/module-{module}.log")
        for line in text.splitlines():
            stamp, _, rest = line.partition(" ")
            if rest.startswith("{"):
                events.append(SimEvent(float(stamp), module, json.loads(rest)))
    return sorted(events, key=lambda e: e.at)


def module_state(events: list[SimEvent], module: int, before: float = math.inf) -> tuple[bool, int | None]:
    """(switched on, set-point in mA) of a module by its own record, up to `before`."""
    on, current = False, None
    for e in events:
        if e.module != module or e.at >= before:
            continue
        if e.event["event"] == "switch":
            on = e.event["on"]
        elif e.event["event"] == "set_output":
            current = e.event["current_ma"]
        elif e.event["event"] == "watchdog_off":
            on = False
    return on, current


def power_values(payload: dict) -> list[float]:
    return [float(sv["value"]) for mv in payload.get("meterValue", [])
            for sv in mv.get("sampledValue", []) if sv.get("measurand") == "Power.Active.Import"]


def profile(purpose: str, limit_w: float, transaction_id: str | None = None) -> dict:
    out = {"id": 1 if purpose == "TxProfile" else 2, "stackLevel": 0,
           "chargingProfilePurpose": purpose, "chargingProfileKind": "Relative",
           "chargingSchedule": [{"id": 1, "chargingRateUnit": "W",
                                 "chargingSchedulePeriod": [{"startPeriod": 0,
                                                             "limit": limit_w}]}]}
    if transaction_id is not None:
        out["transactionId"] = transaction_id
    return out


async def can_part(guest: Guest, summary: Summary, after_link: Any) -> None:
    vm = guest.vm
    step("part 2: vcan0 and two simulated power modules in the guest")
    try:
        await guest.sh("modprobe vcan && ip link add vcan0 type vcan && ip link set vcan0 up")
        link_text = (await guest.sh("ip -details link show vcan0")).strip()
        kernel = (await guest.sh("uname -r")).strip()
        python_can = (await guest.sh("dpkg-query -W -f='${Version}' python3-can")).strip()
        if "vcan" not in link_text or "UP" not in link_text.split("\n")[0]:
            raise Failed(f"vcan0 is not up: {link_text}")
        await guest.sh(f"mkdir -p {SIM_DIR}")
        await vm.write_file(f"{SIM_DIR}/infy_module_sim.py",
                            (REPO / "tests/infy_module_sim.py").read_text())
        await vm.write_file(f"{SIM_DIR}/stamped_sim.py", STAMPED_SIM)
        for module in MODULES:
            await guest.sh(
                f"systemd-run --unit=infy-module-{module} --working-directory={SIM_DIR} "
                f"--property=StandardOutput=file:{SIM_DIR}/module-{module}.log "
                f"python3 -u {SIM_DIR}/stamped_sim.py --interface socketcan --channel vcan0 "
                f"--address {module}")

        async def sims_ready():
            out = await guest.sh(f"cat {SIM_DIR}/module-*.log 2>/dev/null || true")
            return sum(line.endswith(" ready") for line in out.splitlines()) == len(MODULES)

        await until("the simulated modules' 'ready'", sims_ready, 90)
        summary.add(True, "vcan0", f"kernel {kernel}: modprobe vcan, vcan0 up "
                    f"({link_text.splitlines()[0].split(':', 2)[2].strip().split()[0]}); "
                    f"python3-can {python_can}; modules {', '.join(map(str, MODULES))} "
                    "(tests/infy_module_sim.py, socketcan) listening")
    except (Failed, VmError, asyncio.TimeoutError) as exc:
        summary.add(False, "vcan0", _why(exc))
        summary.add(False, "dc session follows the limit", "not run (no vcan0 or modules)")
        summary.add(False, "dc switch-off order", "not run")
        return

    follow: list[str] = []
    try:
        follow = await dc_session(guest, after_link)
        summary.add(True, "dc session follows the limit", "; ".join(follow))
    except (Failed, VmError, asyncio.TimeoutError) as exc:
        summary.add(False, "dc session follows the limit", _why(exc))
        print(await guest.journal_tail(), flush=True)
    try:
        summary.add(True, "dc switch-off order", await switch_off_order(guest))
    except (Failed, VmError, asyncio.TimeoutError) as exc:
        summary.add(False, "dc switch-off order", _why(exc))


async def dc_session(guest: Guest, after_link: Any) -> list[str]:
    vm, csms = guest.vm, guest.csms
    await guest.sh(f"systemctl stop {UNIT}; "
                   f"find {STATE} -mindepth 1 -maxdepth 1 ! -name 'transitions-*' "
                   "-exec rm -rf {} +")
    await vm.write_file(CONFIG, dc_config(csms.port), mode="640", owner="root:station-agent")
    await guest.drop_in(f"Environment=STATION_AGENT_TRANSITION_LOG={CAN_LOG}")
    await guest.sh("station-agent check-config")
    await guest.sh(f"systemctl start --no-block {UNIT}")
    step("the service with the DC config (mock station, can_power on vcan0) starting")
    link, _ = await clean_root_run.registered(csms, after=after_link, timeout=120)
    answer = await link.call("SetVariables", {"setVariableData": [
        {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"},
         "attributeValue": "1"}]})
    if answer["setVariableResult"][0]["attributeStatus"] != "Accepted":
        raise Failed(f"SetVariables: {answer}")
    answer = await link.call("SetChargingProfile", {
        "evseId": 1, "chargingProfile": profile("TxDefaultProfile", DEFAULT_LIMIT_W)})
    if answer["status"] != "Accepted":
        raise Failed(f"TxDefaultProfile: {answer}")
    await guest.sim("swipe", "04CA0001")
    await guest.sim("plug", "1")
    started = await link.expect_call("TransactionEvent", timeout=60,
                                     where=lambda p: p["eventType"] == "Started")
    tx = started["transactionInfo"]["transactionId"]
    step(f"transaction {tx[:8]} started; TxDefaultProfile {DEFAULT_LIMIT_W} W")
    done = [await follows(guest, link, DEFAULT_LIMIT_W, "TxDefaultProfile")]
    for limit_w in TX_LIMITS_W:
        answer = await link.call("SetChargingProfile", {
            "evseId": 1, "chargingProfile": profile("TxProfile", limit_w, tx)})
        if answer["status"] != "Accepted":
            raise Failed(f"TxProfile {limit_w} W: {answer}")
        done.append(await follows(guest, link, limit_w, "TxProfile"))
    # Keep-alive: the modules stay on past their 10 s watchdog without new commands.
    events = await sim_events(guest)
    first = events[0].at
    await asyncio.sleep(15)
    events = await sim_events(guest)
    trips = [e for e in events if e.event["event"] == "watchdog_off"]
    states = [module_state(events, m) for m in MODULES]
    if trips or not all(on for on, _ in states):
        raise Failed(f"keep-alive: {len(trips)} watchdog switch-offs, modules on: {states}")
    per_module = {m: sum(1 for e in events if e.module == m and e.event["event"] == "set_output")
                  for m in MODULES}
    span = events[-1].at - first
    done.append(f"keep-alive: modules still on 15 s after the last limit (their watchdog: "
                f"10 s), set-points obeyed {min(per_module.values())}-"
                f"{max(per_module.values())} times a module in {span:.0f} s, 0 watchdog "
                "switch-offs")
    done.append(steady_energy(link))
    await guest.sim("unplug", "1")
    ended = await link.expect_call("TransactionEvent", timeout=60,
                                   where=lambda p: p["eventType"] == "Ended")
    energy = [float(sv["value"]) for mv in ended.get("meterValue", [])
              for sv in mv.get("sampledValue", [])
              if sv.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"]
    done.append(f"Ended ({ended['transactionInfo'].get('stoppedReason')}), "
                f"{energy[-1] if energy else '?'} Wh on the register")
    await guest.sh(f"systemctl stop {UNIT}")
    frames = (await guest.sh("cat /sys/class/net/vcan0/statistics/tx_packets")).strip()
    journal = await guest.units.journal(UNIT)
    warnings = [line for line in journal.splitlines()
                if "hal.drivers.infy" in line and ("WARNING" in line or "ERROR" in line)]
    done.append(f"vcan0 carried {frames} frames (the kernel's counter); the CAN driver "
                f"logged {len(warnings)} warnings or errors")
    for line in warnings[:5]:
        step(f"  {line}")
    if guest.csms.schema_errors:
        raise Failed(f"schema errors: {guest.csms.schema_errors[:3]}")
    return done


def steady_energy(link: Any) -> str:
    """The register against the power: over the longest run of meter values with one
    power, the energy it gained must be that power times the time (the mock meter
    integrates what the modules deliver); Failed if not."""
    samples = []
    for payload in link.calls("TransactionEvent"):
        for mv in payload.get("meterValue", []):
            values = {sv.get("measurand", "Energy.Active.Import.Register"): float(sv["value"])
                      for sv in mv.get("sampledValue", [])}
            if "Power.Active.Import" in values and "Energy.Active.Import.Register" in values:
                at = datetime.fromisoformat(mv["timestamp"].replace("Z", "+00:00")).timestamp()
                samples.append((at, values["Energy.Active.Import.Register"],
                                values["Power.Active.Import"]))
    samples.sort()
    best: list[tuple[float, float, float]] = []
    run: list[tuple[float, float, float]] = []
    for sample in samples:
        run = run + [sample] if run and run[-1][2] == sample[2] else [sample]
        if sample[2] > 0 and run[-1][0] - run[0][0] > (best[-1][0] - best[0][0] if best else 0):
            best = run
    if len(best) < 2 or best[-1][0] - best[0][0] < 5:
        raise Failed(f"no steady stretch of 5 s in {len(samples)} meter values")
    span, gained, power = best[-1][0] - best[0][0], best[-1][1] - best[0][1], best[0][2]
    rate = gained * 3600 / span
    # The register goes in whole Wh (1 Wh off over the stretch), and a sample carries the
    # meter's latest reading, polled every second (under TCG up to 2 s old).
    if abs(gained - power * span / 3600) > 1 + power * 2 / 3600:
        raise Failed(f"the register gained {gained:g} Wh in {span:.1f} s at {power:g} W "
                     f"({rate:.0f} W)")
    return (f"register +{gained:g} Wh in {span:.1f} s at {power / 1000:g} kW "
            f"({rate / 1000:.2f} kW), {len(samples)} meter values")


async def follows(guest: Guest, link: Any, limit_w: float, purpose: str) -> str:
    """Until both modules hold the share of `limit_w` (off for a pause), the EV takes the
    limit and the CSMS hears that power in a meter value; a line on it."""
    share = expected_share_ma(limit_w)
    on = share >= 1000          # the agent's MIN_DC_A: below 1 A a set-point is a pause
    started = time.monotonic()

    async def modules():
        events = await sim_events(guest)
        states = [module_state(events, m) for m in MODULES]
        good = all(s[0] == on and (not on or s[1] == share) for s in states)
        return states if good else None

    states = await until(f"modules at {share} mA each for {limit_w} W", modules, 60)

    async def ev():
        evse = await guest.evse()
        want = limit_w if on else 0
        good = abs(evse["power_w"] - want) <= 1 and evse["contactor_closed"] == on
        return evse if good else None

    evse = await until(f"the EV taking {limit_w} W", ev, 30)
    shares = "/".join(f"{(s[1] or 0) / 1000:g}" for s in states)
    if on:
        seen = await until(f"a meter value of {limit_w} W at the CSMS",
                           lambda: _meter_value(link, limit_w), 30)
        text = (f"{purpose} {limit_w / 1000:g} kW: modules {shares} A on, EV "
                f"{evse['power_w'] / 1000:g} kW, CSMS meter value {seen / 1000:g} kW")
    else:
        # A pause: no meter values to wait for, the CSMS hears the charging state.
        await link.expect_call("TransactionEvent", timeout=30, where=lambda p: p.get(
            "transactionInfo", {}).get("chargingState") == "SuspendedEVSE")
        held = "session held" if evse["transaction_id"] else "NO SESSION"
        text = f"{purpose} 0 W: modules off, contactor open, SuspendedEVSE ({held})"
    step(f"{text} ({time.monotonic() - started:.1f} s)")
    return text


async def _meter_value(link: Any, limit_w: float) -> float | None:
    for payload in reversed(link.calls("TransactionEvent")):
        values = power_values(payload)
        if values:
            return values[-1] if abs(values[-1] - limit_w) <= max(1.0, limit_w * 0.001) else None
    return None


async def switch_off_order(guest: Guest) -> str:
    transitions = await guest.transitions(CAN_LOG)
    violations, counted = safety_text(transitions)
    events = await sim_events(guest)
    problems = list(violations[:3])
    found = openings(transitions)
    if len(found) < 2:
        problems.append(f"{len(found)} contactor openings in the log (the pause and the end: 2 or more)")
    gaps = []
    for opening in found:
        for module in MODULES:
            on, _ = module_state(events, module, before=opening.at)
            if on:
                problems.append(f"module {module} was on when the contactor opened at {opening.at:.3f}")
            offs = [e.at for e in events if e.module == module and e.at < opening.at
                    and e.event["event"] == "switch" and not e.event["on"]]
            if offs:
                gaps.append(opening.at - offs[-1])
        if opening.before.current_a is None or opening.before.current_a >= 1.0 \
                or opening.before.module_on is not False:
            problems.append(f"contactor opened with the module {opening.before.module_on} at "
                            f"{opening.before.current_a} A")
    if problems:
        raise Failed("; ".join(problems))
    return (f"{len(found)} contactor openings (the pause, the end), each with both modules off "
            f"by their own record first ({min(gaps) * 1000:.0f}-{max(gaps) * 1000:.0f} ms "
            f"before) and 0 A reported; {counted}")


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:1500]


async def main_async(args: argparse.Namespace) -> int:
    work = args.work or Path(tempfile.mkdtemp(prefix="station-agent-vm-svc."))
    work.mkdir(parents=True, exist_ok=True)
    frames = (work / "csms-frames.log").open("w")

    def log_frame(station: str, direction: str, text: str) -> None:
        frames.write(f"{time.strftime('%H:%M:%S')} {station} "
                     f"{'->' if direction == 'in' else '<-'} {text}\n")
        frames.flush()

    summary = Summary()
    vm = Vm(args.image, work / "vm")
    try:
        async with Csms("127.0.0.1", free_port(), passwords={STATION: PASSWORD},
                        on_frame=log_frame) as csms:
            step(f"one guest under QEMU with {vm.accel.upper()} ({vm.accel_why}); "
                 f"CSMS {csms.url}; work {work}")
            took = await vm.boot()
            step(f"booted in {took:.1f} s")
            guest = Guest(vm, csms)
            await service_part(guest, summary)
            links = csms.links.get(STATION, [])
            await can_part(guest, summary, links[-1] if links else None)
            await vm.poweroff()
    except (Failed, VmError, asyncio.TimeoutError) as exc:
        print(f"FAILED: {exc!r}", flush=True)
        traceback.print_exc()
        print(f"--- console (last lines)\n{vm.console_tail()}", flush=True)
        summary.add(False, "rig", _why(exc))
    finally:
        await vm.cut()
        frames.close()
    for ok, text in summary.lines:
        print(f"{'PASS' if ok else 'FAIL'} {text}", flush=True)
    print(f"timing: whole run {time.monotonic() - T0:.0f} s", flush=True)
    if summary.ok and not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    elif not summary.ok:
        print(f"service checks FAILED; logs in {work}", flush=True)
    return 0 if summary.ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
