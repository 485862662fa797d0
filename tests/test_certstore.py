"""The certificate store (agent/pki): roots, hash data, the station's key pair on disk.

Real certificates made with cryptography (certs/dev_pki.py's helpers); hash data checked
against OpenSSL's own OCSP CertID computation and `openssl x509 -serial`.
"""

from __future__ import annotations

import logging
import os
import ssl
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from agent.pki import files
from agent.pki.certstore import CertificateStore
from agent.pki.checks import hash_data, parse_certificates, subject_key_bits
from certs import dev_pki

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)   # ManualClock's default start
STATION = "CS-001"
CSMS = "CSMSRootCertificate"


def valid(**kw):
    return dict(not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=365), **kw)


def make_root(cn: str = "Test Root", key_type: str = "ec", **kw):
    kw.setdefault("not_before", NOW - timedelta(days=1))
    kw.setdefault("not_after", NOW + timedelta(days=3650))
    return dev_pki.make_root(cn, key_type=key_type, **kw)


def pem(*certs: x509.Certificate) -> str:
    return dev_pki.pem(*certs).decode("ascii")


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def store(tmp_path: Path) -> CertificateStore:
    return CertificateStore(tmp_path / "certs")


@pytest.fixture(scope="module")
def pki():
    """A root, an intermediate under it, and a stranger root."""
    root, root_key = make_root("Test CSMS Root")
    sub_key = dev_pki.new_key()
    sub = dev_pki.issue(root, root_key, "Test Sub-CA", sub_key.public_key(), ca=True,
                        path_length=0, **valid())
    other, other_key = make_root("Stranger Root")
    return {"root": root, "root_key": root_key, "sub": sub, "sub_key": sub_key,
            "other": other, "other_key": other_key}


def sign_pending(csr_pem: str, issuer, issuer_key, cn: str = STATION, **kw) -> x509.Certificate:
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    times = valid()
    times.update(kw)
    return dev_pki.issue(issuer, issuer_key, cn, csr.public_key(), client=True, **times)


def key_of(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), None)


