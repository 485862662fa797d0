"""One firmware update as it stands, persisted so a power cut at any step resumes or ends
it cleanly (never a half-installed station that reports Installed).

The record lives in the store's meta table as JSON under one key; every change of stage
is committed together with the FirmwareStatusNotification that reports it (the outbox is
in the same database), so what the CSMS hears and what the station will do after a
restart never disagree.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from agent.clock import format_datetime, parse_datetime

log = logging.getLogger(__name__)

META_KEY = "firmware.job"

# Stages of a job (FirmwareStatusEnumType values where the stage is one a status names).
ACCEPTED = "Accepted"                  # answered, nothing done yet
DOWNLOAD_SCHEDULED = "DownloadScheduled"
DOWNLOADING = "Downloading"
DOWNLOADED = "Downloaded"
SIGNATURE_VERIFIED = "SignatureVerified"
INSTALL_SCHEDULED = "InstallScheduled"
INSTALLING = "Installing"
INSTALL_REBOOTING = "InstallRebooting"

# From here on the image is being (or has been) handed to the installer: the job cannot
# be cancelled, and a restart decides the outcome by the version that runs.
INSTALL_STAGES = (INSTALLING, INSTALL_REBOOTING)
# Default retries when UpdateFirmware does not say (the station decides, L01 note).
DEFAULT_RETRIES = 3
DEFAULT_RETRY_INTERVAL_S = 60
# A CSMS asking for more retries gets this many (as GetLog's do): retries 2147483647
# with retryInterval 0 would otherwise have the station hammer the file server for ever.
MAX_RETRIES = 100


@dataclass(frozen=True)
class FirmwareJob:
    request_id: int
    location: str
    retrieve_at: datetime
    install_at: datetime | None
    signing_certificate: str
    signature: str
    retries: int
    retry_interval_s: int
    old_version: str            # the version running when the update was accepted
    stage: str = ACCEPTED
    file_name: str = "firmware.bin"

    @classmethod
    def from_request(cls, request: dict[str, Any], old_version: str) -> "FirmwareJob":
        firmware = request["firmware"]
        install = firmware.get("installDateTime")
        return cls(
            request_id=request["requestId"], location=firmware["location"],
            retrieve_at=parse_datetime(firmware["retrieveDateTime"], clamp=True),
            install_at=parse_datetime(install, clamp=True) if install else None,
            signing_certificate=firmware.get("signingCertificate", ""),
            signature=firmware.get("signature", ""),
            retries=min(MAX_RETRIES, max(0, request.get("retries", DEFAULT_RETRIES))),
            retry_interval_s=max(0, request.get("retryInterval", DEFAULT_RETRY_INTERVAL_S)),
            old_version=old_version, file_name=file_name_of(firmware["location"]))

    def at(self, stage: str) -> "FirmwareJob":
        return replace(self, stage=stage)

    def to_json(self) -> str:
        data = asdict(self)
        data["retrieve_at"] = format_datetime(self.retrieve_at)
        data["install_at"] = format_datetime(self.install_at) if self.install_at else None
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> "FirmwareJob":
        data = json.loads(text)
        data["retrieve_at"] = parse_datetime(data["retrieve_at"])
        if data["install_at"] is not None:
            data["install_at"] = parse_datetime(data["install_at"])
        return cls(**data)


def load(text: str | None) -> FirmwareJob | None:
    """The persisted job, or None; a record this version cannot read is dropped (logged)."""
    if not text:
        return None
    try:
        return FirmwareJob.from_json(text)
    except (ValueError, TypeError, KeyError) as exc:
        log.error("dropping an unreadable firmware update record: %s", exc)
        return None


def file_name_of(location: str) -> str:
    """The image's file name from its URL, reduced to safe characters: installers go by
    the suffix (apt-get wants .deb), and a name from the CSMS must not escape the
    download directory."""
    name = unquote(urlsplit(location).path.rsplit("/", 1)[-1])
    safe = "".join(ch if ch.isalnum() or ch in "._-+~" else "_" for ch in name).lstrip(".")
    return safe[:100] or "firmware.bin"
