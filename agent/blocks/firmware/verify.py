"""Is a downloaded firmware file what its manufacturer signed? (OCPP 2.0.1 L01)

UpdateFirmwareRequest.firmware carries a signingCertificate (PEM, the signing certificate
optionally followed by intermediate CAs) and a signature (base64, over the whole file,
SHA-256). The station accepts the file only if the certificate chains to one of the
ManufacturerRootCertificates the CSMS installed (L01.FR.02: otherwise
InvalidCertificate + InvalidFirmwareSigningCertificate) and the signature verifies with
its key (L01.FR.03: otherwise InvalidSignature + InvalidFirmwareSignature). The two
checks are separate functions because the spec answers them at different times with
different statuses: the certificate before the download, the signature after it.

The chain is checked link by link, on every cryptography version alike: Debian 12's
cryptography 38 has no path-validation API (x509.verification is 42+), and one code path
is one thing to trust. The link primitives are those of agent.pki.checks. Not evaluated:
name constraints, certificate policies, revocation (OCPP offers no CRL or OCSP here).

Every VerificationError is one line of at most 255 characters, so it fits the security
event's techInfo as it is and tells the operator what to fix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import cryptography
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from agent.pki.checks import (CertificateError, describe, fingerprint, is_ca,
                              parse_certificates, signed_by, validity_problem)

MAX_MESSAGE = 255            # SecurityEventNotificationRequest.techInfo is string[255]
MIN_RSA_BITS = 2048          # below this an RSA signature proves little (NIST SP 800-131A)
WEAK_HASHES = ("md5", "sha1")
ROOT = "ManufacturerRootCertificate"

_Extension = TypeVar("_Extension", bound=x509.ExtensionType)


class VerificationError(Exception):
    """The firmware or its signing certificate must not be trusted; str() says why in one
    line of at most 255 characters."""

    def __init__(self, message: str) -> None:
        line = " ".join(message.split())
        if len(line) > MAX_MESSAGE:
            line = line[:MAX_MESSAGE - 3] + "..."
        super().__init__(line)


def parse_pem_chain(text: str) -> list[x509.Certificate]:
    """Every PEM certificate in `text`, in order; VerificationError if none or one is
    unreadable."""
    # Some back ends send the PEM with its newlines escaped twice ("\\n" in the JSON, so
    # a backslash and an n here); the base64 alphabet has no backslash, so undoing that
    # cannot change a well-formed PEM.
    if "\\n" in text:
        text = text.replace("\\r", "").replace("\\n", "\n")
    try:
        return parse_certificates(text)
    except CertificateError as exc:
        raise VerificationError(str(exc)) from None


def check_signing_certificate(signing_pem: str, manufacturer_roots_pem: list[str],
                              now: datetime) -> x509.Certificate:
    """The signing certificate from `signing_pem` (leaf first, then any intermediates),
    once it is known to chain to one of `manufacturer_roots_pem` with every certificate
    valid at `now` (timezone-aware); else VerificationError."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")   # a bug in the caller, not input
    roots = _load_roots(manufacturer_roots_pem)
    try:
        chain = parse_pem_chain(signing_pem)
    except VerificationError as exc:
        raise VerificationError(f"signingCertificate: {exc}") from None
    leaf = chain[0]
    _check_leaf(leaf, now)
    _check_path(leaf, chain[1:], roots, now)
    return leaf


def verify_signature(path: Path, signature_b64: str, signing_cert: x509.Certificate) -> str:
    """The hex SHA-256 of the file at `path`, once `signature_b64` is known to be its
    signature by `signing_cert`'s key (RSA PKCS#1 v1.5 or PSS, or ECDSA; SHA-256);
    else VerificationError. A file that cannot be read raises OSError: that is a failed
    download or a full disk, not a bad signature, and the caller answers it differently."""
    key = signing_cert.public_key()
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise VerificationError(
            f"signing certificate {describe(signing_cert)} has a {_key_name(key)} key; "
            f"OCPP firmware signatures are RSA or ECDSA")
    signature = _decode_signature(signature_b64)
    _check_signature_shape(signature, key)
    # The file may be hundreds of MB: hash it in chunks and verify the digest.
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").digest()
    if not _signature_matches(key, signature, digest):
        raise VerificationError(
            f"firmware signature does not match {path.name} (sha256 {digest.hex()[:16]}...): "
            f"not signed by the key of {describe(signing_cert)}, or the file is damaged")
    return digest.hex()


