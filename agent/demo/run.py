"""`station-agent demo`: a local CSMS and the real agent process with mock hardware.

Registers, answers the CSMS, then plays a charging session (card, Authorize, plug,
Started, meter values, unplug, Ended), printing the OCPP exchange as it happens, and
stops by itself. Needs the `ocpp` package
(the test extra), which the daemon itself never imports.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

DEMO_PASSWORD = "demo-password-0123456"
HEARTBEAT_S = 3
SAMPLE_S = 2


class Printer:
    """One line per frame: who sent it, the time since start, the JSON (shortened), or for
    a TransactionEvent a readable summary (event, trigger, state, meter)."""

    def __init__(self, out: TextIO, width: int = 160) -> None:
        self.out = out
        self.width = width
        self.start = time.monotonic()

    def frame(self, station_id: str, direction: str, text: str) -> None:
        arrow = "station -> CSMS" if direction == "in" else "CSMS -> station"
        summary = _transaction_summary(text)
        if summary:
            self.say(f"{arrow}  {summary}")
            return
        if len(text) > self.width:
            text = text[: self.width - 3] + "..."
        self.say(f"{arrow}  {text}")

    def say(self, line: str) -> None:
        print(f"{time.monotonic() - self.start:6.2f}s  {line}", file=self.out, flush=True)


def _transaction_summary(text: str) -> str | None:
    """A TransactionEvent in one readable line: what happened and the meter reading."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not (isinstance(message, list) and len(message) == 4 and message[2] == "TransactionEvent"):
        return None
    event = message[3]
    info = event.get("transactionInfo", {})
    energy = [v["value"] for mv in event.get("meterValue", []) for v in mv.get("sampledValue", [])
              if v.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"]
    parts = [f"TransactionEvent {event.get('eventType')} #{event.get('seqNo')}",
             f"trigger {event.get('triggerReason')}", f"state {info.get('chargingState')}"]
    if "stoppedReason" in info:
        parts.append(f"stopped {info['stoppedReason']}")
    if "idToken" in event:
        parts.append(f"token {event['idToken'].get('idToken')}")
    if energy:
        parts.append(f"meter {energy[-1]} Wh")
    if event.get("offline"):
        parts.append("offline")
    return ", ".join(parts) + f"  (tx {str(info.get('transactionId', ''))[:8]})"


def _config(directory: Path, url: str) -> Path:
    path = directory / "demo.toml"
    path.write_text(
        '[station]\nid = "CS-DEMO"\nvendor = "Example"\nmodel = "AC-22"\n\n'
        f'[csms]\nurl = "{url}"\nsecurity_profile = 1\npassword = "{DEMO_PASSWORD}"\n\n'
        '[storage]\ndir = "state"\n\n[hal]\ndriver = "mock"\n\n'
        "[[evse]]\nid = 1\nmax_current_a = 32\n\n[[evse]]\nid = 2\nmax_current_a = 16\nphases = 1\n")
    return path


async def demo(out: TextIO = sys.stdout) -> int:
    try:
        from agent.demo.csms import Csms
    except ImportError as exc:
        print(f"station-agent demo needs the test extra ({exc.name} is missing): "
              "pip install 'station-agent[test]', or run `make demo`", file=sys.stderr)
        return 1
    printer = Printer(out)
    with tempfile.TemporaryDirectory(prefix="station-agent-demo-") as tmp:
        async with Csms(passwords={"CS-DEMO": DEMO_PASSWORD}, heartbeat_interval=HEARTBEAT_S,
                        on_frame=printer.frame) as csms:
            config = _config(Path(tmp), csms.url)
            printer.say(f"CSMS listening on {csms.url}; starting the agent (mock hardware)")
            log = open(Path(tmp) / "agent.log", "wb")
            agent = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agent", "run", "--config", str(config),
                stdout=log, stderr=log)
            try:
                return await _script(csms, printer, agent, config)
            finally:
                if agent.returncode is None:
                    agent.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(agent.wait(), 5)
                    except asyncio.TimeoutError:
                        agent.kill()
                log.close()
                printer.say(f"agent stopped (exit {agent.returncode})")
                if csms.schema_errors:
                    printer.say("schema problems: " + json.dumps(csms.schema_errors))


async def _sim(config: Path, *args: str) -> None:
    """Drive the mock hardware as an operator would: `station-agent sim ...`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "sim", "--config", str(config), *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"sim {' '.join(args)} failed: {err.decode().strip()}")


async def _script(csms: object, printer: Printer, agent: asyncio.subprocess.Process,
                  config: Path) -> int:
    link = await csms.wait_station("CS-DEMO", timeout=10)  # type: ignore[attr-defined]
    await link.expect_call("BootNotification", timeout=10)
    for evse in (1, 2):
        await link.expect_call("StatusNotification", timeout=10,
                               where=lambda p, e=evse: p["evseId"] == e)
    printer.say("registered; the CSMS reads and sets a few variables")
    await link.call("GetVariables", {"getVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
        {"component": {"name": "EVSE", "evse": {"id": 2}}, "variable": {"name": "AvailabilityState"}},
    ]})
    await link.call("SetVariables", {"setVariableData": [
        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
         "attributeValue": str(HEARTBEAT_S)},
        {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"},
         "attributeValue": str(SAMPLE_S)}]})
    await link.call("GetBaseReport", {"requestId": 1, "reportBase": "SummaryInventory"})
    await link.expect_call("NotifyReport", timeout=10)
    printer.say(f"waiting for a Heartbeat ({HEARTBEAT_S} s without other traffic)")
    await link.expect_call("Heartbeat", timeout=HEARTBEAT_S + 10)

    printer.say("a driver swipes card 04A2B3C4 at EVSE 1")
    await _sim(config, "swipe", "04A2B3C4", "--evse", "1")
    await link.expect_call("Authorize", timeout=10)
    printer.say("... and plugs in the EV: the station offers 32 A, the EV draws, the contactor closes")
    await _sim(config, "plug", "1")
    await link.expect_call("TransactionEvent", timeout=10, where=lambda p: p["eventType"] == "Started")
    printer.say(f"charging; meter values every {SAMPLE_S} s")
    for _ in range(2):
        await link.expect_call("TransactionEvent", timeout=SAMPLE_S + 10,
                               where=lambda p: p["triggerReason"] == "MeterValuePeriodic")
    printer.say("the driver unplugs: the transaction ends")
    await _sim(config, "unplug", "1")
    await link.expect_call("TransactionEvent", timeout=10, where=lambda p: p["eventType"] == "Ended")
    await link.expect_call("StatusNotification", timeout=10,
                           where=lambda p: p["evseId"] == 1 and p["connectorStatus"] == "Available")
    printer.say("demo done: stopping the agent")
    return 0


def main() -> int:
    try:
        return asyncio.run(demo())
    except KeyboardInterrupt:
        return 130
