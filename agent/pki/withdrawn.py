"""CSMS roots from the config's csms.ca_file that the CSMS deleted (DeleteCertificate, M04).

The config file is the installer's, and the agent never writes it; so deleting a root
that came from it records a withdrawal instead, one file per certificate in the store's
directory:

    <storage.dir>/certs/withdrawn/<sha256 of DER>.pem     0600, the withdrawn root

A withdrawal is by fingerprint: the same certificate stays out of trust and out of
GetInstalledCertificateIds for good (restarts and power cuts included: the file is written
atomically and fsynced), while a different certificate an installer later puts in ca_file
is trusted as usual. The PEM inside is for the operator (`openssl x509 -in ...`); only
the name counts. Removing the file by hand trusts that root again from the next start of
a connection.

Standard library only: agent/pki/lazy.py answers from here without cryptography.
"""

from __future__ import annotations

from pathlib import Path

from agent.pki import files

WITHDRAWN_DIR = "withdrawn"
_SUFFIX = ".pem"


class WithdrawnRoots:
    def __init__(self, directory: Path) -> None:
        self._dir = Path(directory)

    def fingerprints(self) -> frozenset[str]:
        """The fingerprints of every withdrawn root (lower-case hex)."""
        try:
            names = [p.name for p in self._dir.iterdir()]
        except FileNotFoundError:
            return frozenset()
        return frozenset(n[:-len(_SUFFIX)].lower() for n in names
                         if n.endswith(_SUFFIX) and not n.startswith("."))

    def withdraw(self, fingerprint: str, pem: str) -> None:
        """Record the withdrawal of the root `pem`, whose fingerprint is `fingerprint`,
        durably. Raises OSError if it cannot be written."""
        files.private_dir(self._dir)
        files.write_private(self._dir / f"{fingerprint.lower()}{_SUFFIX}", pem.encode("ascii"))

    def tidy(self) -> None:
        """Remove temporary files a crash left behind."""
        if self._dir.is_dir():
            for path in self._dir.glob(f".*{files.TMP_SUFFIX}"):
                files.remove(path)