def spki(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def assert_pair_matches(store: CertificateStore) -> None:
    chain_path, key_path = store.station_credentials()
    leaf = parse_certificates(chain_path.read_text())[0]
    assert spki(leaf.public_key()) == spki(key_of(key_path).public_key())


# -- layout and permissions ---------------------------------------------------------------

def test_directories_are_0700_even_when_they_existed_looser(tmp_path: Path) -> None:
    loose = tmp_path / "certs"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    old = os.umask(0o022)
    try:
        CertificateStore(loose)
    finally:
        os.umask(old)
    assert mode(loose) == 0o700
    for sub in ("station", "CSMSRootCertificate", "ManufacturerRootCertificate",
                "V2GRootCertificate", "MORootCertificate"):
        assert mode(loose / sub) == 0o700


def test_write_private_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        files.write_private(tmp_path / "x", b"secret")
    finally:
        os.umask(old)
    assert mode(tmp_path / "x") == 0o600
    assert (tmp_path / "x").read_bytes() == b"secret"
    assert not list(tmp_path.glob(".*.tmp"))


# -- InstallCertificate -------------------------------------------------------------------

@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_install_root_stores_one_0600_file(store: CertificateStore, tmp_path: Path,
                                           key_type: str) -> None:
    root, _ = make_root(key_type=key_type)
    outcome = store.install(CSMS, pem(root), NOW)
    assert (outcome.status, outcome.changed) == ("Accepted", True)
    stored = list((tmp_path / "certs" / CSMS).iterdir())
    assert len(stored) == 1 and mode(stored[0]) == 0o600
    assert parse_certificates(stored[0].read_text())[0] == root
    assert store.count() == 1
    assert "BEGIN CERTIFICATE" in store.csms_roots_pem()


def test_install_keeps_only_the_certificate_not_surrounding_text(store, tmp_path) -> None:
    root, _ = make_root()
    assert store.install(CSMS, "Bag Attributes: junk\n" + pem(root) + "\ntrailer\n", NOW).ok
    text = next((tmp_path / "certs" / CSMS).iterdir()).read_text()
    assert text == pem(root)


def test_duplicate_install_is_accepted_and_changes_nothing(store: CertificateStore) -> None:
    root, _ = make_root()
    assert store.install(CSMS, pem(root), NOW).changed
    again = store.install(CSMS, pem(root), NOW)
    assert again.status == "Accepted" and not again.changed
    assert store.count() == 1


def test_same_root_under_two_types_is_two_entries(store: CertificateStore) -> None:
    root, _ = make_root()
    assert store.install(CSMS, pem(root), NOW).ok
    assert store.install("ManufacturerRootCertificate", pem(root), NOW).ok
    assert [e["certificateType"] for e in store.installed()] == [
        CSMS, "ManufacturerRootCertificate"]


def _rejected(store: CertificateStore, tmp_path: Path, text: str, use: str = CSMS) -> str:
    outcome = store.install(use, text, NOW)
    assert outcome.status == "Rejected", outcome
    assert outcome.reason_code == "InvalidCertificate"
    assert store.count() == 0
    assert not list((tmp_path / "certs" / use).iterdir()), "nothing may be stored"
    return outcome.info


def test_garbage_is_rejected_with_a_clear_reason(store, tmp_path) -> None:
    assert "no PEM certificate" in _rejected(store, tmp_path, "hello, I am not a certificate")
    assert "cannot be read" in _rejected(
        store, tmp_path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    root, _ = make_root()
    good = pem(root)
    body = good.splitlines()
    body[3] = body[3][:10] + ("A" if body[3][10] != "A" else "B") + body[3][11:]
    # A flipped character in the middle: either unparsable or a bad signature.
    info = _rejected(store, tmp_path, "\n".join(body) + "\n")
    assert "cannot be read" in info or "not a root" in info or "CA" in info


def test_two_certificates_are_rejected(store, tmp_path, pki) -> None:
    info = _rejected(store, tmp_path, pem(pki["root"], pki["other"]))
    assert "expected one certificate, got 2" in info


def test_a_leaf_is_not_a_root(store, tmp_path) -> None:
    leaf, _ = make_root("Self-signed leaf", ca=False)
    assert "not a CA certificate" in _rejected(store, tmp_path, pem(leaf))


def test_a_sub_ca_is_not_a_root(store, tmp_path, pki) -> None:
    info = _rejected(store, tmp_path, pem(pki["sub"]))
    assert "not a root certificate" in info and "Test CSMS Root" in info


def test_expired_and_not_yet_valid_roots_are_rejected(store, tmp_path) -> None:
    expired, _ = make_root(not_before=NOW - timedelta(days=20), not_after=NOW - timedelta(days=1))
    assert "expired on" in _rejected(store, tmp_path, pem(expired))
    future, _ = make_root(not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=9))
    assert "not valid before" in _rejected(store, tmp_path, pem(future))


def test_a_full_store_fails_with_out_of_storage(tmp_path: Path) -> None:
    store = CertificateStore(tmp_path / "certs", max_entries=2)
    for n in range(2):
        assert store.install(CSMS, pem(make_root(f"Root {n}")[0]), NOW).ok
    outcome = store.install(CSMS, pem(make_root("One too many")[0]), NOW)
    assert (outcome.status, outcome.reason_code) == ("Failed", "OutOfStorage")
    assert store.count() == 2


def test_a_disk_error_fails_and_leaves_nothing(store, tmp_path, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(files.os, "replace", broken)
    outcome = store.install(CSMS, pem(make_root()[0]), NOW)
    assert (outcome.status, outcome.reason_code) == ("Failed", "OutOfStorage")
    assert store.count() == 0
    assert not list((tmp_path / "certs" / CSMS).iterdir())


def test_roots_survive_a_restart_and_unreadable_files_are_skipped(tmp_path, caplog) -> None:
    store = CertificateStore(tmp_path / "certs")
    root, _ = make_root()
    assert store.install(CSMS, pem(root), NOW).ok
    (tmp_path / "certs" / CSMS / "junk.pem").write_text("not a certificate")
    with caplog.at_level(logging.ERROR):
        again = CertificateStore(tmp_path / "certs")
    assert again.installed() == store.installed()
    assert "junk.pem" in caplog.text


# -- GetInstalledCertificateIds: hash data --------------------------------------------------

def _openssl_serial(cert: x509.Certificate, tmp_path: Path) -> str:
    path = tmp_path / "serial.pem"
    path.write_text(pem(cert))
    out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1]


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
@pytest.mark.parametrize("algorithm,hash_cls", [("SHA256", hashes.SHA256),
                                                ("SHA384", hashes.SHA384),
                                                ("SHA512", hashes.SHA512)])
def test_hash_data_is_what_openssl_computes_for_an_ocsp_cert_id(
        key_type, algorithm, hash_cls, tmp_path: Path) -> None:
    # A serial with a leading zero nibble: hex without leading zeroes, lowercase.
    root, root_key = make_root(key_type=key_type, serial_number=0x0ABCDEF0123)
    sub = dev_pki.issue(root, root_key, "Sub", dev_pki.new_key(key_type).public_key(),
                        ca=True, **valid())
    for cert, issuer in ((root, root), (sub, root)):
        ours = hash_data(cert, issuer, algorithm)
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hash_cls()).build()
        assert ours["hashAlgorithm"] == algorithm
        assert ours["issuerNameHash"] == request.issuer_name_hash.hex()
        assert ours["issuerKeyHash"] == request.issuer_key_hash.hex()
        assert ours["serialNumber"] == format(request.serial_number, "x")
        assert ours["serialNumber"] == _openssl_serial(cert, tmp_path).lstrip("0").lower()
    assert hash_data(root, root)["serialNumber"] == "abcdef0123"


