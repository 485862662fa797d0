"""Provisioning (block B): BootNotification, Heartbeat and Reset.

Registration (B01-B03): the station sends BootNotification on its first connection of a
run and again after the interval while the CSMS answers Pending or Rejected. Until
Accepted, only what the CSMS asked for may be sent (the Messenger holds the rest back);
while Rejected every CSMS call is answered with SecurityError (errata B03.FR.08).
Heartbeat (G02) is sent only when no other CALL went out for HeartbeatInterval: any
answered CALL proves the link as well, and cellular data is precious.
Reset (B11-B12) is reset.py's; this block builds it. Until the CSMS has accepted the
station, RequestStartTransaction is Rejected (B02, TC_B_02) and, unless
TxCtrlr.TxBeforeAcceptedEnabled, no new session is authorized (`BeforeAccepted`);
a station the CSMS accepted at its last answer counts as accepted while it restarts
offline.
The station's time comes from ClockCtrlr.TimeSource: Heartbeat (the CSMS's currentTime)
or NTP (the host's clock, while the kernel says it is synchronized), first usable wins.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Awaitable, Callable, Literal, Sequence

from agent.blocks.authorization import Decision
from agent.blocks.reset import PENDING_BOOT_REASON, Resets
from agent.clock import EARLIEST, LATEST, Clock, parse_datetime
from agent.model.types import Component, Variable
from agent.ocpp.connection import ConnectionManager
from agent.ocpp.session import CallFailed, Payload, Router
from agent.store import Store

log = logging.getLogger(__name__)

Registration = Literal["Unknown", "Pending", "Rejected", "Accepted"]

# Store key: "1" while the CSMS's last word on this station's registration was Accepted
# (kept across restarts; a Pending or Rejected answer clears it).
ACCEPTED_BEFORE = "provisioning.accepted_before"
# Store keys that carry the boot reason across a restart.
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
    """Wall-clock time the OS booted, or None where that cannot be known.

    From the clock, not from /proc/stat's btime: the shipped unit has ProcSubset=pid,
    under which /proc/stat does not exist, and without the boot time every restart after
    a power cut was reported as ApplicationReset instead of PowerUp (seen on a real cut:
    tests/vm/install_cuts.py). CLOCK_BOOTTIME counts the time since boot, suspend
    included, and needs no file. /proc/stat stays as the fallback for a platform
    without it."""
    try:
        return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        pass
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
                 is_idle: Callable[[int | None], bool], evse_ids: Sequence[int],
                 host_time_synced: Callable[[], bool] | None = None) -> None:
        self._link = link
        self._model = model
        self._clock = clock
        # Told when the CSMS moved the station's time by more than
        # ClockCtrlr.TimeAdjustmentReportingThreshold (security event SettingSystemTime).
        self.on_time_set: list[Callable[[float], None]] = []
        self._store = store
        self._identity = identity
        self.boot_reason = boot_reason
        self._host_time_synced = host_time_synced or ntp_synchronized
        self.registration: Registration = "Unknown"
        self._interval_changed = asyncio.Event()
        self.on_accepted: list[Callable[[], None]] = []
        router.gate = self._gate
        self.reset = Resets(router=router, store=store, clock=clock,
                            evse_ids=lambda: list(evse_ids), restart=restart,
                            reset_evse=reset_evse, is_idle=is_idle,
                            message_timeout=link.message_timeout)
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
            self._not_accepted(status)
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
        if self._store.get_meta(ACCEPTED_BEFORE) != "1":
            self._store.set_meta(ACCEPTED_BEFORE, "1")
        self._link.accepted.set()
        for callback in self.on_accepted:
            callback()

    def _time_from_csms(self) -> bool:
        """ClockCtrlr.TimeSource, in its order of preference: the first source usable
        now decides. NTP is usable while the kernel says the host clock is synchronized
        (then the CSMS's time is not taken: the host's is better); Heartbeat always is."""
        for source in self._model.get_list("ClockCtrlr", "TimeSource"):
            if source == "Heartbeat":
                return True
            if source == "NTP" and self._host_time_synced():
                return False
        return True   # no listed source usable: the CSMS's time beats none

    def _take_time(self, text: str) -> None:
        if not self._time_from_csms():
            log.debug("TimeSource: the host's synchronized clock, not the CSMS's %s", text[:40])
            return
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

    # -- before Accepted (B02, B03) --------------------------------------------------

    def refuse_until_accepted(self, router: Router, action: str) -> None:
        """Answer `action` (RequestStartTransaction) Rejected until the CSMS has accepted
        the station (TC_B_02 step 12): its handler, registered by its own block, is
        consulted only once registered."""
        route = router.routes[action]

        async def guarded(request: Payload) -> Any:
            if self.registration != "Accepted":
                return {"status": "Rejected", "statusInfo": {"reasonCode": "NotAccepted"}}
            return await route.handler(request)
        router.routes[action] = dataclasses.replace(route, handler=guarded)

    def _not_accepted(self, status: Registration) -> None:
        self.registration = status
        self._store.set_meta(ACCEPTED_BEFORE, "0")

    def tx_allowed(self) -> bool:
        """Whether a new session may start now: the CSMS has accepted the station (in
        this run, or, while it has not answered yet, at its last answer: a station that
        restarts during an outage is still the one the CSMS accepted), or
        TxBeforeAcceptedEnabled. A station never accepted, or answered Pending or
        Rejected, is not."""
        if self.registration == "Accepted" or (
                self.registration == "Unknown"
                and self._store.get_meta(ACCEPTED_BEFORE) == "1"):
            return True
        return self._model.get_bool("TxCtrlr", "TxBeforeAcceptedEnabled")

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
            self._not_accepted(status)

    async def trigger_heartbeat(self) -> None:
        """Send a Heartbeat now, at the CSMS's request (F06), registered or not; the
        answer sets the clock as any Heartbeat's does."""
        answer = await self._link.call("Heartbeat", {}, before_accepted=True, wait=False)
        self._take_time(answer["currentTime"])


