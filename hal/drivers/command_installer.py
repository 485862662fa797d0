"""Firmware installer that runs a command from the config, e.g.

    install_command = "apt-get install -y --allow-downgrades {file}"
    install_command = "rauc install {file}"

`{file}` is replaced by the image's path as one argument (the command is split like a
shell would, but no shell runs it: nothing in a file name can inject a command). Exit
status 0 is success. A command that outlives `timeout_s` is killed and counts as failed.

`version_command` (optional) prints the running firmware version on its first line; it
lets an A/B updater's version be the one reported, where the agent's own version would
not change with an update of the rest of the system.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import subprocess
from pathlib import Path

from hal.api import FirmwareInstaller, HalConfigError, InstallOutcome

log = logging.getLogger(__name__)

PLACEHOLDER = "{file}"
OUTPUT_TAIL = 300     # characters of the installer's output kept for the operator
VERSION_TIMEOUT_S = 10.0


def split_command(command: str, key: str) -> list[str]:
    """The argv of a configured command; HalConfigError naming `key` when it is unusable."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise HalConfigError(key, f"cannot be split into arguments: {exc}") from None
    if not argv:
        raise HalConfigError(key, "is empty")
    return argv


class CommandInstaller(FirmwareInstaller):
    def __init__(self, install_command: str, version_command: str | None = None,
                 timeout_s: float = 1800.0) -> None:
        self._argv = split_command(install_command, "install_command")
        if not any(PLACEHOLDER in arg for arg in self._argv):
            raise HalConfigError("install_command", f"must name the image as {PLACEHOLDER}")
        self._version_argv = (split_command(version_command, "version_command")
                              if version_command else None)
        self._timeout_s = timeout_s

    async def install(self, image: Path) -> InstallOutcome:
        argv = [arg.replace(PLACEHOLDER, str(image)) for arg in self._argv]
        log.info("installing firmware: %s", shlex.join(argv))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            return InstallOutcome(False, f"cannot run {argv[0]}: {exc.strerror or exc}")
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), self._timeout_s)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return InstallOutcome(False, f"{argv[0]} did not finish within {self._timeout_s:g} s")
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise
        tail = _tail(output)
        if proc.returncode != 0:
            return InstallOutcome(False, f"{argv[0]} exited with status {proc.returncode}: {tail}")
        return InstallOutcome(True, tail or f"{argv[0]} succeeded")

    def running_version(self) -> str | None:
        if self._version_argv is None:
            return None
        try:
            done = subprocess.run(self._version_argv, capture_output=True, text=True,
                                  timeout=VERSION_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("version_command failed: %s", exc)
            return None
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            log.warning("version_command exited with %s and printed no version", done.returncode)
            return None
        return lines[0].strip()[:50]   # BootNotification firmwareVersion: string(50)


def _tail(output: bytes) -> str:
    text = " ".join(output.decode("utf-8", "replace").split())
    return text if len(text) <= OUTPUT_TAIL else "..." + text[-OUTPUT_TAIL:]