def test_issuer_key_hash_covers_the_bit_string_without_the_unused_bits_octet() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    root, _ = make_root(key=key)
    point = key.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint)
    assert subject_key_bits(root) == point
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_root, _ = make_root(key=rsa_key)
    assert subject_key_bits(rsa_root) == rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1)


def test_installed_lists_by_type_in_sha256(store: CertificateStore, pki) -> None:
    assert store.installed() == []
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    manufacturer, _ = make_root("Manufacturer Root")
    assert store.install("ManufacturerRootCertificate", pem(manufacturer), NOW).ok
    every = store.installed()
    assert [e["certificateType"] for e in every] == [CSMS, "ManufacturerRootCertificate"]
    assert every[0]["certificateHashData"] == hash_data(pki["root"], pki["root"])
    assert all(e["certificateHashData"]["hashAlgorithm"] == "SHA256" for e in every)
    assert store.installed(["ManufacturerRootCertificate"]) == every[1:]
    assert store.installed(["V2GRootCertificate", "V2GCertificateChain"]) == []
    assert store.count() == 2


# -- DeleteCertificate ---------------------------------------------------------------------

def test_delete_removes_the_file(store: CertificateStore, tmp_path: Path, pki) -> None:
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    assert store.install(CSMS, pem(pki["other"]), NOW).ok
    outcome = store.delete(hash_data(pki["other"], pki["other"]))
    assert (outcome.status, outcome.changed) == ("Accepted", True)
    assert store.csms_roots() == [pki["root"]]
    assert len(list((tmp_path / "certs" / CSMS).iterdir())) == 1
    assert CertificateStore(tmp_path / "certs").csms_roots() == [pki["root"]]


def test_delete_matches_case_insensitively_in_any_algorithm(store, pki) -> None:
    for algorithm in ("SHA384", "SHA512", "SHA256"):
        assert store.install(CSMS, pem(pki["other"]), NOW).ok
        wanted = hash_data(pki["other"], pki["other"], algorithm)
        wanted = {k: v.upper() if k != "hashAlgorithm" else v for k, v in wanted.items()}
        wanted["serialNumber"] = "00" + wanted["serialNumber"]
        assert store.delete(wanted).status == "Accepted", algorithm
        assert store.count() == 0


def test_delete_unknown_is_not_found(store, pki) -> None:
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    wanted = hash_data(pki["root"], pki["root"])
    for field, value in (("serialNumber", "1"), ("issuerNameHash", "00" * 32),
                         ("issuerKeyHash", "00" * 32)):
        outcome = store.delete({**wanted, field: value})
        assert outcome.status == "NotFound", field
    assert store.count() == 1


def test_the_last_csms_root_stays_on_profile_2_and_3(store, pki) -> None:
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    assert store.install(CSMS, pem(pki["other"]), NOW).ok
    assert store.delete(hash_data(pki["other"], pki["other"]), keep_last_csms_root=True).ok
    last = store.delete(hash_data(pki["root"], pki["root"]), keep_last_csms_root=True)
    assert last.status == "Failed" and "last CSMSRootCertificate" in last.info
    assert store.count() == 1
    assert store.delete(hash_data(pki["root"], pki["root"]), keep_last_csms_root=False).ok
    assert store.count() == 0


