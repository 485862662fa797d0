"""Runs the real agent process (`python -m agent run`) against the test CSMS."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

PASSWORD = "s3cret-password-0001"


def write_config(directory: Path, csms_url: str, *, station_id: str = "CS-TEST",
                 evses: int = 1, password: str | None = PASSWORD, extra: str = "") -> Path:
    evse_tables = "".join(
        f"\n[[evse]]\nid = {i}\nmax_current_a = 32\nphases = 3\nnominal_voltage_v = 230\n"
        for i in range(1, evses + 1))
    password_line = f'password = "{password}"\n' if password else ""
    text = (f'[station]\nid = "{station_id}"\nvendor = "Example"\nmodel = "AC-22"\n'
            f'serial_number = "0001"\n\n'
            f'[csms]\nurl = "{csms_url}"\nsecurity_profile = 1\n{password_line}\n'
            f'[storage]\ndir = "state"\n\n[hal]\ndriver = "mock"\n{evse_tables}{extra}')
    path = directory / "station-agent.toml"
    path.write_text(text)
    return path


class AgentProcess:
    """One run of the daemon; its stderr goes to a file the test can read."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = env or {}
        self.log_path = config.parent / "agent.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> "AgentProcess":
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        log = open(self.log_path, "ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--config", str(self.config),
            stdout=log, stderr=log, env=env, cwd=str(Path(__file__).parent.parent))
        log.close()
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 5) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def __aenter__(self) -> "AgentProcess":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.kill()


async def until_logged(caplog: Any, text: str, timeout: float = 5) -> None:
    """Until an in-process agent has logged a record containing `text` (caplog must be
    set to the record's level): for waiting on real I/O whose end arms a timer of the
    injectable clock, such as a failed attempt before its retry interval."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not any(text in r.getMessage() for r in caplog.records):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"nothing logged with {text!r} within {timeout} s")
        await asyncio.sleep(0.01)


async def quiesce(timeout: float = 10.0) -> bool:
    """Until everything in this event loop has done what it would do now: no callback
    ready, no socket with data or a pending write, no executor job running, a few turns
    in a row. For the in-process agent and CSMS, which share the loop: loopback delivers
    a send into the peer's socket buffer at once, so "nothing ready anywhere" means the
    round trips under way have finished — however slow a loaded machine is, and without
    guessing a real-time pause. False if it did not go quiet within `timeout` (something
    spins: a busy loop is a bug of its own)."""
    loop = asyncio.get_running_loop()
    busy = _executor_jobs(loop)
    deadline = loop.time() + timeout
    quiet_turns = 0
    while quiet_turns < 3:
        await asyncio.sleep(0)
        # Our own wake-up has been taken off the ready queue: what is left is other work.
        selector = loop._selector  # type: ignore[attr-defined]
        if loop._ready or busy() or selector.select(0):  # type: ignore[attr-defined]
            quiet_turns = 0
            if loop.time() > deadline:
                return False
            if busy():
                await asyncio.sleep(0.001)   # a thread is at work: let it run
        else:
            quiet_turns += 1
    return True


def _executor_jobs(loop: asyncio.AbstractEventLoop) -> Any:
    """A count of run_in_executor jobs not finished (asyncio.to_thread goes through it),
    installed once per loop."""
    counter = getattr(loop, "_harness_jobs", None)
    if counter is None:
        counter = [0]
        original = loop.run_in_executor

        def counting(executor: Any, func: Any, *args: Any) -> Any:
            future = original(executor, func, *args)
            counter[0] += 1
            future.add_done_callback(lambda _: counter.__setitem__(0, counter[0] - 1))
            return future

        loop.run_in_executor = counting  # type: ignore[method-assign]
        loop._harness_jobs = counter  # type: ignore[attr-defined]
    return lambda: counter[0] > 0


class InProcessAgent:
    """The daemon's own code (run_daemon) in the test's event loop on a ManualClock, so
    time moves only when the test says. "reexec" (after a firmware install) starts it
    again, as the process's exec would; `outcomes` lists how each run ended."""

    def __init__(self, config_path: Path, clock: Any = None) -> None:
        from agent.clock import ManualClock
        from agent.config import load_config
        self.config = load_config(config_path)
        self.clock = clock or ManualClock()
        self.stop_event = asyncio.Event()
        self.outcomes: list[str] = []
        self.task: asyncio.Future[None] | None = None

    async def _loop(self) -> None:
        from agent.daemon import run_daemon
        while True:
            outcome = await run_daemon(self.config, self.stop_event, clock=self.clock)
            self.outcomes.append(outcome)
            if outcome != "reexec":
                return

    async def __aenter__(self) -> "InProcessAgent":
        self.task = asyncio.ensure_future(self._loop())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.stop_event.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)

    async def advance(self, seconds: float) -> None:
        """Move the clock once answers already on their way have arrived (a jump past
        MessageTimeout would fail a round trip still under way), then let the agent and
        the CSMS act on it until both are quiet."""
        assert await quiesce(), "the agent never went quiet: a busy loop?"
        await self.clock.advance(seconds)
        assert await quiesce(), "the agent never went quiet: a busy loop?"

    async def sim(self, command: str, evse: int | None = None, **fields: Any) -> dict[str, Any]:
        """`station-agent sim COMMAND [EVSE]` through the control socket; the reply.
        `fields`: the command's other request fields (e.g. watts=...)."""
        from agent import sim
        from agent.control import socket_path
        request: dict[str, Any] = {"command": command, **fields}
        if evse is not None:
            request["evse"] = evse
        reply = await asyncio.to_thread(sim.send, socket_path(self.config.storage.dir), request)
        assert reply["ok"], reply
        return reply


def close_stores(stores: list[Any]) -> None:
    """Close every store a test opened, also those a failing test left half-used."""
    for store in stores:
        try:
            store.close()
        except Exception:  # noqa: BLE001 - closing is best effort at teardown
            pass


async def until_registered(link: Any, timeout: float = 10) -> None:
    """Until the station's BootNotification on `link` has been answered and the answer
    taken in (in-process agent): a CSMS request before that is refused by a station not
    yet Accepted (B02/B03), so a test that means "registered" waits here first."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not link.calls("BootNotification"):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no BootNotification within {timeout} s")
        await asyncio.sleep(0.01)
    assert await quiesce(), "the agent did not go quiet after its BootNotification"
