"""X.509 facts the certificate store needs, as pure functions (no files, no clock).

Written against cryptography 38 (Debian 12), which has neither a path-validation API nor
Certificate.verify_directly_issued_by (40) nor load_pem_x509_certificates (39): chains
are checked link by link here, with each issuer's public key verifying its child's
signature (RSA PKCS#1 v1.5 and, where the library exposes its parameters, PSS; ECDSA;
EdDSA). Name constraints, policies and path-length limits are not evaluated; the trust
anchors are the handful of roots the CSMS itself installed.

CertificateHashDataType (OCPP 2.0.1 part 2, 2.6, as corrected by the 2023-12 errata,
section 2.15.1) follows OCSP's CertID (RFC 6960): issuerNameHash is the hash of the DER
of the certificate's issuer Name, issuerKeyHash the hash of the issuer's subjectPublicKey
BIT STRING value (without tag, length and unused-bits octet, as OpenSSL computes it), and
serialNumber the serial in hex without "0x" and leading zeroes. Both are taken from the
certificates' own DER bytes (not re-encoded from parsed objects), so a certificate with
an unusual but valid encoding still hashes the way the CSMS computed it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from agent.pki.pem import pem_blocks

HASH_ALGORITHMS = {"SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}


class CertificateError(ValueError):
    """A certificate or chain the station must not accept; the message says why."""


def parse_certificates(text: str) -> list[x509.Certificate]:
    """Every PEM certificate in `text`, in order; CertificateError if there is none or one
    cannot be read. Text outside the PEM blocks (comments, bag attributes) is ignored, as
    OpenSSL does."""
    blocks = pem_blocks(text)
    if not blocks:
        raise CertificateError("no PEM certificate (-----BEGIN CERTIFICATE-----) found")
    certs = []
    for n, block in enumerate(blocks, 1):
        try:
            cert = x509.load_pem_x509_certificate(block.encode("ascii"))
            # cryptography parses some parts lazily: touch what the checks will read, so
            # a malformed certificate fails here with a clear message, not later.
            cert.subject, cert.issuer, cert.extensions, cert.public_key()
            _tbs_fields(cert)
        except (ValueError, UnsupportedAlgorithm, IndexError) as exc:
            raise CertificateError(f"certificate {n} cannot be read: {exc}") from None
        certs.append(cert)
    return certs


def to_pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER: a certificate's identity in file names and comparisons."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def describe(cert: x509.Certificate) -> str:
    """A short human name for messages: the subject CN, or the whole subject."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"CN={cns[0].value}" if cns else (cert.subject.rfc4514_string() or "(empty subject)")


def common_name(cert: x509.Certificate) -> str | None:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else None


# -- validity ------------------------------------------------------------------------------

def not_before(cert: x509.Certificate) -> datetime:
    value = getattr(cert, "not_valid_before_utc", None)  # cryptography >= 42
    return value if value is not None else cert.not_valid_before.replace(tzinfo=timezone.utc)


def not_after(cert: x509.Certificate) -> datetime:
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else cert.not_valid_after.replace(tzinfo=timezone.utc)


def validity_problem(cert: x509.Certificate, now: datetime) -> str | None:
    """Why `cert` is not valid at `now`, or None."""
    if now < not_before(cert):
        return f"{describe(cert)} is not valid before {not_before(cert).isoformat()}"
    if now > not_after(cert):
        return f"{describe(cert)} expired on {not_after(cert).isoformat()}"
    return None


def is_expired(cert: x509.Certificate, now: datetime) -> bool:
    return now > not_after(cert)


# -- CA, signatures, chains ---------------------------------------------------------------

