"""Secure firmware update checks (OCPP 2.0.1 L01): the signing certificate against the
installed ManufacturerRootCertificates, and the signature against the downloaded file.

A fixed clock (NOW) and a throw-away manufacturer PKI (tests/firmware_pki.py); keys are
made once per kind, since RSA key generation is the slow part.
"""

from __future__ import annotations

import base64
import hashlib
import tracemalloc
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from agent.blocks.firmware.verify import (VerificationError, check_signing_certificate,
                                   parse_pem_chain, verify_signature)
from tests import firmware_pki as fp

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
KINDS = [("rsa", False), ("rsa", True), ("ec", False), ("ec", True)]


@lru_cache(maxsize=None)
def pki(key_type: str = "rsa", intermediate: bool = False,
        ca_key_type: str | None = None) -> fp.FirmwarePki:
    return fp.make_firmware_pki(key_type, intermediate=intermediate, now=NOW,
                                ca_key_type=ca_key_type)


def check(p: fp.FirmwarePki, roots: list[str] | None = None, now: datetime = NOW):
    return check_signing_certificate(p.signing_cert_pem,
                                     [p.root_pem] if roots is None else roots, now)


def rejected(p: fp.FirmwarePki, match: str, roots: list[str] | None = None) -> str:
    with pytest.raises(VerificationError, match=match) as info:
        check(p, roots)
    return one_line(info.value)


def one_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text and 0 < len(text) <= 255
    return text


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    path = tmp_path / "firmware-1.2.3.bin"
    path.write_bytes(b"\x7fELF" + bytes(range(256)) * 64)
    return path


# -- the happy paths ---------------------------------------------------------------------

@pytest.mark.parametrize("key_type,intermediate", KINDS)
def test_valid_chain_and_signature(key_type: str, intermediate: bool, firmware: Path) -> None:
    p = pki(key_type, intermediate)
    cert = check(p)
    assert cert == p.signing_cert
    digest = verify_signature(firmware, fp.sign_file(p, firmware), cert)
    assert digest == hashlib.sha256(firmware.read_bytes()).hexdigest()


@pytest.mark.parametrize("key_type,ca_key_type", [("ec", "rsa"), ("rsa", "ec")])
def test_mixed_key_types_in_the_chain(key_type: str, ca_key_type: str, firmware: Path) -> None:
    p = pki(key_type, True, ca_key_type)
    verify_signature(firmware, fp.sign_file(p, firmware), check(p))


def test_rsa_pss_signature_is_accepted(firmware: Path) -> None:
    p = pki("rsa")
    verify_signature(firmware, fp.sign_file(p, firmware, pss=True), check(p))


def test_chain_in_any_order_and_with_its_root(firmware: Path) -> None:
    p = pki("ec", True)
    reordered = fp.pem(p.signing_cert, p.root_cert, p.intermediate_cert)
    assert check_signing_certificate(reordered, [p.root_pem], NOW) == p.signing_cert


def test_one_of_several_roots(firmware: Path) -> None:
    p = pki("ec")
    assert check(p, [pki("rsa").root_pem, "", p.root_pem]) == p.signing_cert


def test_escaped_newlines_in_the_pem_are_tolerated() -> None:
    p = pki("ec", True)
    escaped = p.signing_cert_pem.replace("\n", "\\n")
    assert check_signing_certificate(escaped, [p.root_pem], NOW) == p.signing_cert


def test_no_extended_key_usage_is_fine() -> None:
    assert check(fp.reissue(pki("ec"), eku=None))


def test_validity_edges() -> None:
    p = pki("ec")
    cert = p.signing_cert
    assert cert == check(p, now=NOW - timedelta(days=1))   # the first valid second
    with pytest.raises(VerificationError, match="expired"):
        check(p, now=NOW + timedelta(days=366))
    with pytest.raises(VerificationError, match="not valid before"):
        check(p, now=NOW - timedelta(days=2))
    assert cert == check(p, now=NOW + timedelta(days=364))


def test_large_file_is_streamed(tmp_path: Path) -> None:
    p = pki("ec")
    path = tmp_path / "big.bin"
    with path.open("wb") as out:
        for n in range(5 * 16):   # 5 MiB
            out.write(bytes([n]) * 65536)
    signature = fp.sign_file(p, path)
    tracemalloc.start()
    try:
        digest = verify_signature(path, signature, p.signing_cert)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert peak < 1024 * 1024, f"{peak} bytes: the file was read whole"


# -- the signature -----------------------------------------------------------------------

