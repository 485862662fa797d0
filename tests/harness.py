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

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log_path = config.parent / "agent.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> "AgentProcess":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
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
