"""The mock meter's energy register on disk: a real meter keeps its register through a
power cut, so the mock keeps it through `kill -9` and restarts.

A real meter writes its register to its own non-volatile memory when it sees its supply
fail; the simulated one cannot see a `kill -9` coming, so it writes *ahead*: a new value
is on disk before anyone can read it (`SimulatedEv.energy_wh`). Whatever the agent
reported, it read after the write, so after any restart the register is at least that.

How often: only when the register has moved since the last write, and only when it is
read, so at most once per meter poll (1 s) of a charging EVSE and never while idle. Each
write is ~20 bytes, a temporary file fsynced and `os.replace`d, then the directory fsynced:
never a half-written register, and a real power cut of the machine (tests/vm) keeps it as
surely as `kill -9` does. One fsync a second while charging is nothing for a laptop or a
test VM. On a real station none of this runs: the meter keeps its register, the agent
writes nothing per second.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from hal.durable import replace_durably

log = logging.getLogger(__name__)


class RegisterFile:
    """One EVSE meter's import register (Wh). `path` None: kept in memory only (tests)."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._saved: float | None = None
        self._broken = False

    def load(self) -> float:
        """The register as last written; 0 for a meter never used (no file yet)."""
        self._saved = self._read()
        return self._saved

    def _read(self) -> float:
        if self.path is None:
            return 0.0
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return 0.0
        except OSError as exc:
            log.warning("mock meter register %s unreadable (%s): starting at 0 Wh",
                        self.path, exc.strerror or exc)
            return 0.0
        try:
            value = float(text.strip())
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            log.warning("mock meter register %s holds %r, not a register: starting at 0 Wh",
                        self.path, text[:40])
            return 0.0
        return value

    def save(self, wh: float) -> None:
        """Write `wh` unless it is what is on disk. Never raises: a register that cannot be
        written is logged once and the meter goes on (it only loses its memory)."""
        if self.path is None or wh == self._saved:
            return
        try:
            # repr: the float read back is the same
            replace_durably(self.path, repr(float(wh)) + "\n")
        except OSError as exc:
            if not self._broken:
                log.warning("mock meter register %s cannot be written (%s): it will not "
                            "survive a restart", self.path, exc.strerror or exc)
            self._broken = True
            return
        self._broken = False
        self._saved = wh