# -- the signing certificate -------------------------------------------------------------

def _load_roots(roots_pem: list[str]) -> list[x509.Certificate]:
    if not any("BEGIN CERTIFICATE" in pem for pem in roots_pem):
        raise VerificationError(
            f"no {ROOT} installed: the CSMS must install the manufacturer's root "
            f"(InstallCertificate) before a signed firmware update")
    roots: list[x509.Certificate] = []
    for n, pem in enumerate(roots_pem, 1):
        if not pem.strip():
            continue
        try:
            roots.extend(parse_pem_chain(pem))
        except VerificationError as exc:
            raise VerificationError(f"installed {ROOT} {n}: {exc}") from None
    return roots


def _check_leaf(leaf: x509.Certificate, now: datetime) -> None:
    name = f"firmware signing certificate {describe(leaf)}"
    problem = validity_problem(leaf, now)
    if problem:
        raise VerificationError(f"firmware signing certificate {problem}")
    if is_ca(leaf):
        raise VerificationError(f"{name} is a CA certificate; firmware must be signed "
                                f"with an end-entity certificate")
    if not _allows_code_signing(leaf):
        raise VerificationError(f"{name} has an extendedKeyUsage without codeSigning")
    usage = _extension(leaf, x509.KeyUsage)
    if usage is not None and not (usage.digital_signature or usage.content_commitment):
        raise VerificationError(f"{name} has a keyUsage without digitalSignature")
    key = leaf.public_key()
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise VerificationError(f"{name} has a {_key_name(key)} key; OCPP firmware "
                                f"signatures are RSA or ECDSA")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise VerificationError(f"{name} has a {key.key_size}-bit RSA key; at least "
                                f"{MIN_RSA_BITS} bits are required")
    _check_critical_extensions(leaf, name)


def _check_path(leaf: x509.Certificate, given: list[x509.Certificate],
                roots: list[x509.Certificate], now: datetime) -> None:
    """Walk from `leaf` up through `given` until an installed root signed the current
    certificate. Order in `given` does not matter; certificates not on the path are
    ignored, and a root the CSMS copied into the chain counts only if it is installed."""
    if leaf.issuer == leaf.subject and signed_by(leaf, leaf):
        raise VerificationError(f"firmware signing certificate {describe(leaf)} is "
                                f"self-signed, not issued by an installed {ROOT}")
    root_prints = {fingerprint(root) for root in roots}
    pool = list(given)
    current = leaf
    below = 0   # intermediates between `current`'s issuer and the leaf (pathLenConstraint)
    while True:
        if current is not leaf and fingerprint(current) in root_prints:
            return   # the chain included an installed root; it was checked as a CA
        problem = None
        for root in roots:
            if root.subject == current.issuer:
                root_problem = (_link_problem(current, root)
                                or _ca_problem(root, f"installed {ROOT}", now, below))
                if root_problem is None:
                    return
                problem = problem or root_problem
        issuer = None
        for candidate in pool:
            if candidate.subject == current.issuer:
                candidate_problem = (_link_problem(current, candidate)
                                     or _ca_problem(candidate, "intermediate", now, below))
                if candidate_problem is None:
                    issuer = candidate
                    break
                problem = problem or candidate_problem
        if issuer is None:
            raise VerificationError(problem or (
                f"firmware signing certificate {describe(leaf)} does not chain to an "
                f"installed {ROOT}: no installed root or given intermediate is "
                f"{current.issuer.rfc4514_string() or '(empty name)'}"))
        pool = [c for c in pool if c is not issuer]   # each certificate once: no loops
        current = issuer
        below += 1