# -- the station's key and certificate -----------------------------------------------------

def test_new_key_and_csr_ec_by_default(store: CertificateStore, tmp_path: Path) -> None:
    csr_pem = store.new_key_and_csr(STATION, "Example CSO")
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == STATION
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Example CSO"
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    key = key_of(tmp_path / "certs" / "station" / "pending.key")
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert spki(key.public_key()) == spki(csr.public_key())
    assert mode(tmp_path / "certs" / "station" / "pending.key") == 0o600
    assert len(csr_pem) < 5500   # SignCertificateRequest.csr


def test_new_key_and_csr_rsa(store: CertificateStore, tmp_path: Path) -> None:
    csr = x509.load_pem_x509_csr(store.new_key_and_csr(STATION, "", key_type="rsa").encode())
    assert isinstance(csr.public_key(), rsa.RSAPublicKey) and csr.public_key().key_size == 2048
    assert not csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    with pytest.raises(ValueError):
        store.new_key_and_csr(STATION, "", key_type="dsa")


def test_csr_for_pending_reuses_the_key(store: CertificateStore) -> None:
    assert store.csr_for_pending(STATION, "O") is None
    first = x509.load_pem_x509_csr(store.new_key_and_csr(STATION, "O").encode())
    again = x509.load_pem_x509_csr(store.csr_for_pending(STATION, "O").encode())
    assert spki(first.public_key()) == spki(again.public_key())


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_accept_a_chain_through_a_sub_ca(store, tmp_path, pki, key_type) -> None:
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    leaf = sign_pending(store.new_key_and_csr(STATION, "O", key_type=key_type),
                        pki["sub"], pki["sub_key"])
    outcome = store.accept_signed_chain(pem(leaf, pki["sub"]), NOW, station_id=STATION)
    assert (outcome.status, outcome.changed) == ("Accepted", True), outcome
    chain_path, key_path = store.station_credentials()
    assert mode(chain_path) == mode(key_path) == 0o600
    assert mode(chain_path.parent) == 0o700
    assert parse_certificates(chain_path.read_text()) == [leaf, pki["sub"]]
    assert_pair_matches(store)
    assert not store.has_pending_key()
    assert store.station_certificate_expiry() == NOW + timedelta(days=365)
    # The pair is what an ssl context takes.
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(chain_path), str(key_path))
    # ... and survives a restart.
    again = CertificateStore(tmp_path / "certs")
    assert again.station_credentials() == (chain_path, key_path)
    assert again.station_chain() == [leaf, pki["sub"]]


def test_accept_a_leaf_signed_by_the_root_with_the_root_in_the_chain(store, pki) -> None:
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    leaf = sign_pending(store.new_key_and_csr(STATION, "O"), pki["root"], pki["root_key"])
    assert store.accept_signed_chain(pem(leaf, pki["root"]), NOW, station_id=STATION).ok


def test_a_root_passed_in_is_trusted_too(store, pki) -> None:
    leaf = sign_pending(store.new_key_and_csr(STATION, "O"), pki["root"], pki["root_key"])
    refused = store.accept_signed_chain(pem(leaf), NOW, station_id=STATION)
    assert refused.status == "Rejected" and "does not lead to an installed" in refused.info
    accepted = store.accept_signed_chain(pem(leaf), NOW, station_id=STATION,
                                         trusted_pem="junk\n" + pem(pki["other"], pki["root"]))
    assert accepted.ok, accepted


def test_the_same_chain_again_is_accepted_without_change(store, pki) -> None:
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    leaf = sign_pending(store.new_key_and_csr(STATION, "O"), pki["root"], pki["root_key"])
    assert store.accept_signed_chain(pem(leaf), NOW, station_id=STATION).changed
    credentials = store.station_credentials()
    again = store.accept_signed_chain(pem(leaf), NOW, station_id=STATION)
    assert again.status == "Accepted" and not again.changed
    assert store.station_credentials() == credentials


def _refused(store: CertificateStore, chain: str, now: datetime = NOW) -> str:
    before = store.station_credentials()
    outcome = store.accept_signed_chain(chain, now, station_id=STATION)
    assert outcome.status == "Rejected", outcome
    assert outcome.reason_code == "InvalidCertificate"
    assert store.station_credentials() == before
    return outcome.info


