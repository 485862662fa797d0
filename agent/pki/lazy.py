"""The certificate store, opened on first real use.

Opening the store (agent/pki/certstore.py) parses every installed certificate with
cryptography, whose import costs about 8 MB of resident memory (its Rust core and the
OpenSSL in it). A station that has no certificate installed over OCPP (security profile
1, or 2 with the CSMS root in the config's ca_file) needs none of it: until something is
on disk, the questions the daemon asks at start-up (how many certificates, the station
certificate's expiry, the CSMS roots for TLS) are answered from the directory listing,
and anything else opens the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from agent.pki.pem import der_fingerprint
from agent.pki.withdrawn import WITHDRAWN_DIR, WithdrawnRoots

if TYPE_CHECKING:
    from agent.pki.certstore import CertificateStore

# The store's layout, shared with certstore.py: one directory per root type (the
# InstallCertificateUseEnumType values, M05), and one for the station's own pair
# (station/current) and the key of a pending CSR.
ROOT_TYPES = ("CSMSRootCertificate", "ManufacturerRootCertificate", "V2GRootCertificate",
              "MORootCertificate")
STATION_DIR = "station"


class LazyCertificateStore:
    """A CertificateStore that exists only once it is needed (see the module's doc)."""

    def __init__(self, directory: Path) -> None:
        self._dir = Path(directory)
        self._store: CertificateStore | None = None
        self._withdrawn = WithdrawnRoots(self._dir / WITHDRAWN_DIR)

    @property
    def opened(self) -> bool:
        return self._store is not None

    def open(self) -> CertificateStore:
        if self._store is None:
            from agent.pki.certstore import CertificateStore   # cryptography: see above
            self._store = CertificateStore(self._dir)
        return self._store

    def _empty(self) -> bool:
        """Nothing installed: no root file, no station pair, no pending key. Stray
        temporary files do not count (the store removes them when it opens), nor do
        withdrawals of config roots (read here without the store)."""
        if self._store is not None:
            return False
        for use in ROOT_TYPES:
            if any((self._dir / use).glob("*.pem")):
                return False
        station = self._dir / STATION_DIR
        return not (station.exists() and any(p for p in station.iterdir()
                                              if not p.name.startswith(".")))

    # -- what start-up asks; an empty store answers without cryptography -----------------

    def count(self, configured: Sequence[str] = ()) -> int:
        if not self._empty():
            return self.open().count(configured)
        return len({fp for fp in map(der_fingerprint, configured) if fp is not None})

    def withdrawn_roots(self) -> frozenset[str]:
        return self._withdrawn.fingerprints()

    def station_certificate_expiry(self) -> Any:
        return None if self._empty() else self.open().station_certificate_expiry()

    def station_credentials(self) -> tuple[Path, Path] | None:
        return None if self._empty() else self.open().station_credentials()

    def csms_roots_pem(self) -> str:
        return "" if self._empty() else self.open().csms_roots_pem()

    def roots_pem(self, use: str) -> list[str]:
        return [] if self._empty() else self.open().roots_pem(use)

    def __getattr__(self, name: str) -> Any:
        # Everything else (InstallCertificate, CSRs, ...) is real work for the real store.
        return getattr(self.open(), name)
