"""The conformance rig: what the OCTT is to a lab, for Part 6's Charging Station cases.

The real daemon (`run_daemon`, every block, the mock hardware) runs in this process on a
ManualClock against the project's CSMS peer (built on the PyPI `ocpp` package, every frame
the station sends checked against the official schemas). The test plays the lab: it
drives the mock EV and card reader directly (Part 6's "Manual Action"), answers and sends
OCPP as the OCTT would, and asserts the tool validations field by field.

Part 6's reusable states (Booted, EVConnectedPreSession, Authorized, EnergyTransferStarted,
...) are methods here, named as there, so a test reads like the case it implements.
Cases that need the real process (TLS, kill -9) use `tests.harness.AgentProcess`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from agent.clock import ManualClock
from agent.config import load_config
from agent.daemon import run_daemon
from agent.demo.csms import Csms
from agent.demo.csms.link import StationLink
from agent.hardware import Hardware
from hal.drivers.mock import MockStation
from tests.harness import PASSWORD, quiesce, write_config

STATION = "CS-TEST"
#: Part 6's <Configured valid_idtoken_idtoken> / _type, and the others it names.
VALID_TOKEN = {"idToken": "04A1B2C3", "type": "ISO14443"}
INVALID_TOKEN = {"idToken": "DEADBEEF", "type": "ISO14443"}
EVSE = 1
CONNECTOR = 1


@dataclass
class Rig:
    """One station under test and the CSMS it talks to."""

    tmp_path: Path
    csms: Csms
    clock: ManualClock
    config_path: Path
    evses: int
    link: StationLink | None = None
    hardware: Hardware | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _daemon: asyncio.Task | None = None

    # ---- lifecycle

    @property
    def mock(self) -> MockStation:
        assert self.hardware is not None and self.hardware.mock is not None
        return self.hardware.mock

    async def start(self, *, wait_booted: bool = True) -> StationLink | None:
        """Start the daemon (a power-on); with `wait_booted`, until it is registered and
        has reported every connector (Part 6's Booted, by power cycle)."""
        previous = self.link
        self._stop = asyncio.Event()
        self._daemon = asyncio.ensure_future(run_daemon(
            load_config(self.config_path), self._stop, clock=self.clock,
            on_hardware=self._take_hardware))
        if not wait_booted:
            return None
        self.link = await self.csms.wait_station(STATION, timeout=10, after=previous)
        await self.link.expect_call("BootNotification", timeout=10)
        if self.csms.boot_status == "Accepted":
            for evse_id in range(1, self.evses + 1):
                await self.link.expect_call(
                    "StatusNotification", timeout=10,
                    where=lambda p, e=evse_id: p["evseId"] == e)
        await self.settle()
        return self.link

    def _take_hardware(self, hardware: Hardware) -> None:
        self.hardware = hardware

    async def shutdown(self) -> None:
        """A clean stop of the daemon (SIGTERM's path)."""
        if self._daemon is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(self._daemon, 10)
        finally:
            self._daemon = None

    async def power_cycle(self) -> StationLink:
        """Part 6's "Manual Action: Power cycle the Charging Station": stop and start."""
        await self.shutdown()
        link = await self.start()
        assert link is not None
        return link

    async def reexec(self, timeout: float = 20) -> StationLink:
        """The daemon's own restart (after a firmware install): wait until it ends with
        "reexec", as `station-agent run` then re-executes itself, and start it again
        from the same storage, until Booted."""
        assert self._daemon is not None, "the daemon is not running"
        outcome = await asyncio.wait_for(asyncio.shield(self._daemon), timeout)
        assert outcome == "reexec", f"the daemon ended with {outcome!r}, not a re-exec"
        self._daemon = None
        link = await self.start()
        assert link is not None
        return link

    async def new_link(self, timeout: float = 10) -> StationLink:
        """The station's next connection (after a Reset or a dropped link)."""
        self.link = await self.csms.wait_station(STATION, timeout=timeout, after=self.link)
        return self.link

    # ---- time and quiet

    async def settle(self) -> None:
        """Until every round trip under way has finished."""
        assert await quiesce(), "the agent did not go quiet"

    async def advance(self, seconds: float, step: float | None = None) -> None:
        """Let `seconds` pass on the station's clock, in steps of `step` (settling after
        each), so timers armed by what happens on the way also run."""
        step = step or seconds
        left = seconds
        while left > 1e-9:
            now = min(step, left)
            await self.clock.advance(now)
            await self.settle()
            left -= now

    # ---- OCPP, as the OCTT

    async def call(self, action: str, payload: dict, timeout: float = 10) -> dict:
        assert self.link is not None
        return await self.link.call(action, payload, timeout)

    async def expect(self, action: str, where: Callable[[dict], bool] | None = None,
                     timeout: float = 10) -> dict:
        assert self.link is not None
        return await self.link.expect_call(action, timeout=timeout, where=where)

    def sent(self, action: str) -> list[dict]:
        """Every `action` the station sent on the current link."""
        assert self.link is not None
        return self.link.calls(action)

    def sent_on_all_links(self, action: str) -> list[dict]:
        return [p for link in self.csms.links.get(STATION, []) for p in link.calls(action)]

    def answer(self, action: str, responder: Callable[[dict], dict] | dict) -> None:
        """The OCTT's answer to `action` from now on (a payload, or a function of the
        request's payload)."""
        self.csms.responders[action] = (responder if callable(responder)
                                        else (lambda _payload, r=responder: r))

    async def set_variable(self, component: str, variable: str, value: str,
                           evse: int | None = None, connector: int | None = None) -> str:
        comp: dict[str, Any] = {"name": component}
        if evse is not None:
            comp["evse"] = {"id": evse} | ({"connectorId": connector} if connector else {})
        answer = await self.call("SetVariables", {"setVariableData": [{
            "component": comp, "variable": {"name": variable}, "attributeValue": value}]})
        return answer["setVariableResult"][0]["attributeStatus"]

    async def configure(self, settings: dict[tuple[str, str], str]) -> None:
        """Part 6's "Configuration State": each must be Accepted."""
        for (component, variable), value in settings.items():
            status = await self.set_variable(component, variable, value)
            assert status == "Accepted", f"{component}.{variable} = {value}: {status}"

    async def get_variable(self, component: str, variable: str,
                           evse: int | None = None) -> str | None:
        comp: dict[str, Any] = {"name": component}
        if evse is not None:
            comp["evse"] = {"id": evse}
        answer = await self.call("GetVariables", {"getVariableData": [{
            "component": comp, "variable": {"name": variable}}]})
        return answer["getVariableResult"][0].get("attributeValue")

    # ---- the EV driver's manual actions

    async def plug(self, evse: int = EVSE) -> None:
        self.mock.plug(evse)
        await self.settle()

    async def unplug(self, evse: int = EVSE) -> None:
        self.mock.unplug(evse)
        await self.settle()

    async def present(self, token: dict = VALID_TOKEN, evse: int | None = None) -> None:
        self.mock.swipe(token["idToken"], token["type"], evse)
        await self.settle()

    # ---- Part 6's reusable states

    async def ev_connected_pre_session(self, evse: int = EVSE) -> dict:
        """EVConnectedPreSession: the EV is plugged in; returns the StatusNotification."""
        await self.plug(evse)
        return await self.expect("StatusNotification", where=lambda p: (
            p["evseId"] == evse and p["connectorStatus"] == "Occupied"))

    async def authorized_local(self, token: dict = VALID_TOKEN, evse: int | None = None) -> None:
        """Authorized, main A: present a card the CSMS accepts."""
        await self.present(token, evse)

    async def authorized_remote(self, token: dict = VALID_TOKEN, evse: int = EVSE,
                                remote_start_id: int = 1) -> dict:
        """Authorized, main B: RequestStartTransaction; returns its answer."""
        answer = await self.call("RequestStartTransaction", {
            "idToken": token, "evseId": evse, "remoteStartId": remote_start_id})
        await self.settle()
        return answer

    async def energy_transfer_started(self, token: dict = VALID_TOKEN, evse: int = EVSE,
                                      remote: bool = False) -> dict:
        """EnergyTransferStarted from idle: authorize (locally or remotely), plug in, and
        charge; returns the transaction's Started event."""
        if remote:
            await self.authorized_remote(token, evse)
        else:
            await self.authorized_local(token, evse)
        await self.plug(evse)
        await self.advance(1)
        started = await self.expect("TransactionEvent", where=lambda p: (
            p["eventType"] == "Started" and p.get("evse", {}).get("id") == evse))
        await self.expect("TransactionEvent", where=lambda p: (
            p["transactionInfo"]["transactionId"] == started["transactionInfo"]["transactionId"]
            and p["transactionInfo"].get("chargingState") == "Charging"))
        return started

    def transaction_events(self, transaction_id: str | None = None) -> list[dict]:
        events = self.sent_on_all_links("TransactionEvent")
        return [e for e in events if transaction_id is None
                or e["transactionInfo"]["transactionId"] == transaction_id]

    def snapshot(self, evse: int = EVSE) -> dict:
        return self.mock.snapshot(evse)


@contextlib.asynccontextmanager
async def station(tmp_path: Path, *, evses: int = 1, extra: str = "",
                  boot_status: str = "Accepted", heartbeat_interval: int = 300,
                  booted: bool = True) -> AsyncIterator[Rig]:
    """A CSMS on loopback and the daemon in this process, booted (unless `booted` is
    False); stops both, and fails the test if the station sent anything the official
    schemas refuse."""
    async with Csms(passwords={STATION: PASSWORD}, boot_status=boot_status,
                    heartbeat_interval=heartbeat_interval) as csms:
        config_path = write_config(tmp_path, csms.url, evses=evses, extra=extra)
        rig = Rig(tmp_path, csms, ManualClock(), config_path, evses)
        try:
            await rig.start(wait_booted=booted)
            yield rig
        finally:
            await rig.shutdown()
        assert csms.schema_errors == [], csms.schema_errors


def run(coro: Any, timeout: float = 60) -> Any:
    """Run one case's coroutine with an overall limit, so a hung case fails, not CI."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
