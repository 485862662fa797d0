"""The control pilot's PWM through the Linux sysfs PWM interface.

/sys/class/pwm/pwmchipN/export creates pwmchipN/pwmM with `period`, `duty_cycle` (both in
ns) and `enable`. IEC 61851-1 fixes the pilot at 1 kHz, so the period is always 1 ms and
only the duty moves. The root directory is a setting so tests use a temp dir.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PERIOD_NS = 1_000_000  # 1 kHz


@dataclass(frozen=True)
class SysfsPwm:
    root: Path
    chip: int
    channel: int
    inverted: bool = False  # the CP driver stage inverts: we write the complement

    @property
    def chip_dir(self) -> Path:
        return self.root / f"pwmchip{self.chip}"

    @property
    def channel_dir(self) -> Path:
        return self.chip_dir / f"pwm{self.channel}"

    def open(self, percent: float) -> None:
        """Export the channel if needed and run it at `percent`; OSError says what failed."""
        if not self.channel_dir.exists():
            self._write(self.chip_dir / "export", str(self.channel))
            if not self.channel_dir.exists():
                raise OSError(f"{self.channel_dir} did not appear after export")
        # A duty longer than the period is refused, whatever the order: make it 0 first,
        # which every period allows, then set the period, then the duty we want.
        self._write(self.channel_dir / "duty_cycle", "0")
        self._write(self.channel_dir / "period", str(PERIOD_NS))
        self.set_duty(percent)
        self._write(self.channel_dir / "enable", "1")

    def set_duty(self, percent: float) -> None:
        ns = duty_ns(percent)
        self._write(self.channel_dir / "duty_cycle", str(PERIOD_NS - ns if self.inverted else ns))

    @staticmethod
    def _write(path: Path, text: str) -> None:
        # sysfs takes one value per write(): the text goes out whole when the file closes.
        with open(path, "w") as f:
            f.write(text)


def duty_ns(percent: float) -> int:
    return round(PERIOD_NS * min(max(percent, 0.0), 100.0) / 100.0)