def test_refusals(store: CertificateStore, pki) -> None:
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    assert "no certificate signing request is pending" in _refused(
        store, pem(dev_pki.issue(pki["root"], pki["root_key"], STATION,
                                 dev_pki.new_key().public_key(), **valid())))
    csr = store.new_key_and_csr(STATION, "O")
    other_key = dev_pki.new_key().public_key()
    assert "key does not match" in _refused(
        store, pem(dev_pki.issue(pki["root"], pki["root_key"], STATION, other_key, **valid())))
    assert "common name 'CS-999'" in _refused(
        store, pem(sign_pending(csr, pki["root"], pki["root_key"], cn="CS-999")))
    assert "expired on" in _refused(store, pem(sign_pending(
        csr, pki["root"], pki["root_key"], not_before=NOW - timedelta(days=9),
        not_after=NOW - timedelta(seconds=1))))
    assert "not valid before" in _refused(store, pem(sign_pending(
        csr, pki["root"], pki["root_key"], not_before=NOW + timedelta(hours=1))))
    assert "does not lead to an installed CSMSRootCertificate" in _refused(
        store, pem(sign_pending(csr, pki["other"], pki["other_key"])))
    # Signed by the sub-CA, which the chain leaves out: no way up to the root.
    via_sub = sign_pending(csr, pki["sub"], pki["sub_key"])
    assert "does not lead to" in _refused(store, pem(via_sub))
    # A chain in the wrong order, and one whose "sub-CA" did not sign the leaf.
    assert "is not signed by the next one" in _refused(store, pem(via_sub, pki["root"], pki["sub"]))
    assert "is not signed by the next one" in _refused(
        store, pem(sign_pending(csr, pki["other"], pki["other_key"]), pki["sub"]))
    # A leaf posing as a sub-CA.
    posing_key = dev_pki.new_key()
    posing = dev_pki.issue(pki["root"], pki["root_key"], "Not a CA", posing_key.public_key(),
                           **valid())
    assert "is not a CA" in _refused(store, pem(sign_pending(csr, posing, posing_key), posing))
    assert "no PEM certificate" in _refused(store, "garbage")
    assert store.has_pending_key(), "a refused chain leaves the CSR pending"


def test_an_expired_sub_ca_is_refused(store, pki) -> None:
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    sub_key = dev_pki.new_key()
    old_sub = dev_pki.issue(pki["root"], pki["root_key"], "Old Sub", sub_key.public_key(),
                            ca=True, not_before=NOW - timedelta(days=30),
                            not_after=NOW - timedelta(days=1))
    leaf = sign_pending(store.new_key_and_csr(STATION, "O"), old_sub, sub_key)
    assert "Old Sub expired on" in _refused(store, pem(leaf, old_sub))


def test_renewal_replaces_the_pair_and_removes_the_old_one(store, tmp_path, pki) -> None:
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    first = sign_pending(store.new_key_and_csr(STATION, "O"), pki["root"], pki["root_key"])
    assert store.accept_signed_chain(pem(first), NOW, station_id=STATION).ok
    old_chain, old_key = store.station_credentials()
    second = sign_pending(store.new_key_and_csr(STATION, "O"), pki["root"], pki["root_key"],
                          not_after=NOW + timedelta(days=700))
    assert store.accept_signed_chain(pem(second), NOW, station_id=STATION).ok
    chain_path, key_path = store.station_credentials()
    assert chain_path.parent != old_chain.parent and not old_chain.parent.exists()
    assert store.station_certificate_expiry() == NOW + timedelta(days=700)
    assert_pair_matches(store)
    station_dir = tmp_path / "certs" / "station"
    assert sorted(p.name for p in station_dir.iterdir()) == sorted(
        ["current", chain_path.parent.name])


def test_the_station_certificate_is_never_deleted(store, pki) -> None:
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    leaf = sign_pending(store.new_key_and_csr(STATION, "O"), pki["sub"], pki["sub_key"])
    assert store.accept_signed_chain(pem(leaf, pki["sub"]), NOW, station_id=STATION).ok
    for algorithm in ("SHA256", "SHA512"):
        outcome = store.delete(hash_data(leaf, pki["sub"], algorithm))
        assert outcome.status == "Failed" and "station's own certificate" in outcome.info
    assert store.station_credentials() is not None
    # The sub-CA of its chain is not an installed certificate.
    assert store.delete(hash_data(pki["sub"], pki["root"])).status == "NotFound"


