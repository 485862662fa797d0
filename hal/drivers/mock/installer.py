"""The mock station's firmware installer: the whole update flow runs on a laptop.

A mock image is a text file whose first line is `station-agent mock firmware <version>`;
"installing" it records the version under the state directory, and from the next start
that is the version the station reports. An image with a line `fail-install` fails, as a
broken image would; anything else is not a mock image and fails too.
"""

from __future__ import annotations

import os
from pathlib import Path

from hal.api import FirmwareInstaller, InstallOutcome

MAGIC = "station-agent mock firmware "
VERSION_FILE = "mock-firmware-version"


def mock_image(version: str, *, fail: bool = False, padding: int = 0) -> bytes:
    """The bytes of a mock image (for tests and the demo)."""
    body = MAGIC + version + "\n" + ("fail-install\n" if fail else "")
    return body.encode() + b"\0" * padding


class MockInstaller(FirmwareInstaller):
    def __init__(self, state_dir: Path) -> None:
        self._file = Path(state_dir) / VERSION_FILE

    async def install(self, image: Path) -> InstallOutcome:
        try:
            with open(image, "rb") as f:
                head = f.read(4096)
        except OSError as exc:
            return InstallOutcome(False, f"cannot read {image.name}: {exc.strerror or exc}")
        lines = head.split(b"\0", 1)[0].decode("utf-8", "replace").splitlines()
        if not lines or not lines[0].startswith(MAGIC):
            return InstallOutcome(False, f"{image.name} is not a mock firmware image")
        if "fail-install" in lines[1:]:
            return InstallOutcome(False, "mock installer: the image asks to fail")
        version = lines[0][len(MAGIC):].strip()[:50]
        self._file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._file)
        return InstallOutcome(True, f"mock installer: version {version} installed")

    def running_version(self) -> str | None:
        try:
            return self._file.read_text().strip() or None
        except OSError:
            return None
