"""What the station trusts and what it proves itself with, from two sources.

The config file's [csms] table names files an installer put there (ca_file, cert_file,
key_file); the certificate store holds what the CSMS installed over OCPP
(InstallCertificate, CertificateSigned). Both count: the CSMS roots are the union, and a
station certificate from the CSMS wins over the installer's, since it is the newer and
the one the CSMS knows.

The CSMS sees the config's roots too (GetInstalledCertificateIds) and may delete them
(DeleteCertificate): the store then records a withdrawal by fingerprint
(agent/pki/withdrawn.py), and a withdrawn root is left out of trust from then on, while
the config file stays as the installer wrote it. Read with the standard library only, so
a station with nothing installed never imports cryptography for this (agent/pki/lazy.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from agent.config import CsmsConfig
from agent.ocpp.tls import TlsSettings
from agent.pki.pem import der_fingerprint, pem_blocks

log = logging.getLogger(__name__)


class CertificateSource(Protocol):
    def csms_roots_pem(self) -> str: ...
    def station_credentials(self) -> tuple[Path, Path] | None: ...
    def withdrawn_roots(self) -> frozenset[str]: ...


class StationTrust:
    def __init__(self, csms: CsmsConfig, certificates: CertificateSource | None) -> None:
        self._csms = csms
        self._certificates = certificates

    def configured_roots(self) -> list[str]:
        """The CSMS roots of the config's ca_file still trusted: its PEM certificate
        blocks, each once, without those the CSMS withdrew; read afresh at every call,
        so an installer's new file counts from the next connection on."""
        if self._csms.ca_file is None:
            return []
        try:
            text = self._csms.ca_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            log.error("csms.ca_file %s cannot be read: %s", self._csms.ca_file, exc)
            return []
        withdrawn = (self._certificates.withdrawn_roots() if self._certificates is not None
                     else frozenset())
        roots, seen = [], set()
        for block in pem_blocks(text):
            fp = der_fingerprint(block)
            if fp is None:
                log.error("csms.ca_file %s: a certificate block is not valid base64: "
                          "ignored", self._csms.ca_file)
            elif fp not in withdrawn and fp not in seen:
                seen.add(fp)
                roots.append(block)
        return roots

    def csms_roots_pem(self) -> str:
        parts = list(self.configured_roots())
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