# -- power cuts during the swap -----------------------------------------------------------

def _install_first_pair(store: CertificateStore, pki) -> tuple[Path, Path, bytes, bytes]:
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    first = sign_pending(store.new_key_and_csr(STATION, "O"), pki["root"], pki["root_key"])
    assert store.accept_signed_chain(pem(first), NOW, station_id=STATION).ok
    chain_path, key_path = store.station_credentials()
    return chain_path, key_path, chain_path.read_bytes(), key_path.read_bytes()


@pytest.mark.parametrize("failing", [1, 2, 3])
def test_a_failed_swap_keeps_the_old_pair(store, tmp_path, pki, monkeypatch, failing) -> None:
    """os.replace fails at the chain (1), the key (2) or the pointer (3): the old pair
    stays in force, whole, and the CSR stays pending for a second delivery."""
    chain_path, key_path, chain_bytes, key_bytes = _install_first_pair(store, pki)
    leaf = sign_pending(store.new_key_and_csr(STATION, "O"), pki["root"], pki["root_key"])
    real_replace, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == failing:
            raise OSError(5, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", flaky)
    outcome = store.accept_signed_chain(pem(leaf), NOW, station_id=STATION)
    monkeypatch.setattr(files.os, "replace", real_replace)
    assert (outcome.status, outcome.reason_code) == ("Rejected", "InternalError")
    assert store.station_credentials() == (chain_path, key_path)
    assert (chain_path.read_bytes(), key_path.read_bytes()) == (chain_bytes, key_bytes)
    assert_pair_matches(store)
    assert store.has_pending_key()
    station_dir = tmp_path / "certs" / "station"
    assert sorted(p.name for p in station_dir.iterdir()) == sorted(
        ["current", "pending.key", chain_path.parent.name])
    assert store.accept_signed_chain(pem(leaf), NOW, station_id=STATION).ok
    assert_pair_matches(store)


@pytest.mark.parametrize("failing", [1, 2, 3, 4])
def test_a_power_cut_at_any_step_leaves_a_matching_pair(tmp_path, pki, monkeypatch,
                                                        failing) -> None:
    """Like a power cut: the process stops at the n-th os.replace with nothing tidied up;
    the next start sees the old pair or the new one (never a mix) and clears the debris."""
    store = CertificateStore(tmp_path / "certs")
    _install_first_pair(store, pki)
    old_leaf = store.station_chain()[0]
    leaf = sign_pending(store.new_key_and_csr(STATION, "O"), pki["root"], pki["root_key"])
    real_replace, calls = os.replace, []

    class PowerCut(BaseException):
        pass

    def cut(src, dst):
        calls.append(dst)
        if len(calls) == failing:
            raise PowerCut()
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", cut)
    monkeypatch.setattr(files, "remove", lambda path: None)      # no tidying after a cut
    monkeypatch.setattr(files, "_unlink", lambda path: None)
    try:
        store.accept_signed_chain(pem(leaf), NOW, station_id=STATION)
    except PowerCut:
        pass
    monkeypatch.undo()
    restarted = CertificateStore(tmp_path / "certs")
    chain_path, _ = restarted.station_credentials()
    assert_pair_matches(restarted)
    # Before the pointer moved (steps 1-3): the old pair; after it: the new one.
    assert restarted.station_chain()[0] == (old_leaf if failing <= 3 else leaf)
    station_dir = tmp_path / "certs" / "station"
    names = {p.name for p in station_dir.iterdir()}
    assert names <= {"current", "pending.key", chain_path.parent.name}
    assert not any(n.endswith(".tmp") for n in names)


def test_a_mismatched_pair_on_disk_is_not_used(tmp_path, pki, caplog) -> None:
    store = CertificateStore(tmp_path / "certs")
    chain_path, key_path, _, _ = _install_first_pair(store, pki)
    key_path.write_bytes(dev_pki.key_pem(dev_pki.new_key()))
    with caplog.at_level(logging.ERROR):
        again = CertificateStore(tmp_path / "certs")
    assert again.station_credentials() is None
    assert "does not match its key" in caplog.text
    assert "PRIVATE KEY" not in caplog.text


def test_no_station_certificate(store: CertificateStore) -> None:
    assert store.station_credentials() is None
    assert store.station_certificate_expiry() is None
    assert store.station_chain() == []
    assert store.csms_roots_pem() == ""


def test_csms_roots_pem_is_ssl_cadata(store, pki) -> None:
    assert store.install(CSMS, pem(pki["root"]), NOW).ok
    assert store.install(CSMS, pem(pki["other"]), NOW).ok
    assert store.install("ManufacturerRootCertificate", pem(make_root("M")[0]), NOW).ok
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=store.csms_roots_pem())
    assert len(context.get_ca_certs()) == 2


