"""What the station trusts and what it proves itself with, from two sources.

The config file's [csms] table names files an installer put there (ca_file, cert_file,
key_file); the certificate store holds what the CSMS installed over OCPP
(InstallCertificate, CertificateSigned). Both count: the CSMS roots are the union, and a
station certificate from the CSMS wins over the installer's, since it is the newer and
the one the CSMS knows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from agent.config import CsmsConfig
from agent.ocpp.tls import TlsSettings

log = logging.getLogger(__name__)


class CertificateSource(Protocol):
    def csms_roots_pem(self) -> str: ...
    def station_credentials(self) -> tuple[Path, Path] | None: ...


class StationTrust:
    def __init__(self, csms: CsmsConfig, certificates: CertificateSource | None) -> None:
        self._csms = csms
        self._certificates = certificates

    def csms_roots_pem(self) -> str:
        parts = []
        if self._csms.ca_file is not None:
            try:
                parts.append(self._csms.ca_file.read_text())
            except (OSError, UnicodeDecodeError) as exc:
                log.error("csms.ca_file %s cannot be read: %s", self._csms.ca_file, exc)
        if self._certificates is not None:
            parts.append(self._certificates.csms_roots_pem())
        return "\n".join(p.strip() for p in parts if p.strip())

    def client_certificate(self) -> tuple[Path, Path] | None:
        if self._certificates is not None:
            installed = self._certificates.station_credentials()
            if installed is not None:
                return installed
        if self._csms.cert_file is not None and self._csms.key_file is not None:
            return self._csms.cert_file, self._csms.key_file
        return None

    def has_csms_root(self) -> bool:
        return "BEGIN CERTIFICATE" in self.csms_roots_pem()

    def has_station_certificate(self) -> bool:
        return self.client_certificate() is not None

    def tls(self, security_profile: int) -> TlsSettings:
        client = self.client_certificate() if security_profile == 3 else None
        return TlsSettings(self.csms_roots_pem(), client)
