"""The mock station's firmware installer: the whole update flow runs on a laptop.

A mock image is a text file whose first line is `station-agent mock firmware <version>`;
"installing" it records the version under the state directory, and from the next start
that is the version the station reports. An image with a line `fail-install` fails, as a
broken image would; anything else is not a mock image and fails too.
"""

from __future__ import annotations

from pathlib import Path

from hal.api import FirmwareInstaller, InstallOutcome
from hal.durable import replace_durably

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
        try:
            # Durable before Installed is reported: a cut right after must not bring the
            # old version back while the CSMS was told the new one is installed.
            replace_durably(self._file, version + "\n")
        except OSError as exc:
            return InstallOutcome(False, f"mock installer: cannot record the version: "
                                         f"{exc.strerror or exc}")
        return InstallOutcome(True, f"mock installer: version {version} installed")

    def running_version(self) -> str | None:
        try:
            return self._file.read_text().strip() or None
        except OSError:
            return None
