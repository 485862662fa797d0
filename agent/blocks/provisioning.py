"""Provisioning (block B): BootNotification, Heartbeat and Reset.

Registration (B01-B03): the station sends BootNotification on its first connection of a
run and again after the interval while the CSMS answers Pending or Rejected. Until
Accepted, only what the CSMS asked for may be sent (the Messenger holds the rest back);
while Rejected every CSMS call is answered with SecurityError (errata B03.FR.08).
Heartbeat (G02) is sent only when no other CALL went out for HeartbeatInterval: any
answered CALL proves the link as well, and cellular data is precious.
Reset (B11-B12) restarts the agent's work in-process; the next boot says RemoteReset.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Awaitable, Callable, Literal

from agent.clock import EARLIEST, LATEST, Clock, parse_datetime
from agent.model.types import Component, Variable
from agent.ocpp.connection import ConnectionManager
from agent.ocpp.session import CallFailed, Payload, Reply, Router
from agent.store import Store

log = logging.getLogger(__name__)

Registration = Literal["Unknown", "Pending", "Rejected", "Accepted"]

# Store keys that carry the boot reason across a restart.
PENDING_BOOT_REASON = "provisioning.pending_boot_reason"
LAST_START = "provisioning.last_start"
CLEAN_STOP = "provisioning.clean_stop"

# Used when the CSMS answers Pending/Rejected with interval 0 (B02.FR / B03.FR leave the
# retry to the station): a minute does not hammer a CSMS that is still busy.
DEFAULT_RETRY_S = 60
# The longest span the station adds to its clock: OCPP's largest integer of seconds
# (2**31 s, 68 years). A currentTime closer than that to the end of what a datetime holds
# (9999-12-31T23:59:59Z is valid RFC 3339) would make every deadline overflow.
_REACH = timedelta(seconds=2 ** 31)


def decide_boot_reason(pending: str | None, last_start: float | None, clean_stop: bool,
                       system_boot: float | None) -> str:
    """The BootNotification reason, from what the previous run left behind.

    A reason recorded on purpose (RemoteReset, FirmwareUpdate, ...) wins; else a system
    that booted after our last start had a power-up; else we were restarted alone: on
    purpose if the last run stopped cleanly, after a crash or kill otherwise.
    """
    if pending:
        return pending
    if last_start is None or (system_boot is not None and system_boot > last_start):
        return "PowerUp"
    return "LocalReset" if clean_stop else "ApplicationReset"


def settle_boot_reason(store: Store, reported: str) -> None:
    """A BootNotification with `reported` as its reason was accepted: the recorded reason
    it carried is used up. Only that one: a firmware install can finish (and record
    FirmwareUpdate for the restart it causes) before the boot of this run is accepted,
    and the restart must still say FirmwareUpdate."""
    with store.transaction():
        if store.get_meta(PENDING_BOOT_REASON) == reported:
            store.set_meta(PENDING_BOOT_REASON, None)


def system_boot_time() -> float | None:
    """Wall-clock time the OS booted (Linux /proc/stat btime), or None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class Identity:
    """The ChargingStationType of BootNotification."""
    vendor: str
    model: str
    serial_number: str | None
    firmware_version: str

    def payload(self) -> Payload:
        cs: Payload = {"model": self.model, "vendorName": self.vendor,
                       "firmwareVersion": self.firmware_version}
        if self.serial_number:
            cs["serialNumber"] = self.serial_number
        return cs