@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_signature_of_another_file(key_type: str, firmware: Path, tmp_path: Path) -> None:
    p = pki(key_type)
    other = tmp_path / "other.bin"
    other.write_bytes(b"another firmware")
    with pytest.raises(VerificationError, match="does not match firmware-1.2.3.bin") as info:
        verify_signature(firmware, fp.sign_file(p, other), p.signing_cert)
    one_line(info.value)


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_tampered_file(key_type: str, firmware: Path) -> None:
    p = pki(key_type)
    signature = fp.sign_file(p, firmware)
    data = bytearray(firmware.read_bytes())
    data[1000] ^= 0x01
    firmware.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="does not match"):
        verify_signature(firmware, signature, p.signing_cert)


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_signed_by_another_key(key_type: str, firmware: Path) -> None:
    p = pki(key_type)
    impostor = fp.reissue(p)
    with pytest.raises(VerificationError, match="does not match"):
        verify_signature(firmware, fp.sign_file(impostor, firmware), p.signing_cert)


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_truncated_signature(key_type: str, firmware: Path) -> None:
    p = pki(key_type)
    signature = base64.b64decode(fp.sign_file(p, firmware))
    short = base64.b64encode(signature[:-8]).decode()
    with pytest.raises(VerificationError, match="bytes"):
        verify_signature(firmware, short, p.signing_cert)
    with pytest.raises(VerificationError, match="base64"):
        verify_signature(firmware, fp.sign_file(p, firmware)[:-3], p.signing_cert)


@pytest.mark.parametrize("text,match", [
    ("", "empty"), ("   \n", "empty"), ("not base64 at all!", "base64"),
    ("QUJD*RA==", "base64"), ("QUJDRA=", "base64"),
])
def test_garbage_signature(text: str, match: str, firmware: Path) -> None:
    with pytest.raises(VerificationError, match=match) as info:
        verify_signature(firmware, text, pki("ec").signing_cert)
    one_line(info.value)


def test_signature_with_line_breaks(firmware: Path) -> None:
    p = pki("rsa")
    signature = fp.sign_file(p, firmware)
    wrapped = "\n".join(signature[i:i + 64] for i in range(0, len(signature), 64))
    verify_signature(firmware, wrapped, p.signing_cert)


def test_ecdsa_signature_checked_with_an_rsa_key(firmware: Path) -> None:
    with pytest.raises(VerificationError, match="RSA-2048 signature is 256"):
        verify_signature(firmware, fp.sign_file(pki("ec"), firmware), pki("rsa").signing_cert)


def test_other_key_types_are_refused(firmware: Path) -> None:
    p = pki("ec")
    key = ed25519.Ed25519PrivateKey.generate()
    cert = fp.make_certificate("Ed Signing", key.public_key(), p.root_cert, p.root_key, now=NOW)
    signature = base64.b64encode(key.sign(firmware.read_bytes())).decode()
    with pytest.raises(VerificationError, match="Ed25519 key; OCPP firmware signatures"):
        verify_signature(firmware, signature, cert)
    with pytest.raises(VerificationError, match="Ed25519 key"):
        check_signing_certificate(fp.pem(cert), [p.root_pem], NOW)


def test_unreadable_file_is_not_a_signature_error(tmp_path: Path) -> None:
    p = pki("ec")
    with pytest.raises(FileNotFoundError):
        verify_signature(tmp_path / "missing.bin", fp.sign_digest(p.signing_key, b"\0" * 32),
                         p.signing_cert)


# -- the signing certificate -------------------------------------------------------------

@pytest.mark.parametrize("key_type,intermediate", KINDS)
def test_signing_cert_from_another_root(key_type: str, intermediate: bool) -> None:
    text = rejected(fp.other_root(pki(key_type, intermediate)), "does not chain")
    assert "CN=Someone Else Root CA" in text


def test_impostor_root_with_the_same_name() -> None:
    rejected(fp.other_root(pki("ec"), same_name=True), "its issuer, but that certificate's signature on it does not verify")


@pytest.mark.parametrize("key_type,intermediate", KINDS)
def test_expired_signing_cert(key_type: str, intermediate: bool) -> None:
    rejected(fp.expired(pki(key_type, intermediate)), "signing certificate .* expired on")


@pytest.mark.parametrize("key_type,intermediate", KINDS)
def test_not_yet_valid_signing_cert(key_type: str, intermediate: bool) -> None:
    rejected(fp.not_yet_valid(pki(key_type, intermediate)), "is not valid before 2026-01-02")


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_self_signed_signing_cert(key_type: str) -> None:
    rejected(fp.self_signed(pki(key_type)), "self-signed")


@pytest.mark.parametrize("key_type,intermediate", KINDS)
def test_signing_cert_that_is_a_ca(key_type: str, intermediate: bool) -> None:
    rejected(fp.reissue(pki(key_type, intermediate), ca=True), "is a CA certificate")


