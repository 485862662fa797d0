"""The station's certificates and key on disk: roots the CSMS installed, and the station's
own key pair and certificate (use cases A02/A03, M03-M05 of OCPP 2.0.1).

Layout under `directory` (the daemon passes `<storage.dir>/certs`), directories 0700 and
files 0600 (see certs/README.md):

    CSMSRootCertificate/<sha256 of DER>.pem          one root per file, by
    ManufacturerRootCertificate/<sha256>.pem         InstallCertificateUseEnumType
    V2GRootCertificate/<sha256>.pem
    MORootCertificate/<sha256>.pem
    station/pending.key                              key of the last CSR sent, until
                                                     its certificate is accepted
    station/current -> <generation>                  symlink: the pair in use
    station/<generation>/chain.pem                   leaf first, then sub-CAs
    station/<generation>/key.pem
    withdrawn/<sha256>.pem                           roots of the config's csms.ca_file
                                                     the CSMS deleted (withdrawn.py)

Why generations and a symlink: the certificate and its key are two files, and no file
system replaces two files at once. A new pair is written whole into a fresh generation
directory, then `current` is switched by one os.replace of a symlink, so a power cut at
any moment leaves `current` on the old pair or on the new one, never on a certificate
with the other's key. Old generations and stray temporary files are removed afterwards
and at the next start.

The CSMS roots the installer put in the config's csms.ca_file are trusted too
(agent/trust.py), so GetInstalledCertificateIds lists them beside the installed ones
(hash data computed the same way), SecurityCtrlr.CertificateEntries counts them, and
DeleteCertificate takes them away: by a withdrawal record here, since the config file is
not the agent's to write. The callers pass them in (`configured`: PEM blocks of ca_file,
withdrawn ones already left out); the store does not read the config.

Private keys never leave this module except as a path, and are never logged.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from agent.pki import files
from agent.pki.lazy import ROOT_TYPES, STATION_DIR
from agent.pki.checks import (HASH_ALGORITHMS, CertificateError, chain_problem, common_name,
                              describe, fingerprint, hash_data, is_ca, is_self_signed,
                              not_after, parse_certificates, pem_blocks, same_hash_data,
                              same_public_key, signed_by, to_pem, validity_problem)
from agent.pki.pem import der_fingerprint
from agent.pki.withdrawn import WITHDRAWN_DIR, WithdrawnRoots

log = logging.getLogger(__name__)

CSMS_ROOT = "CSMSRootCertificate"
# Enough for a root rollover of every type with room to spare; a bound keeps a CSMS bug
# from filling the flash.
MAX_ENTRIES = 24
KEY_TYPES = ("ec", "rsa")

_STATION = STATION_DIR
_PENDING_KEY = "pending.key"
_CURRENT = "current"
_CHAIN = "chain.pem"
_KEY = "key.pem"


@dataclass(frozen=True)
class Outcome:
    """The result of a store operation, in the terms of the OCPP response it becomes."""

    status: str                     # Accepted | Rejected | Failed | NotFound
    reason_code: str | None = None  # an Appendix 5 reasonCode
    info: str = ""                  # for statusInfo.additionalInfo and the log
    changed: bool = False           # something on disk changed

    @property
    def ok(self) -> bool:
        return self.status == "Accepted"

    def payload(self) -> dict[str, Any]:
        """{"status", "statusInfo"?} for the response."""
        answer: dict[str, Any] = {"status": self.status}
        if self.reason_code:
            status_info = {"reasonCode": self.reason_code}
            if self.info:
                status_info["additionalInfo"] = self.info[:512]
            answer["statusInfo"] = status_info
        return answer


def _rejected(info: str, code: str = "InvalidCertificate") -> Outcome:
    return Outcome("Rejected", code, info)


@dataclass(frozen=True)
class _Root:
    use: str
    path: Path | None             # None: from the config's ca_file, not a file of ours
    cert: x509.Certificate
    pem: str = ""                 # a config root's PEM block, for its withdrawal record

    @property
    def configured(self) -> bool:
        return self.path is None

    def describe(self) -> str:
        return f"{self.use} {describe(self.cert)}" + (
            " (from csms.ca_file)" if self.configured else "")


@dataclass(frozen=True)
class _StationPair:
    chain: list[x509.Certificate]
    chain_path: Path
    key_path: Path


class CertificateStore:
    def __init__(self, directory: Path, *, max_entries: int = MAX_ENTRIES) -> None:
        self._dir = files.private_dir(Path(directory))
        self._station_dir = files.private_dir(self._dir / _STATION)
        self._max_entries = max_entries
        self._withdrawn = WithdrawnRoots(self._dir / WITHDRAWN_DIR)
        self._roots: dict[tuple[str, str], _Root] = {}   # (use, fingerprint) -> root
        for use in ROOT_TYPES:
            self._load_roots(use)
        self._station = self._load_station()
        self._tidy()

    # -- loading ----------------------------------------------------------------------

    def _load_roots(self, use: str) -> None:
        folder = files.private_dir(self._dir / use)
        for path in sorted(folder.glob("*.pem")):
            try:
                certs = parse_certificates(path.read_text("ascii"))
            except (OSError, UnicodeDecodeError, CertificateError) as exc:
                log.error("ignoring unreadable certificate file %s: %s", path, exc)
                continue
            self._roots[(use, fingerprint(certs[0]))] = _Root(use, path, certs[0])

    def _load_station(self) -> _StationPair | None:
        current = self._station_dir / _CURRENT
        if not current.is_symlink():
            return None
        folder = self._station_dir / os.readlink(current)
        chain_path, key_path = folder / _CHAIN, folder / _KEY
        try:
            chain = parse_certificates(chain_path.read_text("ascii"))
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            log.error("station certificate in %s cannot be used: %s", folder,
                      exc if isinstance(exc, CertificateError) else type(exc).__name__)
            return None
        if not same_public_key(chain[0].public_key(), key.public_key()):
            log.error("station certificate in %s does not match its key: not used", folder)
            return None
        return _StationPair(chain, chain_path, key_path)

    def _tidy(self) -> None:
        """Remove temporary files and generations a crash left behind."""
        in_use = self._station.chain_path.parent.name if self._station else None
        current = self._station_dir / _CURRENT
        if in_use is None and current.is_symlink():
            in_use = os.readlink(current)   # unusable but kept for the operator to see
        for path in self._station_dir.iterdir():
            if path.name.endswith(files.TMP_SUFFIX) or (
                    path.is_dir() and not path.is_symlink() and path.name != in_use):
                files.remove(path)
        for use in ROOT_TYPES:
            for path in (self._dir / use).glob(f".*{files.TMP_SUFFIX}"):
                files.remove(path)
        self._withdrawn.tidy()

    # -- roots: InstallCertificate, GetInstalledCertificateIds, DeleteCertificate --------

    def install(self, use: str, pem: str, now: datetime) -> Outcome:
        """Install one root certificate of type `use` (M05). Nothing is stored unless the
        text is exactly one certificate, a self-signed CA valid at `now`."""
        if use not in ROOT_TYPES:
            return _rejected(f"{use} cannot be installed", "InvalidValue")
        try:
            certs = parse_certificates(pem)
        except CertificateError as exc:
            return _rejected(str(exc))
        if len(certs) != 1:
            return _rejected(f"expected one certificate, got {len(certs)}")
        cert = certs[0]
        if not is_ca(cert):
            return _rejected(f"{describe(cert)} is not a CA certificate "
                             "(basicConstraints CA:TRUE missing)")
        # A root: the trust anchor of a TLS verification (Python's ssl wants it
        # self-signed) and the only certificate whose issuerKeyHash we can always compute.
        if not is_self_signed(cert):
            return _rejected(f"{describe(cert)} is not a root certificate: it is issued by "
                             f"{cert.issuer.rfc4514_string()}; install that root instead")
        problem = validity_problem(cert, now)
        if problem:
            return _rejected(problem)
        key = (use, fingerprint(cert))
        if key in self._roots:
            return Outcome("Accepted", info=f"{describe(cert)} was already installed")
        if len(self._roots) >= self._max_entries:
            return Outcome("Failed", "OutOfStorage",
                           f"{self._max_entries} certificates are installed already; "
                           "delete one first")
        path = self._dir / use / f"{key[1]}.pem"
        try:
            files.write_private(path, to_pem([cert]))
        except OSError as exc:
            log.error("cannot store %s %s in %s: %s", use, describe(cert), path, exc)
            return Outcome("Failed", "OutOfStorage" if exc.errno == 28 else "InternalError",
                           f"could not store the certificate: {exc.strerror}")
        self._roots[key] = _Root(use, path, cert)
        log.info("installed %s %s", use, describe(cert))
        return Outcome("Accepted", info=f"{describe(cert)} installed", changed=True)

    def installed(self, types: Iterable[str] | None = None, *,
                  configured: Sequence[str] = ()) -> list[dict[str, Any]]:
        """CertificateHashDataChainType entries for GetInstalledCertificateIds (M03), SHA256:
        the installed roots of `types` (all when None) and, as CSMSRootCertificates, the
        `configured` ones (the config's ca_file) that are not installed as well.

        The station's own certificate is not among them: GetCertificateIdUseEnumType has no
        value for it (V2GCertificateChain is the ISO 15118 SECC chain, which this station
        does not have)."""
        wanted = set(ROOT_TYPES if types is None else types)
        roots = self._all_roots(configured)
        return [{"certificateType": root.use,
                 "certificateHashData": hash_data(root.cert, _issuer(root.cert, roots))}
                for root in roots if root.use in wanted]

    def count(self, configured: Sequence[str] = ()) -> int:
        """How many certificates GetInstalledCertificateIds can report
        (SecurityCtrlr.CertificateEntries), the `configured` CSMS roots included."""
        installed = {fp for use, fp in self._roots if use == CSMS_ROOT}
        return len(self._roots) + len(_fingerprints(configured) - installed)

    def withdrawn_roots(self) -> frozenset[str]:
        """Fingerprints of the config's CSMS roots the CSMS deleted (for trust.py)."""
        return self._withdrawn.fingerprints()

    def delete(self, wanted: dict[str, Any], *, keep_last_csms_root: bool = False,
               configured: Sequence[str] = ()) -> Outcome:
        """Delete the certificate(s) matching CertificateHashDataType `wanted` (M04): an
        installed root is removed, a `configured` one (the config's ca_file) withdrawn,
        and a root that is both goes from both. The station's own certificate is never
        deleted (M04.FR.06); nor the last CSMSRootCertificate trusted, from either
        source, when `keep_last_csms_root` (security profile 2 or 3: without it the
        station could not connect again)."""
        algorithm = wanted.get("hashAlgorithm", "SHA256")
        if algorithm not in HASH_ALGORITHMS:
            return Outcome("NotFound", "NotFound", f"hash algorithm {algorithm!r} is not known")
        roots = self._all_roots(configured, keep_duplicates=True)
        if self._station is not None and self._is_station_leaf(wanted, algorithm, roots):
            return Outcome("Failed", "Unspecified",
                           "this is the station's own certificate, which cannot be deleted")
        matches = [root for root in roots if same_hash_data(
            hash_data(root.cert, _issuer(root.cert, roots), algorithm), wanted)]
        if not matches:
            return Outcome("NotFound", "NotFound", "no installed certificate has this hash data")
        csms_left = ({fingerprint(r.cert) for r in roots if r.use == CSMS_ROOT}
                     - {fingerprint(r.cert) for r in matches if r.use == CSMS_ROOT})
        if keep_last_csms_root and not csms_left and any(r.use == CSMS_ROOT for r in matches):
            return Outcome("Failed", "Unspecified",
                           "this is the last CSMSRootCertificate: the station could not "
                           "verify the CSMS without it; install its successor first")
        for root in matches:
            try:
                if root.path is None:
                    self._withdrawn.withdraw(fingerprint(root.cert), root.pem)
                else:
                    files.remove(root.path)
            except OSError as exc:
                log.error("cannot delete %s: %s", root.describe(), exc)
                return Outcome("Failed", "InternalError",
                               f"could not delete the certificate: {exc.strerror}")
            if root.path is not None:
                del self._roots[(root.use, fingerprint(root.cert))]
            log.info("%s %s", "withdrew" if root.configured else "deleted", root.describe())
        return Outcome("Accepted", info=", ".join(r.describe() for r in matches), changed=True)

    def roots(self, use: str) -> list[x509.Certificate]:
        """The installed roots of one type (e.g. ManufacturerRootCertificate, for checking
        a firmware signing certificate)."""
        return [r.cert for r in self._sorted_roots() if r.use == use]

    def csms_roots(self) -> list[x509.Certificate]:
        return self.roots(CSMS_ROOT)

    def csms_roots_pem(self) -> str:
        """The installed CSMSRootCertificates, concatenated PEM (ssl cadata)."""
        return to_pem(self.csms_roots()).decode("ascii")

    def roots_pem(self, use: str) -> list[str]:
        """The installed roots of one type, one PEM text each."""
        return [to_pem([cert]).decode("ascii") for cert in self.roots(use)]

    def _sorted_roots(self) -> list[_Root]:
        return sorted(self._roots.values(),
                      key=lambda r: (ROOT_TYPES.index(r.use), r.path.name if r.path else ""))

    def _all_roots(self, configured: Sequence[str], *,
                   keep_duplicates: bool = False) -> list[_Root]:
        """The installed roots and, after the installed CSMS roots, the configured ones
        that can be read; a configured root also installed is left out unless
        `keep_duplicates` (a deletion must reach both copies)."""
        installed = self._sorted_roots()
        seen = {fingerprint(r.cert) for r in installed if r.use == CSMS_ROOT}
        extra = []
        for block in configured:
            try:
                cert = parse_certificates(block)[0]
            except CertificateError as exc:
                log.warning("ignoring a csms.ca_file certificate that cannot be read: %s", exc)
                continue
            if keep_duplicates or fingerprint(cert) not in seen:
                seen.add(fingerprint(cert))
                extra.append(_Root(CSMS_ROOT, None, cert, block))
        at = sum(1 for r in installed if r.use == CSMS_ROOT)   # CSMS roots sort first
        return installed[:at] + extra + installed[at:]

    def _is_station_leaf(self, wanted: dict[str, Any], algorithm: str,
                         roots: list[_Root]) -> bool:
        assert self._station is not None
        chain = self._station.chain
        leaf = chain[0]
        candidates = chain[1:2] + [r.cert for r in roots if r.use == CSMS_ROOT]
        issuer = next((c for c in candidates if signed_by(leaf, c)), None)
        return same_hash_data(hash_data(leaf, issuer, algorithm), wanted)

    # -- the station's key and certificate: A02/A03 -----------------------------------

    def new_key_and_csr(self, common_name: str, organization: str, *,
                        key_type: str = "ec") -> str:
        """Make a new private key (EC P-256, or RSA 2048), keep it as the pending key
        (replacing any earlier one), and return a CSR for it (PEM, SHA-256)."""
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if key_type == "ec":
            key = ec.generate_private_key(ec.SECP256R1())
        elif key_type == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ValueError(f"key type {key_type!r}: use one of {', '.join(KEY_TYPES)}")
        files.write_private(self._station_dir / _PENDING_KEY, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        log.info("new %s station key made for a certificate signing request", key_type.upper())
        return _csr(key, common_name, organization)

    def csr_for_pending(self, common_name: str, organization: str) -> str | None:
        """A fresh CSR for the pending key (a repeated SignCertificateRequest), or None when
        no key is pending."""
        key = self._pending_key()
        return None if key is None else _csr(key, common_name, organization)

    def has_pending_key(self) -> bool:
        return (self._station_dir / _PENDING_KEY).exists()

    def accept_signed_chain(self, pem_chain: str, now: datetime, *, station_id: str,
                            trusted_pem: str = "") -> Outcome:
        """Check a CertificateSigned chain (leaf first) and make it and the pending key the
        station's pair. Rejected unless: it parses; the leaf is for the pending key, names
        `station_id` as CN, and every certificate is valid at `now`; it chains to an
        installed CSMSRootCertificate or a root in `trusted_pem` (e.g. the config's
        csms.ca_file). The same chain delivered again is Accepted without change."""
        try:
            chain = parse_certificates(pem_chain)
        except CertificateError as exc:
            return _rejected(str(exc))
        leaf = chain[0]
        if self._station is not None and fingerprint(self._station.chain[0]) == fingerprint(leaf):
            return Outcome("Accepted", info="this certificate is already the station's")
        key = self._pending_key()
        if key is None:
            return _rejected("no certificate signing request is pending")
        if not same_public_key(leaf.public_key(), key.public_key()):
            return _rejected(f"{describe(leaf)}: key does not match the pending certificate "
                             "signing request")
        cn = common_name(leaf)
        if cn != station_id:
            return _rejected(f"the certificate's common name {cn!r} is not the station id "
                             f"{station_id!r}")
        roots = self.csms_roots() + _parse_trusted(trusted_pem)
        problem = chain_problem(chain, roots, now)
        if problem:
            return _rejected(problem)
        try:
            self._switch(chain, key, now)
        except OSError as exc:
            log.error("cannot store the new station certificate: %s", exc)
            return Outcome("Rejected", "InternalError",
                           f"could not store the certificate: {exc.strerror}")
        log.info("new station certificate %s, valid until %s", describe(leaf),
                 not_after(leaf).isoformat())
        return Outcome("Accepted", info=f"{describe(leaf)} installed", changed=True)

    def _switch(self, chain: list[x509.Certificate], key: Any, now: datetime) -> None:
        generation = f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"
        folder = files.private_dir(self._station_dir / generation)
        try:
            files.write_private(folder / _CHAIN, to_pem(chain))
            files.write_private(folder / _KEY, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
            files.fsync_dir(self._station_dir)
            files.point_symlink(self._station_dir / _CURRENT, generation)
        except BaseException:
            # `current` still names the old pair; the half-made generation goes.
            try:
                files.remove(folder)
            except OSError:
                pass
            raise
        previous = self._station
        self._station = _StationPair(chain, folder / _CHAIN, folder / _KEY)
        # From here on the new pair is in force; what follows is tidying.
        for path in (self._station_dir / _PENDING_KEY,) + (
                (previous.chain_path.parent,) if previous is not None else ()):
            try:
                files.remove(path)
            except OSError as exc:
                log.warning("could not remove %s: %s", path, exc)

    def _pending_key(self) -> Any:
        path = self._station_dir / _PENDING_KEY
        try:
            return serialization.load_pem_private_key(path.read_bytes(), None)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.error("pending key %s cannot be read (%s): ignored", path, type(exc).__name__)
            return None

    # -- for the TLS client (trust.py) ---------------------------------------------------

    def station_credentials(self) -> tuple[Path, Path] | None:
        """(certificate chain file, key file) of the station's pair, or None."""
        if self._station is None:
            return None
        return self._station.chain_path, self._station.key_path

    def station_certificate_expiry(self) -> datetime | None:
        return None if self._station is None else not_after(self._station.chain[0])

    def station_chain(self) -> list[x509.Certificate]:
        return [] if self._station is None else list(self._station.chain)


def _csr(key: Any, common_name: str, organization: str) -> str:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name(attributes))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _issuer(cert: x509.Certificate, roots: list[_Root]) -> x509.Certificate | None:
    """The certificate whose key goes into `cert`'s issuerKeyHash: itself for a root; for
    a sub-CA an installer put in ca_file, the trusted certificate that signed it, if any
    (without one, issuerKeyHash is unknown: see checks.hash_data)."""
    if is_self_signed(cert):
        return cert
    return next((r.cert for r in roots if r.cert is not cert and signed_by(cert, r.cert)), None)


def _fingerprints(blocks: Sequence[str]) -> set[str]:
    return {fp for fp in map(der_fingerprint, blocks) if fp is not None}


def _parse_trusted(pem: str) -> list[x509.Certificate]:
    """Each readable certificate of a trust bundle; one bad block spoils only itself."""
    roots = []
    for block in pem_blocks(pem):
        try:
            roots.extend(parse_certificates(block))
        except CertificateError as exc:
            log.warning("ignoring a trusted CSMS root that cannot be read: %s", exc)
    return roots
