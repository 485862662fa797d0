"""A throw-away manufacturer PKI for secure firmware update tests (OCPP 2.0.1 L01).

    pki = make_firmware_pki("ec", intermediate=True)
    signature = sign_file(pki, firmware_path)       # UpdateFirmware firmware.signature
    pki.signing_cert_pem                            # firmware.signingCertificate
    pki.root_pem                                    # install as ManufacturerRootCertificate

The bad cases keep the same installed root and give a new signing key, so the signature
itself is always right and only the certificate is wrong: self_signed(pki), expired(pki),
not_yet_valid(pki), other_root(pki), and reissue(pki, ca=True / eku=[...] / ...) for the
rest. Only cryptography (>= 38) is used, so this runs on both test virtualenvs.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.dev_pki import new_key

PrivateKey = Any   # rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
CODE_SIGNING = (ExtendedKeyUsageOID.CODE_SIGNING,)
CA_YEARS = 10


@dataclass(frozen=True)
class FirmwarePki:
    root_pem: str                 # the ManufacturerRootCertificate to install
    signing_cert_pem: str         # signing certificate, then the intermediate if any
    signing_key: PrivateKey
    signing_cert: x509.Certificate
    root_cert: x509.Certificate
    root_key: PrivateKey
    intermediate_cert: x509.Certificate | None
    intermediate_key: PrivateKey | None
    key_type: str                 # of the signing key: "rsa" or "ec"
    now: datetime                 # the moment everything is valid at

    @property
    def issuer(self) -> tuple[x509.Certificate, PrivateKey]:
        """Who signs the signing certificate: the intermediate if there is one."""
        if self.intermediate_cert is not None:
            return self.intermediate_cert, self.intermediate_key
        return self.root_cert, self.root_key


def make_firmware_pki(key_type: str = "rsa", intermediate: bool = False,
                      valid_days: int = 365, now: datetime | None = None,
                      ca_key_type: str | None = None,
                      name: str = "Example Firmware") -> FirmwarePki:
    """A root (and optionally an intermediate) CA valid for 10 years around `now`, and a
    code-signing certificate valid from a day before `now` for `valid_days`. `key_type`
    is the signing key's ("rsa": 2048 bits, "ec": P-256); the CAs use `ca_key_type`,
    by default the same."""
    now = _now() if now is None else now
    ca_type = ca_key_type or key_type
    root_key = new_key(ca_type)
    root = make_certificate(f"{name} Root CA", root_key.public_key(), None, root_key,
                            now=now, ca=True)
    inter_cert = inter_key = None
    if intermediate:
        inter_key = new_key(ca_type)
        inter_cert = make_certificate(f"{name} Signing CA", inter_key.public_key(), root,
                                      root_key, now=now, ca=True, path_length=0)
    issuer_cert, issuer_key = (inter_cert, inter_key) if inter_cert is not None else (
        root, root_key)
    signing_key = new_key(key_type)
    signing = make_certificate(f"{name} Signing", signing_key.public_key(), issuer_cert,
                               issuer_key, now=now, days=valid_days)
    return FirmwarePki(root_pem=pem(root), signing_cert_pem=pem(signing, inter_cert),
                       signing_key=signing_key, signing_cert=signing, root_cert=root,
                       root_key=root_key, intermediate_cert=inter_cert,
                       intermediate_key=inter_key, key_type=key_type, now=now)


def sign_file(pki: FirmwarePki, path: Path, *, pss: bool = False) -> str:
    """The base64 signature of the file with the signing key: SHA-256, RSA PKCS#1 v1.5
    (or PSS) or ECDSA (DER). The file is hashed in chunks, as the station does."""
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").digest()
    return sign_digest(pki.signing_key, digest, pss=pss)


def sign_digest(key: PrivateKey, digest: bytes, *, pss: bool = False) -> str:
    prehashed = utils.Prehashed(hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(digest, ec.ECDSA(prehashed))
    elif isinstance(key, rsa.RSAPrivateKey):
        scheme = (padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32) if pss
                  else padding.PKCS1v15())
        signature = key.sign(digest, scheme, prehashed)
    else:
        raise TypeError(f"cannot sign with {type(key).__name__}")
    return base64.b64encode(signature).decode("ascii")


# -- bad signing certificates (same installed root, new signing key) --------------------

def reissue(pki: FirmwarePki, *, ca: bool = False,
            eku: Sequence[x509.ObjectIdentifier] | None = CODE_SIGNING,
            not_before: datetime | None = None, not_after: datetime | None = None,
            key_type: str | None = None, key_usage: bool = True,
            issuer: tuple[x509.Certificate, PrivateKey] | None = None) -> FirmwarePki:
    """`pki` with a new signing key and certificate, built as the arguments say (eku=None:
    no extendedKeyUsage at all) and signed by `issuer` (default: the pki's own issuer)."""
    key_type = key_type or pki.key_type
    key = new_key(key_type)
    issuer_cert, issuer_key = issuer if issuer is not None else pki.issuer
    cert = make_certificate(_common_name(pki.signing_cert), key.public_key(), issuer_cert,
                            issuer_key, now=pki.now, ca=ca, eku=eku, not_before=not_before,
                            not_after=not_after, key_usage=key_usage)
    return dataclasses.replace(pki, signing_key=key, signing_cert=cert, key_type=key_type,
                               signing_cert_pem=pem(cert, pki.intermediate_cert))


def self_signed(pki: FirmwarePki) -> FirmwarePki:
    """A signing certificate that signed itself (not a CA)."""
    key = new_key(pki.key_type)
    cert = make_certificate("Example Firmware Signing", key.public_key(), None, key,
                            now=pki.now)
    return dataclasses.replace(pki, signing_key=key, signing_cert=cert,
                               signing_cert_pem=pem(cert))


def expired(pki: FirmwarePki) -> FirmwarePki:
    return reissue(pki, not_before=pki.now - timedelta(days=400),
                   not_after=pki.now - timedelta(days=1))


def not_yet_valid(pki: FirmwarePki) -> FirmwarePki:
    return reissue(pki, not_before=pki.now + timedelta(days=1),
                   not_after=pki.now + timedelta(days=400))


def other_root(pki: FirmwarePki, *, same_name: bool = False) -> FirmwarePki:
    """A signing certificate (no intermediate) issued by a root that is not installed;
    with `same_name`, an impostor root that copies the installed root's subject, so only
    the signature tells them apart."""
    key = new_key(pki.key_type)
    cn = _common_name(pki.root_cert) if same_name else "Someone Else Root CA"
    root = make_certificate(cn, key.public_key(), None, key, now=pki.now, ca=True)
    signed = reissue(pki, issuer=(root, key))
    return dataclasses.replace(signed, signing_cert_pem=pem(signed.signing_cert))


# -- building blocks ---------------------------------------------------------------------

def make_certificate(common_name: str, public_key: Any, issuer: x509.Certificate | None,
                     issuer_key: PrivateKey, *, now: datetime, days: int | None = None,
                     ca: bool = False, path_length: int | None = None,
                     eku: Sequence[x509.ObjectIdentifier] | None = CODE_SIGNING,
                     not_before: datetime | None = None, not_after: datetime | None = None,
                     key_usage: bool = True) -> x509.Certificate:
    """A certificate signed with SHA-256 by `issuer_key` (self-signed if `issuer` is None).
    A CA gets keyCertSign and no extendedKeyUsage; an end-entity digitalSignature and `eku`.
    Validity: `not_before`/`not_after`, by default a day before `now` until `days` later
    (CAs: 10 years)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    if days is None:
        days = 365 * CA_YEARS if ca else 365
    start = not_before if not_before is not None else now - timedelta(days=1)
    end = not_after if not_after is not None else now + timedelta(days=days)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.subject if issuer is not None else subject)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca
                                                    else None), critical=True))
    if key_usage:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=not ca, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False), critical=True)
    if eku is not None and not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def pem(*certs: x509.Certificate | None) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii")
                   for c in certs if c is not None)


def _common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _now() -> datetime:
    # Certificates keep whole seconds; so does `now`, so "valid at now" is exact.
    return datetime.now(timezone.utc).replace(microsecond=0)
