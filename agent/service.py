"""Telling systemd how the service is: READY=1, STATUS=, WATCHDOG=1, STOPPING=1, RELOADING=1.

Under `Type=notify` systemd waits for READY=1 before it calls the unit started, shows the
last STATUS= line in `systemctl status`, and with `WatchdogSec=` kills and restarts the
service when WATCHDOG=1 stops coming. The pings come from a task on the agent's own event
loop, so a loop that is blocked (or a process that is stopped) stops them: that is the
point. Outside systemd (no NOTIFY_SOCKET) every call here does nothing.

The status line is pushed when the station's state changes (the daemon calls changed()
on connect, disconnect and each transaction's start and end), not polled: an idle agent
under the shipped unit (WatchdogSec=30s) wakes once every 15 s to send WATCHDOG=1, and
without a watchdog not at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sdnotify

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class StationState:
    """What the one-line STATUS= says."""
    connected: bool
    active_transactions: int

    def line(self) -> str:
        link = "connected to the CSMS" if self.connected else "offline"
        count = self.active_transactions
        return f"{link}, {count} active transaction{'' if count == 1 else 's'}"


def watchdog_period(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of WatchdogSec (systemd's advice), or None when no watchdog is asked of us.

    WATCHDOG_PID, when set, names the process the watchdog is for; a child that inherited
    the environment must not ping on the parent's behalf.
    """
    usec = environ.get("WATCHDOG_USEC")
    owner = environ.get("WATCHDOG_PID")
    if not usec or (owner and owner != str(pid)):
        return None
    try:
        period = int(usec) / 2_000_000
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a number of microseconds", usec)
        return None
    return period if period > 0 else None


class ServiceNotifier:
    """sd_notify for the daemon; a no-op when systemd did not ask for it."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.enabled = bool(environ.get("NOTIFY_SOCKET"))
        self.watchdog_s = watchdog_period(environ, os.getpid()) if self.enabled else None
        # sdnotify reads NOTIFY_SOCKET itself and never raises (debug=False): a systemd
        # that went away must not take the charger down with it.
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        self._status: str | None = None
        self._changed = asyncio.Event()

    def send(self, *fields: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(fields))

    def ready(self, state: StationState) -> None:
        self._status = state.line()
        self.send("READY=1", f"STATUS={self._status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def reexecuting(self) -> None:
        """The process is about to exec itself (after a firmware install), keeping its
        PID. Not STOPPING=1: systemd would then wait TimeoutStopSec for the PID to exit
        and SIGKILL the new agent (seen on a real kernel: tests/vm/install_cuts.py).
        RELOADING=1 says "back shortly"; the new process's READY=1 ends it."""
        self.send("RELOADING=1", "STATUS=restarting into the installed firmware")

    def status(self, state: StationState) -> None:
        line = state.line()
        if line != self._status:
            self._status = line
            self.send(f"STATUS={line}")

    def changed(self) -> None:
        """The state the status line shows may have changed: say it now."""
        self._changed.set()

    async def run(self, state: Callable[[], StationState]) -> None:
        """Ping the watchdog every half WatchdogSec, and send the status line when it
        changes, until cancelled.

        Real time on purpose: systemd's watchdog counts wall-clock seconds, not the
        agent's (injectable) clock.
        """
        if not self.enabled:
            return
        loop = asyncio.get_running_loop()
        pinged = None
        while True:
            self._changed.clear()
            self.status(state())
            if self.watchdog_s is not None and (
                    pinged is None or loop.time() - pinged >= self.watchdog_s / 2):
                self.send("WATCHDOG=1")
                pinged = loop.time()
            wait = None if self.watchdog_s is None else pinged + self.watchdog_s - loop.time()
            try:
                await asyncio.wait_for(self._changed.wait(), wait)
            except asyncio.TimeoutError:
                pass