class Provisioning:
    def __init__(self, *, link: ConnectionManager, router: Router, model: Any, clock: Clock,
                 store: Store, identity: Identity, boot_reason: str,
                 restart: Callable[[], None], reset_evse: Callable[[int], Awaitable[None]],
                 is_idle: Callable[[int | None], bool]) -> None:
        self._link = link
        self._model = model
        self._clock = clock
        # Told when the CSMS moved the station's time by more than
        # ClockCtrlr.TimeAdjustmentReportingThreshold (security event SettingSystemTime).
        self.on_time_set: list[Callable[[float], None]] = []
        self._store = store
        self._identity = identity
        self.boot_reason = boot_reason
        self._restart = restart
        self._reset_evse = reset_evse
        self._is_idle = is_idle
        self.registration: Registration = "Unknown"
        self._interval_changed = asyncio.Event()
        self.on_accepted: list[Callable[[], None]] = []
        router.gate = self._gate
        router.register("Reset", self._on_reset)
        link.on_open.append(self._on_connection)
        model.subscribe(self._on_variable)

    # -- registration ---------------------------------------------------------------

    def _gate(self, action: str) -> str | None:
        return "SecurityError" if self.registration == "Rejected" else None

    async def _on_connection(self, session: object) -> None:
        if self.registration == "Accepted":
            return
        while True:
            try:
                answer = await self._link.call(
                    "BootNotification",
                    {"reason": self.boot_reason, "chargingStation": self._identity.payload()},
                    before_accepted=True, wait=False)
            except CallFailed as exc:
                # No usable answer: try again after the message timeout, on this link.
                log.warning("BootNotification failed: %s", exc)
                await self._clock.sleep(self._link.message_timeout())
                continue
            self._take_time(answer["currentTime"])
            status, interval = answer["status"], self._bounded(answer["interval"])
            log.info("BootNotification: %s (interval %s s)", status, interval)
            if status == "Accepted":
                self._accepted(interval)
                return
            self.registration = status
            await self._clock.sleep(interval if interval > 0 else DEFAULT_RETRY_S)
            if self.registration == "Accepted":
                return  # a triggered BootNotification was Accepted meanwhile

    def _bounded(self, interval: int) -> int:
        """The CSMS's interval within HeartbeatInterval's range: a CSMS may send any
        32-bit number, the variable (and the retry wait) takes at most its maxLimit."""
        definition = self._model.definition(Component("OCPPCommCtrlr"),
                                            Variable("HeartbeatInterval"))
        top = definition.characteristics.max_limit
        if top is not None and interval > top:
            log.warning("CSMS interval %d s is above HeartbeatInterval's maximum: using %d s",
                        interval, int(top))
            return int(top)
        return interval

    def _accepted(self, interval: int) -> None:
        self.registration = "Accepted"
        if interval > 0:
            # B01.FR.04: the interval of an Accepted response is the heartbeat interval.
            self._model.set_actual(Component("OCPPCommCtrlr"), Variable("HeartbeatInterval"),
                                   str(interval))
        settle_boot_reason(self._store, self.boot_reason)
        self._link.accepted.set()
        for callback in self.on_accepted:
            callback()

    def _take_time(self, text: str) -> None:
        try:
            utc = parse_datetime(text)
        except ValueError:
            log.warning("CSMS sent an unreadable currentTime %r", text)
            return
        if not EARLIEST + _REACH <= utc <= LATEST - _REACH:
            log.warning("CSMS sent currentTime %r, too near the end of time to run on: "
                        "keeping the station's own clock", text[:40])
            return
        shift = (utc - self._clock.now()).total_seconds()
        self._clock.set_time(utc)
        threshold = self._model.get_int("ClockCtrlr", "TimeAdjustmentReportingThreshold")
        if threshold > 0 and abs(shift) > threshold:
            for callback in self.on_time_set:
                callback(shift)

    # -- heartbeat ------------------------------------------------------------------

    def _on_variable(self, component: Any, variable: Any, attribute: str, value: str) -> None:
        if component.name == "OCPPCommCtrlr" and variable.name == "HeartbeatInterval":
            self._interval_changed.set()

    async def run_heartbeat(self) -> None:
        await self._link.accepted.wait()
        while True:
            self._interval_changed.clear()
            interval = self._model.get_int("OCPPCommCtrlr", "HeartbeatInterval")
            if interval <= 0:
                await self._sleep_or_change(3600)
                continue
            wait = self._link.last_call_sent + interval - self._clock.monotonic()
            if wait > 0:
                await self._sleep_or_change(wait)
                continue
            try:
                answer = await self._link.call("Heartbeat", {})
            except CallFailed as exc:
                log.info("Heartbeat failed: %s", exc)
                await self._clock.sleep(self._link.message_timeout())
                continue
            self._take_time(answer["currentTime"])

    async def _sleep_or_change(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        changed = asyncio.ensure_future(self._interval_changed.wait())
        try:
            await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            changed.cancel()

    # -- reset ----------------------------------------------------------------------

    async def _on_reset(self, request: Payload) -> Payload | Reply:
        kind, evse_id = request["type"], request.get("evseId")
        if evse_id is not None and evse_id != 0:
            if not self._model_has_evse(evse_id):
                return {"status": "Rejected",
                        "statusInfo": {"reasonCode": "UnknownEvse"}}
            if kind == "OnIdle" and not self._is_idle(evse_id):
                return {"status": "Scheduled"}
            return Reply({"status": "Accepted"}, lambda: self._do_evse_reset(evse_id))
        if kind == "OnIdle" and not self._is_idle(None):
            return {"status": "Scheduled"}
        # Persist first: a power cut between here and the restart still boots RemoteReset.
        self._store.set_meta(PENDING_BOOT_REASON, "RemoteReset")
        return Reply({"status": "Accepted"}, self._do_restart)

    def _model_has_evse(self, evse_id: int) -> bool:
        try:
            self._model.get_bool("EVSE", "Available", evse=evse_id)
        except KeyError:
            return False
        return True

    async def _do_restart(self) -> None:
        log.warning("Reset requested by the CSMS: restarting")
        self._restart()

    async def _do_evse_reset(self, evse_id: int) -> None:
        log.warning("Reset of EVSE %d requested by the CSMS", evse_id)
        await self._reset_evse(evse_id)


    # -- TriggerMessage (F06), for the remote control block ---------------------------------

    async def trigger_boot(self) -> None:
        """Send a BootNotification (reason Triggered) now, at the CSMS's request: a
        Pending station may be asked for one (B02). An Accepted answer registers the
        station as at boot. Once Accepted, the trigger is Rejected before this is called
        (F06.FR.17); while Rejected the CSMS cannot ask (B03.FR.08, errata 2023-12)."""
        answer = await self._link.call(
            "BootNotification",
            {"reason": "Triggered", "chargingStation": self._identity.payload()},
            before_accepted=True, wait=False)
        self._take_time(answer["currentTime"])
        status, interval = answer["status"], self._bounded(answer["interval"])
        log.info("triggered BootNotification: %s (interval %s s)", status, interval)
        if status == "Accepted":
            if self.registration != "Accepted":
                self._accepted(interval)
        else:
            self.registration = status

    async def trigger_heartbeat(self) -> None:
        """Send a Heartbeat now, at the CSMS's request (F06), registered or not; the
        answer sets the clock as any Heartbeat's does."""
        answer = await self._link.call("Heartbeat", {}, before_accepted=True, wait=False)
        self._take_time(answer["currentTime"])