def is_ca(cert: x509.Certificate) -> bool:
    """basicConstraints CA:TRUE."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def signed_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """`issuer` names and signed `child` (no validity or CA check)."""
    return child.issuer == issuer.subject and verify_signature(child, issuer.public_key())


def is_self_signed(cert: x509.Certificate) -> bool:
    return signed_by(cert, cert)


def verify_signature(cert: x509.Certificate, key: Any) -> bool:
    """Does `key` verify the signature on `cert`?"""
    data, signature = cert.tbs_certificate_bytes, cert.signature
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if cert.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS:
                # Its parameters are exposed from cryptography 41 on; older: unsupported.
                pss = getattr(cert, "signature_algorithm_parameters", None)
                if not isinstance(pss, padding.PSS):
                    return False
                key.verify(signature, data, pss, cert.signature_hash_algorithm)
            else:
                key.verify(signature, data, padding.PKCS1v15(), cert.signature_hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def chain_problem(chain: list[x509.Certificate], roots: list[x509.Certificate],
                  now: datetime) -> str | None:
    """Why `chain` (leaf first, optionally ending with its root) does not lead to one of
    `roots` with every certificate valid at `now`, or None when it does."""
    for cert in chain:
        problem = validity_problem(cert, now)
        if problem:
            return problem
    for n, (child, parent) in enumerate(zip(chain, chain[1:]), 1):
        if not is_ca(parent):
            return f"certificate {n + 1} ({describe(parent)}) in the chain is not a CA"
        if not signed_by(child, parent):
            return (f"certificate {n} ({describe(child)}) is not signed by the next one in "
                    f"the chain ({describe(parent)})")
    top = chain[-1]
    top_print = fingerprint(top)
    if any(fingerprint(root) == top_print for root in roots):
        return None
    for root in roots:
        if is_ca(root) and signed_by(top, root) and validity_problem(root, now) is None:
            return None
    return (f"the chain does not lead to an installed CSMSRootCertificate "
            f"({describe(top)} is issued by {top.issuer.rfc4514_string() or '(empty)'})")


def same_public_key(a: Any, b: Any) -> bool:
    return bool(_spki(a) == _spki(b))


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


# -- CertificateHashDataType --------------------------------------------------------------

def hash_data(cert: x509.Certificate, issuer: x509.Certificate | None,
              algorithm: str = "SHA256") -> dict[str, str]:
    """CertificateHashDataType of `cert`, whose issuer certificate is `issuer` (itself for
    a root). Without the issuer, issuerKeyHash is unknown: "" (callers match on the rest)."""
    name = HASH_ALGORITHMS[algorithm]
    issuer_name = _tbs_fields(cert)[_ISSUER]
    key_hash = "" if issuer is None else hashlib.new(name, subject_key_bits(issuer)).hexdigest()
    return {"hashAlgorithm": algorithm,
            "issuerNameHash": hashlib.new(name, issuer_name).hexdigest(),
            "issuerKeyHash": key_hash,
            "serialNumber": serial_hex(cert.serial_number)}


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def same_hash_data(ours: dict[str, str], theirs: dict[str, Any]) -> bool:
    """Equal as identifierStrings (case-insensitive, errata 2.15.1); a serial is compared as
    a number, so leading zeroes the CSMS kept do not matter. An issuerKeyHash we could
    not compute (""), is not compared."""
    if ours["issuerNameHash"].lower() != str(theirs.get("issuerNameHash", "")).lower():
        return False
    if ours["issuerKeyHash"] and (
            ours["issuerKeyHash"].lower() != str(theirs.get("issuerKeyHash", "")).lower()):
        return False
    try:
        return int(ours["serialNumber"], 16) == int(str(theirs.get("serialNumber", "")), 16)
    except ValueError:
        return False


def subject_key_bits(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING value of `cert` without its unused-bits octet."""
    spki = _tbs_fields(cert)[_SPKI]
    _, start, end = _tlv(spki, 0)
    _, alg_start, alg_end = _tlv(spki, start)           # AlgorithmIdentifier
    tag, bits_start, bits_end = _tlv(spki, alg_end)
    if tag != 0x03 or bits_end > end:
        raise CertificateError("subjectPublicKeyInfo without a BIT STRING")
    return spki[bits_start + 1:bits_end]


# TBSCertificate fields after the optional [0] version: serialNumber, signature, issuer,
# validity, subject, subjectPublicKeyInfo, ...
_ISSUER, _SPKI = 2, 5


def _tbs_fields(cert: x509.Certificate) -> list[bytes]:
    """The complete DER encodings (tag, length, value) of the TBSCertificate's fields."""
    tbs = cert.tbs_certificate_bytes
    tag, start, end = _tlv(tbs, 0)
    if tag != 0x30:
        raise CertificateError("TBSCertificate is not a SEQUENCE")
    fields, pos = [], start
    while pos < end:
        tag, value_start, value_end = _tlv(tbs, pos)
        if not (tag == 0xA0 and not fields):
            fields.append(tbs[pos:value_end])
        pos = value_end
    if len(fields) < 6:
        raise CertificateError("TBSCertificate has too few fields")
    return fields


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the DER element at `pos` (single-octet tags)."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise CertificateError("unsupported DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise CertificateError("truncated DER element")
    return tag, pos, pos + length