def test_extended_key_usage_without_code_signing() -> None:
    bad = fp.reissue(pki("ec"), eku=[ExtendedKeyUsageOID.SERVER_AUTH,
                                     ExtendedKeyUsageOID.CLIENT_AUTH])
    rejected(bad, "extendedKeyUsage without codeSigning")
    assert check(fp.reissue(pki("ec"), eku=[ExtendedKeyUsageOID.SERVER_AUTH,
                                            ExtendedKeyUsageOID.CODE_SIGNING]))


@pytest.mark.parametrize("roots", [[], [""], ["  \n"]])
def test_no_roots_installed(roots: list[str]) -> None:
    text = rejected(pki("ec"), "^no ManufacturerRootCertificate installed", roots)
    assert "InstallCertificate" in text


@pytest.mark.parametrize("text", [
    "", "hello", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "-----BEGIN CERTIFICATE-----\nMIIB" + "A" * 200 + "\n-----END CERTIFICATE-----\n",
])
def test_garbage_signing_pem(text: str) -> None:
    with pytest.raises(VerificationError, match="^signingCertificate: ") as info:
        check_signing_certificate(text, [pki("ec").root_pem], NOW)
    one_line(info.value)


def test_garbage_installed_root() -> None:
    p = pki("ec")
    with pytest.raises(VerificationError, match="installed ManufacturerRootCertificate 2"):
        check(p, [p.root_pem, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"])


def test_missing_intermediate() -> None:
    p = pki("ec", True)
    text = rejected(replace(p, signing_cert_pem=fp.pem(p.signing_cert)), "does not chain")
    assert "CN=Example Firmware Signing CA" in text


def test_intermediate_that_is_not_a_ca() -> None:
    p = pki("ec")
    not_ca_key = fp.new_key("ec")
    not_ca = fp.make_certificate("Not A CA", not_ca_key.public_key(), p.root_cert, p.root_key,
                                 now=NOW, eku=None)
    bad = fp.reissue(p, issuer=(not_ca, not_ca_key))
    rejected(replace(bad, signing_cert_pem=fp.pem(bad.signing_cert, not_ca)),
             "intermediate CN=Not A CA is not a CA")


def test_expired_intermediate() -> None:
    p = pki("ec")
    key = fp.new_key("ec")
    old = fp.make_certificate("Old CA", key.public_key(), p.root_cert, p.root_key, now=NOW,
                              ca=True, not_before=NOW - timedelta(days=900),
                              not_after=NOW - timedelta(days=1))
    bad = fp.reissue(p, issuer=(old, key))
    rejected(replace(bad, signing_cert_pem=fp.pem(bad.signing_cert, old)),
             "intermediate CN=Old CA expired")


def test_path_length_constraint() -> None:
    p = pki("ec", True)   # its intermediate has pathLenConstraint 0
    key = fp.new_key("ec")
    below = fp.make_certificate("Sub CA", key.public_key(), p.intermediate_cert,
                                p.intermediate_key, now=NOW, ca=True)
    bad = fp.reissue(p, issuer=(below, key))
    chain = fp.pem(bad.signing_cert, below, p.intermediate_cert)
    with pytest.raises(VerificationError, match="allows 0 intermediates below it, not 1"):
        check_signing_certificate(chain, [p.root_pem], NOW)


def test_expired_root() -> None:
    key = fp.new_key("ec")
    root = fp.make_certificate("Short Root", key.public_key(), None, key, now=NOW, ca=True,
                               not_after=NOW + timedelta(days=10))
    p = fp.reissue(pki("ec"), issuer=(root, key))
    with pytest.raises(VerificationError, match="installed ManufacturerRootCertificate .* expired"):
        check(p, [fp.pem(root)], now=NOW + timedelta(days=20))


def test_short_rsa_key() -> None:
    p = pki("rsa")
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cert = fp.make_certificate("Weak Signing", key.public_key(), p.root_cert, p.root_key, now=NOW)
    with pytest.raises(VerificationError, match="1024-bit RSA key"):
        check_signing_certificate(fp.pem(cert), [p.root_pem], NOW)


def test_naive_time_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check(pki("ec"), now=NOW.replace(tzinfo=None))


# -- small parts -------------------------------------------------------------------------

def test_parse_pem_chain() -> None:
    p = pki("ec", True)
    assert parse_pem_chain(p.signing_cert_pem) == [p.signing_cert, p.intermediate_cert]
    for text in ("", "no pem here"):
        with pytest.raises(VerificationError):
            parse_pem_chain(text)


def test_error_is_one_short_line() -> None:
    assert one_line(VerificationError("a\nb  c")) == "a b c"
    long = str(VerificationError("x" * 400))
    assert len(long) == 255 and long.endswith("...")