def test_keys_never_reach_the_log(tmp_path, pki, caplog) -> None:
    with caplog.at_level(logging.DEBUG):
        store = CertificateStore(tmp_path / "certs")
        _install_first_pair(store, pki)
        store.new_key_and_csr(STATION, "O", key_type="rsa")
    assert "PRIVATE KEY" not in caplog.text


# -- the config's ca_file roots (`configured`): listed, counted, withdrawn ----------------

def test_pem_fingerprint_without_cryptography_is_the_certificates(pki) -> None:
    from agent.pki.checks import fingerprint
    from agent.pki.pem import der_fingerprint, pem_blocks
    text = "bag attributes\n" + pem(pki["root"]) + "\n# comment\n" + pem(pki["other"])
    assert [der_fingerprint(b) for b in pem_blocks(text)] == [
        fingerprint(pki["root"]), fingerprint(pki["other"])]
    broken = "-----BEGIN CERTIFICATE-----\nMIIB=x==\n-----END CERTIFICATE-----"
    assert der_fingerprint(broken) is None


def test_configured_roots_are_listed_once_and_counted(store, pki, caplog) -> None:
    unreadable = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
    configured = [pem(pki["root"]), unreadable]
    root_entry = {"certificateType": CSMS,
                  "certificateHashData": hash_data(pki["root"], pki["root"])}
    with caplog.at_level(logging.WARNING):
        assert store.installed(configured=configured) == [root_entry]
    assert "cannot be read" in caplog.text
    assert store.installed(["ManufacturerRootCertificate"], configured=configured) == []
    assert store.install(CSMS, pem(pki["root"]), NOW).ok       # the same root installed
    assert store.install(CSMS, pem(pki["other"]), NOW).ok
    listed = store.installed(configured=configured)
    assert sorted(map(str, listed)) == sorted(map(str, [root_entry, {
        "certificateType": CSMS,
        "certificateHashData": hash_data(pki["other"], pki["other"])}]))
    assert store.count([pem(pki["root"])]) == 2


def test_a_station_leaf_under_a_configured_root_is_never_deleted(store, pki) -> None:
    leaf = sign_pending(store.new_key_and_csr(STATION, "O"), pki["root"], pki["root_key"])
    configured = [pem(pki["root"])]
    assert store.accept_signed_chain(pem(leaf), NOW, station_id=STATION,
                                     trusted_pem=configured[0]).ok
    outcome = store.delete(hash_data(leaf, pki["root"]), configured=configured)
    assert outcome.status == "Failed" and "station's own certificate" in outcome.info
    assert store.withdrawn_roots() == frozenset()


def test_a_withdrawal_is_a_0600_record_and_a_crash_leaves_no_temporary(tmp_path, pki) -> None:
    from agent.pki.checks import fingerprint
    store = CertificateStore(tmp_path / "certs")
    outcome = store.delete(hash_data(pki["root"], pki["root"]),
                           configured=[pem(pki["root"]), pem(pki["other"])])
    assert outcome.ok and "from csms.ca_file" in outcome.info
    record = tmp_path / "certs" / "withdrawn" / f"{fingerprint(pki['root'])}.pem"
    assert mode(record) == 0o600 and mode(record.parent) == 0o700
    assert parse_certificates(record.read_text())[0] == pki["root"]
    stray = record.parent / f".{record.name}.tmp"
    stray.write_text("half")
    again = CertificateStore(tmp_path / "certs")
    assert again.withdrawn_roots() == {fingerprint(pki["root"])}
    assert not stray.exists()