class BeforeAccepted:
    """The authorization the transactions block asks, gated by registration: until the
    CSMS has accepted the station (Provisioning.tx_allowed), a token is
    NotAtThisTime for a new session unless TxCtrlr.TxBeforeAcceptedEnabled (appendix 3:
    "allow charging before having received a BootNotificationResponse with
    RegistrationStatus: Accepted"). Without authorization no energy is offered. A token
    presented at an EVSE whose transaction runs (to stop it) is asked as usual."""

    def __init__(self, inner: Any, provisioning: Provisioning,
                 busy: Callable[[int], bool]) -> None:
        self._inner = inner
        self._provisioning = provisioning
        self._busy = busy

    async def authorize(self, id_token: Payload, *, evse_id: int | None = None) -> Decision:
        if self._provisioning.tx_allowed() or (evse_id is not None and self._busy(evse_id)):
            return await self._inner.authorize(id_token, evse_id=evse_id)
        log.info("token %s refused: not accepted by the CSMS yet (TxBeforeAcceptedEnabled "
                 "is false)", id_token.get("idToken"))
        return Decision({"status": "NotAtThisTime"}, offline=True)

    def without_token(self) -> dict[str, str] | None:
        """A session with no token at all (AuthCtrlr.Enabled false) is a new session too."""
        return self._inner.without_token() if self._provisioning.tx_allowed() else None

    def __getattr__(self, name: str) -> Any:
        # Everything else (groups, master pass, the cache) is the authorization's own.
        return getattr(self._inner, name)


# adjtimex(2) answers TIME_ERROR (5) while the kernel's clock is not synchronized (no
# NTP daemon disciplining it). struct timex is 208 bytes on 64-bit Linux; 512 is ample.
_TIME_ERROR = 5
_TIMEX_BYTES = 512


def ntp_synchronized() -> bool:
    """Whether the host clock is synchronized by an NTP client (Linux adjtimex, read
    only, no privilege needed); False where that cannot be asked."""
    import ctypes          # here: only a station that lists NTP ever loads it
    try:
        libc = ctypes.CDLL(None, use_errno=True)   # the process's own symbols: libc
        buffer = ctypes.create_string_buffer(_TIMEX_BYTES)   # modes = 0: only read
        state = libc.adjtimex(buffer)
    except (OSError, AttributeError):
        return False
    return 0 <= state < _TIME_ERROR