def _link_problem(child: x509.Certificate, issuer: x509.Certificate) -> str | None:
    """Why `issuer` (whose subject is `child`'s issuer) did not validly sign `child`."""
    hash_name = _signature_hash_name(child)
    if hash_name in WEAK_HASHES:
        return f"{describe(child)} is signed with {hash_name.upper()}, which is too weak"
    if signed_by(child, issuer):
        return None
    if (child.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
            and getattr(child, "signature_algorithm_parameters", None) is None):
        return (f"{describe(child)} is signed with RSA-PSS, which cryptography "
                f"{cryptography.__version__} cannot verify")
    return (f"{describe(child)} names {describe(issuer)} as its issuer, but that "
            f"certificate's signature on it does not verify (another CA of the same name?)")


def _ca_problem(ca: x509.Certificate, role: str, now: datetime, below: int) -> str | None:
    """Why `ca` may not issue a certificate with `below` intermediates under it."""
    problem = validity_problem(ca, now)
    if problem:
        return f"{role} {problem}"
    name = f"{role} {describe(ca)}"
    if not is_ca(ca):
        return f"{name} is not a CA (basicConstraints CA:TRUE missing)"
    usage = _extension(ca, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        return f"{name} has a keyUsage without keyCertSign"
    constraints = _extension(ca, x509.BasicConstraints)
    if (constraints is not None and constraints.path_length is not None
            and below > constraints.path_length):
        return f"{name} allows {constraints.path_length} intermediates below it, not {below}"
    if role == "intermediate":
        # An intermediate's extendedKeyUsage limits what it may certify (as browsers and
        # OpenSSL read it); a trust anchor the CSMS installed is taken as it is.
        if not _allows_code_signing(ca):
            return f"{name} has an extendedKeyUsage without codeSigning"
        return _critical_problem(ca, name)
    return None


def _allows_code_signing(cert: x509.Certificate) -> bool:
    usages = _extension(cert, x509.ExtendedKeyUsage)
    return usages is None or ExtendedKeyUsageOID.CODE_SIGNING in usages


def _check_critical_extensions(cert: x509.Certificate, name: str) -> None:
    problem = _critical_problem(cert, name)
    if problem:
        raise VerificationError(problem)


def _critical_problem(cert: x509.Certificate, name: str) -> str | None:
    # RFC 5280 4.2: a critical extension the verifier does not understand means reject.
    for extension in cert.extensions:
        if extension.critical and isinstance(extension.value, x509.UnrecognizedExtension):
            return f"{name} has an unknown critical extension {extension.oid.dotted_string}"
    return None


def _extension(cert: x509.Certificate, kind: type[_Extension]) -> _Extension | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _signature_hash_name(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    return algorithm.name if algorithm is not None else None


def _key_name(key: object) -> str:
    return type(key).__name__.lstrip("_").replace("PublicKey", "") or "unknown"


# -- the signature -----------------------------------------------------------------------

def _decode_signature(signature_b64: str) -> bytes:
    text = "".join(signature_b64.split())   # line breaks from a wrapping encoder are fine
    if not text:
        raise VerificationError("firmware signature is empty")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError(f"firmware signature is not valid base64 "
                                f"({len(text)} characters)") from None


def _check_signature_shape(signature: bytes, key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
                           ) -> None:
    """A signature of the wrong size is a truncated or mangled field: say so, instead of
    a plain mismatch."""
    if isinstance(key, rsa.RSAPublicKey):
        expected = (key.key_size + 7) // 8
        if len(signature) != expected:
            raise VerificationError(f"firmware signature is {len(signature)} bytes; an "
                                    f"RSA-{key.key_size} signature is {expected}")
        return
    try:
        utils.decode_dss_signature(signature)
    except ValueError:
        raise VerificationError(f"firmware signature ({len(signature)} bytes) is not a "
                                f"DER-encoded ECDSA signature") from None


def _signature_matches(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, signature: bytes,
                       digest: bytes) -> bool:
    prehashed = utils.Prehashed(hashes.SHA256())
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, digest, ec.ECDSA(prehashed))
            return True
        try:
            key.verify(signature, digest, padding.PKCS1v15(), prehashed)
            return True
        except InvalidSignature:
            # Some manufacturers sign with RSA-PSS (the OCPP 1.6 security whitepaper
            # named it); it is as strong, so accept it with any salt length.
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                              salt_length=padding.PSS.AUTO)
            key.verify(signature, digest, pss, prehashed)
            return True
    except InvalidSignature:
        return False
